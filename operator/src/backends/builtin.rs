//! `builtin`: Siskin's own router. The apex Service has no selector; its endpoints are the
//! router pods (mirrored from the router Service's EndpointSlices), so in-cluster clients of
//! the apex reach a router, which finds the `HTTPRoute` whose parent is that Service and splits
//! between `<apex>-primary` and `<apex>-canary`.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use siskin_api::{Capabilities, Provider};
use siskin_driver::RoutingIntent;
use siskin_engine::RouteState;
use siskin_foreign::gateway::httproutes::HttpRouteParentRefs;
use siskin_route::ConfigReport;

use super::{Context, PlanError, TrafficBackend, grpcroute, httproute};
use crate::{
    objects::{Change, Cluster, Kind, Object, ObjectRef, Read},
    services::{self, ApexSelector},
};

/// The built-in router backend.
pub struct Builtin;

/// Label of the EndpointSlices Siskin writes for an apex Service.
pub const SLICE_MANAGER: (&str, &str) = ("endpointslice.kubernetes.io/managed-by", "siskin.dev");

const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// The router's ready endpoints grouped by address type, with the port named `port_name`.
pub fn router_endpoints(
    cx: &Context<'_>,
    cluster: &Cluster,
    port_name: &str,
) -> Vec<(String, Vec<String>, i32)> {
    let (ns, name) = cx.router_service;
    let mut out: Vec<(String, Vec<String>, i32)> = Vec::new();
    for v in cluster.labelled(Kind::EndpointSlice, ns, &format!("{SERVICE_NAME}={name}")) {
        let Ok(s) = serde_json::from_value::<EndpointSlice>(v.clone()) else {
            continue;
        };
        let Some(port) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port_name))
            .and_then(|p| p.port)
        else {
            continue;
        };
        let addrs: Vec<String> = s
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .flat_map(|e| e.addresses.clone())
            .collect();
        match out
            .iter_mut()
            .find(|(kind, _, p)| *kind == s.address_type && *p == port)
        {
            Some(entry) => entry.1.extend(addrs),
            None => out.push((s.address_type.clone(), addrs, port)),
        }
    }
    for entry in &mut out {
        entry.1.sort();
        entry.1.dedup();
    }
    out
}

