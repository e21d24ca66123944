//! The primary's autoscaler: with `spec.autoscalerRef`, the target's HPA is copied as
//! `<hpa>-primary` aimed at the primary workload (with `primaryScalerReplicas` when set), at
//! initialization and at every promotion.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use siskin_api::canary::AutoscalerKind;

use super::Settings;
use crate::{
    objects::{Cluster, Kind, Object, ObjectRef},
    plan::{Context, PlanError},
};

/// What the primary's autoscaler is read from.
pub fn reads(cx: &Context<'_>) -> Option<ObjectRef> {
    let r = cx.canary.spec.autoscaler_ref.as_ref()?;
    Some(ObjectRef::new(
        Kind::HorizontalPodAutoscaler,
        cx.namespace,
        &r.name,
    ))
}

/// The primary's HPA when the Canary names one.
pub fn plan_primary(
    cx: &Context<'_>,
    settings: &Settings,
    cluster: &Cluster,
) -> Result<Option<Object>, PlanError> {
    let Some(r) = cx.canary.spec.autoscaler_ref.as_ref() else {
        return Ok(None);
    };
    if r.kind != AutoscalerKind::HorizontalPodAutoscaler {
        return Err(PlanError::Invalid {
            field: "spec.autoscalerRef.kind".into(),
            message: format!(
                "{:?} is not supported by this operator yet; use a HorizontalPodAutoscaler",
                r.kind
            ),
        });
    }
    let Some(hpa) = cluster.get::<HorizontalPodAutoscaler>(
        Kind::HorizontalPodAutoscaler,
        cx.namespace,
        &r.name,
    )?
    else {
        return Err(PlanError::Invalid {
            field: "spec.autoscalerRef.name".into(),
            message: format!(
                "HorizontalPodAutoscaler {}/{} does not exist; create it or remove autoscalerRef",
                cx.namespace, r.name
            ),
        });
    };
    let mut spec = hpa.spec;
    spec.scale_target_ref.name = cx.canary.spec.primary_workload_name();
    if let Some(bounds) = &r.primary_scaler_replicas {
        if let Some(min) = bounds.min_replicas {
            spec.min_replicas = Some(min);
        }
        if let Some(max) = bounds.max_replicas {
            spec.max_replicas = max;
        }
    }
    let mut meta = cx.meta(&format!("{}-primary", r.name), None);
    meta.labels
        .get_or_insert_with(Default::default)
        .extend(super::included(settings, hpa.metadata.labels.as_ref()));
    let primary = HorizontalPodAutoscaler {
        metadata: meta,
        spec,
        status: None,
    };
    Ok(Some(Object::new(Kind::HorizontalPodAutoscaler, &primary)))
}
