//! How a run ends: promotion traffic shift, finalising, rollback, skipped analysis, deletion.

use siskin_api::{
    HookType, Phase, Severity, Weight,
    status::{HISTORY_LIMIT, ReleaseRecord},
};

use crate::{
    Action, Alert, Readiness, RouteState, Scale,
    conditions::{self, until},
    step::{Cx, Flow, stall_wait},
};

/// Why a run is rolled back.
pub(crate) enum Rollback {
    /// `failedChecks` reached the threshold.
    Threshold(u32),
    /// The canary did not become ready in time, or cannot.
    NotReady(String),
    /// A rollback webhook asked for it.
    Manual(String),
    /// A confirm gate held the release past its deadline.
    ApprovalExpired(String),
    /// A critical check failed on live data.
    Critical(String),
    /// Checks held the release without data past the progress deadline.
    NoData(String),
    /// A user asked for it (`siskin abort`); who.
    Aborted(String),
}

/// Routes everything back to the primary, scales the canary down and marks the run Failed.
/// Every cause alerts (Flagger stays silent on deadline rollbacks).
pub(crate) fn rollback(cx: &mut Cx<'_>, why: Rollback) -> Flow {
    let target = cx.target().to_string();
    let (reason, severity, alert) = match &why {
        Rollback::Threshold(n) => (
            format!("failed checks threshold reached {n}"),
            Severity::Error,
            format!("Failed checks threshold reached {n}"),
        ),
        Rollback::NotReady(msg) => (
            format!("progress deadline exceeded, canary not ready: {msg}"),
            Severity::Error,
            format!("Progress deadline exceeded: {msg}"),
        ),
        Rollback::Manual(hook) => (
            format!("manual webhook {hook} invoked"),
            Severity::Warn,
            "Rolling back manual webhook invoked".to_string(),
        ),
        Rollback::Critical(what) => (
            format!("critical check failed: {what}"),
            Severity::Error,
            format!("Critical check failed: {what}"),
        ),
        Rollback::NoData(what) => (
            format!("progress deadline exceeded without data: {what}"),
            Severity::Error,
            format!("Progress deadline exceeded without data: {what}"),
        ),
        Rollback::Aborted(by) => (
            format!("aborted by {by}"),
            Severity::Warn,
            format!("Release aborted by {by}"),
        ),
        Rollback::ApprovalExpired(hook) => (
            format!("gate {hook} did not approve before the approval deadline"),
            Severity::Error,
            format!("Approval deadline exceeded waiting for {hook}"),
        ),
    };
    cx.actions.retain(|a| !matches!(a, Action::SetRoutes(_)));
    let s = &mut cx.s;
    s.phase = Phase::Failed;
    s.canary_weight = 0;
    s.iterations = 0;
    s.mirrored = None;
    s.wait = None;
    cx.retire_cookies();
    remember(cx, Phase::Failed, format!("rolled back: {reason}"));
    cx.warn("RolledBack", format!("Rolling back {target} {reason}"));
    cx.alert(severity, alert);
    cx.route();
    cx.actions.push(Action::ScaleTarget(Scale::Zero));
    cx.warn("Failed", format!("Canary failed! Scaling down {target}"));
    cx.actions.push(Action::RunHooks(HookType::PostRollout));
    Flow::Done(cx.interval())
}

/// `skipAnalysis`: promote as soon as the canary is ready.
pub(crate) fn skip(cx: &mut Cx<'_>) -> Flow {
    cx.s.canary_weight = 0;
    cx.s.mirrored = None;
    cx.retire_cookies();
    cx.route();
    cx.actions.push(Action::PromotePrimary);
    cx.actions.push(Action::ScaleTarget(Scale::Zero));
    succeed(cx);
    cx.event(
        "Promoted",
        format!(
            "Promotion completed! Canary analysis was skipped for {}",
            cx.target()
        ),
    );
    cx.alert(
        Severity::Info,
        "Canary analysis was skipped, promotion finished.",
    );
    Flow::Done(cx.interval())
}

fn succeed(cx: &mut Cx<'_>) {
    let s = &mut cx.s;
    s.phase = Phase::Succeeded;
    s.canary_weight = 0;
    s.iterations = 0;
    s.failed_checks = 0;
    s.wait = None;
    s.last_promoted_spec = s.last_applied_spec.clone();
    remember(cx, Phase::Succeeded, "promoted".to_string());
    cx.actions.push(Action::RunHooks(HookType::PostRollout));
}

/// Adds the run that just ended to `status.history` (the last [`HISTORY_LIMIT`] are kept).
pub(crate) fn remember(cx: &mut Cx<'_>, phase: Phase, message: String) {
    let record = ReleaseRecord {
        revision: cx.s.last_applied_spec.clone().unwrap_or_default(),
        phase,
        finished: siskin_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(cx.now),
        message,
    };
    let history = cx.s.history.get_or_insert_with(Vec::new);
    history.push(record);
    let extra = history.len().saturating_sub(HISTORY_LIMIT);
    history.drain(..extra);
}