/// The apex's EndpointSlices: the router's pods, one slice per address type.
fn slices(cx: &Context<'_>, cluster: &Cluster) -> Vec<Object> {
    let port_name = cx
        .canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.port_name.clone())
        .unwrap_or_else(|| "http".into());
    router_endpoints(cx, cluster, "http")
        .into_iter()
        .map(|(kind, addrs, port)| {
            let mut meta = cx.meta(
                &format!("{}-siskin-router-{}", cx.apex(), kind.to_ascii_lowercase()),
                None,
            );
            let labels = meta.labels.get_or_insert_with(Default::default);
            labels.insert(SERVICE_NAME.into(), cx.apex().to_string());
            labels.insert(SLICE_MANAGER.0.into(), SLICE_MANAGER.1.into());
            let slice = EndpointSlice {
                metadata: meta,
                address_type: kind,
                endpoints: Some(
                    addrs
                        .into_iter()
                        .map(|a| Endpoint {
                            addresses: vec![a],
                            conditions: Some(EndpointConditions {
                                ready: Some(true),
                                serving: Some(true),
                                terminating: Some(false),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ports: Some(vec![EndpointPort {
                    name: Some(port_name.clone()),
                    port: Some(port),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            };
            Object::new(Kind::EndpointSlice, &slice)
        })
        .collect()
}

fn shape(cx: &Context<'_>) -> Result<httproute::Shape, PlanError> {
    Ok(httproute::Shape {
        version: "v1",
        // The router answers for the Service's DNS names (its parent); no hostnames needed.
        parents: vec![HttpRouteParentRefs {
            group: Some(String::new()),
            kind: Some("Service".into()),
            name: cx.apex().to_string(),
            port: Some(cx.port()?),
            ..Default::default()
        }],
        hostnames: Vec::new(),
        timeouts: true,
    })
}

/// What the router can do for a gRPC Service's GRPCRoute: everything but cookies, rewrites
/// and timeouts (GRPCRoute has none).
const GRPC: Capabilities = Capabilities {
    weights: true,
    header_match: true,
    mirror: true,
    mirror_in_canary: true,
    mirror_weight: true,
    session_affinity: false,
    primary_cookie: false,
    service_fields: &["match", "headers"],
};

impl TrafficBackend for Builtin {
    fn capabilities_for(&self, spec: &siskin_api::CanarySpec) -> Capabilities {
        if grpcroute::is_grpc(spec) {
            GRPC
        } else {
            self.capabilities()
        }
    }

    fn provider(&self) -> Provider {
        Provider::Builtin
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            weights: true,
            header_match: true,
            mirror: true,
            mirror_in_canary: true,
            mirror_weight: true,
            session_affinity: true,
            primary_cookie: true,
            service_fields: &[
                "match",
                "headers",
                "rewrite",
                "mirror",
                "timeout",
                "backendTimeout",
            ],
        }
    }

    fn writes(&self) -> &'static str {
        "Gateway API `HTTPRoute` `<apex>` (a `GRPCRoute` for `appProtocol: grpc`) whose parent is the apex Service, which has no selector: its EndpointSlices (written by Siskin) are the router pods, and the built-in router serves the route"
    }

    fn reads(&self, cx: &Context<'_>) -> Vec<Read> {
        let (ns, name) = cx.router_service;
        let route = if grpcroute::is_grpc(&cx.canary.spec) {
            Kind::GrpcRoute
        } else {
            Kind::HttpRoute("v1")
        };
        vec![
            Read::Named(ObjectRef::new(route, cx.namespace, cx.apex())),
            Read::Named(ObjectRef::new(Kind::Service, cx.namespace, cx.apex())),
            Read::Labelled {
                kind: Kind::EndpointSlice,
                namespace: ns.to_string(),
                selector: format!("{SERVICE_NAME}={name}"),
            },
            Read::Labelled {
                kind: Kind::EndpointSlice,
                namespace: cx.namespace.to_string(),
                selector: format!("{SERVICE_NAME}={}", cx.apex()),
            },
        ]
    }

    fn reads_router_reports(&self) -> bool {
        true
    }

    fn plan(
        &self,
        cx: &Context<'_>,
        intent: &RoutingIntent,
        cluster: &Cluster,
    ) -> Result<Vec<Object>, PlanError> {
        let mut out = vec![services::apex(cx, ApexSelector::None, cluster)?];
        out.extend(slices(cx, cluster));
        let shape = shape(cx)?;
        out.push(if grpcroute::is_grpc(&cx.canary.spec) {
            grpcroute::plan(cx, intent, cluster, &shape.parents, &shape.hostnames)?
        } else {
            httproute::plan(cx, intent, cluster, &shape)?
        });
        Ok(out)
    }

    /// The route as written, once every router serves it (so nothing is scaled down before
    /// every router moved).
    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError> {
        let written = if grpcroute::is_grpc(&cx.canary.spec) {
            grpcroute::existing(cx, cluster)?
                .and_then(|r| grpcroute::observe(cx, &r))
                .map(|(split, _)| split)
        } else {
            httproute::existing(cx, cluster, "v1")?.and_then(|r| httproute::observe(cx, &r))
        };
        let Some(written) = written else {
            return Ok(RouteState::Absent);
        };
        let Some(routers) = routers else {
            return Ok(RouteState::Applied(written));
        };
        if routers.is_empty() {
            return Ok(RouteState::Converging);
        }
        let key = cx.route_key();
        for r in routers {
            let Some((p, c)) = r.served_weights(&key) else {
                return Ok(RouteState::Converging);
            };
            if siskin_api::Weight::share(c, p + c) != written.canary() {
                return Ok(RouteState::Converging);
            }
        }
        Ok(RouteState::Applied(written))
    }

    fn revert(&self, cx: &Context<'_>, cluster: &Cluster) -> Result<Vec<Change>, PlanError> {
        let route = if grpcroute::is_grpc(&cx.canary.spec) {
            grpcroute::revert(cx, cluster)?
        } else {
            httproute::revert(cx, cluster, "v1")?
        };
        let mut out: Vec<Change> = route.into_iter().collect();
        for v in cluster.labelled(
            Kind::EndpointSlice,
            cx.namespace,
            &format!("{SERVICE_NAME}={}", cx.apex()),
        ) {
            if v["metadata"]["labels"][SLICE_MANAGER.0].as_str() == Some(SLICE_MANAGER.1) {
                let name = v["metadata"]["name"].as_str().unwrap_or_default();
                out.push(Change::Delete(ObjectRef::new(
                    Kind::EndpointSlice,
                    cx.namespace,
                    name,
                )));
            }
        }
        out.push(Change::Apply(services::apex(
            cx,
            ApexSelector::Pods(cx.canary_selector()),
            cluster,
        )?));
        Ok(out)
    }
}
