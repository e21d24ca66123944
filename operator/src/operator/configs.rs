//! Tracked ConfigMaps and Secrets: the ones a pod template references are part of the target's
//! revision (a change to one starts a release), and the primary runs on `-primary` copies made
//! at promotion, so a change reaches the primary only through the analysis.
//!
//! Opt out per object with the annotation `siskin.dev/config-tracking: disabled` (Flagger's
//! `flagger.app/config-tracking: disabled` is honoured too).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Error, FIELD_MANAGER, context::Target};

/// A referenced object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        }
    }
}

/// Every ConfigMap and Secret a pod template references.
pub fn references(template: &PodTemplateSpec) -> BTreeSet<(Kind, String)> {
    let mut out = BTreeSet::new();
    let Some(spec) = template.spec.as_ref() else {
        return out;
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.config_map.as_ref().map(|c| c.name.clone()) {
            out.insert((Kind::ConfigMap, name));
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.insert((Kind::Secret, name));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &src.config_map {
                out.insert((Kind::ConfigMap, c.name.clone()));
            }
            if let Some(s) = &src.secret {
                out.insert((Kind::Secret, s.name.clone()));
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                out.insert((Kind::ConfigMap, r.name.clone()));
            }
            if let Some(r) = &e.secret_ref {
                out.insert((Kind::Secret, r.name.clone()));
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    out.insert((Kind::ConfigMap, r.name.clone()));
                }
                if let Some(r) = &vf.secret_key_ref {
                    out.insert((Kind::Secret, r.name.clone()));
                }
            }
        }
    }
    out.retain(|(_, n)| !n.is_empty());
    out
}

fn disabled(annotations: &BTreeMap<String, String>) -> bool {
    ["siskin.dev/config-tracking", "flagger.app/config-tracking"]
        .iter()
        .any(|k| annotations.get(*k).is_some_and(|v| v == "disabled"))
}

