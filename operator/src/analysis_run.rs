//! One analysis run — the rollout webhooks, then the metrics — shared by the operator and
//! `siskin run`: the same checks, recorded the same way, whatever answers the metrics.

use siskin_analysis::{BuiltinMetric, MetricsProvider, ProviderError, Query, assess};
use siskin_api::{
    CanaryAnalysis, HookType, METRIC_REQUEST_DURATION, METRIC_REQUEST_SUCCESS_RATE,
    analysis::CanaryMetric,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    status::{CheckStatus, Verdict},
};
use siskin_engine::AnalysisResult;

use crate::hooks::{Hooks, Payload};

/// The built-in check a metric names, if it is one.
pub fn builtin(m: &CanaryMetric) -> Option<BuiltinMetric> {
    match m.name.as_str() {
        METRIC_REQUEST_SUCCESS_RATE if m.is_builtin() => Some(BuiltinMetric::SuccessRate),
        METRIC_REQUEST_DURATION if m.is_builtin() => Some(BuiltinMetric::DurationP99),
        _ => None,
    }
}

/// Runs the rollout webhooks, then every metric: built-in ones are asked of `provider` for the
/// canary backend of `route`; others get `unsupported` as their reason (inconclusive).
pub async fn run(
    analysis: &CanaryAnalysis,
    hooks: &Hooks,
    payload: &Payload,
    provider: &dyn MetricsProvider,
    route: &str,
    unsupported: &str,
) -> AnalysisResult {
    let now = jiff::Timestamp::now();
    let mut checks = Vec::new();
    for h in analysis.hooks(HookType::Rollout) {
        let r = hooks.call(h, payload).await;
        checks.push(CheckStatus {
            name: h.name.clone(),
            kind: "webhook".into(),
            verdict: if r.is_ok() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            message: r.err(),
            time: Some(Time(now)),
            ..Default::default()
        });
    }
    for m in analysis.metrics.iter().flatten() {
        let value = match builtin(m) {
            Some(metric) => {
                let q = Query::Builtin {
                    metric,
                    route: route.to_string(),
                    backend: "canary".into(),
                    window: m.interval(),
                };
                provider.query(&q).await
            }
            None => Err(ProviderError::Rejected {
                status: 400,
                body: format!("metric {}: {unsupported}", m.name),
            }),
        };
        checks.push(assess(m, value, now));
    }
    AnalysisResult { checks }
}
