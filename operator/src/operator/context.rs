//! What every part of a reconcile needs about one Canary: names, labels, ports, the client.

use std::sync::Arc;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::OwnerReference, apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{Client, Resource, ResourceExt};
use siskin_api::{ApiGroup, Canary};

use super::Error;

/// Settings of the operator that reconciles need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The API group served.
    pub group: ApiGroup,
    /// Candidate selector label keys, in order (`--selector-labels`).
    pub selector_labels: Vec<String>,
    /// Label and annotation key prefixes copied to primary objects (`--include-label-prefix`).
    pub include_label_prefix: Vec<String>,
    /// Provider used when a Canary names none (`--mesh-provider`).
    pub default_provider: String,
    /// Copy tracked ConfigMaps and Secrets to the primary (`--enable-config-tracking`).
    pub config_tracking: bool,
    /// The router's Service, `namespace/name`.
    pub router_service: (String, String),
}

/// One Canary being reconciled.
#[derive(Clone)]
pub struct Target {
    /// API client.
    pub client: Client,
    /// The Canary as read.
    pub canary: Arc<Canary>,
    /// Its namespace (also the target's).
    pub ns: String,
    /// The target workload's name.
    pub name: String,
    /// Apex Service name.
    pub apex: String,
    /// Primary workload name.
    pub primary: String,
    /// Selector label key used to tell primary from canary pods (e.g. `app`).
    pub label: String,
    /// Its value on the target's pods (the primary's is `<value>-primary`).
    pub label_value: String,
    /// Operator settings.
    pub settings: Arc<Settings>,
}

// === impl Target ===

impl Target {
    /// Owner reference to the Canary, set on everything the operator creates.
    pub fn owner(&self) -> Result<OwnerReference, Error> {
        let c = &*self.canary;
        let group = c.api_group().unwrap_or(self.settings.group);
        Ok(OwnerReference {
            api_version: group.api_version(),
            kind: "Canary".into(),
            name: c.name_any(),
            uid: c.meta().uid.clone().ok_or_else(|| Error::Invalid {
                field: "metadata.uid".into(),
                message: "the Canary has no uid yet".into(),
            })?,
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }

    /// The Service port (`service.port`, required).
    pub fn port(&self) -> Result<i32, Error> {
        self.canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.port)
            .ok_or_else(|| Error::Invalid {
                field: "spec.service.port".into(),
                message: "required: the port the apex Service exposes (e.g. 9898)".into(),
            })
    }

    /// The container port traffic goes to (`service.targetPort`, else the port).
    pub fn target_port(&self) -> Result<IntOrString, Error> {
        let port = self.port()?;
        Ok(self
            .canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.target_port.clone())
            .unwrap_or(IntOrString::Int(port)))
    }

    /// Name of the Service port (`service.portName`, default `http`).
    pub fn port_name(&self) -> String {
        self.canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.port_name.clone())
            .unwrap_or_else(|| "http".into())
    }

    /// Selector of the primary's pods.
    pub fn primary_selector(&self) -> (String, String) {
        (self.label.clone(), format!("{}-primary", self.label_value))
    }

    /// Selector of the target's (canary) pods.
    pub fn canary_selector(&self) -> (String, String) {
        (self.label.clone(), self.label_value.clone())
    }

    /// Labels and annotations from `source` that `--include-label-prefix` lets through.
    pub fn included(
        &self,
        source: &std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        source
            .iter()
            .filter(|(k, _)| {
                self.settings
                    .include_label_prefix
                    .iter()
                    .any(|p| p == "*" || k.starts_with(p.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
