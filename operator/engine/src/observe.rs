//! What a driver observed before a step: workloads, routing, gate and analysis outcomes.

use std::collections::BTreeMap;

use siskin_api::{HookType, status::CheckStatus, status::Verdict};

use crate::Split;

/// Everything the engine needs from the outside world for one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observations {
    /// The target workload (`spec.targetRef`); `None` when it does not exist.
    pub target: Option<Workload>,
    /// The primary copy; `None` when it does not exist yet.
    pub primary: Option<Workload>,
    /// Live routing as the traffic backend reports it.
    pub routes: RouteState,
    /// Outcomes of gates evaluated for this step (see [`crate::Need::Gate`]).
    pub gates: BTreeMap<HookType, GateResult>,
    /// Outcome of the analysis run for this step (see [`crate::Need::Analysis`]).
    pub analysis: Option<AnalysisResult>,
    /// Every metric asked once (see [`crate::Need::Probe`]).
    pub probe: Option<Vec<CheckStatus>>,
    /// A `critical` metric that failed on live data since the last step (drivers evaluate
    /// critical metrics continuously); the run is rolled back at once.
    pub critical: Option<CheckStatus>,
    /// What a user asked by hand (`siskin pause|resume|promote|abort|retry`).
    pub control: Control,
}

/// A user's hand on a release, read from where the CLI and dashboard write it (the Canary's
/// annotations, which GitOps tools leave alone; a file beside `siskin run`'s).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Paused, with who asked and why: the run holds where it is (no checks, no steps, no new
    /// release started) until this is gone. Initializing, promoting and finalising finish first.
    pub paused: Option<String>,
    /// A one-shot request, acted on once (its id is kept in `status.lastRequest`).
    pub request: Option<Request>,
}

/// A one-shot request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Unique per request (the CLI uses the time and a random suffix).
    pub id: String,
    /// What to do.
    pub action: RequestAction,
    /// Who asked, for events.
    pub by: String,
}

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestAction {
    /// Skip the remaining steps, checks and gates of the run in progress and promote now.
    Promote,
    /// Roll the run in progress back now (phase Failed).
    Abort,
    /// Run the analysis again for the revision that failed.
    Retry,
}

impl RequestAction {
    /// The verb, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            RequestAction::Promote => "promote",
            RequestAction::Abort => "abort",
            RequestAction::Retry => "retry",
        }
    }

    /// Parses the CLI's verb.
    pub fn parse(s: &str) -> Option<RequestAction> {
        match s {
            "promote" => Some(RequestAction::Promote),
            "abort" => Some(RequestAction::Abort),
            "retry" => Some(RequestAction::Retry),
            _ => None,
        }
    }
}

/// Live routing, as a traffic backend reads it back from what it wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RouteState {
    /// Nothing is set up yet (no routing objects).
    #[default]
    Absent,
    /// Written, but not in place everywhere yet (a router has not loaded it, a Gateway has not
    /// accepted its generation): what traffic does now is not known.
    Converging,
    /// In place, with this split.
    Applied(Split),
}

/// A workload as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Revision of its pod template (a hash; Flagger's `lastAppliedSpec`).
    pub revision: String,
    /// Checksums of tracked ConfigMaps and Secrets (`configmap/NAME` → checksum).
    pub configs: BTreeMap<String, String>,
    /// Rollout readiness.
    pub readiness: Readiness,
}

/// Readiness of a workload's rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Readiness {
    /// Rolled out and available above the ready threshold.
    #[default]
    Ready,
    /// Still rolling out; may become ready.
    NotReady(String),
    /// Will not become ready (e.g. the platform reports its progress deadline exceeded).
    Failed(String),
}

/// Outcome of running every webhook of one gate type, in spec order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateResult {
    /// All hooks answered with success (for `rollback`: one of them asks to roll back).
    pub passed: bool,
    /// The hook that decided: the first failing one, or the one that asked for rollback.
    pub hook: String,
    /// Response body or error, for events.
    pub message: String,
    /// The deciding hook has `muteAlert`.
    pub muted: bool,
}

impl GateResult {
    /// The event of a passed gate: `"{what} check {hook} passed"`, with the hooks' answers.
    pub fn passed_event(&self, what: &str) -> String {
        if self.message.is_empty() {
            format!("{what} check {} passed", self.hook)
        } else {
            format!("{what} check {} passed ({})", self.hook, self.message)
        }
    }
}

/// Outcome of one analysis run: rollout webhooks, then metric checks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisResult {
    /// One entry per webhook and metric, in spec order.
    pub checks: Vec<CheckStatus>,
}

// === impl AnalysisResult ===

impl AnalysisResult {
    /// The checks that did not pass.
    pub fn failures(&self) -> impl Iterator<Item = &CheckStatus> {
        self.checks.iter().filter(|c| c.verdict != Verdict::Pass)
    }

    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

// === impl RouteState ===

impl RouteState {
    /// The split in place, if it is known.
    pub fn applied(&self) -> Option<&Split> {
        match self {
            RouteState::Applied(s) => Some(s),
            _ => None,
        }
    }
}

// === impl Readiness ===

impl Readiness {
    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }
}
