//! The Kubernetes configuration source: Gateway API `HTTPRoute`s whose parent is a Service
//! (GAMMA, mesh mode) or a Gateway of the router's class, and the `EndpointSlice`s of their
//! backend Services, translated into one [`siskin_route::Config`].

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::StreamExt;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{reflector, watcher},
};
use serde::Deserialize;
use siskin_route::{
    Backend, BackendName, BackendRef, Config, Filter, Header, HeaderModifier, Match, Mirror,
    PathMatch, PathMatchType, PathModifier, Protocol, Redirect, Route, Rule, SessionCookie,
    Timeouts, UrlRewrite, ValueMatch, ValueMatchType,
};
use tokio::sync::Notify;

/// Where to look.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// Gateway class served (parents of kind Gateway must use it).
    pub gateway_class: String,
    /// Only this namespace (all when None).
    pub namespace: Option<String>,
}

/// HTTPRoute `spec` (the parts the router uses; unknown fields are ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteSpec {
    /// Parents.
    pub parent_refs: Vec<ParentRef>,
    /// Host names.
    pub hostnames: Vec<String>,
    /// Rules.
    pub rules: Vec<HttpRouteRule>,
}

/// A parent reference.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParentRef {
    /// Group (`""` for core, default `gateway.networking.k8s.io`).
    pub group: Option<String>,
    /// Kind (default `Gateway`).
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (default: the route's).
    pub namespace: Option<String>,
    /// Port.
    pub port: Option<u16>,
}

/// An HTTPRoute rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteRule {
    /// Name.
    pub name: Option<String>,
    /// Matches.
    pub matches: Vec<KMatch>,
    /// Filters.
    pub filters: Vec<serde_json::Value>,
    /// Backends.
    pub backend_refs: Vec<KBackendRef>,
    /// Timeouts.
    pub timeouts: Option<KTimeouts>,
}

/// A match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KMatch {
    /// Path.
    pub path: Option<KValue>,
    /// Headers.
    pub headers: Vec<KValue>,
    /// Query parameters.
    pub query_params: Vec<KValue>,
    /// Method.
    pub method: Option<String>,
}

/// A typed value match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KValue {
    /// Type.
    pub r#type: Option<String>,
    /// Name (headers, query parameters).
    pub name: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// A backend reference.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KBackendRef {
    /// Service name.
    pub name: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Service port.
    pub port: Option<u16>,
    /// Weight (default 1).
    pub weight: Option<u32>,
    /// Filters on this backend only.
    pub filters: Vec<serde_json::Value>,
}

/// Timeouts.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KTimeouts {
    /// Request.
    pub request: Option<String>,
    /// Backend request.
    pub backend_request: Option<String>,
}

fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
        "gateways",
    )
}

/// Watches the cluster and calls `apply` with a new configuration whenever routes, Gateways,
/// Services or EndpointSlices change. Runs until the process ends.
pub async fn run(client: Client, opts: KubeOptions, apply: impl Fn(Config) + Send + 'static) {
    let changed = Arc::new(Notify::new());
    let (hr, gw) = (httproute_resource(), gateway_resource());
    let (routes_api, gateways_api, services_api, slices_api) = match opts.namespace.as_deref() {
        Some(ns) => (
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &hr),
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &gw),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<EndpointSlice>::namespaced(client, ns),
        ),
        None => (
            Api::<DynamicObject>::all_with(client.clone(), &hr),
            Api::<DynamicObject>::all_with(client.clone(), &gw),
            Api::<Service>::all(client.clone()),
            Api::<EndpointSlice>::all(client),
        ),
    };
    let routes = store(routes_api, hr, changed.clone());
    let gateways = store(gateways_api, gw, changed.clone());
    let services = store(services_api, (), changed.clone());
    let slices = store(slices_api, (), changed.clone());
    loop {
        changed.notified().await;
        // Coalesce bursts (a rollout touches several objects at once).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let config = translate(
            &routes.state(),
            &gateways.state(),
            &services.state(),
            &slices.state(),
            &opts,
        );
        apply(config);
    }
}

/// A reflector store kept up to date in the background, notifying on every change.
fn store<K>(api: Api<K>, dt: K::DynamicType, changed: Arc<Notify>) -> reflector::Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::new(dt);
    let reader = writer.as_reader();
    let stream = reflector(writer, watcher(api, watcher::Config::default()));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => changed.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    reader
}

