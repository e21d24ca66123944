//! The generated Services, as pure plans: `<apex>-primary` and `<apex>-canary` select the two
//! sets of pods; the apex Service is shaped by the traffic backend (no selector behind the
//! built-in router, the primary's pods behind an external gateway, either side for blue/green
//! by selector).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use siskin_api::service::TrafficDistribution;

use crate::{
    objects::{Cluster, Kind, Object, ObjectRef, Read},
    plan::{Context, PlanError, owned_by},
};

/// What the apex Service selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApexSelector {
    /// Nothing: its endpoints are written by Siskin (the built-in router's pods).
    None,
    /// These pods.
    Pods((String, String)),
}

fn port(cx: &Context<'_>) -> Result<ServicePort, PlanError> {
    let service = cx.canary.spec.service.as_ref();
    let port = cx.port()?;
    Ok(ServicePort {
        name: Some(
            service
                .and_then(|s| s.port_name.clone())
                .unwrap_or_else(|| "http".into()),
        ),
        port,
        target_port: Some(
            service
                .and_then(|s| s.target_port.clone())
                .unwrap_or(IntOrString::Int(port)),
        ),
        protocol: Some("TCP".into()),
        app_protocol: service.and_then(|s| s.app_protocol.clone()),
        ..Default::default()
    })
}

fn distribution(cx: &Context<'_>) -> Option<String> {
    let d = cx.canary.spec.service.as_ref()?.traffic_distribution?;
    Some(
        match d {
            TrafficDistribution::PreferClose => "PreferClose",
            TrafficDistribution::PreferSameZone => "PreferSameZone",
            TrafficDistribution::PreferSameNode => "PreferSameNode",
        }
        .to_string(),
    )
}

/// A Service Siskin owns, selecting `selector`.
fn owned(
    cx: &Context<'_>,
    name: &str,
    selector: (String, String),
    custom: Option<&siskin_api::service::CustomMetadata>,
) -> Result<Object, PlanError> {
    let mut meta = cx.meta(name, custom);
    // Flagger labels each generated Service `<selector key>: <its name>`.
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(cx.selector.key.clone(), name.to_string());
    let svc = Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![port(cx)?]),
            selector: Some([selector].into()),
            traffic_distribution: distribution(cx),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Object::new(Kind::Service, &svc))
}

/// `<apex>-primary` and `<apex>-canary`.
pub fn generated(cx: &Context<'_>) -> Result<Vec<Object>, PlanError> {
    let service = cx.canary.spec.service.as_ref();
    Ok(vec![
        owned(
            cx,
            &cx.primary_service(),
            cx.primary_selector(),
            service.and_then(|s| s.primary.as_ref()),
        )?,
        owned(
            cx,
            &cx.canary_service(),
            cx.canary_selector(),
            service.and_then(|s| s.canary.as_ref()),
        )?,
    ])
}

/// The Services of [`generated`], read so that an apply that would change nothing is skipped.
pub fn reads(cx: &Context<'_>) -> Vec<Read> {
    [cx.primary_service(), cx.canary_service()]
        .into_iter()
        .map(|name| Read::Named(ObjectRef::new(Kind::Service, cx.namespace, &name)))
        .collect()
}

/// The apex Service. It may be the user's own (`cluster` has it without this Canary as owner):
/// then it is adopted, not owned, and only the port, the selector and Siskin's metadata are
/// applied (its type, other ports and labels stay theirs).
pub fn apex(
    cx: &Context<'_>,
    selector: ApexSelector,
    cluster: &Cluster,
) -> Result<Object, PlanError> {
    let service = cx.canary.spec.service.as_ref();
    let mut meta = cx.meta(cx.apex(), service.and_then(|s| s.apex.as_ref()));
    if !owned_by(cx, cluster.raw(Kind::Service, cx.namespace, cx.apex())) {
        meta.owner_references = None;
    }
    let selector = match selector {
        // An empty selector replaces one set by someone else (it is an atomic map), so the
        // endpoints controller does not compete with the slices Siskin writes.
        ApexSelector::None => BTreeMap::new(),
        ApexSelector::Pods(pair) => [pair].into(),
    };
    let svc = Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            ports: Some(vec![port(cx)?]),
            selector: Some(selector),
            traffic_distribution: distribution(cx),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Object::new(Kind::Service, &svc))
}
