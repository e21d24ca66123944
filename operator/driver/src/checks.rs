//! One analysis run — the rollout webhooks, then the metrics — and the critical checks that run
//! between steps (fast failure), the same in every world.

use std::time::Duration;

use siskin_analysis::{BuiltinMetric, MetricsProvider, ProviderError, Query, assess};
use siskin_api::{
    CanaryAnalysis, CanaryStatus, HookType, METRIC_REQUEST_DURATION, METRIC_REQUEST_SUCCESS_RATE,
    Phase,
    analysis::CanaryMetric,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    status::{CheckStatus, Verdict},
};
use siskin_engine::{AnalysisResult, Timestamp};
use siskin_route::Role;

use crate::{Payload, Webhooks};

/// The window critical checks judge: seconds, not an interval.
pub const CRITICAL_WINDOW: Duration = Duration::from_secs(10);

/// What the metrics of this release are measured on.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The route the router reports statistics under (`namespace/apex`).
    pub route: &'a str,
    /// Why metrics other than the built-in ones have no value in this world.
    pub unsupported: &'a str,
}

/// The built-in check a metric names, if it is one.
pub fn builtin(m: &CanaryMetric) -> Option<BuiltinMetric> {
    match m.name.as_str() {
        METRIC_REQUEST_SUCCESS_RATE if m.is_builtin() => Some(BuiltinMetric::SuccessRate),
        METRIC_REQUEST_DURATION if m.is_builtin() => Some(BuiltinMetric::DurationP99),
        _ => None,
    }
}

/// Runs the rollout webhooks, then every metric: built-in ones are asked of `provider` for the
/// canary's side of the route; others are inconclusive with `subject.unsupported` as reason.
pub async fn analysis(
    analysis: &CanaryAnalysis,
    hooks: &dyn Webhooks,
    payload: &Payload,
    provider: &dyn MetricsProvider,
    subject: Subject<'_>,
    now: Timestamp,
) -> AnalysisResult {
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
            Some(metric) => provider.query(&query(metric, subject, m.interval())).await,
            None => Err(ProviderError::Rejected {
                status: 400,
                body: format!("metric {}: {}", m.name, subject.unsupported),
            }),
        };
        checks.push(assess(m, value, now));
    }
    AnalysisResult { checks }
}

/// Whether the canary takes traffic in a run, so that live data can judge it.
pub fn exposed(status: &CanaryStatus) -> bool {
    let taking = status.canary_weight > 0 || status.mirrored == Some(true);
    taking && matches!(status.phase, Phase::Progressing | Phase::WaitingPromotion)
}

/// Whether the analysis has critical metrics this world can measure live.
pub fn has_critical(analysis: &CanaryAnalysis) -> bool {
    analysis
        .metrics
        .iter()
        .flatten()
        .any(|m| m.is_critical() && builtin(m).is_some())
}

/// Evaluates the critical metrics on the last [`CRITICAL_WINDOW`] while the canary takes
/// traffic. Only a measured failure counts: too few samples or no data is not a verdict that
/// can roll back at once (the regular step judges those).
pub async fn critical(
    analysis: &CanaryAnalysis,
    status: &CanaryStatus,
    provider: &dyn MetricsProvider,
    subject: Subject<'_>,
    now: Timestamp,
) -> Option<CheckStatus> {
    if !exposed(status) {
        return None;
    }
    for m in analysis
        .metrics
        .iter()
        .flatten()
        .filter(|m| m.is_critical())
    {
        let Some(metric) = builtin(m) else {
            continue;
        };
        let value = provider
            .query(&query(metric, subject, CRITICAL_WINDOW))
            .await;
        let check = assess(m, value, now);
        if check.verdict == Verdict::Fail {
            return Some(check);
        }
    }
    None
}

fn query(metric: BuiltinMetric, subject: Subject<'_>, window: Duration) -> Query {
    Query::Builtin {
        metric,
        route: subject.route.to_string(),
        backend: Role::Canary,
        window,
    }
}
