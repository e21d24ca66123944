//! Traffic providers (`spec.provider`): every name Flagger accepts, and the shape of what a
//! backend can execute ([`Capabilities`]).
//!
//! Unknown names are an error that names the field. Flagger falls back to Istio with a log
//! line; we never do. Which providers have a backend, and what each can do, is the operator's
//! backend registry's to say (`validate::Backends`): a name listed here without a backend is
//! refused there.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A traffic management provider: Siskin's built-in router or an external mesh/ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Siskin's own L7 router, configured through a Gateway API `HTTPRoute` it owns.
    Builtin,
    /// Apache APISIX (`ApisixRoute`).
    Apisix,
    /// Consul service mesh config entries (`ServiceSplitter`, `ServiceRouter`); a Siskin
    /// addition, not a Flagger provider.
    Consul,
    /// AWS App Mesh v1beta1.
    AppMesh,
    /// AWS App Mesh v1beta2.
    AppMeshV1beta2,
    /// Contour `HTTPProxy`.
    Contour,
    /// Gateway API `HTTPRoute` v1.
    GatewayApiV1,
    /// Gateway API `HTTPRoute` v1beta1.
    GatewayApiV1beta1,
    /// Gloo Edge `RouteTable`.
    Gloo,
    /// Istio `VirtualService`.
    Istio,
    /// Knative Serving.
    Knative,
    /// Plain Kubernetes Services (blue/green by selector).
    Kubernetes,
    /// Kuma `TrafficRoute`.
    Kuma,
    /// Linkerd (SMI `TrafficSplit` v1alpha1 through linkerd-smi).
    Linkerd,
    /// ingress-nginx canary annotations.
    Nginx,
    /// Open Service Mesh.
    Osm,
    /// Skipper ingress.
    Skipper,
    /// SMI `TrafficSplit` v1alpha1.
    SmiV1alpha1,
    /// SMI `TrafficSplit` v1alpha2.
    SmiV1alpha2,
    /// SMI `TrafficSplit` v1alpha3.
    SmiV1alpha3,
    /// Traefik `TraefikService`.
    Traefik,
}

/// What a traffic backend can execute. `validate` refuses a Canary that asks for more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Progressive weights (canary strategy).
    pub weights: bool,
    /// A/B routing by header, cookie or query parameter (`analysis.match`).
    pub header_match: bool,
    /// Traffic mirroring (`analysis.mirror`).
    pub mirror: bool,
    /// Mirroring during a canary (weighted) run, not only blue/green.
    pub mirror_in_canary: bool,
    /// Percentage mirroring (`analysis.mirrorWeight`).
    pub mirror_weight: bool,
    /// Sticky sessions (`analysis.sessionAffinity`).
    pub session_affinity: bool,
    /// A primary cookie (`sessionAffinity.primaryCookieName`).
    pub primary_cookie: bool,
    /// The optional routing fields of `spec.service` it applies (JSON names: `match`,
    /// `headers`, `timeout`, ...); any other one that is set is refused.
    pub service_fields: &'static [&'static str],
}

// === impl Capabilities ===

impl Capabilities {
    /// Everything (used to judge the rest of a Canary whose provider has no backend, so it
    /// gets one error, not a cascade).
    pub const ALL: Capabilities = Capabilities {
        weights: true,
        header_match: true,
        mirror: true,
        mirror_in_canary: true,
        mirror_weight: true,
        session_affinity: true,
        primary_cookie: true,
        service_fields: &[
            "match",
            "retries",
            "rewrite",
            "mirror",
            "headers",
            "gateways",
            "gatewayRefs",
            "corsPolicy",
            "trafficPolicy",
            "hosts",
            "delegation",
            "timeout",
            "backendTimeout",
            "meshName",
            "backends",
            "headless",
            "portDiscovery",
        ],
    };
}

/// A provider name that is not one we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?}; use one of: {list}", list = Provider::NAMES.join(", "))]
pub struct UnknownProvider(pub String);

// === impl Provider ===

impl Provider {
    /// Every provider name accepted in `spec.provider` (the CRD enum).
    pub const NAMES: [&'static str; 21] = [
        "builtin",
        "apisix",
        "consul",
        "appmesh",
        "appmesh:v1beta2",
        "contour",
        "gatewayapi:v1",
        "gatewayapi:v1beta1",
        "gloo",
        "istio",
        "knative",
        "kubernetes",
        "kuma",
        "linkerd",
        "nginx",
        "osm",
        "skipper",
        "smi:v1alpha1",
        "smi:v1alpha2",
        "smi:v1alpha3",
        "traefik",
    ];

    /// The name as written in `spec.provider`.
    pub fn name(self) -> &'static str {
        use Provider::*;
        match self {
            Builtin => "builtin",
            Apisix => "apisix",
            Consul => "consul",
            AppMesh => "appmesh",
            AppMeshV1beta2 => "appmesh:v1beta2",
            Contour => "contour",
            GatewayApiV1 => "gatewayapi:v1",
            GatewayApiV1beta1 => "gatewayapi:v1beta1",
            Gloo => "gloo",
            Istio => "istio",
            Knative => "knative",
            Kubernetes => "kubernetes",
            Kuma => "kuma",
            Linkerd => "linkerd",
            Nginx => "nginx",
            Osm => "osm",
            Skipper => "skipper",
            SmiV1alpha1 => "smi:v1alpha1",
            SmiV1alpha2 => "smi:v1alpha2",
            SmiV1alpha3 => "smi:v1alpha3",
            Traefik => "traefik",
        }
    }
}

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Parses a provider name. SMI names may carry a mesh suffix (`smi:v1alpha3:istio`), as
    /// Flagger's `-mesh-provider` flag allows.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use Provider::*;
        let base = match s.strip_prefix("smi:") {
            Some(rest) => match rest.split_once(':') {
                Some((version, _mesh)) => &s[..4 + version.len()],
                None => s,
            },
            None => s,
        };
        Ok(match base {
            "builtin" => Builtin,
            "apisix" => Apisix,
            "consul" => Consul,
            "appmesh" => AppMesh,
            "appmesh:v1beta2" => AppMeshV1beta2,
            "contour" => Contour,
            "gatewayapi:v1" => GatewayApiV1,
            "gatewayapi:v1beta1" => GatewayApiV1beta1,
            "gloo" => Gloo,
            "istio" => Istio,
            "knative" => Knative,
            "kubernetes" => Kubernetes,
            "kuma" => Kuma,
            "linkerd" => Linkerd,
            "nginx" => Nginx,
            "osm" => Osm,
            "skipper" => Skipper,
            "smi:v1alpha1" => SmiV1alpha1,
            "smi:v1alpha2" => SmiV1alpha2,
            "smi:v1alpha3" => SmiV1alpha3,
            "traefik" => Traefik,
            _ => return Err(UnknownProvider(s.to_string())),
        })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Provider {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Provider {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Provider".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Traffic management provider; empty selects the operator's --mesh-provider (default builtin).",
            "enum": Provider::NAMES,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for name in Provider::NAMES {
            let p: Provider = name.parse().unwrap();
            assert_eq!(p.name(), name);
        }
    }

    #[test]
    fn smi_mesh_suffix_is_accepted() {
        assert_eq!("smi:v1alpha3:istio".parse(), Ok(Provider::SmiV1alpha3));
    }

    #[test]
    fn unknown_names_are_errors_not_istio() {
        for bad in ["gatewayapi", "Istio", "", "mesh"] {
            let e = bad.parse::<Provider>().unwrap_err();
            assert!(e.to_string().contains("builtin"), "{e}");
        }
    }
}
