//! SMI `TrafficSplit` backends: `smi:v1alpha1`, `smi:v1alpha2`, `smi:v1alpha3`, `osm` (v1alpha2)
//! and `linkerd` (v1alpha1, through the linkerd-smi extension), with Flagger's names and weight
//! encodings: a TrafficSplit `<apex>` whose `spec.service` is the first of `service.hosts` or
//! the apex, and whose backends are `<apex>-canary` and `<apex>-primary`. The apex Service
//! selects the primary's pods. SMI routes by weight only: no A/B, mirroring or cookies.
//!
//! A `linkerd` Canary with `service.gatewayRefs` gets, instead of a TrafficSplit, the Gateway
//! API HTTPRoute current Linkerd runs canaries with (GAMMA: the apex Service as the parent),
//! and with it A/B matches, session affinity and blue/green mirroring.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use siskin_api::{CanarySpec, Capabilities, Provider, Weight};
use siskin_driver::RoutingIntent;
use siskin_engine::{RouteState, Split};
use siskin_foreign::smi::{v1alpha1, v1alpha2, v1alpha3};
use siskin_route::ConfigReport;

use super::{Context, PlanError, TrafficBackend, gatewayapi::GatewayApi, owned_by};
use crate::{
    objects::{Change, Cluster, Kind, Object, ObjectRef, Read},
    services::{self, ApexSelector},
};

/// An SMI backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Smi {
    /// `smi:v1alpha1`.
    V1alpha1,
    /// `smi:v1alpha2`.
    V1alpha2,
    /// `smi:v1alpha3`.
    V1alpha3,
    /// `osm`: Open Service Mesh, SMI v1alpha2.
    Osm,
    /// `linkerd`: SMI v1alpha1 through linkerd-smi, or a GAMMA HTTPRoute with `gatewayRefs`.
    Linkerd,
}

const WEIGHTS_ONLY: Capabilities = Capabilities {
    weights: true,
    header_match: false,
    mirror: false,
    mirror_in_canary: false,
    mirror_weight: false,
    session_affinity: false,
    primary_cookie: false,
    service_fields: &["hosts"],
};

impl Smi {
    fn version(self) -> &'static str {
        match self {
            Smi::V1alpha1 | Smi::Linkerd => "v1alpha1",
            Smi::V1alpha2 | Smi::Osm => "v1alpha2",
            Smi::V1alpha3 => "v1alpha3",
        }
    }

    fn kind(self) -> Kind {
        Kind::TrafficSplit(self.version())
    }

    /// The Gateway API route a Linkerd Canary with `gatewayRefs` gets.
    fn gamma(self, spec: &CanarySpec) -> Option<GatewayApi> {
        let refs = spec.service.as_ref().and_then(|s| s.gateway_refs.as_ref());
        (self == Smi::Linkerd && refs.is_some_and(|r| !r.is_empty())).then_some(GatewayApi::V1)
    }

    fn split(self, cx: &Context<'_>, intent: &RoutingIntent, cluster: &Cluster) -> Object {
        let service = cx
            .canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.hosts.as_ref())
            .and_then(|h| h.first().cloned())
            .unwrap_or_else(|| cx.apex().to_string());
        let mut meta = cx.meta(
            cx.apex(),
            cx.canary
                .spec
                .service
                .as_ref()
                .and_then(|s| s.apex.as_ref()),
        );
        if !owned_by(cx, cluster.raw(self.kind(), cx.namespace, cx.apex())) {
            meta.owner_references = None;
        }
        let (c, p) = (intent.canary(), intent.primary());
        let (cs, ps) = (cx.canary_service(), cx.primary_service());
        match self.version() {
            "v1alpha1" => {
                // Quantities, as Flagger writes them ("50").
                let b = |service: String, w: Weight| v1alpha1::TrafficSplitBackends {
                    service,
                    weight: IntOrString::String(w.get().to_string()),
                };
                Object::new(
                    self.kind(),
                    &v1alpha1::TrafficSplit {
                        metadata: meta,
                        spec: v1alpha1::TrafficSplitSpec {
                            service,
                            backends: vec![b(cs, c), b(ps, p)],
                        },
                    },
                )
            }
            "v1alpha2" => {
                let b = |service: String, w: Weight| v1alpha2::TrafficSplitBackends {
                    service,
                    weight: f64::from(w.get()),
                };
                Object::new(
                    self.kind(),
                    &v1alpha2::TrafficSplit {
                        metadata: meta,
                        spec: v1alpha2::TrafficSplitSpec {
                            service,
                            backends: vec![b(cs, c), b(ps, p)],
                        },
                    },
                )
            }
            _ => {
                let b = |service: String, w: Weight| v1alpha3::TrafficSplitBackends {
                    service,
                    weight: f64::from(w.get()),
                };
                Object::new(
                    self.kind(),
                    &v1alpha3::TrafficSplit {
                        metadata: meta,
                        spec: v1alpha3::TrafficSplitSpec {
                            service,
                            backends: vec![b(cs, c), b(ps, p)],
                            matches: None,
                        },
                    },
                )
            }
        }
    }
}

