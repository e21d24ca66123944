//! What the engine asks a driver to do. Every action is absolute and idempotent.

use siskin_api::{HookType, Severity, Weight, service::HttpMatchRequest};

/// One thing to do. Drivers execute a step's actions in order and stop at the first that
/// fails (the next step retries); they confirm a [`Action::SetRoutes`] before running the
/// actions after it, so no workload is scaled down before traffic has left it.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the primary workload (and copies of tracked configs) from the target if it is
    /// missing. Never updates an existing primary.
    InitializePrimary,
    /// Make the generated Services and the route exist, with live routing equal to the split.
    SetRoutes(Split),
    /// Scale the target (canary) workload.
    ScaleTarget(Scale),
    /// Copy the target's pod template (and tracked configs, autoscaler) into the primary.
    PromotePrimary,
    /// Call the webhooks of this type; their outcome does not change the release.
    RunHooks(HookType),
    /// Record a Kubernetes event (and send it to `event` webhooks).
    Event(Event),
    /// Send an alert to the canary's alert providers and the global notifier.
    Alert(Alert),
    /// On deletion with `revertOnDeletion`: give the target its replicas back and hand
    /// routing back to the user's objects.
    RevertTarget,
}

/// Traffic split between primary and canary: absolute weights that always add up to 100
/// (only the canary's share is stored; the primary has the rest).
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Share of the canary.
    canary: Weight,
    /// Percentage of primary traffic mirrored to the canary (responses discarded).
    pub mirror: Option<Weight>,
    /// A/B conditions: requests matching them follow the weights above; all others go to the
    /// primary. Empty: the weights apply to all requests.
    pub matches: Vec<HttpMatchRequest>,
    /// Session affinity cookies for this run.
    pub sticky: Option<Sticky>,
}

/// Session affinity cookies, each `name=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sticky {
    /// Set on responses from the canary; requests carrying it go to the canary.
    pub canary: Option<String>,
    /// Set on responses from the primary; requests carrying it stay on the primary.
    pub primary: Option<String>,
    /// The previous run's canary cookie: expired (`Max-Age=-1`) when seen.
    pub previous: Option<String>,
}

/// Target scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Zero replicas (or a DaemonSet on no node).
    Zero,
    /// The target's own replica count (or the autoscaler's minimum, or 1).
    Up,
}

/// Kubernetes event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

/// An event about the canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub kind: EventType,
    /// PascalCase reason, e.g. `Advanced`, `RolledBack`.
    pub reason: &'static str,
    /// Message for humans.
    pub message: String,
}

/// An alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Severity; providers filter on it.
    pub severity: Severity,
    /// The text.
    pub message: String,
    /// Attach target, threshold, deadline and strategy as fields.
    pub with_metadata: bool,
}

// === impl Split ===

impl Split {
    /// All traffic to the primary.
    pub fn primary_only() -> Self {
        Split::to_canary(Weight::ZERO)
    }

    /// `canary` to the canary, the rest to the primary.
    pub fn to_canary(canary: Weight) -> Self {
        Split {
            canary,
            mirror: None,
            matches: Vec::new(),
            sticky: None,
        }
    }

    /// The primary's share.
    pub fn primary(&self) -> Weight {
        self.canary.complement()
    }

    /// The canary's share.
    pub fn canary(&self) -> Weight {
        self.canary
    }

    /// Adds mirroring of `percent` of the primary's requests.
    pub fn mirrored(mut self, percent: Weight) -> Self {
        self.mirror = Some(percent);
        self
    }

    /// Whether the canary sees any request (weighted, matched or mirrored).
    pub fn exposes_canary(&self) -> bool {
        self.canary > Weight::ZERO || self.mirror.is_some()
    }
}

// === impl Event ===

impl Event {
    /// A Normal event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Action {
        Action::Event(Event {
            kind: EventType::Normal,
            reason,
            message: message.into(),
        })
    }

    /// A Warning event.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Action {
        Action::Event(Event {
            kind: EventType::Warning,
            reason,
            message: message.into(),
        })
    }
}

// === impl Alert ===

impl Alert {
    /// An alert without metadata fields.
    pub fn send(severity: Severity, message: impl Into<String>) -> Action {
        Action::Alert(Alert {
            severity,
            message: message.into(),
            with_metadata: false,
        })
    }

    /// An alert with metadata fields.
    pub fn with_metadata(severity: Severity, message: impl Into<String>) -> Action {
        Action::Alert(Alert {
            severity,
            message: message.into(),
            with_metadata: true,
        })
    }
}
