//! Kubernetes objects as plain data: what the plans read ([`Cluster`], the objects as they are)
//! and what they produce ([`Object`], an object to apply; [`Change`]). No I/O: the Kubernetes
//! adapter fills a [`Cluster`] from the API server, `siskin render` from a YAML stream.

use std::collections::BTreeMap;

use kube::api::{ApiResource, GroupVersionKind};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// The kinds Siskin reads or writes, with their API resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1 Service`.
    Service,
    /// `discovery.k8s.io/v1 EndpointSlice`.
    EndpointSlice,
    /// `apps/v1 Deployment`.
    Deployment,
    /// `apps/v1 DaemonSet`.
    DaemonSet,
    /// `v1 ConfigMap`.
    ConfigMap,
    /// `v1 Secret`.
    Secret,
    /// `autoscaling/v2 HorizontalPodAutoscaler`.
    HorizontalPodAutoscaler,
    /// `gateway.networking.k8s.io HTTPRoute` (v1 or v1beta1).
    HttpRoute(&'static str),
    /// `gateway.networking.k8s.io/v1 GRPCRoute`.
    GrpcRoute,
    /// `networking.istio.io/v1beta1 VirtualService`.
    VirtualService,
    /// `networking.istio.io/v1beta1 DestinationRule`.
    DestinationRule,
    /// `split.smi-spec.io TrafficSplit` (v1alpha1, v1alpha2 or v1alpha3).
    TrafficSplit(&'static str),
    /// `consul.hashicorp.com/v1alpha1 ServiceDefaults`.
    ServiceDefaults,
    /// `consul.hashicorp.com/v1alpha1 ServiceSplitter`.
    ServiceSplitter,
    /// `consul.hashicorp.com/v1alpha1 ServiceRouter`.
    ServiceRouter,
}

/// Where an object is: its kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What a plan reads: one object, or every object of a kind carrying a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// One object.
    Named(ObjectRef),
    /// Every object of `kind` in `namespace` with `label=value`.
    Labelled {
        /// Kind.
        kind: Kind,
        /// Namespace.
        namespace: String,
        /// `key=value`.
        selector: String,
    },
}

/// An object to apply: the fields Siskin owns, as JSON with `apiVersion` and `kind`.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Its kind.
    pub kind: Kind,
    /// The object.
    pub value: Value,
}

/// One change a plan asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Server-side apply these fields (field manager `siskin`).
    Apply(Object),
    /// Delete the object (absent is fine).
    Delete(ObjectRef),
}

/// The objects as they are, keyed by kind (any version), namespace and name.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    objects: BTreeMap<(String, String, String, String), Value>,
}

/// An object that is not a valid one of its kind.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {namespace}/{name}: {source}")]
pub struct DecodeError {
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Why.
    #[source]
    pub source: serde_json::Error,
}

// === impl Kind ===

impl Kind {
    /// The API resource (group, version, kind, plural).
    pub fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::EndpointSlice => ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Kind::DaemonSet => ("apps", "v1", "DaemonSet", "daemonsets"),
            Kind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Kind::Secret => ("", "v1", "Secret", "secrets"),
            Kind::HorizontalPodAutoscaler => (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            Kind::HttpRoute(version) => (
                "gateway.networking.k8s.io",
                version,
                "HTTPRoute",
                "httproutes",
            ),
            Kind::GrpcRoute => ("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes"),
            Kind::VirtualService => (
                "networking.istio.io",
                "v1beta1",
                "VirtualService",
                "virtualservices",
            ),
            Kind::DestinationRule => (
                "networking.istio.io",
                "v1beta1",
                "DestinationRule",
                "destinationrules",
            ),
            Kind::TrafficSplit(version) => (
                "split.smi-spec.io",
                version,
                "TrafficSplit",
                "trafficsplits",
            ),
            Kind::ServiceDefaults => (
                "consul.hashicorp.com",
                "v1alpha1",
                "ServiceDefaults",
                "servicedefaults",
            ),
            Kind::ServiceSplitter => (
                "consul.hashicorp.com",
                "v1alpha1",
                "ServiceSplitter",
                "servicesplitters",
            ),
            Kind::ServiceRouter => (
                "consul.hashicorp.com",
                "v1alpha1",
                "ServiceRouter",
                "servicerouters",
            ),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// `apiVersion`.
    pub fn api_version(self) -> String {
        self.resource().api_version
    }

    /// `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::HttpRoute(_) => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::TrafficSplit(_) => "TrafficSplit",
            Kind::ServiceDefaults => "ServiceDefaults",
            Kind::ServiceSplitter => "ServiceSplitter",
            Kind::ServiceRouter => "ServiceRouter",
        }
    }

    fn group(self) -> String {
        self.resource().group
    }
}

