//! What one load run saw: request and error counts, outcome codes and latency percentiles.
//! Each worker keeps its own [`WorkerStats`] (no lock on the request path); they are merged
//! into a [`Summary`] when the run ends.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

/// Latency buckets grow by 1 % each, from 1 µs: constant memory for any run length, and
/// percentiles within 1 % of the true value.
const GROWTH: f64 = 1.01;
/// Buckets up to ~2.4 hours (1.01^2300 µs).
const BUCKETS: usize = 2300;
/// At most this many distinct error messages are kept (the rest are counted as "other").
const MAX_MESSAGES: usize = 20;

/// A log-bucketed latency histogram.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    sum: Duration,
    max: Duration,
}

/// One worker's share of a run.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Requests sent and answered or failed.
    pub requests: u64,
    /// Requests that count as errors (see [`Outcome::is_error`]).
    pub errors: u64,
    /// Requests per outcome code (`200`, `500`, `OK`, `NOT_SERVING`, `error`).
    pub codes: BTreeMap<String, u64>,
    /// Transport and protocol failures by message.
    pub messages: BTreeMap<String, u64>,
    /// Latency of every request.
    pub latency: LatencyHistogram,
}

/// How one request ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The code reported in results and metrics (HTTP status, gRPC status or health status
    /// name, `error` for a transport failure).
    pub code: String,
    /// Whether the request counts as an error.
    pub is_error: bool,
    /// Why it failed, when it is not just a status.
    pub message: Option<String>,
}

/// The results of one run, as returned by the API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `hey` or `ghz`.
    pub tool: &'static str,
    /// The command line that was run.
    pub command: String,
    /// The URL or `host:port` that was loaded.
    pub target: String,
    /// When the run started.
    pub started_at: jiff::Timestamp,
    /// Wall-clock length of the run.
    pub duration_seconds: f64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed: non-2xx for HTTP, not OK (or not SERVING) for gRPC, transport errors.
    pub errors: u64,
    /// Requests per outcome code.
    pub status_codes: BTreeMap<String, u64>,
    /// Transport and protocol failures by message.
    pub error_messages: BTreeMap<String, u64>,
    /// Requests per second over the run.
    pub rps: f64,
    /// Latency in milliseconds.
    pub latency_ms: Latency,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest request.
    pub max: f64,
}

// === impl LatencyHistogram ===

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: Duration::ZERO,
            max: Duration::ZERO,
        }
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let micros = d.as_secs_f64() * 1e6;
        let idx = if micros <= 1.0 {
            0
        } else {
            // Truncation is the bucketing: bucket i holds (1.01^i, 1.01^(i+1)] µs.
            ((micros.ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
        };
        self.counts[idx] += 1;
        self.count += 1;
        self.sum += d;
        self.max = self.max.max(d);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// The `q` quantile (0..=1) in milliseconds: the upper bound of its bucket, capped at the
    /// slowest request seen.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let upper_micros = GROWTH.powi(i as i32 + 1);
                return (upper_micros / 1e3).min(self.max.as_secs_f64() * 1e3);
            }
        }
        self.max.as_secs_f64() * 1e3
    }

    fn latency(&self) -> Latency {
        if self.count == 0 {
            return Latency::default();
        }
        Latency {
            mean: self.sum.as_secs_f64() * 1e3 / self.count as f64,
            p50: self.quantile_ms(0.5),
            p90: self.quantile_ms(0.9),
            p99: self.quantile_ms(0.99),
            max: self.max.as_secs_f64() * 1e3,
        }
    }
}

// === impl WorkerStats ===

impl WorkerStats {
    /// Records one finished request.
    pub fn record(&mut self, outcome: &Outcome, latency: Duration) {
        self.requests += 1;
        if outcome.is_error {
            self.errors += 1;
        }
        *self.codes.entry(outcome.code.clone()).or_default() += 1;
        if let Some(m) = &outcome.message {
            add_message(&mut self.messages, m, 1);
        }
        self.latency.record(latency);
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &WorkerStats) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (k, v) in &other.codes {
            *self.codes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.messages {
            add_message(&mut self.messages, k, *v);
        }
        self.latency.merge(&other.latency);
    }

    /// The run's results.
    pub fn summary(
        &self,
        tool: &'static str,
        command: &str,
        target: &str,
        started_at: jiff::Timestamp,
        elapsed: Duration,
    ) -> Summary {
        let secs = elapsed.as_secs_f64();
        Summary {
            tool,
            command: command.to_string(),
            target: target.to_string(),
            started_at,
            duration_seconds: secs,
            requests: self.requests,
            errors: self.errors,
            status_codes: self.codes.clone(),
            error_messages: self.messages.clone(),
            rps: if secs > 0.0 {
                self.requests as f64 / secs
            } else {
                0.0
            },
            latency_ms: self.latency.latency(),
        }
    }
}

fn add_message(messages: &mut BTreeMap<String, u64>, message: &str, n: u64) {
    if messages.len() < MAX_MESSAGES || messages.contains_key(message) {
        *messages.entry(message.to_string()).or_default() += n;
    } else {
        *messages.entry("other errors".to_string()).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        for (q, want) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = h.quantile_ms(q);
            assert!((got - want).abs() / want <= 0.011, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.latency().max, 1000.0);
        assert!((h.latency().mean - 500.5).abs() < 1e-6);
    }

    #[test]
    fn merges_workers() {
        let ok = Outcome {
            code: "200".into(),
            is_error: false,
            message: None,
        };
        let bad = Outcome {
            code: "error".into(),
            is_error: true,
            message: Some("connection refused".into()),
        };
        let mut a = WorkerStats::default();
        a.record(&ok, Duration::from_millis(2));
        let mut b = WorkerStats::default();
        b.record(&bad, Duration::from_millis(4));
        b.record(&ok, Duration::from_millis(3));
        a.merge(&b);
        let s = a.summary(
            "hey",
            "hey x",
            "x",
            jiff::Timestamp::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        assert_eq!((s.requests, s.errors), (3, 1));
        assert_eq!(s.status_codes["200"], 2);
        assert_eq!(s.error_messages["connection refused"], 1);
        assert_eq!(s.rps, 3.0);
        assert_eq!(s.latency_ms.max, 4.0);
    }

    #[test]
    fn empty_run_has_zero_latency() {
        let s = WorkerStats::default().summary(
            "ghz",
            "ghz",
            "a:1",
            jiff::Timestamp::UNIX_EPOCH,
            Duration::ZERO,
        );
        assert_eq!(s.latency_ms.p99, 0.0);
        assert_eq!(s.rps, 0.0);
    }
}
