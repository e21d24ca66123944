//! One analysis run — the rollout webhooks, then the metrics — the probe of every metric before
//! traffic moves, and the critical checks that run between steps (fast failure), the same in
//! every world.

use std::time::Duration;

use siskin_analysis::{MetricSource, assess_measurement};
use siskin_api::{
    CanaryAnalysis, CanaryStatus, HookType, Phase,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    status::{CheckStatus, Verdict},
};
use siskin_engine::{AnalysisResult, Timestamp};

use crate::{Payload, Webhooks};

/// The window critical checks judge: seconds, not an interval.
pub const CRITICAL_WINDOW: Duration = Duration::from_secs(10);

/// Runs the rollout webhooks, then measures every metric.
pub async fn analysis(
    analysis: &CanaryAnalysis,
    hooks: &dyn Webhooks,
    payload: &Payload,
    metrics: &dyn MetricSource,
    now: Timestamp,
) -> AnalysisResult {
    let mut checks = Vec::new();
    for h in analysis.hooks(HookType::Rollout) {
        let r = hooks.call(h, payload).await;
        checks.push(CheckStatus {
            name: h.name.clone(),
            kind: "webhook".into(),
            verdict: if r.passed {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            message: (!r.passed).then(|| r.summary()),
            time: Some(Time(now)),
            ..Default::default()
        });
    }
    checks.extend(probe(analysis, metrics, now).await);
    AnalysisResult { checks }
}

/// Measures every metric once, over its interval.
pub async fn probe(
    analysis: &CanaryAnalysis,
    metrics: &dyn MetricSource,
    now: Timestamp,
) -> Vec<CheckStatus> {
    let mut checks = Vec::new();
    for m in analysis.metrics.iter().flatten() {
        let measured = metrics.measure(m, None).await;
        checks.push(assess_measurement(m, &measured, now));
    }
    checks
}

/// Whether the canary takes traffic in a run, so that live data can judge it.
pub fn exposed(status: &CanaryStatus) -> bool {
    let taking = status.canary_weight > 0 || status.mirrored == Some(true);
    taking && matches!(status.phase, Phase::Progressing | Phase::WaitingPromotion)
}

/// Whether the analysis has critical metrics this world can measure live.
pub fn has_critical(analysis: &CanaryAnalysis, metrics: &dyn MetricSource) -> bool {
    analysis
        .metrics
        .iter()
        .flatten()
        .any(|m| m.is_critical() && metrics.is_live(m))
}

/// Evaluates the critical metrics on the last [`CRITICAL_WINDOW`] while the canary takes
/// traffic. Only a measured failure counts: too few samples or no data is not a verdict that
/// can roll back at once (the regular step judges those).
pub async fn critical(
    analysis: &CanaryAnalysis,
    status: &CanaryStatus,
    metrics: &dyn MetricSource,
    now: Timestamp,
) -> Option<CheckStatus> {
    if !exposed(status) {
        return None;
    }
    for m in analysis
        .metrics
        .iter()
        .flatten()
        .filter(|m| m.is_critical() && metrics.is_live(m))
    {
        let measured = metrics.measure(m, Some(CRITICAL_WINDOW)).await;
        let check = assess_measurement(m, &measured, now);
        if check.verdict == Verdict::Fail {
            return Some(check);
        }
    }
    None
}
