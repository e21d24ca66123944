//! Traffic backends as pure plans: `plan(canary, routing intent, objects as they are)` gives the
//! objects to apply, `observe(objects)` reads the split back, `capabilities()` says what the
//! backend can do. No I/O: the Kubernetes adapter applies the plans with one server-side
//! apply executor, and `siskin render` prints them.
//!
//! [`REGISTRY`] is the one list of providers: `siskin validate`, the operator's
//! `--mesh-provider` and every reconcile ask it, so a provider name without a backend here is
//! refused everywhere with the list of those that exist.

pub mod builtin;
pub mod consul;
pub mod gatewayapi;
pub mod grpcroute;
pub mod httproute;
pub mod istio;
pub mod kubernetes;
pub mod smi;

use siskin_api::{CanarySpec, Capabilities, Provider, validate::Backends};
use siskin_driver::RoutingIntent;
use siskin_engine::RouteState;
use siskin_route::ConfigReport;

use crate::objects::{Change, Cluster, Object, Read};
pub use crate::plan::{Context, PlanError, Selector, owned_by};

/// A traffic backend.
pub trait TrafficBackend: Send + Sync {
    /// The provider it implements.
    fn provider(&self) -> Provider;
    /// What it can execute (for most Canaries; see `capabilities_for`).
    fn capabilities(&self) -> Capabilities;
    /// What it can execute for `spec`, when the objects it writes depend on the Canary (a
    /// Linkerd Canary with `gatewayRefs` gets an HTTPRoute, one without a TrafficSplit).
    fn capabilities_for(&self, _spec: &CanarySpec) -> Capabilities {
        self.capabilities()
    }
    /// What it writes, in one sentence (for `docs/providers.md`).
    fn writes(&self) -> &'static str;
    /// The objects its plans and observations read.
    fn reads(&self, cx: &Context<'_>) -> Vec<Read>;
    /// Whether `observe` compares with what the built-in routers serve (`/config`).
    fn reads_router_reports(&self) -> bool {
        false
    }
    /// The apex Service and routing objects that make live routing equal `intent`.
    fn plan(
        &self,
        cx: &Context<'_>,
        intent: &RoutingIntent,
        cluster: &Cluster,
    ) -> Result<Vec<Object>, PlanError>;
    /// Live routing from the objects as they are (and, when asked for, what each router
    /// serves; None when not read, as in `siskin render`).
    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError>;
    /// `revertOnDeletion`: hand routing back to the user's objects.
    fn revert(&self, cx: &Context<'_>, cluster: &Cluster) -> Result<Vec<Change>, PlanError>;
}

/// Every backend, in the order they are listed to users.
pub struct Registry {
    backends: [&'static dyn TrafficBackend; 11],
}

static BUILTIN: builtin::Builtin = builtin::Builtin;
static GATEWAY_V1: gatewayapi::GatewayApi = gatewayapi::GatewayApi::V1;
static GATEWAY_V1BETA1: gatewayapi::GatewayApi = gatewayapi::GatewayApi::V1beta1;
static KUBERNETES: kubernetes::Kubernetes = kubernetes::Kubernetes;
static ISTIO: istio::Istio = istio::Istio;
static LINKERD: smi::Smi = smi::Smi::Linkerd;
static SMI_V1ALPHA1: smi::Smi = smi::Smi::V1alpha1;
static SMI_V1ALPHA2: smi::Smi = smi::Smi::V1alpha2;
static SMI_V1ALPHA3: smi::Smi = smi::Smi::V1alpha3;
static OSM: smi::Smi = smi::Smi::Osm;
static CONSUL: consul::Consul = consul::Consul;

/// The backend registry.
pub static REGISTRY: Registry = Registry {
    backends: [
        &BUILTIN,
        &GATEWAY_V1,
        &GATEWAY_V1BETA1,
        &KUBERNETES,
        &ISTIO,
        &LINKERD,
        &SMI_V1ALPHA1,
        &SMI_V1ALPHA2,
        &SMI_V1ALPHA3,
        &OSM,
        &CONSUL,
    ],
};

// === impl Registry ===

impl Registry {
    /// The backend of `provider`, if one exists.
    pub fn get(&self, provider: Provider) -> Option<&'static dyn TrafficBackend> {
        self.backends
            .iter()
            .copied()
            .find(|b| b.provider() == provider)
    }

    /// The backend for a provider name (`spec.provider`, `--mesh-provider`), or an error that
    /// names the implemented ones.
    pub fn resolve(&self, name: &str) -> Result<&'static dyn TrafficBackend, String> {
        let provider: Provider = name
            .parse()
            .map_err(|e: siskin_api::provider::UnknownProvider| e.to_string())?;
        self.get(provider).ok_or_else(|| {
            format!(
                "provider {provider} is not implemented by this Siskin yet; use one of {}",
                self.names().join(", ")
            )
        })
    }

    /// The names of the implemented providers.
    pub fn names(&self) -> Vec<&'static str> {
        self.backends.iter().map(|b| b.provider().name()).collect()
    }
}

