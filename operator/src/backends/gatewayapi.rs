//! `gatewayapi:v1` and `gatewayapi:v1beta1`: the same `HTTPRoute` as `builtin`, attached to the
//! Gateways in `service.gatewayRefs` of an external Gateway API implementation; with `v1`, a
//! Canary whose `service.appProtocol` is `grpc` gets a `GRPCRoute` instead. The apex Service
//! selects the primary's pods.

use siskin_api::{CanarySpec, Capabilities, Provider};
use siskin_driver::RoutingIntent;
use siskin_engine::RouteState;
use siskin_foreign::gateway::httproutes::HttpRouteParentRefs;
use siskin_route::ConfigReport;

use super::{Context, PlanError, TrafficBackend, grpcroute, httproute};
use crate::{
    objects::{Change, Cluster, Kind, Object, ObjectRef, Read},
    services::{self, ApexSelector},
};

/// The Gateway API backend at one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayApi {
    /// `gateway.networking.k8s.io/v1`.
    V1,
    /// `gateway.networking.k8s.io/v1beta1` (no timeouts, no primary cookie, as in Flagger).
    V1beta1,
}

impl GatewayApi {
    fn version(self) -> &'static str {
        match self {
            GatewayApi::V1 => "v1",
            GatewayApi::V1beta1 => "v1beta1",
        }
    }

    fn shape(self, cx: &Context<'_>) -> Result<httproute::Shape, PlanError> {
        let service = cx.canary.spec.service.as_ref();
        let refs = service
            .and_then(|s| s.gateway_refs.clone())
            .unwrap_or_default();
        if refs.is_empty() {
            return Err(PlanError::Invalid {
                field: "spec.service.gatewayRefs".into(),
                message: "the gatewayapi provider needs at least one Gateway to attach the route to; list it here (name, namespace)".into(),
            });
        }
        Ok(httproute::Shape {
            version: self.version(),
            parents: refs
                .into_iter()
                .map(|r| HttpRouteParentRefs {
                    group: r.group,
                    kind: r.kind,
                    name: r.name,
                    namespace: r.namespace,
                    port: r.port,
                    section_name: r.section_name,
                })
                .collect(),
            // `service.hosts` are the route's hostnames, as with Flagger's Gateway API provider.
            hostnames: service.and_then(|s| s.hosts.clone()).unwrap_or_default(),
            timeouts: self == GatewayApi::V1,
        })
    }
}

impl GatewayApi {
    /// Whether this Canary gets a GRPCRoute (v1 only; v1beta1 has no GRPCRoute).
    fn grpc(self, spec: &CanarySpec) -> bool {
        self == GatewayApi::V1 && grpcroute::is_grpc(spec)
    }
}

/// What a GRPCRoute can do: weights, header and method matches, blue/green mirroring.
const GRPC: Capabilities = Capabilities {
    weights: true,
    header_match: true,
    mirror: true,
    mirror_in_canary: false,
    mirror_weight: false,
    session_affinity: false,
    primary_cookie: false,
    service_fields: &["match", "headers", "hosts", "gatewayRefs"],
};

impl TrafficBackend for GatewayApi {
    fn provider(&self) -> Provider {
        match self {
            GatewayApi::V1 => Provider::GatewayApiV1,
            GatewayApi::V1beta1 => Provider::GatewayApiV1beta1,
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            weights: true,
            header_match: true,
            mirror: true,
            mirror_in_canary: false,
            mirror_weight: false,
            session_affinity: true,
            primary_cookie: *self == GatewayApi::V1,
            service_fields: match self {
                GatewayApi::V1 => &[
                    "match",
                    "headers",
                    "rewrite",
                    "mirror",
                    "timeout",
                    "backendTimeout",
                    "hosts",
                    "gatewayRefs",
                ],
                GatewayApi::V1beta1 => &[
                    "match",
                    "headers",
                    "rewrite",
                    "mirror",
                    "hosts",
                    "gatewayRefs",
                ],
            },
        }
    }

    fn writes(&self) -> &'static str {
        match self {
            GatewayApi::V1 => {
                "`gateway.networking.k8s.io/v1` `HTTPRoute` `<apex>` attached to `service.gatewayRefs`; waits until every parent has Accepted its generation"
            }
            GatewayApi::V1beta1 => {
                "`gateway.networking.k8s.io/v1beta1` `HTTPRoute` `<apex>` attached to `service.gatewayRefs` (no timeouts, no primary cookie); waits until every parent has Accepted its generation"
            }
        }
    }

    fn capabilities_for(&self, spec: &CanarySpec) -> Capabilities {
        if self.grpc(spec) {
            GRPC
        } else {
            self.capabilities()
        }
    }

    fn reads(&self, cx: &Context<'_>) -> Vec<Read> {
        if self.grpc(&cx.canary.spec) {
            return vec![
                Read::Named(ObjectRef::new(Kind::GrpcRoute, cx.namespace, cx.apex())),
                Read::Named(ObjectRef::new(Kind::Service, cx.namespace, cx.apex())),
            ];
        }
        vec![
            Read::Named(ObjectRef::new(
                Kind::HttpRoute(self.version()),
                cx.namespace,
                cx.apex(),
            )),
            Read::Named(ObjectRef::new(Kind::Service, cx.namespace, cx.apex())),
        ]
    }

    fn plan(
        &self,
        cx: &Context<'_>,
        intent: &RoutingIntent,
        cluster: &Cluster,
    ) -> Result<Vec<Object>, PlanError> {
        let shape = self.shape(cx)?;
        let route = if self.grpc(&cx.canary.spec) {
            grpcroute::plan(cx, intent, cluster, &shape.parents, &shape.hostnames)?
        } else {
            httproute::plan(cx, intent, cluster, &shape)?
        };
        Ok(vec![
            services::apex(cx, ApexSelector::Pods(cx.primary_selector()), cluster)?,
            route,
        ])
    }

    /// The written split once every Gateway that reports on the route (`status.parents`) has
    /// accepted its current generation; before that, what traffic does is not known.
    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        _routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError> {
        if self.grpc(&cx.canary.spec) {
            let Some(route) = grpcroute::existing(cx, cluster)? else {
                return Ok(RouteState::Absent);
            };
            return Ok(match grpcroute::observe(cx, &route) {
                None => RouteState::Absent,
                Some((split, true)) => RouteState::Applied(split),
                Some((_, false)) => RouteState::Converging,
            });
        }
        let Some(route) = httproute::existing(cx, cluster, self.version())? else {
            return Ok(RouteState::Absent);
        };
        let Some(split) = httproute::observe(cx, &route) else {
            return Ok(RouteState::Absent);
        };
        Ok(if httproute::accepted_by_parents(&route) {
            RouteState::Applied(split)
        } else {
            RouteState::Converging
        })
    }

    fn revert(&self, cx: &Context<'_>, cluster: &Cluster) -> Result<Vec<Change>, PlanError> {
        let route = if self.grpc(&cx.canary.spec) {
            grpcroute::revert(cx, cluster)?
        } else {
            httproute::revert(cx, cluster, self.version())?
        };
        let mut out: Vec<Change> = route.into_iter().collect();
        out.push(Change::Apply(services::apex(
            cx,
            ApexSelector::Pods(cx.canary_selector()),
            cluster,
        )?));
        Ok(out)
    }
}
