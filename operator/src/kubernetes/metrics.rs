//! The operator's own metrics (the equivalents of Flagger's `flagger_*`), in one
//! `prometheus-client` registry, exposed as OpenMetrics text on `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Histogram buckets of one reconcile's duration, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A label set, in the order written.
pub type Labels = Vec<(&'static str, String)>;

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Every metric, registered once; handles are cheap clones sharing the values.
pub struct Metrics {
    registry: Registry,
    /// `siskin_info{version, mesh_provider}` 1.
    pub info: Family<Labels, Gauge>,
    /// `siskin_canary_total{namespace}`.
    pub canaries: Family<Labels, Gauge>,
    /// `siskin_canary_status{name, namespace}`: 0 Progressing, 1 running or idle, 2 Failed.
    pub status: Family<Labels, Gauge>,
    /// `siskin_canary_weight{workload, namespace}`.
    pub weight: Family<Labels, Gauge>,
    /// `siskin_canary_metric_analysis{name, namespace, metric}`.
    pub analysis: Family<Labels, Gauge<f64, AtomicU64>>,
    /// `siskin_canary_successes_total{name, namespace, deployment_strategy, analysis_status}`.
    pub successes: Family<Labels, Counter>,
    /// `siskin_canary_failures_total{...}`, the same labels.
    pub failures: Family<Labels, Counter>,
    /// `siskin_canary_duration_seconds{name, namespace}`.
    pub duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// `siskin_leader`.
    pub leader: Gauge,
    /// `siskin_notifications_total{provider, outcome}`.
    pub notifications: Family<Labels, Counter>,
    /// `siskin_reconcile_errors_total{kind}`.
    pub reconcile_errors: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            info: Family::default(),
            canaries: Family::default(),
            status: Family::default(),
            weight: Family::default(),
            analysis: Family::default(),
            successes: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            leader: Gauge::default(),
            notifications: Family::default(),
            reconcile_errors: Family::default(),
        };
        let mut r = Registry::default();
        r.register(
            "siskin_info",
            "Version and default provider of the operator",
            m.info.clone(),
        );
        r.register(
            "siskin_canary_total",
            "Canaries per namespace",
            m.canaries.clone(),
        );
        r.register(
            "siskin_canary_status",
            "0 Progressing, 1 running or idle, 2 Failed (as Flagger's flagger_canary_status)",
            m.status.clone(),
        );
        r.register(
            "siskin_canary_weight",
            "Traffic weight of the primary (<target>-primary) and canary (<target>) workloads",
            m.weight.clone(),
        );
        r.register(
            "siskin_canary_metric_analysis",
            "Last value of each analysis metric",
            m.analysis.clone(),
        );
        r.register("siskin_canary_successes", "Promotions", m.successes.clone());
        r.register("siskin_canary_failures", "Rollbacks", m.failures.clone());
        r.register(
            "siskin_canary_duration_seconds",
            "Duration of one reconcile that ran the analysis",
            m.duration.clone(),
        );
        r.register(
            "siskin_leader",
            "1 when this replica holds the leader lease",
            m.leader.clone(),
        );
        r.register(
            "siskin_notifications",
            "Alerts to chat, by provider and outcome (sent, failed)",
            m.notifications.clone(),
        );
        r.register(
            "siskin_reconcile_errors",
            "Reconciles that failed, by kind (invalid, unavailable, conflict, not_converged)",
            m.reconcile_errors.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

impl Metrics {
    /// OpenMetrics text of every metric ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_flaggers() {
        let m = Metrics::default();
        m.status
            .get_or_create(&vec![
                ("name", "podinfo".into()),
                ("namespace", "apps".into()),
            ])
            .set(2);
        m.successes
            .get_or_create(&vec![("name", "podinfo".into())])
            .inc();
        m.analysis
            .get_or_create(&vec![("metric", "success-rate".into())])
            .set(99.5);
        m.duration
            .get_or_create(&vec![("name", "podinfo".into())])
            .observe(0.02);
        let out = m.render();
        for needle in [
            "siskin_canary_status{name=\"podinfo\",namespace=\"apps\"} 2\n",
            "# TYPE siskin_canary_successes counter\n",
            "siskin_canary_successes_total{name=\"podinfo\"} 1\n",
            "siskin_canary_metric_analysis{metric=\"success-rate\"} 99.5\n",
            "siskin_canary_duration_seconds_bucket{le=\"0.025\",name=\"podinfo\"} 1\n",
            "siskin_canary_duration_seconds_count{name=\"podinfo\"} 1\n",
            "# EOF\n",
        ] {
            assert!(out.contains(needle), "{needle:?} in\n{out}");
        }
    }
}
