//! Progressing and WaitingPromotion: readiness, gates, checks and traffic steps.

use siskin_api::{
    DeploymentStrategy, HookType, Phase, Severity, Weight,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    status::{CheckStatus, Verdict},
};

use crate::{
    Action, Readiness,
    conditions::{self, until},
    finish::{self, Rollback},
    step::{Cx, Flow, configs_changed},
};

/// Unwraps a gate outcome or returns the need for it.
macro_rules! need {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(flow) => return flow,
        }
    };
}

/// One tick of a running analysis (Flagger's `advanceCanary` from step 21 on).
pub(crate) fn analysis(cx: &mut Cx<'_>) -> Flow {
    let readiness = match cx.obs.target.as_ref() {
        None => Readiness::NotReady(format!("target {} not found", cx.target())),
        Some(t) => {
            if cx.s.last_applied_spec.as_deref() != Some(t.revision.as_str())
                || configs_changed(&cx.s, t)
            {
                return restart(cx);
            }
            t.readiness.clone()
        }
    };
    match readiness {
        Readiness::Ready => conditions::end_wait(&mut cx.s, "CanaryReady"),
        Readiness::NotReady(msg) => {
            let limit = cx.spec.progress_deadline();
            if conditions::wait(&mut cx.s, "CanaryReady", &msg, cx.now, limit) {
                return finish::rollback(cx, Rollback::NotReady(msg));
            }
            cx.route();
            return Flow::Done(cx.poll());
        }
        Readiness::Failed(msg) => return finish::rollback(cx, Rollback::NotReady(msg)),
    }
    if cx.spec.skip_analysis() {
        return finish::skip(cx);
    }
    // A critical check does not wait for the interval or the threshold.
    if let Some(c) = cx
        .obs
        .critical
        .as_ref()
        .filter(|c| c.verdict != Verdict::Pass)
    {
        let c = c.clone();
        let what = describe(&c);
        merge_check(cx, c);
        return finish::rollback(cx, Rollback::Critical(what));
    }
    if cx.has_hooks(HookType::Rollback) {
        let gate = need!(cx.gate(HookType::Rollback));
        if gate.passed {
            return finish::rollback(cx, Rollback::Manual(gate.hook.clone()));
        }
    }
    if let Some(wait) = not_due(cx) {
        cx.route();
        return Flow::Done(wait);
    }
    if let Some(flow) = check(cx) {
        return flow;
    }
    match cx.strategy() {
        DeploymentStrategy::Canary => canary_step(cx),
        DeploymentStrategy::BlueGreen => blue_green_step(cx),
        DeploymentStrategy::AbTesting => ab_step(cx),
    }
}

/// A new revision (or config change) mid-run: back to 100% primary and start over.
fn restart(cx: &mut Cx<'_>) -> Flow {
    let Some(target) = cx.obs.target.as_ref() else {
        return Flow::Done(cx.poll());
    };
    cx.reset_run(target);
    cx.route();
    cx.event(
        "Restarted",
        format!(
            "New revision detected! Restarting analysis for {}",
            cx.target()
        ),
    );
    Flow::Done(cx.interval())
}

/// Steps are an interval apart: the status changes on every step, so its transition time
/// tells when the last one happened. Returns how long to wait when a step is not due.
fn not_due(cx: &Cx<'_>) -> Option<std::time::Duration> {
    let last = cx.old.last_transition_time.as_ref()?.0;
    let due = conditions::after(last, cx.interval());
    (cx.now < due).then(|| until(cx.now, due))
}

