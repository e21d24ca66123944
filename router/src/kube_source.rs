//! The Kubernetes configuration source: Gateway API `HTTPRoute`s whose parent is a Service
//! (GAMMA, mesh mode) or a Gateway of the router's class, and the `EndpointSlice`s of their
//! backend Services, translated into one [`siskin_route::Config`].

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::StreamExt;
use k8s_openapi::api::{
    core::v1::{ConfigMap, Secret, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{reflector, watcher},
};
use siskin_foreign::gateway::httproutes::{
    HttpRoute, HttpRouteRules, HttpRouteRulesBackendRefsFilters, HttpRouteRulesFilters,
    HttpRouteRulesFiltersRequestRedirectPathType, HttpRouteRulesFiltersType,
    HttpRouteRulesFiltersUrlRewritePathType, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType,
};
use siskin_route::{
    Backend, BackendName, BackendRef, BackendTls, Config, Filter, Header, HeaderModifier, Match,
    Mirror, PathMatch, PathMatchType, PathModifier, Protocol, Redirect, Role, Route, Rule,
    SessionCookie, Timeouts, UrlRewrite, ValueMatch, ValueMatchType,
};
use tokio::sync::Notify;

use crate::tls::PemPair;

/// Where to look.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// Gateway class served (parents of kind Gateway must use it).
    pub gateway_class: String,
    /// Only this namespace (all when None).
    pub namespace: Option<String>,
}

fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
        "gateways",
    )
}

fn backend_tls_policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "BackendTLSPolicy"),
        "backendtlspolicies",
    )
}

fn httproute_resource() -> ApiResource {
    ApiResource::erase::<HttpRoute>(&())
}

fn grpcroute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GRPCRoute"),
        "grpcroutes",
    )
}

