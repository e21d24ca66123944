//! Operator metrics in Prometheus text format, the equivalents of Flagger's `flagger_*`.

use std::{collections::BTreeMap, fmt::Write, sync::Mutex};

/// Histogram buckets of one reconcile's duration, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Inner {
    gauges: BTreeMap<(&'static str, String), f64>,
    counters: BTreeMap<(&'static str, String), u64>,
    histograms: BTreeMap<String, (Vec<u64>, f64, u64)>,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn render_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

const HELP: [(&str, &str, &str); 11] = [
    (
        "siskin_info",
        "gauge",
        "Version and default provider of the operator.",
    ),
    ("siskin_canary_total", "gauge", "Canaries per namespace."),
    (
        "siskin_canary_status",
        "gauge",
        "0 Progressing, 1 running or idle, 2 Failed (as Flagger's flagger_canary_status).",
    ),
    (
        "siskin_canary_weight",
        "gauge",
        "Traffic weight of the primary (<target>-primary) and canary (<target>) workloads.",
    ),
    (
        "siskin_canary_metric_analysis",
        "gauge",
        "Last value of each analysis metric.",
    ),
    ("siskin_canary_successes_total", "counter", "Promotions."),
    ("siskin_canary_failures_total", "counter", "Rollbacks."),
    (
        "siskin_canary_duration_seconds",
        "histogram",
        "Duration of one reconcile that ran the analysis.",
    ),
    (
        "siskin_leader",
        "gauge",
        "1 when this replica holds the leader lease.",
    ),
    (
        "siskin_notifications_total",
        "counter",
        "Alerts to chat, by provider and outcome (sent, failed).",
    ),
    (
        "siskin_reconcile_errors_total",
        "counter",
        "Reconciles that failed, by kind (invalid, unavailable, conflict, not_converged).",
    ),
];

impl Metrics {
    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: Labels, value: f64) {
        if let Ok(mut m) = self.inner.lock() {
            m.gauges.insert((name, render_labels(&labels)), value);
        }
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: Labels) {
        if let Ok(mut m) = self.inner.lock() {
            *m.counters
                .entry((name, render_labels(&labels)))
                .or_default() += 1;
        }
    }

    /// Observes a reconcile duration.
    pub fn observe_duration(&self, labels: Labels, seconds: f64) {
        if let Ok(mut m) = self.inner.lock() {
            let h = m
                .histograms
                .entry(render_labels(&labels))
                .or_insert_with(|| (vec![0; BUCKETS.len()], 0.0, 0));
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.0[i] += 1;
                }
            }
            h.1 += seconds;
            h.2 += 1;
        }
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else {
            return out;
        };
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), v) in &m.gauges {
                if *n == name {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
            for ((n, labels), v) in &m.counters {
                if *n == name {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
            if name == "siskin_canary_duration_seconds" {
                for (labels, (buckets, sum, count)) in &m.histograms {
                    for (b, c) in BUCKETS.iter().zip(buckets) {
                        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
                    }
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
                    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
                    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
                }
            }
        }
        out
    }
}