/// A backend weight as written: a number, or a quantity string ("50", "500m").
fn weight_of(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => match s.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().map_or(0.0, |m| m / 1000.0),
            None => s.parse().unwrap_or(0.0),
        },
        _ => 0.0,
    }
}

impl TrafficBackend for Smi {
    fn provider(&self) -> Provider {
        match self {
            Smi::V1alpha1 => Provider::SmiV1alpha1,
            Smi::V1alpha2 => Provider::SmiV1alpha2,
            Smi::V1alpha3 => Provider::SmiV1alpha3,
            Smi::Osm => Provider::Osm,
            Smi::Linkerd => Provider::Linkerd,
        }
    }

    fn capabilities(&self) -> Capabilities {
        WEIGHTS_ONLY
    }

    fn capabilities_for(&self, spec: &CanarySpec) -> Capabilities {
        match self.gamma(spec) {
            Some(g) => g.capabilities(),
            None => WEIGHTS_ONLY,
        }
    }

    fn writes(&self) -> &'static str {
        match self {
            Smi::V1alpha1 => {
                "`split.smi-spec.io/v1alpha1` `TrafficSplit` `<apex>` (weights as quantities)"
            }
            Smi::V1alpha2 => "`split.smi-spec.io/v1alpha2` `TrafficSplit` `<apex>`",
            Smi::V1alpha3 => "`split.smi-spec.io/v1alpha3` `TrafficSplit` `<apex>`",
            Smi::Osm => "`split.smi-spec.io/v1alpha2` `TrafficSplit` `<apex>` (Open Service Mesh)",
            Smi::Linkerd => {
                "`split.smi-spec.io/v1alpha1` `TrafficSplit` `<apex>` (linkerd-smi); with `service.gatewayRefs` (GAMMA: the apex Service as parent) a `gateway.networking.k8s.io/v1` `HTTPRoute` `<apex>` instead"
            }
        }
    }

    fn reads(&self, cx: &Context<'_>) -> Vec<Read> {
        if let Some(g) = self.gamma(&cx.canary.spec) {
            return g.reads(cx);
        }
        vec![
            Read::Named(ObjectRef::new(self.kind(), cx.namespace, cx.apex())),
            Read::Named(ObjectRef::new(Kind::Service, cx.namespace, cx.apex())),
        ]
    }

    fn plan(
        &self,
        cx: &Context<'_>,
        intent: &RoutingIntent,
        cluster: &Cluster,
    ) -> Result<Vec<Object>, PlanError> {
        if let Some(g) = self.gamma(&cx.canary.spec) {
            return g.plan(cx, intent, cluster);
        }
        if !intent.split.matches.is_empty() {
            return Err(PlanError::Invalid {
                field: "spec.analysis.match".into(),
                message: format!(
                    "provider {} routes by weight only; remove match, or use provider istio, builtin or gatewayapi:v1",
                    self.provider()
                ),
            });
        }
        Ok(vec![
            services::apex(cx, ApexSelector::Pods(cx.primary_selector()), cluster)?,
            self.split(cx, intent, cluster),
        ])
    }

    /// The weights written. SMI reports no status, so what is written is what the mesh
    /// serves.
    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError> {
        if let Some(g) = self.gamma(&cx.canary.spec) {
            return g.observe(cx, cluster, routers);
        }
        let Some(ts) = cluster.raw(self.kind(), cx.namespace, cx.apex()) else {
            return Ok(RouteState::Absent);
        };
        let canary_name = cx.canary_service();
        let (mut canary, mut total) = (0.0, 0.0);
        for b in ts["spec"]["backends"].as_array().into_iter().flatten() {
            let w = weight_of(&b["weight"]);
            total += w;
            if b["service"].as_str() == Some(canary_name.as_str()) {
                canary += w;
            }
        }
        Ok(
            Weight::share_of(canary, total).map_or(RouteState::Absent, |w| {
                RouteState::Applied(Split::to_canary(w))
            }),
        )
    }

    fn revert(&self, cx: &Context<'_>, cluster: &Cluster) -> Result<Vec<Change>, PlanError> {
        if let Some(g) = self.gamma(&cx.canary.spec) {
            return g.revert(cx, cluster);
        }
        // The split names the -primary Service, which goes with the Canary: it is deleted
        // whoever created it, and the apex Service selects the target's pods again.
        let mut out = Vec::new();
        if cluster.raw(self.kind(), cx.namespace, cx.apex()).is_some() {
            out.push(Change::Delete(ObjectRef::new(
                self.kind(),
                cx.namespace,
                cx.apex(),
            )));
        }
        out.push(Change::Apply(services::apex(
            cx,
            ApexSelector::Pods(cx.canary_selector()),
            cluster,
        )?));
        Ok(out)
    }
}