/// A GRPCRoute as the HTTPRoute it means to this router: a gRPC method is the path
/// `/<service>/<method>` of an HTTP/2 POST, so each method match becomes a path match
/// (exact method: exact path; a whole service: the path prefix `/<service>`; regular
/// expressions: an anchored path expression). Headers, filters (request and response header
/// modifiers, mirrors) and backendRefs have the same shape in both.
pub fn grpc_as_http(mut v: serde_json::Value) -> serde_json::Value {
    v["kind"] = "HTTPRoute".into();
    for rule in v["spec"]["rules"].as_array_mut().into_iter().flatten() {
        for m in rule["matches"].as_array_mut().into_iter().flatten() {
            let Some(method) = m.as_object_mut().and_then(|o| o.remove("method")) else {
                continue;
            };
            let service = method["service"].as_str().filter(|s| !s.is_empty());
            let name = method["method"].as_str().filter(|s| !s.is_empty());
            let path = if method["type"] == "RegularExpression" {
                serde_json::json!({"type": "RegularExpression", "value": format!(
                    "^/{}/{}$", service.unwrap_or("[^/]+"), name.unwrap_or("[^/]+"))})
            } else {
                match (service, name) {
                    (Some(s), Some(n)) => {
                        serde_json::json!({"type": "Exact", "value": format!("/{s}/{n}")})
                    }
                    (Some(s), None) => {
                        serde_json::json!({"type": "PathPrefix", "value": format!("/{s}")})
                    }
                    (None, Some(n)) => serde_json::json!({"type": "RegularExpression",
                        "value": format!("^/[^/]+/{}$", regex_escape(n))}),
                    (None, None) => continue,
                }
            };
            m["path"] = path;
        }
    }
    v
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The routes as the one HTTPRoute type the operator writes. A route that does not decode (an
/// experimental-channel filter or field value the standard type does not know) is skipped with
/// a warning, and the others are still served: one odd route must not take every route down.
fn typed(routes: &[Arc<DynamicObject>]) -> Vec<Arc<HttpRoute>> {
    routes
        .iter()
        .filter_map(|r| {
            let mut value = serde_json::to_value(r.as_ref()).ok()?;
            if value["kind"] == "GRPCRoute" {
                value = grpc_as_http(value);
            }
            match serde_json::from_value::<HttpRoute>(value) {
                Ok(route) => Some(Arc::new(route)),
                Err(e) => {
                    tracing::warn!(
                        route = %format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()),
                        error = %e,
                        "route skipped: it does not decode as a standard-channel HTTPRoute or GRPCRoute"
                    );
                    None
                }
            }
        })
        .collect()
}

/// Called with the certificates of the Gateways' HTTPS listeners whenever they change.
pub type CertificateSink = Box<dyn Fn(Vec<PemPair>) + Send + 'static>;

/// Watches the cluster and calls `apply` with a new configuration whenever routes, Gateways,
/// Services or EndpointSlices change. With `certificates` (a TLS listener), also watches Secrets
/// of type `kubernetes.io/tls` and hands it the certificates the Gateways' HTTPS listeners
/// name whenever they change. Runs until the process ends.
pub async fn run(
    client: Client,
    opts: KubeOptions,
    apply: impl Fn(Config) + Send + 'static,
    certificates: Option<CertificateSink>,
) {
    let changed = Arc::new(Notify::new());
    let (hr, gr, gw) = (
        httproute_resource(),
        grpcroute_resource(),
        gateway_resource(),
    );
    let bt = backend_tls_policy_resource();
    let (routes_api, grpc_api, gateways_api, services_api, slices_api, secrets_api) =
        match opts.namespace.as_deref() {
            Some(ns) => (
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &hr),
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &gr),
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &gw),
                Api::<Service>::namespaced(client.clone(), ns),
                Api::<EndpointSlice>::namespaced(client.clone(), ns),
                Api::<Secret>::namespaced(client.clone(), ns),
            ),
            None => (
                Api::<DynamicObject>::all_with(client.clone(), &hr),
                Api::<DynamicObject>::all_with(client.clone(), &gr),
                Api::<DynamicObject>::all_with(client.clone(), &gw),
                Api::<Service>::all(client.clone()),
                Api::<EndpointSlice>::all(client.clone()),
                Api::<Secret>::all(client.clone()),
            ),
        };
    let (policies_api, config_maps_api) = match opts.namespace.as_deref() {
        Some(ns) => (
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &bt),
            Api::<ConfigMap>::namespaced(client, ns),
        ),
        None => (
            Api::<DynamicObject>::all_with(client.clone(), &bt),
            Api::<ConfigMap>::all(client),
        ),
    };
    let all = watcher::Config::default();
    let routes = store(routes_api, hr, all.clone(), changed.clone());
    let grpc_routes = store(grpc_api, gr, all.clone(), changed.clone());
    let gateways = store(gateways_api, gw, all.clone(), changed.clone());
    let services = store(services_api, (), all.clone(), changed.clone());
    let slices = store(slices_api, (), all.clone(), changed.clone());
    let policies = store(policies_api, bt, all.clone(), changed.clone());
    let config_maps = store(config_maps_api, (), all, changed.clone());
    // Only TLS Secrets, and only when there is a TLS listener to serve them on.
    let secrets = certificates.as_ref().map(|_| {
        let tls_only = watcher::Config::default().fields("type=kubernetes.io/tls");
        store(secrets_api, (), tls_only, changed.clone())
    });
    // The first configuration waits for the objects every route needs, so a router starting
    // (or restarting) never serves a partial view: routes without their endpoints. Optional
    // kinds (GRPCRoute, BackendTLSPolicy, ConfigMaps, Secrets) may not be installed and are
    // not waited for.
    for (kind, ready) in [
        ("HTTPRoutes", routes.wait_until_ready().await),
        ("Gateways", gateways.wait_until_ready().await),
        ("Services", services.wait_until_ready().await),
        ("EndpointSlices", slices.wait_until_ready().await),
    ] {
        if ready.is_err() {
            tracing::error!(kind, "watch stopped before the first read");
            return;
        }
    }
    changed.notify_one();
    let mut served: Option<Vec<PemPair>> = None;
    loop {
        changed.notified().await;
        // Coalesce bursts (a rollout touches several objects at once).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut all = routes.state();
        all.extend(grpc_routes.state());
        let gateways = gateways.state();
        let config = translate(
            &typed(&all),
            &gateways,
            &services.state(),
            &slices.state(),
            &BackendTlsInputs {
                policies: &policies.state(),
                config_maps: &config_maps.state(),
            },
            &opts,
        );
        apply(config);
        if let (Some(sink), Some(secrets)) = (&certificates, &secrets) {
            let (pairs, problems) = listener_certificates(&gateways, &secrets.state(), &opts);
            if served.as_ref() != Some(&pairs) {
                for p in &problems {
                    tracing::warn!(problem = %p, "Gateway listener certificate not served");
                }
                sink(pairs.clone());
                served = Some(pairs);
            }
        }
    }
}

