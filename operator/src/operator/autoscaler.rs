//! The primary's autoscaler: with `spec.autoscalerRef`, the target's HPA is copied as
//! `<hpa>-primary` aimed at the primary workload (with `primaryScalerReplicas` when set), at
//! initialization and at every promotion.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use siskin_api::canary::AutoscalerKind;

use super::{Error, FIELD_MANAGER, context::Target};

/// Writes the primary's HPA when the Canary names one.
pub async fn sync_primary(t: &Target) -> Result<(), Error> {
    let Some(r) = t.canary.spec.autoscaler_ref.as_ref() else {
        return Ok(());
    };
    if r.kind != AutoscalerKind::HorizontalPodAutoscaler {
        return Err(Error::Invalid {
            field: "spec.autoscalerRef.kind".into(),
            message: format!(
                "{:?} is not supported by this operator yet; use a HorizontalPodAutoscaler",
                r.kind
            ),
        });
    }
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(t.client.clone(), &t.ns);
    let Some(hpa) = api.get_opt(&r.name).await.map_err(Error::kube(format!(
        "get HorizontalPodAutoscaler {}/{}",
        t.ns, r.name
    )))?
    else {
        return Err(Error::Invalid {
            field: "spec.autoscalerRef.name".into(),
            message: format!(
                "HorizontalPodAutoscaler {}/{} does not exist; create it or remove autoscalerRef",
                t.ns, r.name
            ),
        });
    };
    let mut spec = serde_json::to_value(hpa.spec).map_err(|e| Error::Invalid {
        field: "spec.autoscalerRef".into(),
        message: e.to_string(),
    })?;
    spec["scaleTargetRef"]["name"] = json!(t.primary);
    if let Some(bounds) = &r.primary_scaler_replicas {
        if let Some(min) = bounds.min_replicas {
            spec["minReplicas"] = json!(min);
        }
        if let Some(max) = bounds.max_replicas {
            spec["maxReplicas"] = json!(max);
        }
    }
    let name = format!("{}-primary", r.name);
    let body = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": t.ns, "ownerReferences": [t.owner()?],
            "labels": t.included(hpa.metadata.labels.as_ref().unwrap_or(&Default::default()))},
        "spec": spec,
    });
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!(
        "apply HorizontalPodAutoscaler {}/{name}",
        t.ns
    )))?;
    Ok(())
}
