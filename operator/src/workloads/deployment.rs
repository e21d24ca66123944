//! `apps/v1` Deployments: the primary is `<target>-primary`, a copy whose selector label value
//! gets a `-primary` suffix.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use siskin_engine::{Readiness, Workload};

use super::{REPLICAS_ANNOTATION, REVISION_ANNOTATION, Settings, configs};
use crate::{
    objects::{Cluster, Kind, Object, ObjectRef},
    plan::{Context, PlanError},
};

/// Revision of the pod template.
pub fn revision(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .map(|s| super::template_revision(&s.template))
        .unwrap_or_default()
}

/// Rollout readiness as `kubectl rollout status` judges it, with the ready threshold.
pub fn readiness(d: &Deployment, threshold: u8) -> Readiness {
    let name = d.name_any();
    let Some(status) = d.status.as_ref() else {
        return Readiness::NotReady(format!("{name}: no status yet"));
    };
    if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Readiness::NotReady(format!(
            "{name} not ready: waiting for rollout to finish: observed deployment generation less than desired generation"
        ));
    }
    let deadline = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline {
        return Readiness::Failed(format!("deployment {name} exceeded its progress deadline"));
    }
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < replicas {
        return Readiness::NotReady(format!(
            "{name} not ready: waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated"
        ));
    }
    if status.replicas.unwrap_or(0) > updated {
        return Readiness::NotReady(format!(
            "{name} not ready: waiting for rollout to finish: {} old replicas are pending termination",
            status.replicas.unwrap_or(0) - updated
        ));
    }
    if i64::from(available) * 100 < i64::from(updated) * i64::from(threshold) {
        return Readiness::NotReady(format!(
            "{name} not ready: waiting for rollout to finish: {available} of {updated} updated replicas are available"
        ));
    }
    Readiness::Ready
}

/// The replicas the target had before Siskin scaled it to zero (or has now).
pub fn saved_replicas(d: &Deployment) -> i32 {
    let current = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if current > 0 {
        return current;
    }
    d.annotations()
        .get(REPLICAS_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .filter(|n: &i32| *n > 0)
        .unwrap_or(1)
}

/// The target as the engine sees it.
pub fn observe_target(
    cx: &Context<'_>,
    settings: &Settings,
    cluster: &Cluster,
    t: &ObjectRef,
    threshold: u8,
) -> Result<Option<Workload>, PlanError> {
    let Some(d) = cluster.get::<Deployment>(Kind::Deployment, &t.namespace, &t.name)? else {
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
        readiness: readiness(&d, threshold),
    }))
}

/// The primary as the engine sees it.
pub fn observe_primary(
    cluster: &Cluster,
    p: &ObjectRef,
    threshold: u8,
) -> Result<Option<Workload>, PlanError> {
    Ok(cluster
        .get::<Deployment>(Kind::Deployment, &p.namespace, &p.name)?
        .map(|d| Workload {
            revision: d
                .annotations()
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            configs: BTreeMap::new(),
            readiness: readiness(&d, threshold),
        }))
}

/// The primary Deployment: the target's spec with the selector label renamed, the tracked
/// configs pointed at their copies, and `replicas` (default: the primary's own when it exists,
/// so an autoscaler keeps it, else the target's).
pub fn plan_primary(
    cx: &Context<'_>,
    settings: &Settings,
    cluster: &Cluster,
    t: &ObjectRef,
    renamed: &BTreeSet<(configs::Kind, String)>,
    replicas: Option<i32>,
) -> Result<Object, PlanError> {
    let Some(target) = cluster.get::<Deployment>(Kind::Deployment, &t.namespace, &t.name)? else {
        return Err(PlanError::Invalid {
            field: "spec.targetRef".into(),
            message: format!("Deployment {}/{} does not exist", t.namespace, t.name),
        });
    };
    let mut spec = target.spec.clone().ok_or_else(|| PlanError::Invalid {
        field: "spec.targetRef".into(),
        message: format!("Deployment {} has no spec", t.name),
    })?;
    configs::rename(&mut spec.template, renamed);
    let existing = cluster.get::<Deployment>(
        Kind::Deployment,
        cx.namespace,
        &cx.canary.spec.primary_workload_name(),
    )?;
    let replicas = replicas
        .or_else(|| existing.and_then(|p| p.spec.and_then(|s| s.replicas)))
        .unwrap_or_else(|| saved_replicas(&target));
    let (selector, template) = super::primary_template(cx, &spec.template);
    spec.replicas = Some(replicas);
    spec.selector = selector;
    spec.template = template;
    let primary = Deployment {
        metadata: super::primary_meta(cx, settings, &target.metadata, revision(&target)),
        spec: Some(spec),
        status: None,
    };
    Ok(Object::new(Kind::Deployment, &primary))
}
