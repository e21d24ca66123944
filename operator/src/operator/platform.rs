//! Workload platforms: how the target is read, copied to the primary, promoted and scaled.
//! One file per kind, chosen by `spec.targetRef.kind` through [`for_kind`].

pub mod daemonset;
pub mod deployment;

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::PodTemplateSpec,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::Client;
use sha2::{Digest, Sha256};
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
        TargetKind::DaemonSet => Ok(Box::new(daemonset::DaemonSets)),
        other => Err(Error::Invalid {
            field: "spec.targetRef.kind".into(),
            message: format!(
                "{other:?} targets are not supported by this operator yet; use a Deployment or a DaemonSet"
            ),
        }),
    }
}

/// Revision of a pod template: a hash of its JSON, without Siskin's scale-to-zero node
/// selector (scaling is not a new revision).
pub fn template_revision(template: &PodTemplateSpec) -> String {
    let mut t = template.clone();
    if let Some(spec) = t.spec.as_mut() {
        if let Some(ns) = spec.node_selector.as_mut() {
            ns.remove(daemonset::SCALE_TO_ZERO_LABEL);
        }
        if spec.node_selector.as_ref().is_some_and(|n| n.is_empty()) {
            spec.node_selector = None;
        }
    }
    let text = serde_json::to_string(&t).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The primary's selector and pod template: the target's, with the selector label's value
/// suffixed `-primary` (and without a scale-to-zero node selector).
pub fn primary_template(
    t: &Target,
    template: &PodTemplateSpec,
) -> (LabelSelector, PodTemplateSpec) {
    let (key, value) = t.primary_selector();
    let mut template = template.clone();
    if let Some(ns) = template
        .spec
        .as_mut()
        .and_then(|s| s.node_selector.as_mut())
    {
        ns.remove(daemonset::SCALE_TO_ZERO_LABEL);
    }
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.clone(), value.clone());
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(key, value)])),
        match_expressions: None,
    };
    (selector, template)
}

/// Server-side applies the primary `apps/v1` object of `kind` with `spec`: named
/// `<target>-primary`, labelled with the primary selector, carrying the target's revision and
/// the labels and annotations `--include-label-prefix` lets through, owned by the Canary.
pub async fn apply_primary_object<K>(
    t: &Target,
    api: &kube::Api<K>,
    kind: &str,
    target_meta: &ObjectMeta,
    revision: String,
    spec: serde_json::Value,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let (key, value) = t.primary_selector();
    let mut labels = t.included(target_meta.labels.as_ref().unwrap_or(&BTreeMap::new()));
    labels.insert(key, value);
    let mut annotations = t.included(target_meta.annotations.as_ref().unwrap_or(&BTreeMap::new()));
    annotations.insert(REVISION_ANNOTATION.into(), revision);
    let body = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": t.primary,
            "namespace": t.ns,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [t.owner()?],
        },
        "spec": spec,
    });
    api.patch(
        &t.primary,
        &kube::api::PatchParams::apply(crate::operator::FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!("apply {kind} {}/{}", t.ns, t.primary)))?;
    Ok(())
}

/// The first of `keys` in a workload's `spec.selector.matchLabels`, as (key, value); the error
/// names the field and the fix.
pub fn pick_selector(
    kind: &str,
    ns: &str,
    name: &str,
    match_labels: Option<&BTreeMap<String, String>>,
    keys: &[String],
) -> Result<(String, String), Error> {
    let empty = BTreeMap::new();
    let labels = match_labels.unwrap_or(&empty);
    keys.iter()
        .find_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
        .ok_or_else(|| Error::Invalid {
            field: "spec.targetRef".into(),
            message: format!(
                "{kind} {ns}/{name}: spec.selector.matchLabels has none of the labels {}; add one (e.g. app: {name}) or change --selector-labels",
                keys.join(", ")
            ),
        })
}