/// The certificates named by the `tls.certificateRefs` of the HTTPS listeners (mode
/// `Terminate`) of the Gateways of our class, read from their Secrets' `tls.crt` and `tls.key`;
/// and what could not be served, each naming the Gateway, the listener and the fix. References
/// to another namespace need a ReferenceGrant, which this router does not read yet: they are
/// reported and skipped.
pub fn listener_certificates(
    gateways: &[Arc<DynamicObject>],
    secrets: &[Arc<Secret>],
    opts: &KubeOptions,
) -> (Vec<PemPair>, Vec<String>) {
    let mut pairs: Vec<PemPair> = Vec::new();
    let mut problems = Vec::new();
    let mut sorted: Vec<&Arc<DynamicObject>> = gateways
        .iter()
        .filter(|g| {
            g.data["spec"]["gatewayClassName"].as_str() == Some(opts.gateway_class.as_str())
        })
        .collect();
    sorted.sort_by_key(|g| (g.namespace(), g.name_any()));
    for g in sorted {
        let gns = g.namespace().unwrap_or_default();
        let listeners = g.data["spec"]["listeners"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for l in &listeners {
            if l["protocol"].as_str() != Some("HTTPS") {
                continue;
            }
            let at = format!(
                "Gateway {gns}/{} listener {}",
                g.name_any(),
                l["name"].as_str().unwrap_or("?")
            );
            if l["tls"]["mode"].as_str().is_some_and(|m| m != "Terminate") {
                problems.push(format!(
                    "{at}: tls.mode {} is not supported; use Terminate",
                    l["tls"]["mode"]
                ));
                continue;
            }
            for r in l["tls"]["certificateRefs"].as_array().into_iter().flatten() {
                let group = r["group"].as_str().unwrap_or("");
                let kind = r["kind"].as_str().unwrap_or("Secret");
                let Some(name) = r["name"].as_str() else {
                    continue;
                };
                if !group.is_empty() || kind != "Secret" {
                    problems.push(format!(
                        "{at}: certificateRef {group}/{kind} {name}: only core Secrets are supported"
                    ));
                    continue;
                }
                let ns = r["namespace"].as_str().unwrap_or(&gns);
                if ns != gns {
                    problems.push(format!(
                        "{at}: certificateRef to Secret {ns}/{name} in another namespace needs a ReferenceGrant, which this router does not read yet; put the Secret in {gns}"
                    ));
                    continue;
                }
                let source = format!("Secret {ns}/{name}");
                if pairs.iter().any(|p| p.source == source) {
                    continue;
                }
                let found = secrets
                    .iter()
                    .find(|s| s.namespace().as_deref() == Some(ns) && s.name_any() == name);
                let data = found.and_then(|s| s.data.as_ref());
                let cert = data.and_then(|d| d.get("tls.crt"));
                let key = data.and_then(|d| d.get("tls.key"));
                match (found, cert, key) {
                    (None, _, _) => problems.push(format!(
                        "{at}: {source} not found (it must exist and have type kubernetes.io/tls)"
                    )),
                    (Some(_), Some(cert), Some(key)) => pairs.push(PemPair {
                        source,
                        cert: cert.0.clone(),
                        key: key.0.clone(),
                    }),
                    (Some(_), _, _) => {
                        problems.push(format!("{at}: {source} has no tls.crt or no tls.key"))
                    }
                }
            }
        }
    }
    (pairs, problems)
}

/// A reflector store kept up to date in the background, notifying on every change.
fn store<K>(
    api: Api<K>,
    dt: K::DynamicType,
    config: watcher::Config,
    changed: Arc<Notify>,
) -> reflector::Store<K>
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
    let stream = reflector(writer, watcher(api, config));
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

/// BackendTLSPolicies and the ConfigMaps that hold their CA certificates.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackendTlsInputs<'a> {
    /// `gateway.networking.k8s.io/v1` BackendTLSPolicies.
    pub policies: &'a [Arc<DynamicObject>],
    /// ConfigMaps (`ca.crt`).
    pub config_maps: &'a [Arc<ConfigMap>],
}

