//! `kubernetes`: blue/green without a router; the apex Service selects either the primary's or
//! the canary's pods.

use k8s_openapi::api::core::v1::Service;
use siskin_api::{Capabilities, Provider, Weight};
use siskin_driver::RoutingIntent;
use siskin_engine::{RouteState, Split};
use siskin_route::ConfigReport;

use super::{Context, PlanError, TrafficBackend};
use crate::{
    objects::{Change, Cluster, Kind, Object, ObjectRef, Read},
    services::{self, ApexSelector},
};

/// The Service-selector backend.
pub struct Kubernetes;

impl TrafficBackend for Kubernetes {
    fn provider(&self) -> Provider {
        Provider::Kubernetes
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            weights: false,
            header_match: false,
            mirror: false,
            mirror_in_canary: false,
            mirror_weight: false,
            session_affinity: false,
            primary_cookie: false,
            service_fields: &[],
        }
    }

    fn writes(&self) -> &'static str {
        "nothing but the Services: the apex Service's selector switches between the primary's and the canary's pods (blue/green)"
    }

    fn reads(&self, cx: &Context<'_>) -> Vec<Read> {
        vec![Read::Named(ObjectRef::new(
            Kind::Service,
            cx.namespace,
            cx.apex(),
        ))]
    }

    fn plan(
        &self,
        cx: &Context<'_>,
        intent: &RoutingIntent,
        cluster: &Cluster,
    ) -> Result<Vec<Object>, PlanError> {
        let selector = if intent.canary() == Weight::FULL {
            cx.canary_selector()
        } else {
            cx.primary_selector()
        };
        Ok(vec![services::apex(
            cx,
            ApexSelector::Pods(selector),
            cluster,
        )?])
    }

    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        _routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError> {
        let Some(svc) = cluster.get::<Service>(Kind::Service, cx.namespace, cx.apex())? else {
            return Ok(RouteState::Absent);
        };
        let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
        let (k, v) = cx.canary_selector();
        Ok(RouteState::Applied(if selector.get(&k) == Some(&v) {
            Split::to_canary(Weight::FULL)
        } else {
            Split::primary_only()
        }))
    }

    fn revert(&self, cx: &Context<'_>, cluster: &Cluster) -> Result<Vec<Change>, PlanError> {
        Ok(vec![Change::Apply(services::apex(
            cx,
            ApexSelector::Pods(cx.canary_selector()),
            cluster,
        )?)])
    }
}
