//! `apps/v1` DaemonSets: the primary is `<target>-primary`; a DaemonSet has no replica count,
//! so "scale to zero" is a node selector no node carries (as Flagger does).

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use siskin_engine::{Readiness, Scale, Workload};

use super::{Platform, REVISION_ANNOTATION};
use crate::operator::{Error, context::Target};

/// Node selector label that keeps a scaled-down DaemonSet off every node.
pub const SCALE_TO_ZERO_LABEL: &str = "siskin.dev/scale-to-zero";

/// The DaemonSet platform.
pub struct DaemonSets;

fn api(t: &Target) -> Api<DaemonSet> {
    Api::namespaced(t.client.clone(), &t.ns)
}

fn revision(d: &DaemonSet) -> String {
    d.spec
        .as_ref()
        .map(|s| super::template_revision(&s.template))
        .unwrap_or_default()
}

fn scaled_to_zero(d: &DaemonSet) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.node_selector.as_ref())
        .is_some_and(|n| n.contains_key(SCALE_TO_ZERO_LABEL))
}

/// Readiness as `kubectl rollout status` judges a DaemonSet.
fn readiness(d: &DaemonSet) -> Readiness {
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

async fn apply_primary(t: &Target, target: &DaemonSet) -> Result<(), Error> {
    let mut spec = target.spec.clone().ok_or_else(|| Error::Invalid {
        field: "spec.targetRef".into(),
        message: format!("DaemonSet {} has no spec", t.name),
    })?;
    if t.settings.config_tracking {
        crate::operator::configs::copy_for_primary(t, &mut spec.template).await?;
    }
    let (selector, template) = super::primary_template(t, &spec.template);
    spec.selector = selector;
    spec.template = template;
    let spec = serde_json::to_value(spec).map_err(|e| Error::Invalid {
        field: "spec.targetRef".into(),
        message: e.to_string(),
    })?;
    super::apply_primary_object(
        t,
        &api(t),
        "DaemonSet",
        &target.metadata,
        revision(target),
        spec,
    )
    .await
}

async fn get(t: &Target, name: &str) -> Result<Option<DaemonSet>, Error> {
    api(t)
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("get DaemonSet {}/{name}", t.ns)))
}

#[async_trait]
impl Platform for DaemonSets {
    async fn selector(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
        keys: &[String],
    ) -> Result<Option<(String, String)>, Error> {
        let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
        let Some(d) = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("get DaemonSet {ns}/{name}")))?
        else {
            return Ok(None);
        };
        let labels = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref());
        super::pick_selector("DaemonSet", ns, name, labels, keys).map(Some)
    }

    async fn target(&self, t: &Target) -> Result<Option<Workload>, Error> {
        let Some(d) = get(t, &t.name).await? else {
            return Ok(None);
        };
        let configs = match (&d.spec, t.settings.config_tracking) {
            (Some(spec), true) => crate::operator::configs::observe(t, &spec.template).await?,
            _ => BTreeMap::new(),
        };
        Ok(Some(Workload {
            revision: revision(&d),
            configs,
            readiness: readiness(&d),
        }))
    }

    async fn primary(&self, t: &Target) -> Result<Option<Workload>, Error> {
        Ok(get(t, &t.primary).await?.map(|d| Workload {
            revision: d
                .annotations()
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            configs: BTreeMap::new(),
            readiness: readiness(&d),
        }))
    }

    async fn initialize(&self, t: &Target) -> Result<(), Error> {
        if get(t, &t.primary).await?.is_some() {
            return Ok(());
        }
        let Some(target) = get(t, &t.name).await? else {
            return Ok(());
        };
        apply_primary(t, &target).await
    }

    async fn promote(&self, t: &Target) -> Result<(), Error> {
        let Some(target) = get(t, &t.name).await? else {
            return Ok(());
        };
        apply_primary(t, &target).await
    }

    async fn scale(&self, t: &Target, scale: Scale) -> Result<(), Error> {
        let Some(d) = get(t, &t.name).await? else {
            return Ok(());
        };
        let patch = match (scale, scaled_to_zero(&d)) {
            (Scale::Zero, false) => {
                json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_LABEL: "true"}}}}})
            }
            (Scale::Up, true) => {
                json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_LABEL: null}}}}})
            }
            _ => return Ok(()),
        };
        api(t)
            .patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!("scale DaemonSet {}/{}", t.ns, t.name)))?;
        Ok(())
    }

    async fn revert(&self, t: &Target) -> Result<(), Error> {
        self.scale(t, Scale::Up).await?;
        match api(t).delete(&t.primary, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(format!(
                "delete DaemonSet {}/{}",
                t.ns, t.primary
            ))(e)),
        }
    }
}
