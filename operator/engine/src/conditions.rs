//! Status bookkeeping: conditions, waits with deadlines, transition times.

use std::time::Duration;

use siskin_api::{
    CanaryStatus, Phase,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    status::{CanaryCondition, WaitStatus},
};

use crate::Timestamp;

/// `now + d`, saturating.
pub(crate) fn after(now: Timestamp, d: Duration) -> Timestamp {
    now.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// Time left until `t` (zero when past).
pub(crate) fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Starts waiting for `reason`, or keeps the wait (and its deadline) already running for it.
/// Returns whether the deadline has passed.
pub(crate) fn wait(
    status: &mut CanaryStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
    limit: Duration,
) -> bool {
    match &mut status.wait {
        Some(w) if w.reason == reason => {
            w.message = Some(message.to_string());
            now >= w.deadline.0
        }
        _ => {
            status.wait = Some(WaitStatus {
                reason: reason.to_string(),
                message: Some(message.to_string()),
                since: Time(now),
                deadline: Time(after(now, limit)),
            });
            limit.is_zero()
        }
    }
}

/// Ends a wait for `reason`, if that is what the status waits for.
pub(crate) fn end_wait(status: &mut CanaryStatus, reason: &str) {
    if status.wait.as_ref().is_some_and(|w| w.reason == reason) {
        status.wait = None;
    }
}

/// Rewrites the conditions for the current phase: Flagger's `Promoted`, plus kstatus-style
/// `Ready` and `Stalled`. A condition keeps its transition time while its status holds.
pub(crate) fn set_conditions(
    status: &mut CanaryStatus,
    kind: &str,
    stalled: Option<&str>,
    now: Timestamp,
) {
    let (promoted, message) = promoted(status.phase, kind);
    let ready = match status.phase {
        Phase::Initialized | Phase::Succeeded => "True",
        Phase::Failed => "False",
        _ => "Unknown",
    };
    let ready_msg = match (&status.wait, status.phase) {
        (Some(w), _) => format!("waiting for {}", w.reason),
        (None, Phase::Failed) => "the last release was rolled back".to_string(),
        (None, p) => format!("phase {p}"),
    };
    let phase = status.phase.name().to_string();
    let reason = if phase.is_empty() {
        "Initializing".to_string()
    } else {
        phase
    };
    upsert(status, "Promoted", promoted, &reason, message, now);
    upsert(status, "Ready", ready, &reason, &ready_msg, now);
    match stalled {
        Some(msg) => upsert(status, "Stalled", "True", "DeadlineExceeded", msg, now),
        None => upsert(status, "Stalled", "False", &reason, "making progress", now),
    }
}

fn promoted(phase: Phase, kind: &str) -> (&'static str, &str) {
    let init = "New revision detected, starting initialization.";
    match phase {
        Phase::Initialized => ("True", "Initialization completed."),
        Phase::Waiting | Phase::WaitingPromotion => ("Unknown", "Waiting for approval."),
        Phase::Progressing => (
            "Unknown",
            "New revision detected, progressing canary analysis.",
        ),
        Phase::Promoting => (
            "Unknown",
            "Canary analysis completed, starting primary rolling update.",
        ),
        Phase::Finalising => (
            "Unknown",
            "Canary analysis completed, routing all traffic to primary.",
        ),
        Phase::Succeeded => (
            "True",
            "Canary analysis completed successfully, promotion finished.",
        ),
        Phase::Failed => ("False", failed_message(kind)),
        _ => ("Unknown", init),
    }
}

fn failed_message(kind: &str) -> &'static str {
    match kind {
        "DaemonSet" => "Canary analysis failed, DaemonSet scaled to zero.",
        "Service" => "Canary analysis failed, Service scaled to zero.",
        _ => "Canary analysis failed, Deployment scaled to zero.",
    }
}

fn upsert(
    status: &mut CanaryStatus,
    ty: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.r#type == ty) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(Time(now));
            }
            if c.status != value || c.reason != reason || c.message.as_deref() != Some(message) {
                c.status = value.to_string();
                c.reason = reason.to_string();
                c.message = Some(message.to_string());
                c.last_update_time = Some(Time(now));
            }
        }
        None => conditions.push(CanaryCondition {
            r#type: ty.to_string(),
            status: value.to_string(),
            last_update_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
            reason: reason.to_string(),
            message: Some(message.to_string()),
        }),
    }
}

/// Condition type telling whether every metric can be asked.
pub(crate) const METRICS_AVAILABLE: &str = "MetricsAvailable";

/// Sets [`METRICS_AVAILABLE`].
pub(crate) fn set_metrics(
    status: &mut CanaryStatus,
    available: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let value = if available { "True" } else { "False" };
    upsert(status, METRICS_AVAILABLE, value, reason, message, now);
}

/// Bumps `lastTransitionTime` when anything else in the status changed.
pub(crate) fn touch(old: &CanaryStatus, new: &mut CanaryStatus, now: Timestamp) {
    let mut a = old.clone();
    a.last_transition_time = None;
    let previous = new.last_transition_time.take();
    new.last_transition_time = if *new == a { previous } else { Some(Time(now)) };
}
