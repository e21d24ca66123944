//! The load tester's Prometheus metrics, served on `/metrics` (OpenMetrics text).

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

/// Which canary a load run is for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    /// The payload's namespace.
    pub namespace: String,
    /// The payload's name.
    pub canary: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    namespace: String,
    canary: String,
    tool: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    namespace: String,
    canary: String,
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    r#type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabels {
    namespace: String,
    canary: String,
    gate: String,
}

/// Every metric the load tester exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<DurationLabels, Histogram, fn() -> Histogram>,
    tasks: Family<TaskLabels, Counter>,
    gates: Family<GateLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `siskin_loadtester` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("siskin_loadtester");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests sent by the in-process hey and ghz, by canary, tool and outcome code (HTTP status, gRPC status, or error)",
            requests.clone(),
        );
        let latency = Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "request_duration",
            "Latency of the requests sent by the in-process hey and ghz",
            Unit::Seconds,
            latency.clone(),
        );
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Tasks received on /, by type (cmd, bash, helm, helmv3, kubectl, hey, ghz) and outcome",
            tasks.clone(),
        );
        let gates = Family::<GateLabels, Gauge>::default();
        registry.register(
            "gate_open",
            "1 while a gate is open, 0 once closed; gate is shared, a hook type, or rollback",
            gates.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            tasks,
            gates,
        }
    }

    /// Records one request of a load run.
    pub fn observe_request(
        &self,
        canary: &CanaryLabels,
        tool: &str,
        code: &str,
        latency: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                namespace: canary.namespace.clone(),
                canary: canary.canary.clone(),
                tool: tool.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&DurationLabels {
                namespace: canary.namespace.clone(),
                canary: canary.canary.clone(),
                tool: tool.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Counts one task by type and outcome.
    pub fn task(&self, kind: &str, outcome: &str) {
        self.tasks
            .get_or_create(&TaskLabels {
                r#type: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Sets a gate's state.
    pub fn gate(&self, namespace: &str, canary: &str, gate: &str, open: bool) {
        self.gates
            .get_or_create(&GateLabels {
                namespace: namespace.to_string(),
                canary: canary.to_string(),
                gate: gate.to_string(),
            })
            .set(i64::from(open));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_family() {
        let m = Metrics::new();
        let c = CanaryLabels {
            namespace: "test".into(),
            canary: "podinfo".into(),
        };
        m.observe_request(&c, "hey", "200", Duration::from_millis(3));
        m.task("cmd", "started");
        m.gate("test", "podinfo", "confirm-promotion", true);
        let text = m.encode().unwrap();
        for want in [
            r#"siskin_loadtester_requests_total{namespace="test",canary="podinfo",tool="hey",code="200"} 1"#,
            r#"siskin_loadtester_request_duration_seconds_count{namespace="test",canary="podinfo",tool="hey"} 1"#,
            r#"siskin_loadtester_tasks_total{type="cmd",outcome="started"} 1"#,
            r#"siskin_loadtester_gate_open{namespace="test",canary="podinfo",gate="confirm-promotion"} 1"#,
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
