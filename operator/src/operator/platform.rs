//! Workload platforms: how the target is read, copied to the primary, promoted and scaled.
//! One file per kind, chosen by `spec.targetRef.kind` through [`for_kind`].

pub mod deployment;

use async_trait::async_trait;
use kube::Client;
use siskin_api::canary::TargetKind;
use siskin_engine::{Scale, Workload};

use super::{Error, context::Target};

/// Annotation on the primary: the target revision it runs.
pub const REVISION_ANNOTATION: &str = "siskin.dev/revision";
/// Annotation on the target: its replica count before Siskin scaled it to zero.
pub const REPLICAS_ANNOTATION: &str = "siskin.dev/replicas";

/// A workload kind.
#[async_trait]
pub trait Platform: Send + Sync {
    /// The selector label (key, value) of the target's pods, or None when the target does not
    /// exist.
    async fn selector(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
        keys: &[String],
    ) -> Result<Option<(String, String)>, Error>;
    /// The target as observed.
    async fn target(&self, t: &Target) -> Result<Option<Workload>, Error>;
    /// The primary as observed.
    async fn primary(&self, t: &Target) -> Result<Option<Workload>, Error>;
    /// Creates the primary from the target when it is missing.
    async fn initialize(&self, t: &Target) -> Result<(), Error>;
    /// Copies the target's pod template into the primary.
    async fn promote(&self, t: &Target) -> Result<(), Error>;
    /// Scales the target.
    async fn scale(&self, t: &Target, scale: Scale) -> Result<(), Error>;
    /// Gives the target its replicas back and removes the primary (revertOnDeletion).
    async fn revert(&self, t: &Target) -> Result<(), Error>;
}

/// The platform for a target kind; kinds without one are refused with the fix.
pub fn for_kind(kind: TargetKind) -> Result<Box<dyn Platform>, Error> {
    match kind {
        TargetKind::Deployment => Ok(Box::new(deployment::Deployments)),
        other => Err(Error::Invalid {
            field: "spec.targetRef.kind".into(),
            message: format!(
                "{other:?} targets are not supported by this operator yet; use a Deployment"
            ),
        }),
    }
}
