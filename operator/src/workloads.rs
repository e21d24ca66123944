//! The primary workload as a pure plan: how the target is read (revision, readiness, tracked
//! configs) and what Siskin writes for its primary (`<target>-primary`, `-primary` copies of
//! the tracked ConfigMaps and Secrets, the primary's autoscaler). Shared by the operator's
//! platform and `siskin render`.

pub mod autoscaler;
pub mod configs;
pub mod daemonset;
pub mod deployment;

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::PodTemplateSpec,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use siskin_api::canary::TargetKind;
use siskin_engine::Workload;

use crate::{
    objects::{Cluster, Kind, Object, ObjectRef},
    plan::{Context, PlanError, Selector},
};

/// Annotation on the primary: the target revision it runs.
pub const REVISION_ANNOTATION: &str = "siskin.dev/revision";
/// Annotation on the target: its replica count before Siskin scaled it to zero.
pub const REPLICAS_ANNOTATION: &str = "siskin.dev/replicas";

/// Operator settings the workload plans follow.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Label and annotation key prefixes copied to primary objects (`--include-label-prefix`).
    pub include_label_prefix: Vec<String>,
    /// Track ConfigMaps and Secrets (`--enable-config-tracking`).
    pub config_tracking: bool,
}

/// The workload kind of a target, or the field to fix.
pub fn kind_of(kind: TargetKind) -> Result<Kind, PlanError> {
    match kind {
        TargetKind::Deployment => Ok(Kind::Deployment),
        TargetKind::DaemonSet => Ok(Kind::DaemonSet),
        other => Err(PlanError::Invalid {
            field: "spec.targetRef.kind".into(),
            message: format!(
                "{other:?} targets are not supported by this operator yet; use a Deployment or a DaemonSet"
            ),
        }),
    }
}

/// The target's name.
pub fn target(cx: &Context<'_>) -> ObjectRef {
    ObjectRef::new(
        kind_of(cx.canary.spec.target_kind()).unwrap_or(Kind::Deployment),
        cx.namespace,
        cx.canary.spec.target_name(),
    )
}

/// The primary's name.
pub fn primary(cx: &Context<'_>) -> ObjectRef {
    ObjectRef::new(
        kind_of(cx.canary.spec.target_kind()).unwrap_or(Kind::Deployment),
        cx.namespace,
        &cx.canary.spec.primary_workload_name(),
    )
}

/// A workload's pod template and its metadata, whatever its kind.
fn template_of(obj: &Value) -> Option<PodTemplateSpec> {
    serde_json::from_value(obj["spec"]["template"].clone()).ok()
}

/// The selector label of the target's pods: the first of `keys` in its
/// `spec.selector.matchLabels`; without a target, read back from the primary (its value
/// without `-primary`). None when neither exists.
pub fn selector(
    cx_kind: Kind,
    cluster: &Cluster,
    namespace: &str,
    target: &str,
    keys: &[String],
) -> Result<Option<Selector>, PlanError> {
    let labels = |v: &Value| -> BTreeMap<String, String> {
        serde_json::from_value(v["spec"]["selector"]["matchLabels"].clone()).unwrap_or_default()
    };
    if let Some(t) = cluster.raw(cx_kind, namespace, target) {
        let labels = labels(t);
        return keys
            .iter()
            .find_map(|k| {
                labels.get(k).map(|v| Selector {
                    key: k.clone(),
                    value: v.clone(),
                })
            })
            .map(Some)
            .ok_or_else(|| PlanError::Invalid {
                field: "spec.targetRef".into(),
                message: format!(
                    "{} {namespace}/{target}: spec.selector.matchLabels has none of the labels {}; add one (e.g. app: {target}) or change --selector-labels",
                    cx_kind.name(),
                    keys.join(", ")
                ),
            });
    }
    let Some(p) = cluster.raw(cx_kind, namespace, &format!("{target}-primary")) else {
        return Ok(None);
    };
    let labels = labels(p);
    Ok(keys.iter().find_map(|k| {
        let v = labels.get(k)?.strip_suffix("-primary")?;
        Some(Selector {
            key: k.clone(),
            value: v.to_string(),
        })
    }))
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
    cx: &Context<'_>,
    template: &PodTemplateSpec,
) -> (LabelSelector, PodTemplateSpec) {
    let (key, value) = cx.primary_selector();
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

/// Labels and annotations of `source` that `--include-label-prefix` lets through.
pub fn included(
    settings: &Settings,
    source: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    source
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            settings
                .include_label_prefix
                .iter()
                .any(|p| p == "*" || k.starts_with(p.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The metadata of the primary workload: named `<target>-primary`, labelled with the primary
/// selector, carrying the target's revision and what `--include-label-prefix` lets through,
/// owned by the Canary.
fn primary_meta(
    cx: &Context<'_>,
    settings: &Settings,
    target: &ObjectMeta,
    revision: String,
) -> ObjectMeta {
    let (key, value) = cx.primary_selector();
    let mut meta = cx.meta(&cx.canary.spec.primary_workload_name(), None);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(included(settings, target.labels.as_ref()));
    labels.insert(key, value);
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(included(settings, target.annotations.as_ref()));
    annotations.insert(REVISION_ANNOTATION.into(), revision);
    meta
}

/// The target and its primary as the engine sees them.
pub fn observe(
    cx: &Context<'_>,
    settings: &Settings,
    cluster: &Cluster,
) -> Result<(Option<Workload>, Option<Workload>), PlanError> {
    let analysis = cx.canary.spec.analysis();
    let (t, p) = (target(cx), primary(cx));
    let (canary_t, primary_t) = (
        analysis.canary_ready_threshold(),
        analysis.primary_ready_threshold(),
    );
    Ok(match t.kind {
        Kind::DaemonSet => (
            daemonset::observe_target(cx, settings, cluster, &t)?,
            daemonset::observe_primary(cluster, &p)?,
        ),
        _ => (
            deployment::observe_target(cx, settings, cluster, &t, canary_t)?,
            deployment::observe_primary(cluster, &p, primary_t)?,
        ),
    })
}

/// Everything Siskin writes for the primary, from the target as it is: the `-primary` copies
/// of its tracked configs, the primary workload (with `replicas`, or the target's own), and the
/// primary's autoscaler. Empty when the target does not exist.
pub fn plan_primary(
    cx: &Context<'_>,
    settings: &Settings,
    cluster: &Cluster,
    replicas: Option<i32>,
) -> Result<Vec<Object>, PlanError> {
    let t = target(cx);
    let Some(raw) = cluster.raw(t.kind, &t.namespace, &t.name) else {
        return Ok(Vec::new());
    };
    let template = template_of(raw).unwrap_or_default();
    let mut out = Vec::new();
    let mut renamed = Default::default();
    if settings.config_tracking {
        let tracked = configs::tracked(cluster, cx.namespace, &template);
        out.extend(configs::copies(cx, &tracked));
        renamed = tracked.into_keys().collect();
    }
    out.push(match t.kind {
        Kind::DaemonSet => daemonset::plan_primary(cx, settings, cluster, &t, &renamed)?,
        _ => deployment::plan_primary(cx, settings, cluster, &t, &renamed, replicas)?,
    });
    out.extend(autoscaler::plan_primary(cx, settings, cluster)?);
    Ok(out)
}