/// Promoting: wait for the primary to roll out, then move traffic back to it.
pub(crate) fn promoting(cx: &mut Cx<'_>) -> Flow {
    let readiness = match cx.obs.primary.as_ref() {
        None => Readiness::NotReady("primary workload missing".to_string()),
        Some(p) => p.readiness.clone(),
    };
    match readiness {
        Readiness::NotReady(msg) => {
            let limit = cx.spec.progress_deadline();
            if conditions::wait(&mut cx.s, "PrimaryReady", &msg, cx.now, limit) {
                return failed_promotion(cx, &msg);
            }
            cx.route();
            return Flow::Done(cx.poll());
        }
        Readiness::Failed(msg) => return failed_promotion(cx, &msg),
        Readiness::Ready => conditions::end_wait(&mut cx.s, "PrimaryReady"),
    }
    let step = i32::from(cx.analysis.step_weight_promotion());
    let w = cx.s.canary_weight;
    let ab = cx.strategy() == siskin_api::DeploymentStrategy::AbTesting;
    if step == 0 || ab || w <= step {
        cx.s.canary_weight = 0;
        cx.s.phase = Phase::Finalising;
        cx.route();
        cx.event(
            "RoutedToPrimary",
            format!(
                "Routing all traffic to primary {}",
                cx.spec.primary_service_name()
            ),
        );
        return Flow::Done(cx.poll());
    }
    let last = cx.old.last_transition_time.as_ref().map(|t| t.0);
    if let Some(last) = last {
        let due = conditions::after(last, cx.interval());
        if cx.now < due {
            cx.route();
            return Flow::Done(until(cx.now, due));
        }
    }
    cx.s.canary_weight = w - step;
    cx.route();
    cx.event(
        "Advanced",
        format!(
            "Advance {} primary weight {}",
            cx.target(),
            100 - (w - step)
        ),
    );
    Flow::Done(cx.interval())
}

/// The primary did not roll out: keep serving from the canary, which has the same spec.
fn failed_promotion(cx: &mut Cx<'_>, msg: &str) -> Flow {
    cx.s.phase = Phase::Failed;
    cx.s.canary_weight = 100;
    cx.s.wait = None;
    cx.s.mirrored = None;
    cx.route();
    remember(
        cx,
        Phase::Failed,
        format!("promotion failed, primary not ready: {msg}"),
    );
    let target = cx.target().to_string();
    cx.warn(
        "PromotionFailed",
        format!("Promotion of {target} failed, primary not ready: {msg}"),
    );
    cx.alert(
        Severity::Error,
        format!("Promotion failed, primary not ready: {msg}"),
    );
    cx.actions.push(Action::RunHooks(HookType::PostRollout));
    Flow::Done(cx.interval())
}

/// Finalising: once routing is confirmed on the primary, scale the canary down.
pub(crate) fn finalising(cx: &mut Cx<'_>) -> Flow {
    cx.s.canary_weight = 0;
    cx.s.mirrored = None;
    // Absent: nothing routes to the canary. Converging: not known yet, so wait.
    let on_primary = match &cx.obs.routes {
        RouteState::Absent => true,
        RouteState::Converging => false,
        RouteState::Applied(s) => s.primary() == Weight::FULL,
    };
    if !on_primary {
        cx.route();
        stall_wait(
            cx,
            "RoutesApplied",
            "routing has not moved back to the primary yet",
            cx.spec.progress_deadline(),
        );
        return Flow::Done(cx.poll());
    }
    cx.retire_cookies();
    cx.route();
    cx.actions.push(Action::ScaleTarget(Scale::Zero));
    succeed(cx);
    cx.event(
        "Promoted",
        format!("Promotion completed! Scaling down {}", cx.target()),
    );
    cx.alert(
        Severity::Info,
        "Canary analysis completed successfully, promotion finished.",
    );
    Flow::Done(cx.interval())
}

/// Deletion with `revertOnDeletion`.
pub(crate) fn terminate(cx: &mut Cx<'_>) -> Flow {
    if cx.s.phase == Phase::Terminated {
        return Flow::Done(cx.interval());
    }
    if cx.s.phase != Phase::Terminating {
        cx.s.phase = Phase::Terminating;
        cx.s.wait = None;
        cx.event("Terminating", format!("Terminating canary {}", cx.target()));
    }
    cx.actions.push(Action::RevertTarget);
    let ready = cx
        .obs
        .target
        .as_ref()
        .is_some_and(|t| t.readiness.is_ready());
    let limit = cx.spec.progress_deadline();
    let expired = !ready
        && conditions::wait(
            &mut cx.s,
            "TargetReady",
            "waiting for the target to serve again",
            cx.now,
            limit,
        );
    if ready || expired {
        if expired {
            cx.warn(
                "RevertIncomplete",
                format!(
                    "{} did not become ready again; deleting anyway",
                    cx.target()
                ),
            );
            cx.actions
                .push(Alert::send(Severity::Warn, "Target not ready after revert"));
        }
        cx.s.phase = Phase::Terminated;
        cx.s.wait = None;
        cx.event("Terminated", format!("Terminated canary {}", cx.target()));
        return Flow::Done(std::time::Duration::ZERO);
    }
    Flow::Done(cx.poll())
}