impl Backends for Registry {
    fn capabilities(&self, provider: Provider, spec: &CanarySpec) -> Option<Capabilities> {
        self.get(provider).map(|b| b.capabilities_for(spec))
    }

    fn implemented(&self) -> Vec<Provider> {
        self.backends.iter().map(|b| b.provider()).collect()
    }
}

/// `docs/providers.md` and `siskin providers`: what every backend can do and writes, from
/// `capabilities()` and `writes()` (a test fails when the committed file is not this).
pub fn provider_matrix() -> String {
    let yes = |b: bool| if b { "yes" } else { "—" };
    let mut out = String::from(
        "# Traffic providers\n\n\
         Generated from the backend registry (`operator/src/backends.rs`: each backend's \
         `capabilities()` and `writes()`); `cargo test -p siskin-operator provider_matrix` fails when \
         this file is stale, `SISKIN_UPDATE_DOCS=1` rewrites it. `siskin validate` and the operator \
         refuse what a provider cannot do, naming the providers that can. Every provider's objects \
         are in `operator/tests/render/golden/<provider>/`, and every backend runs a whole release on a \
         real API server in `operator/tests/operator_e2e.rs` (`smi:v1alpha1` and `smi:v1alpha2` \
         through `linkerd` and `osm`, which write the same objects).\n\n\
         Every provider also writes the Services `<apex>-primary` and `<apex>-canary`, and the apex \
         Service `<apex>` (selecting the primary's pods, except with `builtin`).\n\n\
         | provider | weights | A/B match | mirror | mirror in canary runs | mirrorWeight | session affinity | primary cookie | `spec.service` routing fields |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let row = |out: &mut String, name: &str, c: Capabilities| {
        let fields = if c.service_fields.is_empty() {
            "—".to_string()
        } else {
            c.service_fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {fields} |\n",
            yes(c.weights),
            yes(c.header_match),
            yes(c.mirror),
            yes(c.mirror_in_canary),
            yes(c.mirror_weight),
            yes(c.session_affinity),
            yes(c.primary_cookie),
        ));
    };
    let variant = |service: serde_json::Value| -> CanarySpec {
        serde_json::from_value(serde_json::json!({ "service": service })).unwrap_or_default()
    };
    let variants = [
        (
            "with `service.gatewayRefs`",
            variant(
                serde_json::json!({"port": 80, "gatewayRefs": [{"kind": "Service", "name": "apex"}]}),
            ),
        ),
        (
            "with `service.appProtocol: grpc`",
            variant(
                serde_json::json!({"port": 80, "appProtocol": "grpc", "gatewayRefs": [{"name": "gw"}]}),
            ),
        ),
    ];
    for b in REGISTRY.backends {
        let mut shown = vec![b.capabilities()];
        row(
            &mut out,
            &format!("`{}`", b.provider().name()),
            b.capabilities(),
        );
        for (label, spec) in &variants {
            let caps = b.capabilities_for(spec);
            if !shown.contains(&caps) {
                row(
                    &mut out,
                    &format!("`{}` {label}", b.provider().name()),
                    caps,
                );
                shown.push(caps);
            }
        }
    }
    out.push_str("\n## What each provider writes\n\n");
    for b in REGISTRY.backends {
        out.push_str(&format!("- `{}`: {}.\n", b.provider().name(), b.writes()));
    }
    let missing: Vec<&str> = Provider::NAMES
        .iter()
        .copied()
        .filter(|n| !REGISTRY.names().contains(n))
        .collect();
    out.push_str(&format!(
        "\nNot implemented yet, refused by `siskin validate` and the operator: {}.\n",
        missing
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out
}

/// What [`plan_routing`] reads: the generated Services and what the backend reads.
pub fn routing_reads(backend: &dyn TrafficBackend, cx: &Context<'_>) -> Vec<Read> {
    let mut reads = crate::services::reads(cx);
    reads.extend(backend.reads(cx));
    reads
}

/// The routing objects and generated Services for `intent`: what the operator applies for an
/// `SetRoutes` action and what `siskin render` prints.
pub fn plan_routing(
    backend: &dyn TrafficBackend,
    cx: &Context<'_>,
    intent: &RoutingIntent,
    cluster: &Cluster,
) -> Result<Vec<Object>, PlanError> {
    let mut out = crate::services::generated(cx)?;
    out.extend(backend.plan(cx, intent, cluster)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{Value, json};
    use siskin_api::{ApiGroup, Canary, Weight};
    use siskin_engine::Split;

    use super::{consul::Consul, istio::Istio, *};
    use crate::objects::Kind;

    #[test]
    fn provider_matrix_in_the_docs_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/providers.md");
        let want = provider_matrix();
        if std::env::var_os("SISKIN_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/providers.md is stale: SISKIN_UPDATE_DOCS=1 cargo test -p siskin-operator provider_matrix"
        );
    }

    #[test]
    fn the_registry_refuses_names_without_a_backend() {
        assert!(REGISTRY.resolve("builtin").is_ok());
        assert!(REGISTRY.resolve("smi:v1alpha3:istio").is_ok());
        let e = REGISTRY.resolve("contour").err().unwrap_or_default();
        assert!(e.contains("not implemented"), "{e}");
        assert!(
            e.contains("builtin, gatewayapi:v1, gatewayapi:v1beta1, kubernetes, istio, linkerd, smi:v1alpha1, smi:v1alpha2, smi:v1alpha3, osm, consul"),
            "{e}"
        );
        assert!(REGISTRY.resolve("mesh").is_err());
        assert_eq!(REGISTRY.implemented().len(), 11);
    }

    fn canary(provider: &str, extra: Value) -> Canary {
        let mut v = json!({
            "apiVersion": "siskin.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"},
            "spec": {"provider": provider,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, "gatewayRefs": [{"name": "gw"}]},
                "analysis": {"interval": "1m", "threshold": 2, "stepWeight": 10}}
        });
        if let (Some(spec), Some(more)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, x) in more {
                spec.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn with<T>(c: &Canary, f: impl FnOnce(&Context<'_>) -> T) -> T {
        let selector = Selector {
            key: "app".into(),
            value: "podinfo".into(),
        };
        let cx = Context {
            canary: c,
            namespace: "test",
            selector: &selector,
            router_service: ("siskin-system", "siskin-router"),
            group: ApiGroup::Siskin,
        };
        f(&cx)
    }

    fn applied(backend: &dyn TrafficBackend, cx: &Context<'_>, cluster: &Cluster) -> Split {
        match backend.observe(cx, cluster, None).unwrap() {
            RouteState::Applied(s) => s,
            other => panic!("{}: {other:?}", backend.provider()),
        }
    }

    /// Every backend reads back the split its own plan wrote, at every weight it can
    /// serve, and a second plan over its own objects writes the same objects.
    #[test]
    fn every_backend_observes_what_it_planned() {
        let grpc = json!({"service": {"port": 9898, "appProtocol": "grpc", "gatewayRefs": [{"name": "gw"}]}});
        for (backend, extra) in REGISTRY
            .backends
            .iter()
            .flat_map(|b| [(*b, json!({})), (*b, grpc.clone())])
        {
            let c = canary(backend.provider().name(), extra);
            with(&c, |cx| {
                let weights: &[u8] = if backend.capabilities().weights {
                    &[0, 10, 55, 100]
                } else {
                    &[0, 100]
                };
                for &w in weights {
                    let split = Split::to_canary(Weight::new(w).unwrap());
                    let intent = RoutingIntent::resolve(&c.spec, &split).unwrap();
                    let objects = backend.plan(cx, &intent, &Cluster::new()).unwrap();
                    let mut cluster = Cluster::new();
                    for o in &objects {
                        cluster.insert(o.value.clone());
                    }
                    let seen = applied(backend, cx, &cluster);
                    assert_eq!(seen.canary().get(), w, "{}", backend.provider());
                    let again = backend.plan(cx, &intent, &cluster).unwrap();
                    assert_eq!(again, objects, "{} is not stable", backend.provider());
                }
            });
        }
    }

    #[test]
    fn istio_reads_back_mirroring_and_keeps_the_users_routes() {
        let c = canary(
            "istio",
            json!({"analysis": {"interval": "1m", "threshold": 2,
            "iterations": 5, "mirror": true, "mirrorWeight": 30}}),
        );
        with(&c, |cx| {
            let mut split = Split::primary_only();
            split.mirror = Some(Weight::new(30).unwrap());
            let intent = RoutingIntent::resolve(&c.spec, &split).unwrap();
            let mut cluster = Cluster::new();
            // The user's VirtualService: a specific route and a catch-all.
            cluster.insert(json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                "metadata": {"name": "podinfo", "namespace": "test"},
                "spec": {"hosts": ["podinfo"], "http": [
                    {"name": "docs", "match": [{"uri": {"prefix": "/docs"}}], "route": [{"destination": {"host": "docs"}}]},
                    {"route": [{"destination": {"host": "podinfo"}}]}]}}));
            let objects = Istio.plan(cx, &intent, &cluster).unwrap();
            let vs = objects
                .iter()
                .find(|o| o.kind == Kind::VirtualService)
                .unwrap();
            let http = vs.value["spec"]["http"].as_array().unwrap();
            let names: Vec<&str> = http
                .iter()
                .map(|r| r["name"].as_str().unwrap_or(""))
                .collect();
            assert_eq!(names, ["docs", "siskin-canary", ""]);
            assert!(
                vs.value["metadata"]["ownerReferences"].is_null(),
                "adopted, not owned"
            );
            let original = vs.value["metadata"]["annotations"][istio::ORIGINAL]
                .as_str()
                .unwrap();
            assert!(original.contains("/docs"), "{original}");
            let mut after = Cluster::new();
            after.insert(vs.value.clone());
            let seen = applied(&Istio, cx, &after);
            assert_eq!(seen.mirror, Some(Weight::new(30).unwrap()));
            // revertOnDeletion: the spec as it was, the DestinationRules gone.
            let changes = Istio.revert(cx, &after).unwrap();
            let Change::Apply(back) = &changes[0] else {
                panic!("{changes:?}")
            };
            assert_eq!(back.value["spec"]["http"][0]["name"], "docs");
            assert_eq!(back.value["spec"]["http"].as_array().unwrap().len(), 2);
            assert!(changes.iter().any(|c| matches!(c,
                Change::Delete(r) if r.kind == Kind::DestinationRule && r.name == "podinfo-canary")));
        });
    }

    #[test]
    fn istio_refuses_what_its_schema_does_not_have() {
        let c = canary(
            "istio",
            json!({"service": {"port": 9898, "delegation": true, "hosts": ["a"]}}),
        );
        with(&c, |cx| {
            let intent = RoutingIntent::resolve(&c.spec, &Split::primary_only()).unwrap();
            let e = Istio.plan(cx, &intent, &Cluster::new()).unwrap_err();
            assert!(e.to_string().starts_with("spec.service.delegation:"), "{e}");
        });
        let lost =
            istio::convert::<siskin_foreign::istio::virtualservices::VirtualServiceHttpRetries>(
                &json!({"attempts": 2, "perTryTimout": "1s"}),
                "spec.service.retries",
                "Istio's HTTPRetry",
            )
            .unwrap_err();
        assert!(
            lost.to_string().contains("has no field perTryTimout"),
            "{lost}"
        );
    }

    #[test]
    fn istio_waits_for_istiod_where_it_reports_status() {
        let c = canary("istio", json!({}));
        with(&c, |cx| {
            let split = Split::to_canary(Weight::new(10).unwrap());
            let intent = RoutingIntent::resolve(&c.spec, &split).unwrap();
            let objects = Istio.plan(cx, &intent, &Cluster::new()).unwrap();
            let vs = objects
                .iter()
                .find(|o| o.kind == Kind::VirtualService)
                .unwrap();
            let mut vs = vs.value.clone();
            // istiod's status, in its own shape (a condition without a message or time).
            vs["metadata"]["generation"] = json!(3);
            vs["status"] = json!({"observedGeneration": "2",
                "conditions": [{"type": "Reconciled", "status": "True"}]});
            let mut cluster = Cluster::new();
            cluster.insert(vs.clone());
            assert_eq!(
                Istio.observe(cx, &cluster, None).unwrap(),
                RouteState::Converging
            );
            vs["status"]["observedGeneration"] = json!(3);
            cluster.insert(vs);
            assert_eq!(applied(&Istio, cx, &cluster).canary().get(), 10);
        });
    }

    #[test]
    fn smi_weights_are_read_in_every_encoding() {
        let c = canary("smi:v1alpha1", json!({}));
        with(&c, |cx| {
            for weight in [json!("250m"), json!(0.25), json!("0.25")] {
                let mut cluster = Cluster::new();
                cluster.insert(
                    json!({"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
                    "metadata": {"name": "podinfo", "namespace": "test"},
                    "spec": {"service": "podinfo", "backends": [
                        {"service": "podinfo-canary", "weight": weight},
                        {"service": "podinfo-primary", "weight": "750m"}]}}),
                );
                let backend = REGISTRY.get(Provider::SmiV1alpha1).unwrap();
                assert_eq!(applied(backend, cx, &cluster).canary().get(), 25);
            }
        });
    }

    #[test]
    fn linkerd_with_gateway_refs_writes_a_gamma_route() {
        let c = canary(
            "linkerd",
            json!({"service": {"port": 9898,
            "gatewayRefs": [{"group": "core", "kind": "Service", "name": "podinfo", "port": 9898}]}}),
        );
        let linkerd = REGISTRY.get(Provider::Linkerd).unwrap();
        assert!(linkerd.capabilities_for(&c.spec).header_match);
        assert!(!linkerd.capabilities().header_match);
        with(&c, |cx| {
            let intent =
                RoutingIntent::resolve(&c.spec, &Split::to_canary(Weight::new(20).unwrap()))
                    .unwrap();
            let objects = linkerd.plan(cx, &intent, &Cluster::new()).unwrap();
            let route = objects
                .iter()
                .find(|o| o.kind == Kind::HttpRoute("v1"))
                .unwrap();
            assert_eq!(route.value["spec"]["parentRefs"][0]["kind"], "Service");
            assert!(
                objects
                    .iter()
                    .all(|o| !matches!(o.kind, Kind::TrafficSplit(_)))
            );
        });
    }

    #[test]
    fn consul_ab_sends_matching_requests_to_the_canary_and_waits_for_sync() {
        let c = canary(
            "consul",
            json!({"analysis": {"interval": "1m", "threshold": 2, "iterations": 3,
            "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}}),
        );
        with(&c, |cx| {
            let mut split = Split::to_canary(Weight::FULL);
            split.matches = c.spec.analysis().matches().to_vec();
            let intent = RoutingIntent::resolve(&c.spec, &split).unwrap();
            let objects = Consul.plan(cx, &intent, &Cluster::new()).unwrap();
            let router = objects
                .iter()
                .find(|o| o.kind == Kind::ServiceRouter)
                .unwrap();
            assert_eq!(
                router.value["spec"]["routes"][0]["destination"]["service"],
                "podinfo-canary"
            );
            let splitter = objects
                .iter()
                .find(|o| o.kind == Kind::ServiceSplitter)
                .unwrap();
            assert_eq!(splitter.value["spec"]["splits"][0]["weight"], 100);
            let mut cluster = Cluster::new();
            for o in &objects {
                cluster.insert(o.value.clone());
            }
            assert_eq!(applied(&Consul, cx, &cluster).canary(), Weight::FULL);
            let mut refused = splitter.value.clone();
            // consul-k8s leaves out an empty reason and message.
            refused["status"] = json!({"conditions": [{"type": "Synced", "status": "False",
                "lastTransitionTime": "2026-12-01T00:00:00Z"}]});
            cluster.insert(refused);
            assert_eq!(
                Consul.observe(cx, &cluster, None).unwrap(),
                RouteState::Converging
            );
        });
    }
}
