//! The generated Services: `<apex>-primary` and `<apex>-canary` select the two sets of pods;
//! the apex Service is shaped by the traffic backend.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{Error, FIELD_MANAGER, context::Target};

fn port(t: &Target) -> Result<Value, Error> {
    let mut p = json!({
        "name": t.port_name(),
        "port": t.port()?,
        "targetPort": t.target_port()?,
        "protocol": "TCP",
    });
    if let Some(ap) = t
        .canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.app_protocol.clone())
    {
        p["appProtocol"] = json!(ap);
    }
    Ok(p)
}

/// Server-side applies a Service named `name` with `selector` (None: no selector).
pub async fn apply(
    t: &Target,
    name: &str,
    selector: Option<(String, String)>,
) -> Result<(), Error> {
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "siskin".to_string(),
    );
    let mut body = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": t.ns,
            "labels": labels,
            "ownerReferences": [t.owner()?],
        },
        "spec": {"type": "ClusterIP", "ports": [port(t)?]},
    });
    if let Some((k, v)) = &selector {
        body["spec"]["selector"] = json!({ k: v });
    }
    let api: Api<Service> = Api::namespaced(t.client.clone(), &t.ns);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!("apply Service {}/{name}", t.ns)))?;
    if selector.is_none() {
        // A selector set by someone else (e.g. the user's own apex Service) would make the
        // endpoint controller compete with the slices Siskin writes.
        let svc = api
            .get(name)
            .await
            .map_err(Error::kube(format!("get Service {}/{name}", t.ns)))?;
        if svc
            .spec
            .and_then(|s| s.selector)
            .is_some_and(|s| !s.is_empty())
        {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"selector": null}})),
            )
            .await
            .map_err(Error::kube(format!(
                "clear selector of Service {}/{name}",
                t.ns
            )))?;
        }
    }
    Ok(())
}

/// `<apex>-primary` and `<apex>-canary`.
pub async fn ensure_generated(t: &Target) -> Result<(), Error> {
    let spec = &t.canary.spec;
    apply(t, &spec.primary_service_name(), Some(t.primary_selector())).await?;
    apply(t, &spec.canary_service_name(), Some(t.canary_selector())).await
}

/// The apex Service selecting `selector` (revertOnDeletion hands it back to the target's
/// pods).
pub async fn point_apex(t: &Target, selector: (String, String)) -> Result<(), Error> {
    let api: Api<Service> = Api::namespaced(t.client.clone(), &t.ns);
    api.patch(
        &t.apex,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {selector.0: selector.1}}})),
    )
    .await
    .map_err(Error::kube(format!("patch Service {}/{}", t.ns, t.apex)))?;
    Ok(())
}
