//! `apps/v1` DaemonSets: the primary is `<target>-primary`; a DaemonSet has no replica count,
//! so "scale to zero" is a node selector no node carries (as Flagger does).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::ResourceExt;
use siskin_engine::{Readiness, Workload};

use super::{REVISION_ANNOTATION, Settings, configs};
use crate::{
    objects::{Cluster, Kind, Object, ObjectRef},
    plan::{Context, PlanError},
};

/// Node selector label that keeps a scaled-down DaemonSet off every node.
pub const SCALE_TO_ZERO_LABEL: &str = "siskin.dev/scale-to-zero";

/// Revision of the pod template.
pub fn revision(d: &DaemonSet) -> String {
    d.spec
        .as_ref()
        .map(|s| super::template_revision(&s.template))
        .unwrap_or_default()
}

/// Whether Siskin keeps the DaemonSet off every node.
pub fn scaled_to_zero(d: &DaemonSet) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.node_selector.as_ref())
        .is_some_and(|n| n.contains_key(SCALE_TO_ZERO_LABEL))
}

/// Readiness as `kubectl rollout status` judges a DaemonSet.
pub fn readiness(d: &DaemonSet) -> Readiness {
    let name = d.name_any();
    let Some(status) = d.status.as_ref() else {
        return Readiness::NotReady(format!("{name}: no status yet"));
    };
    if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Readiness::NotReady(format!(
            "{name} not ready: waiting for rollout to finish: observed daemon set generation less than desired generation"
        ));
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < desired {
        return Readiness::NotReady(format!(
            "{name} not ready: waiting for rollout to finish: {updated} out of {desired} new pods have been updated"
        ));
    }
    if available < desired {
        return Readiness::NotReady(format!(
            "{name} not ready: waiting for rollout to finish: {available} of {desired} updated pods are available"
        ));
    }
    Readiness::Ready
}

/// The target as the engine sees it.
pub fn observe_target(
    cx: &Context<'_>,
    settings: &Settings,
    cluster: &Cluster,
    t: &ObjectRef,
) -> Result<Option<Workload>, PlanError> {
    let Some(d) = cluster.get::<DaemonSet>(Kind::DaemonSet, &t.namespace, &t.name)? else {
        return Ok(None);
    };
    let configs = match (&d.spec, settings.config_tracking) {
        (Some(spec), true) => {
            configs::checksums(&configs::tracked(cluster, cx.namespace, &spec.template))
        }
        _ => BTreeMap::new(),
    };
    Ok(Some(Workload {
        revision: revision(&d),
        configs,
        readiness: readiness(&d),
    }))
}

/// The primary as the engine sees it.
pub fn observe_primary(cluster: &Cluster, p: &ObjectRef) -> Result<Option<Workload>, PlanError> {
    Ok(cluster
        .get::<DaemonSet>(Kind::DaemonSet, &p.namespace, &p.name)?
        .map(|d| Workload {
            revision: d
                .annotations()
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            configs: BTreeMap::new(),
            readiness: readiness(&d),
        }))
}

/// The primary DaemonSet: the target's spec with the selector label renamed and the tracked
/// configs pointed at their copies.
pub fn plan_primary(
    cx: &Context<'_>,
    settings: &Settings,
    cluster: &Cluster,
    t: &ObjectRef,
    renamed: &BTreeSet<(configs::Kind, String)>,
) -> Result<Object, PlanError> {
    let Some(target) = cluster.get::<DaemonSet>(Kind::DaemonSet, &t.namespace, &t.name)? else {
        return Err(PlanError::Invalid {
            field: "spec.targetRef".into(),
            message: format!("DaemonSet {}/{} does not exist", t.namespace, t.name),
        });
    };
    let mut spec = target.spec.clone().ok_or_else(|| PlanError::Invalid {
        field: "spec.targetRef".into(),
        message: format!("DaemonSet {} has no spec", t.name),
    })?;
    configs::rename(&mut spec.template, renamed);
    let (selector, template) = super::primary_template(cx, &spec.template);
    spec.selector = selector;
    spec.template = template;
    let primary = DaemonSet {
        metadata: super::primary_meta(cx, settings, &target.metadata, revision(&target)),
        spec: Some(spec),
        status: None,
    };
    Ok(Object::new(Kind::DaemonSet, &primary))
}
