//! Tracked ConfigMaps and Secrets: the ones a pod template references are part of the target's
//! revision (a change to one starts a release), and the primary runs on `-primary` copies made
//! at promotion, so a change reaches the primary only through the analysis.
//!
//! Opt out per object with the annotation `siskin.dev/config-tracking: disabled` (Flagger's
//! `flagger.app/config-tracking: disabled` is honoured too).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    objects::{self, Cluster, Object, ObjectRef},
    plan::Context,
};

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

    /// The object kind.
    pub fn object(self) -> objects::Kind {
        match self {
            Kind::ConfigMap => objects::Kind::ConfigMap,
            Kind::Secret => objects::Kind::Secret,
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

fn disabled(obj: &Value) -> bool {
    ["siskin.dev/config-tracking", "flagger.app/config-tracking"]
        .iter()
        .any(|k| obj["metadata"]["annotations"][*k].as_str() == Some("disabled"))
}

fn checksum(value: &serde_json::Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The objects `template` references, to read before [`tracked`].
pub fn reads(namespace: &str, template: &PodTemplateSpec) -> Vec<ObjectRef> {
    references(template)
        .into_iter()
        .map(|(kind, name)| ObjectRef::new(kind.object(), namespace, &name))
        .collect()
}

/// The tracked objects' data (`data` and `binaryData`, or `data` and `type`), by kind and name.
/// A missing optional object is not tracked; a required one keeps the pods from starting,
/// which readiness reports.
pub fn tracked(
    cluster: &Cluster,
    namespace: &str,
    template: &PodTemplateSpec,
) -> BTreeMap<(Kind, String), Value> {
    let mut out = BTreeMap::new();
    for (kind, name) in references(template) {
        let Some(obj) = cluster.raw(kind.object(), namespace, &name) else {
            continue;
        };
        if disabled(obj) {
            continue;
        }
        let data = match kind {
            Kind::ConfigMap => json!({"data": obj["data"], "binaryData": obj["binaryData"]}),
            Kind::Secret => json!({"data": obj["data"], "type": obj["type"]}),
        };
        out.insert((kind, name), data);
    }
    out
}

/// Checksums of the tracked objects (the engine's `configs`), by `configmap/NAME` or
/// `secret/NAME`.
pub fn checksums(tracked: &BTreeMap<(Kind, String), Value>) -> BTreeMap<String, String> {
    tracked
        .iter()
        .map(|((kind, name), data)| (format!("{}/{name}", kind.prefix()), checksum(data)))
        .collect()
}

/// The `-primary` copies of the tracked objects.
pub fn copies(cx: &Context<'_>, tracked: &BTreeMap<(Kind, String), Value>) -> Vec<Object> {
    let mut out = Vec::new();
    for ((kind, name), data) in tracked {
        let meta = cx.meta(&format!("{name}-primary"), None);
        let mut body = json!({ "metadata": meta });
        if let (Some(b), Some(d)) = (body.as_object_mut(), data.as_object()) {
            for (k, v) in d {
                if !v.is_null() {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        out.push(Object::new(kind.object(), &body));
    }
    out
}

/// Points every reference in `renamed` at its `-primary` copy.
pub fn rename(template: &mut PodTemplateSpec, renamed: &BTreeSet<(Kind, String)>) {
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
