//! The one executor of plans on Kubernetes: reads what a plan needs into a [`Cluster`], and
//! server-side applies what it planned (field manager `siskin`, only the fields Siskin owns,
//! strict field validation)
//! or deletes what it asked to delete.

use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
};
use siskin_driver::Error;

use super::{
    FIELD_MANAGER,
    versions::{Versions, fingerprint},
};
use crate::objects::{Change, Cluster, Object, ObjectRef, Read};

/// Wraps a client error with what was attempted; a conflict (the object changed since it was
/// read) is told apart, so the step runs again at once.
pub fn kube_err(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |e| match &e {
        kube::Error::Api(s) if s.code == 409 => Error::Conflict { what },
        _ => Error::unavailable(what, e),
    }
}

fn api(client: &Client, r: &ObjectRef) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), &r.namespace, &r.kind.resource())
}

/// Adds the objects of `reads` to `cluster`, as they are now.
pub async fn read(client: &Client, reads: &[Read], cluster: &mut Cluster) -> Result<(), Error> {
    for r in reads {
        match r {
            Read::Named(r) => {
                let obj = api(client, r)
                    .get_opt(&r.name)
                    .await
                    .map_err(kube_err(format!("get {r}")))?;
                if let Some(obj) = obj {
                    cluster.insert(to_value(obj, r.kind)?);
                }
            }
            Read::Labelled {
                kind,
                namespace,
                selector,
            } => {
                let list = Api::<DynamicObject>::namespaced_with(
                    client.clone(),
                    namespace,
                    &kind.resource(),
                )
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(kube_err(format!(
                    "list {} in {namespace} with {selector}",
                    kind.name()
                )))?;
                for obj in list.items {
                    cluster.insert(to_value(obj, *kind)?);
                }
            }
        }
    }
    Ok(())
}

/// A read object as JSON, with `apiVersion` and `kind` (a list leaves them out of its items).
fn to_value(obj: DynamicObject, kind: crate::objects::Kind) -> Result<serde_json::Value, Error> {
    let mut v = serde_json::to_value(obj)
        .map_err(|e| Error::unavailable(format!("read {}", kind.name()), e))?;
    if let Some(map) = v.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| kind.api_version().into());
        map.entry("kind").or_insert_with(|| kind.name().into());
    }
    Ok(v)
}

/// Applies one object.
pub async fn apply(client: &Client, obj: &Object) -> Result<(), Error> {
    send(client, obj).await.map(|_| ())
}

/// Applies one object of a plan made from `cluster`, unless this process applied the same
/// plan to it and the object is still at the version the API server answered then (a
/// server-side apply that would change nothing). A change by anyone else moves the version
/// on, so drift is still put right at the next step. Returns whether it applied.
pub async fn apply_planned(
    client: &Client,
    obj: &Object,
    cluster: &Cluster,
    versions: &Versions,
) -> Result<bool, Error> {
    let r = obj.reference();
    let key = format!("{}/{r}", r.kind.api_version());
    let plan = fingerprint(&obj.value);
    let now = cluster
        .raw(r.kind, &r.namespace, &r.name)
        .and_then(|v| v["metadata"]["resourceVersion"].as_str());
    if versions.apply_is_noop(&key, plan, now) {
        return Ok(false);
    }
    let answered = send(client, obj).await?;
    versions.applied(&key, plan, answered.metadata.resource_version);
    Ok(true)
}

async fn send(client: &Client, obj: &Object) -> Result<DynamicObject, Error> {
    let r = obj.reference();
    api(client, &r)
        .patch(
            &r.name,
            // Strict: a field the API server does not know is an error, not a dropped field.
            &PatchParams::apply(FIELD_MANAGER)
                .force()
                .validation_strict(),
            &Patch::Apply(&obj.value),
        )
        .await
        .map_err(kube_err(format!("apply {r}")))
}

/// Executes changes in order.
pub async fn execute(client: &Client, changes: &[Change]) -> Result<(), Error> {
    for c in changes {
        match c {
            Change::Apply(obj) => apply(client, obj).await?,
            Change::Delete(r) => match api(client, r)
                .delete(&r.name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(kube_err(format!("delete {r}"))(e)),
            },
        }
    }
    Ok(())
}
