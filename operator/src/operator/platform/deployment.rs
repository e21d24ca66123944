//! `apps/v1` Deployments: the primary is `<target>-primary`, a copy whose selector label value
//! gets a `-primary` suffix.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use siskin_engine::{Readiness, Scale, Workload};

use super::{Platform, REPLICAS_ANNOTATION, REVISION_ANNOTATION};
use crate::operator::{Error, context::Target};

/// The Deployment platform.
pub struct Deployments;

fn api(t: &Target) -> Api<Deployment> {
    Api::namespaced(t.client.clone(), &t.ns)
}

/// Revision of the pod template.
fn revision(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .map(|s| super::template_revision(&s.template))
        .unwrap_or_default()
}

/// Rollout readiness as `kubectl rollout status` judges it, with the ready threshold.
fn readiness(d: &Deployment, threshold: u8) -> Readiness {
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

/// The target's spec with the selector label renamed for the primary.
fn primary_spec(t: &Target, target: &Deployment, replicas: i32) -> Result<DeploymentSpec, Error> {
    let mut spec = target.spec.clone().ok_or_else(|| Error::Invalid {
        field: "spec.targetRef".into(),
        message: format!("Deployment {} has no spec", t.name),
    })?;
    let (selector, template) = super::primary_template(t, &spec.template);
    spec.replicas = Some(replicas);
    spec.selector = selector;
    spec.template = template;
    Ok(spec)
}

async fn apply_primary(t: &Target, target: &Deployment, replicas: i32) -> Result<(), Error> {
    let target_revision = revision(target);
    let mut target = target.clone();
    if t.settings.config_tracking
        && let Some(spec) = target.spec.as_mut()
    {
        crate::operator::configs::copy_for_primary(t, &mut spec.template).await?;
    }
    let spec =
        serde_json::to_value(primary_spec(t, &target, replicas)?).map_err(|e| Error::Invalid {
            field: "spec.targetRef".into(),
            message: e.to_string(),
        })?;
    super::apply_primary_object(
        t,
        &api(t),
        "Deployment",
        &target.metadata,
        target_revision,
        spec,
    )
    .await
}

fn saved_replicas(d: &Deployment) -> i32 {
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

#[async_trait]
impl Platform for Deployments {
    async fn selector(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
        keys: &[String],
    ) -> Result<Option<(String, String)>, Error> {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let Some(d) = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("get Deployment {ns}/{name}")))?
        else {
            return Ok(None);
        };
        let labels = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref());
        super::pick_selector("Deployment", ns, name, labels, keys).map(Some)
    }

    async fn target(&self, t: &Target) -> Result<Option<Workload>, Error> {
        let Some(d) = api(t)
            .get_opt(&t.name)
            .await
            .map_err(Error::kube(format!("get Deployment {}/{}", t.ns, t.name)))?
        else {
            return Ok(None);
        };
        let threshold = t.canary.spec.analysis().canary_ready_threshold();
        let configs = match (&d.spec, t.settings.config_tracking) {
            (Some(spec), true) => crate::operator::configs::observe(t, &spec.template).await?,
            _ => BTreeMap::new(),
        };
        Ok(Some(Workload {
            revision: revision(&d),
            configs,
            readiness: readiness(&d, threshold),
        }))
    }

    async fn primary(&self, t: &Target) -> Result<Option<Workload>, Error> {
        let Some(d) = api(t)
            .get_opt(&t.primary)
            .await
            .map_err(Error::kube(format!(
                "get Deployment {}/{}",
                t.ns, t.primary
            )))?
        else {
            return Ok(None);
        };
        let threshold = t.canary.spec.analysis().primary_ready_threshold();
        Ok(Some(Workload {
            revision: d
                .annotations()
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            configs: BTreeMap::new(),
            readiness: readiness(&d, threshold),
        }))
    }

    async fn initialize(&self, t: &Target) -> Result<(), Error> {
        let deployments = api(t);
        if deployments
            .get_opt(&t.primary)
            .await
            .map_err(Error::kube(format!(
                "get Deployment {}/{}",
                t.ns, t.primary
            )))?
            .is_some()
        {
            return Ok(());
        }
        let target = deployments
            .get(&t.name)
            .await
            .map_err(Error::kube(format!("get Deployment {}/{}", t.ns, t.name)))?;
        apply_primary(t, &target, saved_replicas(&target)).await
    }

    async fn promote(&self, t: &Target) -> Result<(), Error> {
        let deployments = api(t);
        let target = deployments
            .get(&t.name)
            .await
            .map_err(Error::kube(format!("get Deployment {}/{}", t.ns, t.name)))?;
        let primary = deployments
            .get_opt(&t.primary)
            .await
            .map_err(Error::kube(format!(
                "get Deployment {}/{}",
                t.ns, t.primary
            )))?;
        // The primary keeps its own replica count (an autoscaler may own it).
        let replicas = primary
            .and_then(|p| p.spec.and_then(|s| s.replicas))
            .unwrap_or_else(|| saved_replicas(&target));
        apply_primary(t, &target, replicas).await
    }

    async fn scale(&self, t: &Target, scale: Scale) -> Result<(), Error> {
        let deployments = api(t);
        let Some(d) = deployments
            .get_opt(&t.name)
            .await
            .map_err(Error::kube(format!("get Deployment {}/{}", t.ns, t.name)))?
        else {
            return Ok(());
        };
        let current = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let patch = match scale {
            Scale::Zero if current == 0 => return Ok(()),
            Scale::Zero => json!({
                "metadata": {"annotations": {REPLICAS_ANNOTATION: current.to_string()}},
                "spec": {"replicas": 0},
            }),
            Scale::Up if current > 0 => return Ok(()),
            Scale::Up => json!({"spec": {"replicas": saved_replicas(&d)}}),
        };
        deployments
            .patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!("scale Deployment {}/{}", t.ns, t.name)))?;
        Ok(())
    }

    async fn revert(&self, t: &Target) -> Result<(), Error> {
        self.scale(t, Scale::Up).await?;
        match api(t).delete(&t.primary, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(format!(
                "delete Deployment {}/{}",
                t.ns, t.primary
            ))(e)),
        }
    }
}
