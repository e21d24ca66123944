//! Weight over time: what this replica saw of each Canary's `status.canaryWeight` since it
//! started (kept in memory, [`LIMIT`] samples per Canary), drawn as an SVG step line.

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write,
    sync::Mutex,
};

use jiff::Timestamp;
use siskin_api::Phase;

/// Samples kept per Canary.
pub const LIMIT: usize = 720;
/// The longest span drawn.
const WINDOW_SECONDS: i64 = 3600;

/// One observed change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it was seen.
    pub at: Timestamp,
    /// The canary's weight.
    pub weight: i32,
    /// The phase.
    pub phase: Phase,
}

/// Samples per `(namespace, name)`.
#[derive(Default)]
pub struct Series {
    inner: Mutex<HashMap<(String, String), VecDeque<Sample>>>,
}

impl Series {
    /// Records `s` when weight or phase differ from the last sample.
    pub fn record(&self, key: (String, String), s: Sample) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        let q = map.entry(key).or_default();
        if q.back()
            .is_some_and(|l| l.weight == s.weight && l.phase == s.phase)
        {
            return;
        }
        if q.len() == LIMIT {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// Forgets a deleted Canary.
    pub fn forget(&self, key: &(String, String)) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(key);
        }
    }

    /// The samples of one Canary, oldest first.
    pub fn of(&self, key: &(String, String)) -> Vec<Sample> {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|q| q.iter().copied().collect()))
            .unwrap_or_default()
    }
}

fn hms(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// The chart: a step line of the weight from the first sample (at most an hour back) to
/// `now`, the max weight dashed, a dot where the phase changed. Only numbers and phase
/// names go into it.
pub fn svg(samples: &[Sample], max_weight: i32, now: Timestamp) -> String {
    const W: f64 = 640.0;
    const H: f64 = 160.0;
    const LEFT: f64 = 36.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 8.0;
    const BOTTOM: f64 = 22.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg id="weight-chart" class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="canary weight over time" data-samples="{}">"#,
        samples.len()
    );
    let y = |w: i32| TOP + (H - TOP - BOTTOM) * (1.0 - f64::from(w.clamp(0, 100)) / 100.0);
    for w in [0, 25, 50, 75, 100] {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end" fill="#666">{w}%</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            y(w) + 3.0,
            y = y(w)
        );
    }
    let Some(first) = samples.first() else {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#666">no samples yet</text></svg>"##,
            W / 2.0,
            H / 2.0
        );
        return out;
    };
    let start = first.at.as_second().max(now.as_second() - WINDOW_SECONDS);
    let span = (now.as_second() - start).max(1) as f64;
    let x =
        |t: Timestamp| LEFT + (W - LEFT - RIGHT) * ((t.as_second() - start).max(0) as f64 / span);
    if max_weight > 0 {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{m:.1}" y2="{m:.1}" stroke="#c80" stroke-dasharray="4 3"><title>max weight {max_weight}%</title></line>"##,
            W - RIGHT,
            m = y(max_weight)
        );
    }
    let mut points = String::new();
    let mut last: Option<Sample> = None;
    let mut dots = String::new();
    for s in samples {
        let px = x(s.at);
        if let Some(l) = last {
            let _ = write!(points, "{px:.1},{:.1} ", y(l.weight));
            if l.phase != s.phase {
                let _ = write!(
                    dots,
                    r##"<circle cx="{px:.1}" cy="{:.1}" r="3" fill="{}"><title>{} {}: {}</title></circle>"##,
                    y(s.weight),
                    if s.phase == Phase::Failed {
                        "#c00"
                    } else {
                        "#246"
                    },
                    hms(s.at),
                    s.phase.name(),
                    s.weight
                );
            }
        }
        let _ = write!(points, "{px:.1},{:.1} ", y(s.weight));
        last = Some(*s);
    }
    if let Some(l) = last {
        let _ = write!(points, "{:.1},{:.1}", W - RIGHT, y(l.weight));
    }
    let _ = write!(
        out,
        r##"<polyline fill="none" stroke="#246" stroke-width="2" points="{}"/>{dots}"##,
        points.trim_end()
    );
    let at = Timestamp::from_second(start).unwrap_or(first.at);
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{}" font-size="10" fill="#666">{}</text><text x="{}" y="{}" font-size="10" text-anchor="end" fill="#666">{} UTC</text></svg>"##,
        H - 6.0,
        hms(at),
        W - RIGHT,
        H - 6.0,
        hms(now)
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn only_changes_are_kept_and_the_oldest_go_first() {
        let series = Series::default();
        let key = ("ns".to_string(), "c".to_string());
        for i in 0..(LIMIT as i64 + 10) {
            let weight = (i % 2) as i32 * 10;
            series.record(
                key.clone(),
                Sample {
                    at: at(i),
                    weight,
                    phase: Phase::Progressing,
                },
            );
            // the same again is no new sample
            series.record(
                key.clone(),
                Sample {
                    at: at(i),
                    weight,
                    phase: Phase::Progressing,
                },
            );
        }
        let s = series.of(&key);
        assert_eq!(s.len(), LIMIT);
        assert_eq!(s[0].at, at(10));
        series.forget(&key);
        assert!(series.of(&key).is_empty());
    }

    #[test]
    fn the_line_steps_and_marks_phase_changes() {
        let samples = [
            Sample {
                at: at(0),
                weight: 0,
                phase: Phase::Initialized,
            },
            Sample {
                at: at(10),
                weight: 25,
                phase: Phase::Progressing,
            },
            Sample {
                at: at(20),
                weight: 0,
                phase: Phase::Failed,
            },
        ];
        let out = svg(&samples, 50, at(40));
        assert!(out.contains(r#"data-samples="3""#), "{out}");
        assert!(out.contains("Failed: 0"), "{out}");
        assert!(out.contains("max weight 50%"), "{out}");
        assert!(out.ends_with("</svg>"));
        // 3 samples: one point each, one corner before each change, one to now
        let points = out
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 6, "{points}");
        assert!(svg(&[], 50, at(0)).contains("no samples yet"));
    }
}