/// What a BackendTLSPolicy asks of one Service port.
enum PolicyTls {
    /// No policy targets it: cleartext.
    None,
    /// TLS with this setting.
    Tls(BackendTls),
    /// A policy targets it but cannot be followed (why): the backend gets no endpoints, so
    /// its requests fail (503) rather than go out in cleartext.
    Unusable(String),
}

impl BackendTlsInputs<'_> {
    /// The policy for port `port` (name `port_name`) of Service `ns/name`: one naming that
    /// port (`sectionName`) wins over one naming the whole Service; ties go to the oldest.
    fn for_service(&self, ns: &str, name: &str, port_name: Option<&str>) -> PolicyTls {
        let mut best: Option<(bool, &Arc<DynamicObject>)> = None;
        for p in self.policies {
            if p.namespace().as_deref() != Some(ns) {
                continue;
            }
            for t in p.data["spec"]["targetRefs"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let service = t["group"].as_str().unwrap_or("").is_empty()
                    && t["kind"].as_str() == Some("Service")
                    && t["name"].as_str() == Some(name);
                let section = t["sectionName"].as_str();
                if !service || section.is_some_and(|s| Some(s) != port_name) {
                    continue;
                }
                let specific = section.is_some();
                let older = |other: &Arc<DynamicObject>| {
                    (
                        p.metadata.creation_timestamp.clone().map(|t| t.0),
                        p.name_any(),
                    ) < (
                        other.metadata.creation_timestamp.clone().map(|t| t.0),
                        other.name_any(),
                    )
                };
                if best.is_none_or(|(s, o)| (specific && !s) || (specific == s && older(o))) {
                    best = Some((specific, p));
                }
            }
        }
        let Some((_, p)) = best else {
            return PolicyTls::None;
        };
        let at = format!("BackendTLSPolicy {ns}/{}", p.name_any());
        let v = &p.data["spec"]["validation"];
        let Some(hostname) = v["hostname"].as_str().filter(|h| !h.is_empty()) else {
            return PolicyTls::Unusable(format!("{at}: validation.hostname is required"));
        };
        if v["subjectAltNames"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            return PolicyTls::Unusable(format!(
                "{at}: validation.subjectAltNames is not supported yet; verify by hostname"
            ));
        }
        let mut tls = BackendTls {
            hostname: hostname.to_string(),
            ..BackendTls::default()
        };
        if let Some(w) = v["wellKnownCACertificates"].as_str() {
            tls.well_known_ca_certificates = Some(w.to_string());
            return PolicyTls::Tls(tls);
        }
        let mut pem = String::new();
        for r in v["caCertificateRefs"].as_array().into_iter().flatten() {
            let cm = r["name"].as_str().unwrap_or_default();
            if !r["group"].as_str().unwrap_or("").is_empty()
                || r["kind"].as_str() != Some("ConfigMap")
            {
                return PolicyTls::Unusable(format!(
                    "{at}: caCertificateRefs {cm}: only core ConfigMaps are supported"
                ));
            }
            let found = self
                .config_maps
                .iter()
                .find(|c| c.namespace().as_deref() == Some(ns) && c.name_any() == cm)
                .and_then(|c| c.data.as_ref()?.get("ca.crt"));
            let Some(ca) = found else {
                return PolicyTls::Unusable(format!(
                    "{at}: ConfigMap {ns}/{cm} with a ca.crt key not found"
                ));
            };
            use rustls::pki_types::pem::PemObject;
            let parsed = rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes())
                .collect::<Result<Vec<_>, _>>();
            if !parsed.is_ok_and(|c| !c.is_empty()) {
                return PolicyTls::Unusable(format!(
                    "{at}: ConfigMap {ns}/{cm} ca.crt holds no PEM certificate"
                ));
            }
            pem.push_str(ca);
            pem.push('\n');
        }
        if pem.is_empty() {
            return PolicyTls::Unusable(format!(
                "{at}: set validation.caCertificateRefs or wellKnownCACertificates: System"
            ));
        }
        tls.ca_certificates = Some(pem);
        PolicyTls::Tls(tls)
    }
}