/// Builds the router configuration from the cluster's objects.
pub fn translate(
    routes: &[Arc<DynamicObject>],
    gateways: &[Arc<DynamicObject>],
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    opts: &KubeOptions,
) -> Config {
    let ours: std::collections::BTreeSet<(String, String)> = gateways
        .iter()
        .filter(|g| {
            g.data["spec"]["gatewayClassName"].as_str() == Some(opts.gateway_class.as_str())
        })
        .map(|g| (g.namespace().unwrap_or_default(), g.name_any()))
        .collect();
    let mut backends: BTreeMap<String, Backend> = BTreeMap::new();
    let mut out = Vec::new();
    let mut sorted: Vec<&Arc<DynamicObject>> = routes.iter().collect();
    // Gateway API breaks ties by creation time, then name.
    sorted.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.namespace(),
            r.name_any(),
        )
    });
    for r in sorted {
        let ns = r.namespace().unwrap_or_default();
        let Ok(spec) = serde_json::from_value::<HttpRouteSpec>(r.data["spec"].clone()) else {
            continue;
        };
        let attached = spec.parent_refs.iter().any(|p| {
            let pns = p.namespace.clone().unwrap_or_else(|| ns.clone());
            let kind = p.kind.as_deref().unwrap_or("Gateway");
            match kind {
                "Service" => p.group.as_deref().unwrap_or("").is_empty(),
                "Gateway" => ours.contains(&(pns, p.name.clone())),
                _ => false,
            }
        });
        if !attached {
            continue;
        }
        // Traffic for a Service parent (GAMMA) arrives addressed to that Service: its DNS
        // names select the route (the operator points the Service's endpoints at routers).
        let mut hostnames = spec.hostnames.clone();
        for p in &spec.parent_refs {
            if p.kind.as_deref() == Some("Service") && p.group.as_deref().unwrap_or("").is_empty() {
                let pns = p.namespace.clone().unwrap_or_else(|| ns.clone());
                let svc = &p.name;
                for h in [
                    svc.clone(),
                    format!("{svc}.{pns}"),
                    format!("{svc}.{pns}.svc"),
                    format!("{svc}.{pns}.svc.cluster.local"),
                ] {
                    if !hostnames.contains(&h) {
                        hostnames.push(h);
                    }
                }
            }
        }
        let route = Route {
            name: format!("{ns}/{}", r.name_any()),
            hostnames,
            rules: spec
                .rules
                .iter()
                .map(|rule| translate_rule(rule, &ns, services, slices, &mut backends))
                .collect(),
        };
        out.push(route);
    }
    Config {
        routes: out,
        backends: backends.into_values().collect(),
    }
}

fn translate_rule(
    rule: &HttpRouteRule,
    ns: &str,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    backends: &mut BTreeMap<String, Backend>,
) -> Rule {
    let mut backend = |name: &str, bns: Option<&str>, port: Option<u16>| -> String {
        let bns = bns.unwrap_or(ns);
        let key = format!("{bns}/{name}:{}", port.unwrap_or(0));
        backends.entry(key.clone()).or_insert_with(|| Backend {
            name: key.clone(),
            endpoints: endpoints(bns, name, port, services, slices),
            protocol: protocol(bns, name, port, services),
            role: Some(
                if name.ends_with("-canary") {
                    "canary"
                } else {
                    "primary"
                }
                .to_string(),
            ),
        });
        key
    };
    let backend_refs = rule
        .backend_refs
        .iter()
        .map(|b| BackendRef {
            name: backend(&b.name, b.namespace.as_deref(), b.port),
            weight: b.weight.unwrap_or(1),
            session_cookie: session_cookie(&b.filters),
        })
        .collect();
    let mut filters = Vec::new();
    for f in &rule.filters {
        if let Some(f) = translate_filter(f, &mut backend) {
            filters.push(f);
        }
    }
    let matches = rule.matches.iter().map(translate_match).collect();
    let timeouts = rule.timeouts.as_ref().map(|t| Timeouts {
        request: t.request.as_deref().and_then(|d| d.parse().ok()),
        backend_request: t.backend_request.as_deref().and_then(|d| d.parse().ok()),
    });
    Rule {
        name: rule.name.clone(),
        matches,
        filters,
        backend_refs,
        timeouts,
        retry: None,
        expire_cookies: Vec::new(),
    }
}

/// A `ResponseHeaderModifier` on a backendRef that adds `Set-Cookie` is session persistence
/// (how Flagger and Siskin express sticky canaries in a standard HTTPRoute): responses from
/// this backend set the cookie, and requests carrying it come back while it has weight.
fn session_cookie(filters: &[serde_json::Value]) -> Option<SessionCookie> {
    filters
        .iter()
        .filter(|f| f["type"] == "ResponseHeaderModifier")
        .flat_map(|f| {
            let m = &f["responseHeaderModifier"];
            let add = m["add"].as_array().cloned().unwrap_or_default();
            let set = m["set"].as_array().cloned().unwrap_or_default();
            add.into_iter().chain(set)
        })
        .filter(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("set-cookie"))
        })
        .find_map(|h| SessionCookie::parse(h["value"].as_str()?))
}

