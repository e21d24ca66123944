//! The Canary's status on the API server: read (with Siskin's own fields from an annotation on
//! `flagger.app` Canaries, whose CRD does not declare them), written conditionally on the
//! version that was read, and the events recorded on the Canary.

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder},
};
use serde_json::json;
use siskin_api::{ApiGroup, Canary, CanaryStatus, status::CanaryCondition};
use siskin_driver::Error;
use tracing::warn;

use super::{FIELD_MANAGER, apply::kube_err};

/// Status fields Flagger's own CRD declares.
const FLAGGER_STATUS_FIELDS: [&str; 12] = [
    "phase",
    "failedChecks",
    "canaryWeight",
    "iterations",
    "trackedConfigs",
    "lastAppliedSpec",
    "lastPromotedSpec",
    "lastTransitionTime",
    "sessionAffinityCookie",
    "primarySessionAffinityCookie",
    "previousSessionAffinityCookie",
    "conditions",
];

/// Where Siskin's own status fields live on a flagger.app Canary.
pub const STATUS_ANNOTATION: &str = "siskin.dev/status";

/// The Canaries of `group` in the Canary's namespace.
pub fn api(client: &kube::Client, canary: &Canary, group: ApiGroup) -> Api<Canary> {
    Api::namespaced_with(
        client.clone(),
        &canary.namespace().unwrap_or_default(),
        &group,
    )
}

/// The status as last written: for flagger.app, with Siskin's fields from the annotation.
pub fn read(canary: &Canary) -> CanaryStatus {
    let mut v = serde_json::to_value(canary.status.clone().unwrap_or_default()).unwrap_or_default();
    if let (Some(text), Some(obj)) = (
        canary.annotations().get(STATUS_ANNOTATION),
        v.as_object_mut(),
    ) && let Ok(serde_json::Value::Object(extras)) = serde_json::from_str(text)
    {
        for (k, x) in extras {
            obj.entry(k).or_insert(x);
        }
    }
    serde_json::from_value(v).unwrap_or_else(|_| canary.status.clone().unwrap_or_default())
}

/// The status as a Canary of `group` carries it: all of it under `siskin.dev`; under
/// `flagger.app`, whose CRD declares only Flagger's fields, those in `status` and Siskin's own
/// (checks, wait, observedGeneration, mirrored) as JSON for [`STATUS_ANNOTATION`], so nothing
/// is lost.
pub fn for_group(
    status: &CanaryStatus,
    group: ApiGroup,
) -> Result<(serde_json::Value, Option<String>), serde_json::Error> {
    let mut status_json = serde_json::to_value(status)?;
    if group != ApiGroup::Flagger {
        return Ok((status_json, None));
    }
    let mut extras = serde_json::Map::new();
    if let Some(obj) = status_json.as_object_mut() {
        let keys: Vec<String> = obj.keys().cloned().collect();
        for k in keys {
            if !FLAGGER_STATUS_FIELDS.contains(&k.as_str())
                && let Some(v) = obj.remove(&k)
            {
                extras.insert(k, v);
            }
        }
    }
    Ok((
        status_json,
        Some(serde_json::Value::Object(extras).to_string()),
    ))
}

/// Writes `status`, conditionally on the Canary as it was read: a status computed from an
/// older version gets a conflict and the step runs again, instead of writing back an old phase.
/// Returns the Canary's `resourceVersion` after the write.
pub async fn write(
    client: &kube::Client,
    canary: &Canary,
    group: ApiGroup,
    status: &CanaryStatus,
) -> Result<Option<String>, Error> {
    let name = canary.name_any();
    let mut precondition = true;
    let (status_json, extras) = for_group(status, group)
        .map_err(|e| Error::unavailable(format!("encode the status of Canary {name}"), e))?;
    if let Some(text) = extras
        && canary.annotations().get(STATUS_ANNOTATION) != Some(&text)
    {
        api(client, canary, group)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {
                    "resourceVersion": canary.resource_version(),
                    "annotations": {STATUS_ANNOTATION: text},
                }})),
            )
            .await
            .map_err(kube_err(format!("annotate Canary {name}")))?;
        // The annotation moved the version on; it was conditional itself.
        precondition = false;
    }
    let mut body = json!({
        "apiVersion": group.api_version(),
        "kind": "Canary",
        "status": status_json,
    });
    if precondition {
        body["metadata"] = json!({"resourceVersion": canary.resource_version()});
    }
    let written = api(client, canary, group)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(kube_err(format!("write status of Canary {name}")))?;
    Ok(written.metadata.resource_version)
}

/// The key of a Canary in [`super::versions::Versions`].
pub fn version_key(canary: &Canary, group: ApiGroup) -> String {
    format!(
        "{}/Canary {}/{}",
        group.api_version(),
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    )
}

/// Records an event on the Canary; a failure is logged (events are best effort).
pub async fn publish(
    recorder: &Recorder,
    canary: &Canary,
    group: ApiGroup,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let reference = canary.object_ref(&group);
    let ev = KubeEvent {
        type_: if warning {
            KubeEventType::Warning
        } else {
            KubeEventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        // The recorder folds events with the same action and reason into one series that
        // keeps the first note; the note as action keeps different messages apart.
        action: note.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &reference).await {
        warn!(error = %e, reason, "cannot record event");
    }
}

/// Shows a user's mistake where they look: a `Stalled` condition with reason `InvalidSpec` on
/// the status, and a Warning event.
pub async fn report_invalid(
    client: &kube::Client,
    recorder: &Recorder,
    canary: &Canary,
    group: ApiGroup,
    message: &str,
) -> Result<(), Error> {
    publish(recorder, canary, group, true, "InvalidSpec", message).await;
    let mut status = read(canary);
    let now =
        siskin_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let already = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.r#type == "Stalled" && c.message.as_deref() == Some(message));
    if already && status.observed_generation == canary.metadata.generation {
        return Ok(());
    }
    let cond = CanaryCondition {
        r#type: "Stalled".into(),
        status: "True".into(),
        reason: "InvalidSpec".into(),
        message: Some(message.to_string()),
        last_transition_time: Some(now.clone()),
        last_update_time: Some(now),
    };
    let mut conds: Vec<_> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.r#type != "Stalled")
        .collect();
    conds.push(cond);
    status.conditions = Some(conds);
    status.observed_generation = canary.metadata.generation;
    write(client, canary, group, &status).await.map(|_| ())
}
