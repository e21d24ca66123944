//! Traffic backends as pure plans: `plan(canary, routing intent, objects as they are)` gives the
//! objects to apply, `observe(objects)` reads the split back, `capabilities()` says what the
//! backend can do. No I/O: the Kubernetes adapter applies the plans with one server-side
//! apply executor, and `siskin render` prints them.
//!
//! [`REGISTRY`] is the one list of providers: `siskin validate`, the operator's
//! `--mesh-provider` and every reconcile ask it, so a provider name without a backend here is
//! refused everywhere with the list of those that exist.

pub mod builtin;
pub mod gatewayapi;
pub mod httproute;
pub mod kubernetes;

use siskin_api::{Capabilities, Provider, validate::Backends};
use siskin_driver::RoutingIntent;
use siskin_engine::RouteState;
use siskin_route::ConfigReport;

use crate::objects::{Change, Cluster, Object, Read};
pub use crate::plan::{Context, PlanError, Selector, owned_by};

/// A traffic backend.
pub trait TrafficBackend: Send + Sync {
    /// The provider it implements.
    fn provider(&self) -> Provider;
    /// What it can execute.
    fn capabilities(&self) -> Capabilities;
    /// The objects its plans and observations read.
    fn reads(&self, cx: &Context<'_>) -> Vec<Read>;
    /// Whether `observe` compares with what the built-in routers serve (`/config`).
    fn reads_router_reports(&self) -> bool {
        false
    }
    /// The apex Service and routing objects that make live routing equal `intent`.
    fn plan(
        &self,
        cx: &Context<'_>,
        intent: &RoutingIntent,
        cluster: &Cluster,
    ) -> Result<Vec<Object>, PlanError>;
    /// Live routing from the objects as they are (and, when asked for, what each router
    /// serves; None when not read, as in `siskin render`).
    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError>;
    /// `revertOnDeletion`: hand routing back to the user's objects.
    fn revert(&self, cx: &Context<'_>, cluster: &Cluster) -> Result<Vec<Change>, PlanError>;
}

/// Every backend, in the order they are listed to users.
pub struct Registry {
    backends: [&'static dyn TrafficBackend; 4],
}

static BUILTIN: builtin::Builtin = builtin::Builtin;
static GATEWAY_V1: gatewayapi::GatewayApi = gatewayapi::GatewayApi::V1;
static GATEWAY_V1BETA1: gatewayapi::GatewayApi = gatewayapi::GatewayApi::V1beta1;
static KUBERNETES: kubernetes::Kubernetes = kubernetes::Kubernetes;

/// The backend registry.
pub static REGISTRY: Registry = Registry {
    backends: [&BUILTIN, &GATEWAY_V1, &GATEWAY_V1BETA1, &KUBERNETES],
};

// === impl Registry ===

impl Registry {
    /// The backend of `provider`, if one exists.
    pub fn get(&self, provider: Provider) -> Option<&'static dyn TrafficBackend> {
        self.backends
            .iter()
            .copied()
            .find(|b| b.provider() == provider)
    }

    /// The backend for a provider name (`spec.provider`, `--mesh-provider`), or an error that
    /// names the implemented ones.
    pub fn resolve(&self, name: &str) -> Result<&'static dyn TrafficBackend, String> {
        let provider: Provider = name
            .parse()
            .map_err(|e: siskin_api::provider::UnknownProvider| e.to_string())?;
        self.get(provider).ok_or_else(|| {
            format!(
                "provider {provider} is not implemented by this Siskin yet; use one of {}",
                self.names().join(", ")
            )
        })
    }

    /// The names of the implemented providers.
    pub fn names(&self) -> Vec<&'static str> {
        self.backends.iter().map(|b| b.provider().name()).collect()
    }
}

impl Backends for Registry {
    fn capabilities(&self, provider: Provider) -> Option<Capabilities> {
        self.get(provider).map(|b| b.capabilities())
    }

    fn implemented(&self) -> Vec<Provider> {
        self.backends.iter().map(|b| b.provider()).collect()
    }
}

/// The routing objects and generated Services for `intent`: what the operator applies for an
/// `SetRoutes` action and what `siskin render` prints.
pub fn plan_routing(
    backend: &dyn TrafficBackend,
    cx: &Context<'_>,
    intent: &RoutingIntent,
    cluster: &Cluster,
) -> Result<Vec<Object>, PlanError> {
    let mut out = crate::services::generated(cx)?;
    out.extend(backend.plan(cx, intent, cluster)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_refuses_names_without_a_backend() {
        assert!(REGISTRY.resolve("builtin").is_ok());
        let e = REGISTRY.resolve("istio").err().unwrap_or_default();
        assert!(e.contains("not implemented"), "{e}");
        assert!(
            e.contains("builtin, gatewayapi:v1, gatewayapi:v1beta1, kubernetes"),
            "{e}"
        );
        assert!(REGISTRY.resolve("mesh").is_err());
        assert_eq!(REGISTRY.implemented().len(), 4);
    }
}