fn translate_match(m: &KMatch) -> Match {
    let value = |v: &KValue| ValueMatch {
        kind: if v.r#type.as_deref() == Some("RegularExpression") {
            ValueMatchType::RegularExpression
        } else {
            ValueMatchType::Exact
        },
        name: v.name.clone().unwrap_or_default(),
        value: v.value.clone().unwrap_or_default(),
    };
    Match {
        path: m.path.as_ref().map(|p| PathMatch {
            kind: match p.r#type.as_deref() {
                Some("Exact") => PathMatchType::Exact,
                Some("RegularExpression") => PathMatchType::RegularExpression,
                _ => PathMatchType::PathPrefix,
            },
            value: p.value.clone().unwrap_or_else(|| "/".to_string()),
        }),
        headers: m.headers.iter().map(value).collect(),
        query_params: m.query_params.iter().map(value).collect(),
        method: m.method.clone(),
    }
}

fn headers(v: &serde_json::Value) -> HeaderModifier {
    let list = |k: &str| -> Vec<Header> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some(Header {
                    name: h["name"].as_str()?.to_string(),
                    value: h["value"].as_str()?.to_string(),
                })
            })
            .collect()
    };
    HeaderModifier {
        set: list("set"),
        add: list("add"),
        remove: v["remove"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
    }
}

fn path_modifier(v: &serde_json::Value) -> Option<PathModifier> {
    match v["type"].as_str()? {
        "ReplaceFullPath" => Some(PathModifier::ReplaceFullPath {
            path: v["replaceFullPath"].as_str()?.to_string(),
        }),
        "ReplacePrefixMatch" => Some(PathModifier::ReplacePrefixMatch {
            prefix: v["replacePrefixMatch"].as_str()?.to_string(),
        }),
        _ => None,
    }
}

fn translate_filter(
    f: &serde_json::Value,
    backend: &mut impl FnMut(&str, Option<&str>, Option<u16>) -> String,
) -> Option<Filter> {
    Some(match f["type"].as_str()? {
        "RequestHeaderModifier" => Filter::RequestHeaderModifier {
            modifier: headers(&f["requestHeaderModifier"]),
        },
        "ResponseHeaderModifier" => Filter::ResponseHeaderModifier {
            modifier: headers(&f["responseHeaderModifier"]),
        },
        "RequestMirror" => {
            let m = &f["requestMirror"];
            let b = &m["backendRef"];
            let port = b["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            let name = backend(b["name"].as_str()?, b["namespace"].as_str(), port);
            let percent = m["percent"].as_u64().or_else(|| {
                let num = m["fraction"]["numerator"].as_u64()?;
                let den = m["fraction"]["denominator"].as_u64().unwrap_or(100).max(1);
                Some(num * 100 / den)
            });
            Filter::RequestMirror {
                mirror: Mirror {
                    backend_ref: BackendName { name },
                    percent: percent.map(|p| u8::try_from(p.min(100)).unwrap_or(100)),
                },
            }
        }
        "URLRewrite" => {
            let u = &f["urlRewrite"];
            Filter::UrlRewrite {
                rewrite: UrlRewrite {
                    hostname: u["hostname"].as_str().map(str::to_string),
                    path: path_modifier(&u["path"]),
                },
            }
        }
        "RequestRedirect" => {
            let r = &f["requestRedirect"];
            Filter::RequestRedirect {
                redirect: Redirect {
                    scheme: r["scheme"].as_str().map(str::to_string),
                    hostname: r["hostname"].as_str().map(str::to_string),
                    path: path_modifier(&r["path"]),
                    port: r["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
                    status_code: r["statusCode"].as_u64().and_then(|p| u16::try_from(p).ok()),
                },
            }
        }
        _ => return None,
    })
}

fn service<'a>(ns: &str, name: &str, services: &'a [Arc<Service>]) -> Option<&'a Service> {
    services
        .iter()
        .map(AsRef::as_ref)
        .find(|s| s.namespace().as_deref() == Some(ns) && s.name_any() == name)
}

fn protocol(ns: &str, name: &str, port: Option<u16>, services: &[Arc<Service>]) -> Protocol {
    let sp = service(ns, name, services)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| port.is_none_or(|want| i32::from(want) == p.port))
                .cloned()
        });
    let grpc = sp.as_ref().is_some_and(|p| {
        p.app_protocol
            .as_deref()
            .is_some_and(|a| a.contains("h2c") || a.contains("grpc"))
            || p.name
                .as_deref()
                .is_some_and(|n| n.starts_with("grpc") || n.starts_with("h2c"))
    });
    if grpc { Protocol::H2c } else { Protocol::Http1 }
}

/// Ready endpoints of a Service port: the slice port with the Service port's name.
fn endpoints(
    ns: &str,
    name: &str,
    port: Option<u16>,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> Vec<String> {
    let port_name = service(ns, name, services)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| port.is_none_or(|want| i32::from(want) == p.port))
        })
        .and_then(|p| p.name.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for s in slices.iter().filter(|s| {
        s.namespace().as_deref() == Some(ns)
            && s.labels()
                .get("kubernetes.io/service-name")
                .map(String::as_str)
                == Some(name)
    }) {
        let Some(p) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in s.endpoints.iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                let host = if a.contains(':') {
                    format!("[{a}]")
                } else {
                    a.clone()
                };
                out.push(format!("{host}:{p}"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