fn checksum(value: &serde_json::Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The tracked objects' data, by `configmap/NAME` or `secret/NAME`.
async fn read(
    t: &Target,
    template: &PodTemplateSpec,
) -> Result<BTreeMap<(Kind, String), serde_json::Value>, Error> {
    let mut out = BTreeMap::new();
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
    let secrets: Api<Secret> = Api::namespaced(t.client.clone(), &t.ns);
    for (kind, name) in references(template) {
        let data = match kind {
            Kind::ConfigMap => cms
                .get_opt(&name)
                .await
                .map_err(Error::kube(format!("get ConfigMap {}/{name}", t.ns)))?
                .filter(|c| !disabled(c.annotations()))
                .map(|c| json!({"data": c.data, "binaryData": c.binary_data})),
            Kind::Secret => secrets
                .get_opt(&name)
                .await
                .map_err(Error::kube(format!("get Secret {}/{name}", t.ns)))?
                .filter(|s| !disabled(s.annotations()))
                .map(|s| json!({"data": s.data, "type": s.type_})),
        };
        // A missing optional object is not tracked; a required one keeps the pods from
        // starting, which readiness reports.
        if let Some(d) = data {
            out.insert((kind, name), d);
        }
    }
    Ok(out)
}

/// Checksums of the tracked objects (the engine's `configs`).
pub async fn observe(
    t: &Target,
    template: &PodTemplateSpec,
) -> Result<BTreeMap<String, String>, Error> {
    Ok(read(t, template)
        .await?
        .into_iter()
        .map(|((kind, name), data)| (format!("{}/{name}", kind.prefix()), checksum(&data)))
        .collect())
}

/// Writes `-primary` copies of the tracked objects and points `template` at them.
pub async fn copy_for_primary(t: &Target, template: &mut PodTemplateSpec) -> Result<(), Error> {
    let objects = read(t, template).await?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let owner = t.owner()?;
    let mut renamed = BTreeSet::new();
    for ((kind, name), data) in &objects {
        let copy = format!("{name}-primary");
        let mut body = json!({
            "metadata": {"name": copy, "namespace": t.ns, "ownerReferences": [owner],
                "labels": {"app.kubernetes.io/managed-by": "siskin"}},
        });
        if let (Some(b), Some(d)) = (body.as_object_mut(), data.as_object()) {
            for (k, v) in d {
                if !v.is_null() {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        match kind {
            Kind::ConfigMap => {
                body["apiVersion"] = json!("v1");
                body["kind"] = json!("ConfigMap");
                Api::<ConfigMap>::namespaced(t.client.clone(), &t.ns)
                    .patch(&copy, &pp, &Patch::Apply(&body))
                    .await
                    .map_err(Error::kube(format!("apply ConfigMap {}/{copy}", t.ns)))?;
            }
            Kind::Secret => {
                body["apiVersion"] = json!("v1");
                body["kind"] = json!("Secret");
                Api::<Secret>::namespaced(t.client.clone(), &t.ns)
                    .patch(&copy, &pp, &Patch::Apply(&body))
                    .await
                    .map_err(Error::kube(format!("apply Secret {}/{copy}", t.ns)))?;
            }
        }
        renamed.insert((*kind, name.clone()));
    }
    rename(template, &renamed);
    Ok(())
}

/// Points every reference in `renamed` at its `-primary` copy.
fn rename(template: &mut PodTemplateSpec, renamed: &BTreeSet<(Kind, String)>) {
    let to = |kind: Kind, name: &mut String| {
        if renamed.contains(&(kind, name.clone())) {
            name.push_str("-primary");
        }
    };
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(c) = v.config_map.as_mut() {
            to(Kind::ConfigMap, &mut c.name);
        }
        if let Some(n) = v.secret.as_mut().and_then(|s| s.secret_name.as_mut()) {
            to(Kind::Secret, n);
        }
        for src in v
            .projected
            .iter_mut()
            .flat_map(|p| p.sources.iter_mut().flatten())
        {
            if let Some(c) = src.config_map.as_mut() {
                to(Kind::ConfigMap, &mut c.name);
            }
            if let Some(s) = src.secret.as_mut() {
                to(Kind::Secret, &mut s.name);
            }
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        for e in c.env_from.iter_mut().flatten() {
            if let Some(r) = e.config_map_ref.as_mut() {
                to(Kind::ConfigMap, &mut r.name);
            }
            if let Some(r) = e.secret_ref.as_mut() {
                to(Kind::Secret, &mut r.name);
            }
        }
        for e in c.env.iter_mut().flatten() {
            if let Some(vf) = e.value_from.as_mut() {
                if let Some(r) = vf.config_map_key_ref.as_mut() {
                    to(Kind::ConfigMap, &mut r.name);
                }
                if let Some(r) = vf.secret_key_ref.as_mut() {
                    to(Kind::Secret, &mut r.name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn finds_and_renames_every_kind_of_reference() {
        let mut t: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "volumes": [{"name": "a", "configMap": {"name": "cfg"}}, {"name": "b", "secret": {"secretName": "sec"}},
                {"name": "c", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}],
            "containers": [{"name": "x", "envFrom": [{"configMapRef": {"name": "envcfg"}}],
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "keysec", "key": "k"}}}]}]}}))
        .unwrap();
        let refs = references(&t);
        assert_eq!(refs.len(), 5, "{refs:?}");
        let keep: BTreeSet<_> = refs.iter().filter(|(_, n)| n != "proj").cloned().collect();
        rename(&mut t, &keep);
        let after: BTreeSet<String> = references(&t).into_iter().map(|(_, n)| n).collect();
        let want: BTreeSet<String> = [
            "cfg-primary",
            "envcfg-primary",
            "proj",
            "keysec-primary",
            "sec-primary",
        ]
        .map(String::from)
        .into();
        assert_eq!(after, want);
    }
}
