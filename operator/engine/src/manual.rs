//! A user's hand on a release: pause and resume, and the one-shot requests promote, abort and
//! retry ([`crate::Control`]). Each request is acted on once: its id is kept in
//! `status.lastRequest`, so a restarted operator, or the annotation left in place, does not
//! act on it again.

use siskin_api::{Phase, status::Verdict};

use crate::{
    Action, RequestAction, Scale,
    finish::{self, Rollback},
    run,
    step::{Cx, Flow},
};

/// Acts on a request not acted on yet. Returns the flow when it decided the step.
pub(crate) fn request(cx: &mut Cx<'_>) -> Option<Flow> {
    let req = cx.obs.control.request.as_ref()?;
    if cx.old.last_request.as_deref() == Some(req.id.as_str()) {
        return None;
    }
    cx.s.last_request = Some(req.id.clone());
    let (action, by, phase) = (req.action, req.by.clone(), cx.s.phase);
    let target = cx.target().to_string();
    match (action, phase) {
        (RequestAction::Promote, Phase::Progressing | Phase::WaitingPromotion) => {
            cx.event(
                "PromotionRequested",
                format!(
                    "Promotion of {target} requested by {by}: the remaining steps, checks and gates are skipped"
                ),
            );
            Some(run::promote(cx))
        }
        (RequestAction::Abort, Phase::Progressing | Phase::WaitingPromotion | Phase::Waiting) => {
            Some(finish::rollback(cx, Rollback::Aborted(by)))
        }
        (RequestAction::Retry, Phase::Failed) => {
            let t = cx.obs.target.as_ref()?;
            cx.actions.retain(|a| !matches!(a, Action::SetRoutes(_)));
            cx.reset_run(t);
            cx.route();
            cx.actions.push(Action::ScaleTarget(Scale::Up));
            cx.event(
                "RetryRequested",
                format!("Retry of {target} requested by {by}: analysis starts again"),
            );
            Some(Flow::Done(cx.interval()))
        }
        (action, phase) => {
            let applies = match action {
                RequestAction::Promote => "a release in progress (Progressing, WaitingPromotion)",
                RequestAction::Abort => {
                    "a release in progress (Waiting, Progressing, WaitingPromotion)"
                }
                RequestAction::Retry => "a release that failed (Failed)",
            };
            cx.warn(
                "RequestIgnored",
                format!(
                    "{} of {target} requested by {by} ignored: the canary is {}, and {} applies to {applies}",
                    action.name(),
                    phase.name(),
                    action.name(),
                ),
            );
            None
        }
    }
}

/// Holds a paused run where it is. Initializing, promoting and finalising are finished first
/// (they only wait for workloads), and a failing critical check still rolls back.
pub(crate) fn pause(cx: &mut Cx<'_>) -> Option<Flow> {
    let by = cx.obs.control.paused.clone()?;
    if matches!(
        cx.s.phase,
        Phase::Unset
            | Phase::Initializing
            | Phase::Promoting
            | Phase::Finalising
            | Phase::Terminating
            | Phase::Terminated
    ) {
        return None;
    }
    let critical = cx
        .obs
        .critical
        .as_ref()
        .is_some_and(|c| c.verdict != Verdict::Pass);
    if critical && cx.s.phase == Phase::Progressing {
        return None;
    }
    if !was_paused(cx) {
        cx.event(
            "Paused",
            format!(
                "Paused by {by}: {} holds at weight {}",
                cx.target(),
                cx.s.canary_weight
            ),
        );
    }
    cx.paused = Some(by);
    cx.route();
    Some(Flow::Done(cx.poll()))
}

/// Tells that a paused run goes on.
pub(crate) fn resumed(cx: &mut Cx<'_>) {
    if was_paused(cx) {
        cx.event("Resumed", format!("Resumed: {} goes on", cx.target()));
    }
}

fn was_paused(cx: &Cx<'_>) -> bool {
    cx.old
        .condition("Ready")
        .is_some_and(|c| c.reason == "Paused")
}
