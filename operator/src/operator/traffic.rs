//! Traffic backends: how the split between primary and canary is put in place and read back.
//! One file per backend, chosen by name through [`registry`], which refuses unknown names.

pub mod builtin;
pub mod gatewayapi;
pub mod httproute;
pub mod kubernetes;

use async_trait::async_trait;
use siskin_engine::Split;

use super::{Error, context::Target};

/// A traffic backend.
#[async_trait]
pub trait TrafficBackend: Send + Sync {
    /// Makes the apex Service and the routing objects exist with live routing equal to
    /// `split`.
    async fn apply(&self, t: &Target, split: &Split) -> Result<(), Error>;
    /// Live routing as the backend reports it; None when not set up yet.
    async fn current(&self, t: &Target) -> Result<Option<Split>, Error>;
    /// Hands routing back to the user's objects (revertOnDeletion).
    async fn revert(&self, t: &Target) -> Result<(), Error>;
}

/// The backend for a provider name (`spec.provider`, else `--mesh-provider`).
pub fn registry(name: &str) -> Result<Box<dyn TrafficBackend>, Error> {
    match name {
        "builtin" | "" => Ok(Box::new(builtin::Builtin)),
        "gatewayapi" | "gatewayapi:v1" => Ok(Box::new(gatewayapi::GatewayApi::v1())),
        "gatewayapi:v1beta1" => Ok(Box::new(gatewayapi::GatewayApi::v1beta1())),
        "kubernetes" => Ok(Box::new(kubernetes::Kubernetes)),
        other => Err(Error::Invalid {
            field: "spec.provider".into(),
            message: format!(
                "provider {other:?} is not available in this operator; use builtin, gatewayapi:v1, gatewayapi:v1beta1 or kubernetes"
            ),
        }),
    }
}