// === impl ObjectRef ===

impl ObjectRef {
    /// `kind` `namespace/name`.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.name(), self.namespace, self.name)
    }
}

// === impl Object ===

impl Object {
    /// An object of `kind` from a typed value, with `apiVersion` and `kind` set.
    pub fn new(kind: Kind, value: &impl Serialize) -> Object {
        let mut value = serde_json::to_value(value).unwrap_or(Value::Null);
        whole_numbers(&mut value);
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), Value::String(kind.api_version()));
            map.insert("kind".into(), Value::String(kind.name().to_string()));
        }
        Object { kind, value }
    }

    /// Where it goes.
    pub fn reference(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind,
            namespace: self.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: self.value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

fn decode<T: DeserializeOwned>(
    kind: Kind,
    namespace: &str,
    name: &str,
    v: &Value,
) -> Result<Option<T>, DecodeError> {
    serde_json::from_value(v.clone())
        .map(Some)
        .map_err(|source| DecodeError {
            kind: kind.name().to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
}

/// Writes whole floating-point numbers as integers (`50`, not `50.0`), as other controllers
/// write them: the foreign types hold weights as `f64`.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(whole_numbers),
        Value::Object(m) => m.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

// === impl Cluster ===

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Cluster {
        Cluster::default()
    }

    /// Adds (or replaces) an object; it must have `apiVersion`, `kind` and `metadata.name`.
    pub fn insert(&mut self, value: Value) {
        let group = value["apiVersion"]
            .as_str()
            .map(|v| v.rsplit_once('/').map_or("", |(g, _)| g).to_string())
            .unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let ns = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.objects.insert((group, kind, ns, name), value);
    }

    /// The object, as JSON.
    pub fn raw(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(
            kind.group(),
            kind.name().to_string(),
            namespace.to_string(),
            name.to_string(),
        ))
    }

    /// The object, typed; an object that does not decode is an error naming it.
    pub fn get<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, DecodeError> {
        let Some(v) = self.raw(kind, namespace, name) else {
            return Ok(None);
        };
        decode(kind, namespace, name, v)
    }

    /// The object's `spec` only, typed: for kinds whose status another controller writes in
    /// shapes of its own (istiod's and consul-k8s's conditions leave out fields the typed
    /// `Condition` requires), read as JSON from [`Cluster::raw`] instead.
    pub fn spec<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, DecodeError> {
        let Some(v) = self.raw(kind, namespace, name) else {
            return Ok(None);
        };
        decode(kind, namespace, name, &v["spec"])
    }

    /// Every object of `kind` in `namespace` whose labels include `key=value`.
    pub fn labelled(&self, kind: Kind, namespace: &str, selector: &str) -> Vec<&Value> {
        let (key, value) = selector.split_once('=').unwrap_or((selector, ""));
        self.objects
            .iter()
            .filter(|((g, k, ns, _), _)| *g == kind.group() && k == kind.name() && ns == namespace)
            .filter(|(_, v)| v["metadata"]["labels"][key].as_str() == Some(value))
            .map(|(_, v)| v)
            .collect()
    }
}