/// Builds the router configuration from the cluster's objects.
pub fn translate(
    routes: &[Arc<HttpRoute>],
    gateways: &[Arc<DynamicObject>],
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    tls: &BackendTlsInputs<'_>,
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
    let mut sorted: Vec<&Arc<HttpRoute>> = routes.iter().collect();
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
        let spec = &r.spec;
        let parents = spec.parent_refs.as_deref().unwrap_or_default();
        let attached = parents.iter().any(|p| {
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
        let mut hostnames = spec.hostnames.clone().unwrap_or_default();
        for p in parents {
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
                .flatten()
                .map(|rule| translate_rule(rule, &ns, services, slices, tls, &mut backends))
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
    rule: &HttpRouteRules,
    ns: &str,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    tls: &BackendTlsInputs<'_>,
    backends: &mut BTreeMap<String, Backend>,
) -> Rule {
    let mut backend = |name: &str, bns: Option<&str>, port: Option<u16>| -> String {
        let bns = bns.unwrap_or(ns);
        let key = format!("{bns}/{name}:{}", port.unwrap_or(0));
        backends.entry(key.clone()).or_insert_with(|| {
            let port_name = service(bns, name, services).and_then(|s| {
                s.spec
                    .as_ref()?
                    .ports
                    .as_ref()?
                    .iter()
                    .find(|p| port.is_none_or(|want| i32::from(want) == p.port))?
                    .name
                    .clone()
            });
            let mut endpoints = endpoints(bns, name, port, services, slices);
            let tls = match tls.for_service(bns, name, port_name.as_deref()) {
                PolicyTls::None => None,
                PolicyTls::Tls(t) => Some(t),
                PolicyTls::Unusable(why) => {
                    tracing::warn!(backend = %key, problem = %why, "backend not served: its BackendTLSPolicy cannot be followed");
                    endpoints.clear();
                    None
                }
            };
            Backend {
                name: key.as_str().into(),
                endpoints,
                protocol: protocol(bns, name, port, services),
                role: Some(Role::of_service(name)),
                tls: tls.map(Box::new),
            }
        });
        key
    };
    let backend_refs = rule
        .backend_refs
        .iter()
        .flatten()
        .map(|b| BackendRef {
            name: backend(&b.name, b.namespace.as_deref(), port(b.port)),
            weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
            session_cookie: session_cookie(b.filters.as_deref().unwrap_or_default()),
        })
        .collect();
    let mut filters = Vec::new();
    for f in rule.filters.iter().flatten() {
        if let Some(f) = translate_filter(f, &mut backend) {
            filters.push(f);
        }
    }
    let matches = rule.matches.iter().flatten().map(translate_match).collect();
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
fn session_cookie(filters: &[HttpRouteRulesBackendRefsFilters]) -> Option<SessionCookie> {
    filters
        .iter()
        .filter_map(|f| f.response_header_modifier.as_ref())
        .flat_map(|m| {
            let add = m.add.iter().flatten().map(|h| (&h.name, &h.value));
            let set = m.set.iter().flatten().map(|h| (&h.name, &h.value));
            add.chain(set).collect::<Vec<_>>()
        })
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, value)| SessionCookie::parse(value))
}

fn port(p: Option<i32>) -> Option<u16> {
    p.and_then(|p| u16::try_from(p).ok())
}

fn translate_match(m: &HttpRouteRulesMatches) -> Match {
    let kind = |regex: bool| {
        if regex {
            ValueMatchType::RegularExpression
        } else {
            ValueMatchType::Exact
        }
    };
    Match {
        path: m.path.as_ref().map(|p| PathMatch {
            kind: match p.r#type {
                Some(HttpRouteRulesMatchesPathType::Exact) => PathMatchType::Exact,
                Some(HttpRouteRulesMatchesPathType::RegularExpression) => {
                    PathMatchType::RegularExpression
                }
                _ => PathMatchType::PathPrefix,
            },
            value: p.value.clone().unwrap_or_else(|| "/".to_string()),
        }),
        headers: m
            .headers
            .iter()
            .flatten()
            .map(|h| ValueMatch {
                kind: kind(h.r#type == Some(HttpRouteRulesMatchesHeadersType::RegularExpression)),
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect(),
        query_params: m
            .query_params
            .iter()
            .flatten()
            .map(|q| ValueMatch {
                kind: kind(
                    q.r#type == Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression),
                ),
                name: q.name.clone(),
                value: q.value.clone(),
            })
            .collect(),
        method: m.method.as_ref().and_then(|x| {
            serde_json::to_value(x)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        }),
    }
}

fn header_list<'a>(set: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Header> {
    set.map(|(name, value)| Header {
        name: name.clone(),
        value: value.clone(),
    })
    .collect()
}

fn translate_filter(
    f: &HttpRouteRulesFilters,
    backend: &mut impl FnMut(&str, Option<&str>, Option<u16>) -> String,
) -> Option<Filter> {
    Some(match f.r#type {
        HttpRouteRulesFiltersType::RequestHeaderModifier => {
            let m = f.request_header_modifier.as_ref()?;
            Filter::RequestHeaderModifier {
                modifier: HeaderModifier {
                    set: header_list(m.set.iter().flatten().map(|h| (&h.name, &h.value))),
                    add: header_list(m.add.iter().flatten().map(|h| (&h.name, &h.value))),
                    remove: m.remove.clone().unwrap_or_default(),
                },
            }
        }
        HttpRouteRulesFiltersType::ResponseHeaderModifier => {
            let m = f.response_header_modifier.as_ref()?;
            Filter::ResponseHeaderModifier {
                modifier: HeaderModifier {
                    set: header_list(m.set.iter().flatten().map(|h| (&h.name, &h.value))),
                    add: header_list(m.add.iter().flatten().map(|h| (&h.name, &h.value))),
                    remove: m.remove.clone().unwrap_or_default(),
                },
            }
        }
        HttpRouteRulesFiltersType::RequestMirror => {
            let m = f.request_mirror.as_ref()?;
            let b = &m.backend_ref;
            let name = backend(&b.name, b.namespace.as_deref(), port(b.port));
            let percent = m.percent.map(i64::from).or_else(|| {
                let fr = m.fraction.as_ref()?;
                let den = i64::from(fr.denominator.unwrap_or(100)).max(1);
                Some(i64::from(fr.numerator) * 100 / den)
            });
            Filter::RequestMirror {
                mirror: Mirror {
                    backend_ref: BackendName { name },
                    percent: percent.map(|p| u8::try_from(p.clamp(0, 100)).unwrap_or(100)),
                },
            }
        }
        HttpRouteRulesFiltersType::UrlRewrite => {
            let u = f.url_rewrite.as_ref()?;
            Filter::UrlRewrite {
                rewrite: UrlRewrite {
                    hostname: u.hostname.clone(),
                    path: u.path.as_ref().and_then(|p| match p.r#type {
                        HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath => {
                            Some(PathModifier::ReplaceFullPath {
                                path: p.replace_full_path.clone()?,
                            })
                        }
                        HttpRouteRulesFiltersUrlRewritePathType::ReplacePrefixMatch => {
                            Some(PathModifier::ReplacePrefixMatch {
                                prefix: p.replace_prefix_match.clone()?,
                            })
                        }
                    }),
                },
            }
        }
        HttpRouteRulesFiltersType::RequestRedirect => {
            let r = f.request_redirect.as_ref()?;
            Filter::RequestRedirect {
                redirect: Redirect {
                    scheme: r.scheme.as_ref().and_then(|x| {
                        serde_json::to_value(x)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                    }),
                    hostname: r.hostname.clone(),
                    path: r.path.as_ref().and_then(|p| match p.r#type {
                        HttpRouteRulesFiltersRequestRedirectPathType::ReplaceFullPath => {
                            Some(PathModifier::ReplaceFullPath {
                                path: p.replace_full_path.clone()?,
                            })
                        }
                        HttpRouteRulesFiltersRequestRedirectPathType::ReplacePrefixMatch => {
                            Some(PathModifier::ReplacePrefixMatch {
                                prefix: p.replace_prefix_match.clone()?,
                            })
                        }
                    }),
                    port: port(r.port),
                    status_code: r.status_code.and_then(|c| u16::try_from(c).ok()),
                },
            }
        }
        // Not implemented by the router: skipped (the route still serves).
        HttpRouteRulesFiltersType::ExtensionRef | HttpRouteRulesFiltersType::Cors => return None,
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

#[cfg(test)]
mod typed_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn route(name: &str, filter_type: &str) -> Arc<DynamicObject> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"rules": [{"filters": [{"type": filter_type}],
                    "backendRefs": [{"name": "svc", "port": 80}]}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_grpcroute_is_served_as_the_paths_of_its_methods() {
        let grpc: Arc<DynamicObject> = Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
                "metadata": {"name": "echo", "namespace": "ns"},
                "spec": {"rules": [{"name": "siskin-ab",
                    "matches": [
                        {"method": {"type": "Exact", "service": "pkg.Echo", "method": "Say"},
                         "headers": [{"name": "x-canary", "value": "insider"}]},
                        {"method": {"service": "pkg.Health"}},
                        {"method": {"type": "RegularExpression", "method": "Get.*"}}],
                    "backendRefs": [{"name": "svc", "port": 80, "weight": 3}]}]}
            }))
            .unwrap(),
        );
        let typed = typed(&[grpc]);
        assert_eq!(typed.len(), 1);
        let rule = &typed[0].spec.rules.as_ref().unwrap()[0];
        let paths: Vec<(String, String)> = rule
            .matches
            .iter()
            .flatten()
            .map(|m| {
                let p = m.path.as_ref().unwrap();
                (
                    format!("{:?}", p.r#type.as_ref().unwrap()),
                    p.value.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            paths,
            [
                ("Exact".to_string(), "/pkg.Echo/Say".to_string()),
                ("PathPrefix".to_string(), "/pkg.Health".to_string()),
                (
                    "RegularExpression".to_string(),
                    "^/[^/]+/Get.*$".to_string()
                ),
            ]
        );
        assert_eq!(
            rule.matches.as_ref().unwrap()[0].headers.as_ref().unwrap()[0].name,
            "x-canary"
        );
        assert_eq!(rule.backend_refs.as_ref().unwrap()[0].weight, Some(3));
    }

    #[test]
    fn a_route_that_does_not_decode_is_skipped_not_fatal() {
        let routes = [
            route("odd", "SomeExperimentalFilter"),
            route("ok", "ExtensionRef"),
        ];
        let typed = typed(&routes);
        assert_eq!(typed.len(), 1);
        assert_eq!(typed[0].name_any(), "ok");
    }

    #[test]
    fn listener_certificates_come_from_same_namespace_tls_secrets_and_the_rest_is_explained() {
        let gateway = Arc::new(
            serde_json::from_value::<DynamicObject>(serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "edge", "namespace": "ns"},
                "spec": {"gatewayClassName": "siskin", "listeners": [
                    {"name": "http", "port": 80, "protocol": "HTTP"},
                    {"name": "a", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [
                        {"name": "good"}, {"name": "missing"}, {"name": "other", "namespace": "elsewhere"},
                        {"name": "half"}]}},
                    {"name": "b", "port": 8443, "protocol": "HTTPS", "tls": {"mode": "Passthrough"}},
                    {"name": "c", "port": 9443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "good"}]}}]}
            }))
            .unwrap(),
        );
        let foreign = Arc::new(
            serde_json::from_value::<DynamicObject>(serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "theirs", "namespace": "ns"},
                "spec": {"gatewayClassName": "istio", "listeners": [
                    {"name": "a", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "good"}]}}]}
            }))
            .unwrap(),
        );
        let secret = |name: &str, data: serde_json::Value| {
            Arc::new(
                serde_json::from_value::<Secret>(serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": name, "namespace": "ns"}, "data": data
                }))
                .unwrap(),
            )
        };
        let secrets = vec![
            secret(
                "good",
                serde_json::json!({"tls.crt": "Y2VydA==", "tls.key": "a2V5"}),
            ),
            secret("half", serde_json::json!({"tls.crt": "Y2VydA=="})),
        ];
        let opts = KubeOptions {
            gateway_class: "siskin".into(),
            namespace: None,
        };
        let (pairs, problems) = listener_certificates(&[gateway, foreign], &secrets, &opts);
        assert_eq!(
            pairs,
            vec![PemPair {
                source: "Secret ns/good".into(),
                cert: b"cert".to_vec(),
                key: b"key".to_vec()
            }],
            "one entry for a Secret two listeners share; other classes' Gateways ignored"
        );
        let text = problems.join("\n");
        for expected in [
            "Gateway ns/edge listener a: Secret ns/missing not found",
            "Secret elsewhere/other in another namespace needs a ReferenceGrant",
            "Gateway ns/edge listener a: Secret ns/half has no tls.crt or no tls.key",
            "Gateway ns/edge listener b: tls.mode \"Passthrough\" is not supported; use Terminate",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert_eq!(problems.len(), 4, "{text}");
    }
}
