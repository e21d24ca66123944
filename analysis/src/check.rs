//! Assessing a value against a metric's thresholds: pure.

use siskin_api::{
    CanaryMetric, METRIC_REQUEST_SUCCESS_RATE,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    status::{CheckStatus, Judgement, Verdict},
};

use crate::{ProviderError, source::Measurement};

/// The accepted range of a metric.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    /// Lowest accepted value.
    pub min: Option<f64>,
    /// Highest accepted value.
    pub max: Option<f64>,
}

// === impl Range ===

impl Range {
    /// The range of a metric: `thresholdRange`, else the deprecated `threshold` (a minimum for
    /// the success rate, a maximum for everything else, as in Flagger).
    pub fn of(metric: &CanaryMetric) -> Range {
        if let Some(r) = &metric.threshold_range {
            return Range {
                min: r.min,
                max: r.max,
            };
        }
        match metric.threshold {
            Some(t) if metric.name == METRIC_REQUEST_SUCCESS_RATE => Range {
                min: Some(t),
                max: None,
            },
            Some(t) => Range {
                min: None,
                max: Some(t),
            },
            None => Range::default(),
        }
    }

    /// Whether `v` is accepted.
    pub fn accepts(&self, v: f64) -> bool {
        !v.is_nan() && self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

/// Turns a provider's answer into a check result: in range → pass, out of range → fail, no
/// value → no data (nothing matched, too few samples) or error (the query could not run).
/// Neither of the last two ever passes; the engine counts them as failed checks unless the
/// metric says `hold`.
pub fn assess(
    metric: &CanaryMetric,
    value: Result<f64, ProviderError>,
    now: jiff::Timestamp,
) -> CheckStatus {
    assess_measurement(
        metric,
        &Measurement {
            resolved: None,
            value,
            judgement: None,
        },
        now,
    )
}

/// [`assess`], with the provider and the query as sent recorded in the check.
pub fn assess_measurement(
    metric: &CanaryMetric,
    m: &Measurement,
    now: jiff::Timestamp,
) -> CheckStatus {
    let range = Range::of(metric);
    let (value, verdict, message) = match &m.value {
        Ok(v) if range.accepts(*v) => (Some(*v), Verdict::Pass, None),
        Ok(v) => (Some(*v), Verdict::Fail, None),
        Err(e) if e.is_no_data() => (None, Verdict::NoData, Some(e.to_string())),
        Err(e) => (None, Verdict::Error, Some(e.to_string())),
    };
    let message = message.or_else(|| m.judgement.as_ref().map(explain));
    CheckStatus {
        name: metric.name.clone(),
        kind: "metric".to_string(),
        value,
        min: range.min,
        max: range.max,
        verdict,
        provider: m.resolved.as_ref().map(|r| r.provider()),
        query: m.resolved.as_ref().map(|r| r.text()),
        message,
        time: Some(Time(now)),
        judge: m.judgement.clone(),
    }
}

/// The judge's decision in words: effect, interval, test and data.
pub fn explain(j: &Judgement) -> String {
    let small = |v: f64| {
        if v >= 0.001 {
            format!("{}", (v * 1000.0).round() / 1000.0)
        } else {
            format!("{v:.1e}")
        }
    };
    let level = format!(
        "{} % interval at alpha {}",
        (100.0 * (1.0 - 2.0 * j.alpha) * 1000.0).round() / 1000.0,
        small(j.alpha)
    );
    let (what, unit, stat) = if j.test == "mann-whitney" {
        (
            "latency shift",
            "%",
            format!("Mann-Whitney U {}", j.statistic),
        )
    } else {
        ("excess failure rate", " pp", format!("z {}", j.statistic))
    };
    format!(
        "canary {what} {:+}{unit} ({level}: {:+}{unit} to {:+}{unit}; {stat}, p {}; canary {} requests {} failed, primary {} requests {} failed, over {} s)",
        j.effect,
        j.lower,
        j.upper,
        small(j.p_value),
        j.canary_requests,
        j.canary_failures,
        j.primary_requests,
        j.primary_failures,
        j.seconds
    )
}

#[cfg(test)]
mod tests {
    use siskin_api::analysis::ThresholdRange;

    use super::*;

    fn metric(
        name: &str,
        threshold: Option<f64>,
        range: Option<(Option<f64>, Option<f64>)>,
    ) -> CanaryMetric {
        CanaryMetric {
            name: name.into(),
            threshold,
            threshold_range: range.map(|(min, max)| ThresholdRange { min, max }),
            ..Default::default()
        }
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    #[test]
    fn ranges_and_deprecated_thresholds() {
        let sr = metric("request-success-rate", None, Some((Some(99.0), None)));
        assert_eq!(assess(&sr, Ok(99.5), now()).verdict, Verdict::Pass);
        assert_eq!(assess(&sr, Ok(98.0), now()).verdict, Verdict::Fail);
        let old_sr = metric("request-success-rate", Some(99.0), None);
        assert_eq!(
            Range::of(&old_sr),
            Range {
                min: Some(99.0),
                max: None
            }
        );
        let latency = metric("request-duration", Some(500.0), None);
        assert_eq!(assess(&latency, Ok(501.0), now()).verdict, Verdict::Fail);
        let band = metric("error-rate", None, Some((Some(0.0), Some(1.0))));
        assert_eq!(assess(&band, Ok(0.5), now()).verdict, Verdict::Pass);
        assert_eq!(
            assess(&band, Ok(f64::NAN), now()).verdict,
            Verdict::Fail,
            "NaN never passes"
        );
    }

    #[test]
    fn no_data_and_errors_are_never_a_pass() {
        let sr = metric("request-success-rate", None, Some((Some(99.0), None)));
        let c = assess(&sr, Err(ProviderError::Unreachable("x".into())), now());
        assert_eq!(c.verdict, Verdict::Error);
        let c = assess(&sr, Err(ProviderError::NoValues), now());
        assert_eq!(c.verdict, Verdict::NoData);
        assert_eq!(c.message.as_deref(), Some("no values found"));
        assert_eq!(
            (c.min, c.value),
            (Some(99.0), None),
            "the threshold is recorded, the value is not invented"
        );
    }
}
