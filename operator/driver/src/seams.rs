//! The seams: what the driver asks of the world. Each world (Kubernetes, `siskin run`, a test)
//! implements them over its own objects; the inputs are small typed values — a scale, a routing
//! intent, a status, a hook — never a client or the whole Canary.

use async_trait::async_trait;
use siskin_api::{CanaryStatus, Severity, analysis::CanaryWebhook, status::WebhookResult};
use siskin_engine::{Event, RouteState, Scale, Timestamp, Workload};
pub use siskin_webhooks::client::Payload;

use crate::{Error, RoutingIntent};

/// The target workload and its primary copy as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workloads {
    /// The target (`spec.targetRef`); `None` when it does not exist.
    pub target: Option<Workload>,
    /// The primary; `None` when it does not exist yet.
    pub primary: Option<Workload>,
}

/// Where the workloads run: Deployments and DaemonSets, or processes and addresses.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Reads the target and the primary.
    async fn observe(&self) -> Result<Workloads, Error>;
    /// Creates the primary from the target when it is missing; never updates an existing one.
    async fn initialize_primary(&self) -> Result<(), Error>;
    /// Makes the primary run what the target runs (pod template, tracked configs).
    async fn promote_primary(&self) -> Result<(), Error>;
    /// Scales the target.
    async fn scale_target(&self, scale: Scale) -> Result<(), Error>;
    /// `revertOnDeletion`: the target serves again on its own and the primary goes away.
    async fn revert(&self) -> Result<(), Error>;
}

/// How traffic is split: a traffic backend's routing objects, or the in-process router.
#[async_trait]
pub trait Traffic: Send + Sync {
    /// Live routing, read back from what was written.
    async fn observe(&self) -> Result<RouteState, Error>;
    /// Makes live routing equal `intent` (idempotent).
    async fn apply(&self, intent: &RoutingIntent) -> Result<(), Error>;
    /// `revertOnDeletion`: hands routing back to the user's objects.
    async fn revert(&self) -> Result<(), Error>;
}

/// Calls webhooks.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Calls one hook. Success is an answer with status 202 or lower; the result carries the
    /// status code, the first bytes of the answer and the time taken, passed or not.
    async fn call(&self, hook: &CanaryWebhook, payload: &Payload) -> WebhookResult;
}

/// An alert to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Canary name.
    pub name: String,
    /// Canary namespace.
    pub namespace: String,
    /// Severity; providers filter on it.
    pub severity: Severity,
    /// The text.
    pub message: String,
    /// Target, strategy, thresholds, when the engine asks for them.
    pub fields: Vec<(String, String)>,
}

/// Sends alerts.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one alert.
    async fn post(&self, n: &Notification) -> Result<(), Error>;
}

/// Records events where the user looks for them (Kubernetes events, the terminal).
#[async_trait]
pub trait Events: Send + Sync {
    /// Records one event; failures are the recorder's to log.
    async fn record(&self, event: &Event);
}

/// Keeps the status, so a killed driver resumes from it.
#[async_trait]
pub trait StatusStore: Send + Sync {
    /// Persists `after` (the status computed from `before`); returns whether anything was
    /// written. A store may refuse a write whose `before` is stale ([`Error::Conflict`]).
    async fn persist(&self, before: &CanaryStatus, after: &CanaryStatus) -> Result<bool, Error>;
}

/// Time, passed in so that tests run on a clock they move.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The real client: the same hooks called the same way in every world.
#[async_trait]
impl Webhooks for siskin_webhooks::client::HookClient {
    async fn call(&self, hook: &CanaryWebhook, payload: &Payload) -> WebhookResult {
        siskin_webhooks::client::HookClient::call(self, hook, payload).await
    }
}