/// Runs this step's checks. Returns a flow when the step ends here (need, failure, rollback).
fn check(cx: &mut Cx<'_>) -> Option<Flow> {
    let first = cx.s.canary_weight == 0 && cx.s.iterations == 0 && cx.s.mirrored != Some(true);
    if first {
        // Before any traffic moves there is nothing to measure: run pre-rollout hooks once.
        if !cx.has_hooks(HookType::PreRollout) || pre_rollout_passed(cx) {
            return None;
        }
        let gate = match cx.gate(HookType::PreRollout) {
            Ok(g) => g,
            Err(flow) => return Some(flow),
        };
        let verdict = if gate.passed {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let hooks: Vec<String> = cx
            .analysis
            .hooks(HookType::PreRollout)
            .map(|h| h.name.clone())
            .collect();
        for name in hooks {
            // Hooks after the one that failed were not called: no answer, not a pass.
            let v = if name == gate.hook || gate.passed {
                verdict
            } else {
                Verdict::NoData
            };
            let entry = webhook_check(&name, v, &gate.message, cx);
            merge_check(cx, entry);
        }
        if gate.passed {
            cx.event("PreRolloutPassed", gate.passed_event("Pre-rollout"));
            return None;
        }
        let why = format!("pre-rollout check {} failed {}", gate.hook, gate.message);
        return Some(failed_check(cx, vec![why]));
    }
    let Some(result) = cx.obs.analysis.as_ref() else {
        return Some(Flow::Need(crate::Need::Analysis));
    };
    for c in &result.checks {
        merge_check(cx, c.clone());
    }
    let failing: Vec<String> = result
        .failures()
        .filter(|c| counts(cx, c))
        .map(describe)
        .collect();
    if !failing.is_empty() {
        conditions::end_wait(&mut cx.s, "MetricData");
        return Some(failed_check(cx, failing));
    }
    let holding: Vec<String> = result.failures().map(describe).collect();
    if holding.is_empty() {
        conditions::end_wait(&mut cx.s, "MetricData");
        return None;
    }
    Some(hold(cx, holding))
}

/// Whether a check that did not pass counts as a failed check: a measured failure always; no
/// data and errors unless the metric says `hold` (`onNoData`, `onError`).
fn counts(cx: &Cx<'_>, c: &CheckStatus) -> bool {
    if c.kind != "metric" {
        return true;
    }
    let metric = cx
        .analysis
        .metrics
        .iter()
        .flatten()
        .find(|m| m.name == c.name);
    match (c.verdict, metric) {
        (Verdict::NoData, Some(m)) => m.fails_on_no_data(),
        (Verdict::Error, Some(m)) => m.fails_on_error(),
        _ => true,
    }
}

/// Checks without a value that hold the release: no step forward and no failed check, until
/// the progress deadline, when the run is rolled back.
fn hold(cx: &mut Cx<'_>, reasons: Vec<String>) -> Flow {
    let first = cx.s.wait.as_ref().is_none_or(|w| w.reason != "MetricData");
    let msg = format!("holding on {}", reasons.join("; "));
    let limit = cx.spec.progress_deadline();
    if conditions::wait(&mut cx.s, "MetricData", &msg, cx.now, limit) {
        return finish::rollback(cx, Rollback::NoData(reasons.join("; ")));
    }
    if first {
        cx.warn(
            "CheckHeld",
            format!("Halt {} advancement {msg}", cx.target()),
        );
    }
    cx.route();
    Flow::Done(cx.interval())
}

fn pre_rollout_passed(cx: &Cx<'_>) -> bool {
    let checks = cx.s.checks.as_deref().unwrap_or_default();
    cx.analysis.hooks(HookType::PreRollout).all(|h| {
        checks
            .iter()
            .any(|c| c.kind == "webhook" && c.name == h.name && c.verdict == Verdict::Pass)
    })
}

fn webhook_check(name: &str, verdict: Verdict, message: &str, cx: &Cx<'_>) -> CheckStatus {
    CheckStatus {
        name: name.to_string(),
        kind: "webhook".to_string(),
        verdict,
        message: (!message.is_empty()).then(|| message.to_string()),
        time: Some(Time(cx.now)),
        ..Default::default()
    }
}

/// Replaces the entry of the same kind and name, keeping the order of first appearance.
fn merge_check(cx: &mut Cx<'_>, entry: CheckStatus) {
    let checks = cx.s.checks.get_or_insert_with(Vec::new);
    match checks
        .iter_mut()
        .find(|c| c.kind == entry.kind && c.name == entry.name)
    {
        Some(c) => *c = entry,
        None => checks.push(entry),
    }
}

/// "request-success-rate 97.1 < 99 (fail)".
fn describe(c: &CheckStatus) -> String {
    let range = match (c.min, c.max) {
        (Some(lo), Some(hi)) => format!(" outside [{lo}, {hi}]"),
        (Some(lo), None) => format!(" < {lo}"),
        (None, Some(hi)) => format!(" > {hi}"),
        (None, None) => String::new(),
    };
    let value = c.value.map(|v| format!(" {v}{range}")).unwrap_or_default();
    let why = c
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!("{} {}{value} ({}){why}", c.kind, c.name, c.verdict)
}

/// Counts one failed check for this step and rolls back at the threshold, in the same step.
fn failed_check(cx: &mut Cx<'_>, reasons: Vec<String>) -> Flow {
    cx.s.failed_checks += 1;
    for r in reasons {
        cx.warn(
            "CheckFailed",
            format!("Halt {} advancement {r}", cx.target()),
        );
    }
    let threshold = cx.analysis.threshold();
    if u32::try_from(cx.s.failed_checks).unwrap_or(0) >= threshold {
        return finish::rollback(cx, Rollback::Threshold(threshold));
    }
    cx.route();
    Flow::Done(cx.interval())
}

/// The next canary weight (see [`siskin_api::CanaryAnalysis::next_weight`]).
pub(crate) fn next_weight(cx: &Cx<'_>, w: Weight) -> Weight {
    cx.analysis.next_weight(w)
}

fn canary_step(cx: &mut Cx<'_>) -> Flow {
    let w = cx.s.weight();
    let mirrored = cx.s.mirrored == Some(true);
    if cx.analysis.mirror() && !mirrored && w == Weight::ZERO {
        cx.s.mirrored = Some(true);
        cx.route();
        cx.event(
            "MirrorStarted",
            format!(
                "Start traffic mirroring to {}",
                cx.spec.canary_service_name()
            ),
        );
        return Flow::Done(cx.interval());
    }
    if w >= cx.analysis.max_weight() {
        return promote_gate(cx);
    }
    if cx.has_hooks(HookType::ConfirmTrafficIncrease) && !mirrored {
        let gate = need!(cx.gate(HookType::ConfirmTrafficIncrease));
        if !gate.passed {
            let first =
                cx.s.wait
                    .as_ref()
                    .is_none_or(|x| x.reason != "ConfirmTrafficIncrease");
            let msg = format!("waiting for traffic increase approval from {}", gate.hook);
            let expired = conditions::wait(
                &mut cx.s,
                "ConfirmTrafficIncrease",
                &msg,
                cx.now,
                cx.spec.approval_deadline(),
            );
            if expired {
                return finish::rollback(cx, Rollback::ApprovalExpired(gate.hook.clone()));
            }
            if first {
                cx.warn(
                    "WaitingForApproval",
                    format!("Halt {} advancement {msg}", cx.target()),
                );
                if !gate.muted {
                    cx.alert(
                        Severity::Warn,
                        "Canary traffic increase is waiting for approval.",
                    );
                }
            }
            cx.route();
            return Flow::Done(cx.interval());
        }
        conditions::end_wait(&mut cx.s, "ConfirmTrafficIncrease");
        cx.event("GatePassed", gate.passed_event("Confirm-traffic-increase"));
    }
    let next = next_weight(cx, w);
    cx.s.canary_weight = i32::from(next);
    cx.s.mirrored = None;
    cx.issue_cookies();
    cx.route();
    cx.event(
        "Advanced",
        format!("Advance {} canary weight {next}", cx.target()),
    );
    Flow::Done(cx.interval())
}

fn blue_green_step(cx: &mut Cx<'_>) -> Flow {
    let n = i32::try_from(cx.analysis.iterations()).unwrap_or(i32::MAX);
    let i = cx.s.iterations;
    if i < n {
        if cx.analysis.mirror() && cx.s.mirrored != Some(true) {
            cx.s.mirrored = Some(true);
            cx.event(
                "MirrorStarted",
                format!(
                    "Start traffic mirroring to {}",
                    cx.spec.canary_service_name()
                ),
            );
        }
        cx.s.iterations = i + 1;
        cx.route();
        cx.event(
            "Advanced",
            format!("Advance {} canary iteration {}/{n}", cx.target(), i + 1),
        );
        return Flow::Done(cx.interval());
    }
    if i > n {
        return promote(cx);
    }
    if let Some(flow) = confirm_promotion(cx) {
        return flow;
    }
    let was_mirrored = cx.s.mirrored.take() == Some(true);
    cx.s.canary_weight = 100;
    cx.s.iterations = i + 1;
    cx.issue_cookies();
    cx.route();
    let m = if was_mirrored {
        "Stop traffic mirroring and route all traffic to canary"
    } else {
        "Routing all traffic to canary"
    };
    cx.event("Switched", format!("{m} {}", cx.spec.canary_service_name()));
    Flow::Done(cx.interval())
}

fn ab_step(cx: &mut Cx<'_>) -> Flow {
    let n = i32::try_from(cx.analysis.iterations()).unwrap_or(i32::MAX);
    let i = cx.s.iterations;
    if i < n {
        cx.s.iterations = i + 1;
        cx.issue_cookies();
        cx.route();
        cx.event(
            "Advanced",
            format!("Advance {} canary iteration {}/{n}", cx.target(), i + 1),
        );
        return Flow::Done(cx.interval());
    }
    promote_gate(cx)
}

/// The confirm-promotion gate, then promotion.
fn promote_gate(cx: &mut Cx<'_>) -> Flow {
    if let Some(flow) = confirm_promotion(cx) {
        return flow;
    }
    promote(cx)
}

/// Runs the confirm-promotion gate. Returns a flow while it holds the release.
fn confirm_promotion(cx: &mut Cx<'_>) -> Option<Flow> {
    if !cx.has_hooks(HookType::ConfirmPromotion) {
        return None;
    }
    let gate = match cx.gate(HookType::ConfirmPromotion) {
        Ok(g) => g,
        Err(flow) => return Some(flow),
    };
    if gate.passed {
        conditions::end_wait(&mut cx.s, "ConfirmPromotion");
        cx.s.phase = Phase::Progressing;
        cx.event("GatePassed", gate.passed_event("Confirm-promotion"));
        return None;
    }
    let first = cx.s.phase != Phase::WaitingPromotion;
    cx.s.phase = Phase::WaitingPromotion;
    let msg = format!("waiting for promotion approval from {}", gate.hook);
    if conditions::wait(
        &mut cx.s,
        "ConfirmPromotion",
        &msg,
        cx.now,
        cx.spec.approval_deadline(),
    ) {
        return Some(finish::rollback(
            cx,
            Rollback::ApprovalExpired(gate.hook.clone()),
        ));
    }
    if first {
        cx.warn(
            "WaitingForApproval",
            format!("Halt {} advancement {msg}", cx.target()),
        );
        if !gate.muted {
            cx.alert(Severity::Warn, "Canary promotion is waiting for approval.");
        }
    }
    cx.route();
    Some(Flow::Done(cx.interval()))
}

/// Copies the canary's spec into the primary; traffic stays where it is until the primary
/// has rolled out.
pub(crate) fn promote(cx: &mut Cx<'_>) -> Flow {
    cx.s.phase = Phase::Promoting;
    cx.s.wait = None;
    cx.route();
    cx.actions.push(Action::PromotePrimary);
    cx.event(
        "Promoting",
        format!(
            "Copying {} template spec to {}",
            cx.target(),
            cx.spec.primary_workload_name()
        ),
    );
    Flow::Done(cx.poll())
}
