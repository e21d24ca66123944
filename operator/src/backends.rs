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

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use siskin_api::{
    ApiGroup, Canary, Capabilities, Provider, service::CustomMetadata, validate::Backends,
};
use siskin_driver::RoutingIntent;
use siskin_engine::RouteState;
use siskin_route::ConfigReport;

use crate::objects::{Change, Cluster, DecodeError, Object, Read};

/// Label on everything Siskin generates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "siskin");

/// Annotations on everything Siskin generates, so Flux does not fight Siskin over them (as
/// Flagger does).
pub const GITOPS_ANNOTATIONS: [(&str, &str); 2] = [
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
    ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
];

/// A plan that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The Canary asks for something the backend cannot write; the user must fix the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field to fix.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// An object as it is could not be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The selector label that tells a target's pods apart (`app: podinfo`); the primary's pods
/// carry the value with `-primary`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// Label key.
    pub key: String,
    /// Its value on the target's pods.
    pub value: String,
}

/// What every plan needs about one Canary, resolved once.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The Canary.
    pub canary: &'a Canary,
    /// Its namespace.
    pub namespace: &'a str,
    /// The target's selector label.
    pub selector: &'a Selector,
    /// The built-in router's Service (`namespace`, `name`).
    pub router_service: (&'a str, &'a str),
    /// The API group of the Canary (for owner references).
    pub group: ApiGroup,
}

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

// === impl Context ===

impl Context<'_> {
    /// The apex Service (and route) name.
    pub fn apex(&self) -> &str {
        self.canary.spec.apex_name()
    }

    /// `<apex>-primary`.
    pub fn primary_service(&self) -> String {
        self.canary.spec.primary_service_name()
    }

    /// `<apex>-canary`.
    pub fn canary_service(&self) -> String {
        self.canary.spec.canary_service_name()
    }

    /// The route the built-in router reports statistics under.
    pub fn route_key(&self) -> String {
        format!("{}/{}", self.namespace, self.apex())
    }

    /// The Service port (`service.port`, required).
    pub fn port(&self) -> Result<i32, PlanError> {
        self.canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.port)
            .ok_or_else(|| PlanError::Invalid {
                field: "spec.service.port".into(),
                message: "required: the port the apex Service exposes (e.g. 9898)".into(),
            })
    }

    /// Selector of the primary's pods.
    pub fn primary_selector(&self) -> (String, String) {
        (
            self.selector.key.clone(),
            format!("{}-primary", self.selector.value),
        )
    }

    /// Selector of the target's (canary) pods.
    pub fn canary_selector(&self) -> (String, String) {
        (self.selector.key.clone(), self.selector.value.clone())
    }

    /// Owner reference to the Canary; None for a Canary the API server has not stored yet
    /// (`siskin render` of a new file), whose objects are then printed without one.
    pub fn owner(&self) -> Option<OwnerReference> {
        let uid = self.canary.metadata.uid.clone()?;
        Some(OwnerReference {
            api_version: self.group.api_version(),
            kind: "Canary".into(),
            name: self.canary.name_any(),
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }

    /// Metadata of an object Siskin generates: name, namespace, Siskin's label, Flux's
    /// annotations, the Canary as owner, plus `custom` labels and annotations.
    pub fn meta(&self, name: &str, custom: Option<&CustomMetadata>) -> ObjectMeta {
        let mut labels: BTreeMap<String, String> =
            [(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into();
        let mut annotations: BTreeMap<String, String> = GITOPS_ANNOTATIONS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(c) = custom {
            labels.extend(c.labels.clone().unwrap_or_default());
            annotations.extend(c.annotations.clone().unwrap_or_default());
        }
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: self.owner().map(|o| vec![o]),
            ..Default::default()
        }
    }
}

/// Whether `existing` (an object Siskin applies but may not have created) is this Canary's: a
/// user's own apex Service or route is adopted, not owned, so deleting the Canary does not
/// delete it.
pub fn owned_by(cx: &Context<'_>, existing: Option<&serde_json::Value>) -> bool {
    let Some(existing) = existing else {
        return true;
    };
    let uid = cx.canary.metadata.uid.as_deref();
    existing["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| uid.is_some() && o["uid"].as_str() == uid)
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
