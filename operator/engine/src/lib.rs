//! Siskin's rollout engine: a pure function from (spec, status, observations, now) to a new
//! status, a list of absolute, idempotent actions and when to run again.
//!
//! The engine does no I/O. A driver (the Kubernetes operator, the standalone runner, a test)
//! gathers [`Observations`], calls [`step`], and either fulfils the [`Need`] the step asks
//! for (run a gate's webhooks, run the analysis) and calls again, or executes the
//! [`Action`]s in order and persists the status. After a crash the same inputs give the
//! same step, so a driver can be killed at any point and resume from the status it wrote.
//!
//! Flagger's tick order (`../shared/spec/flagger.md` §3.2) is followed, except where its
//! behaviour surprises users; each difference is listed in `docs/flagger-differences.md`.

mod action;
mod conditions;
mod finish;
mod manual;
mod observe;
mod run;
mod step;

pub use action::{Action, Alert, Event, EventType, Scale, Split, Sticky};
pub use observe::{
    AnalysisResult, Control, GateResult, Observations, Readiness, Request, RequestAction,
    RouteState, Workload,
};
pub use step::{Need, Step, at_routing, finalize, routing, step};

/// Instants, as the status stores them.
pub type Timestamp = jiff::Timestamp;

/// How often a waiting state (readiness, initialization) is re-checked, at most.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(5);
