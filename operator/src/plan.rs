//! What every plan needs about one Canary, resolved once: names, the selector label, the owner
//! reference and the metadata of generated objects; and the error a plan can end with. Shared
//! by the traffic backends, the generated Services and the primary workload's plans.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use siskin_api::{ApiGroup, Canary, service::CustomMetadata};

use crate::objects::DecodeError;

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
