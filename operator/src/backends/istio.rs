//! `istio`: a `VirtualService` `<apex>` and the DestinationRules `<apex>-primary` and
//! `<apex>-canary`, with Flagger's names and fields (`networking.istio.io/v1beta1`). The apex
//! Service selects the primary's pods; Istio's sidecars and gateways route by the
//! VirtualService.
//!
//! Siskin's HTTP routes are named `siskin-*`; the user's own routes of an adopted
//! VirtualService are kept: those with a `match` before Siskin's (they keep answering their
//! requests), those without one after (Siskin's route answers everything else now). The spec
//! of an adopted VirtualService is kept in the annotation `siskin.dev/original-configuration`,
//! and `revertOnDeletion` puts it back.

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use siskin_api::{Capabilities, Provider, Weight, service::HttpMatchRequest};
use siskin_driver::{RoutingIntent, regex_escape};
use siskin_engine::{RouteState, Split};
use siskin_foreign::istio::{
    destinationrules::{DestinationRule, DestinationRuleSpec},
    virtualservices::{
        VirtualService, VirtualServiceHttp, VirtualServiceHttpHeaders,
        VirtualServiceHttpHeadersResponse, VirtualServiceHttpMatch, VirtualServiceHttpMatchHeaders,
        VirtualServiceHttpMirror, VirtualServiceHttpMirrorPercentage, VirtualServiceHttpRewrite,
        VirtualServiceHttpRoute, VirtualServiceHttpRouteDestination,
        VirtualServiceHttpRouteDestinationPort, VirtualServiceHttpRouteHeaders,
        VirtualServiceHttpRouteHeadersResponse, VirtualServiceSpec, VirtualServiceTcp,
        VirtualServiceTcpMatch, VirtualServiceTcpRoute, VirtualServiceTcpRouteDestination,
        VirtualServiceTcpRouteDestinationPort,
    },
};
use siskin_route::{ConfigReport, SessionCookie, SiskinRule};

use super::{Context, PlanError, TrafficBackend, owned_by};
use crate::{
    objects::{Change, Cluster, Kind, Object, ObjectRef, Read},
    services::{self, ApexSelector},
};

/// Annotation holding the spec of a VirtualService Siskin adopted, as it was.
pub const ORIGINAL: &str = "siskin.dev/original-configuration";

/// The Istio backend.
pub struct Istio;

impl TrafficBackend for Istio {
    fn provider(&self) -> Provider {
        Provider::Istio
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
                "retries",
                "rewrite",
                "headers",
                "gateways",
                "corsPolicy",
                "trafficPolicy",
                "hosts",
                "delegation",
                "timeout",
                "portDiscovery",
            ],
        }
    }

    fn writes(&self) -> &'static str {
        "`networking.istio.io/v1beta1` `VirtualService` `<apex>` (routes `siskin-*`; the user's own routes kept, the adopted spec kept in `siskin.dev/original-configuration` for revertOnDeletion) and `DestinationRule`s `<apex>-primary`, `<apex>-canary` (`service.trafficPolicy`); TCP routes for `appProtocol: tcp`"
    }

    fn reads(&self, cx: &Context<'_>) -> Vec<Read> {
        vec![
            Read::Named(ObjectRef::new(
                Kind::VirtualService,
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
        let mut out = vec![services::apex(
            cx,
            ApexSelector::Pods(cx.primary_selector()),
            cluster,
        )?];
        for name in [cx.primary_service(), cx.canary_service()] {
            out.push(destination_rule(cx, &name)?);
        }
        out.push(virtual_service(cx, intent, cluster)?);
        Ok(out)
    }

    /// The split of Siskin's weighted route, once istiod has reconciled the current generation
    /// where it reports status (`PILOT_ENABLE_STATUS`: `status.observedGeneration` and the
    /// `Reconciled` condition); without status, what is written is what is served.
    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        _routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError> {
        let Some(raw) = cluster.raw(Kind::VirtualService, cx.namespace, cx.apex()) else {
            return Ok(RouteState::Absent);
        };
        let spec: Option<VirtualServiceSpec> =
            cluster.spec(Kind::VirtualService, cx.namespace, cx.apex())?;
        let Some(split) = spec.and_then(|spec| observe(cx, &spec)) else {
            return Ok(RouteState::Absent);
        };
        Ok(if reconciled(raw) {
            RouteState::Applied(split)
        } else {
            RouteState::Converging
        })
    }

    fn revert(&self, cx: &Context<'_>, cluster: &Cluster) -> Result<Vec<Change>, PlanError> {
        let mut out = Vec::new();
        let raw = cluster.raw(Kind::VirtualService, cx.namespace, cx.apex());
        if let Some(raw) = raw {
            let original = raw["metadata"]["annotations"][ORIGINAL].as_str();
            match original {
                Some(text) => {
                    let spec: Value = serde_json::from_str(text).map_err(|e| {
                        PlanError::Invalid {
                            field: format!("VirtualService {}: annotation {ORIGINAL}", cx.apex()),
                            message: format!(
                                "not the JSON of a VirtualService spec ({e}); fix or remove the annotation"
                            ),
                        }
                    })?;
                    // Siskin's fields are replaced by the original spec; the owner reference
                    // and Siskin's annotations go (fields Siskin no longer applies).
                    out.push(Change::Apply(Object {
                        kind: Kind::VirtualService,
                        value: json!({
                            "apiVersion": Kind::VirtualService.api_version(),
                            "kind": "VirtualService",
                            "metadata": {"name": cx.apex(), "namespace": cx.namespace},
                            "spec": spec,
                        }),
                    }));
                }
                None => out.push(Change::Delete(ObjectRef::new(
                    Kind::VirtualService,
                    cx.namespace,
                    cx.apex(),
                ))),
            }
        }
        for name in [cx.primary_service(), cx.canary_service()] {
            out.push(Change::Delete(ObjectRef::new(
                Kind::DestinationRule,
                cx.namespace,
                &name,
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

/// Whether istiod has reconciled the VirtualService's current generation (true when it
/// reports no status).
fn reconciled(raw: &Value) -> bool {
    let number = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let status = &raw["status"];
    if let (Some(generation), Some(observed)) = (
        number(&raw["metadata"]["generation"]),
        number(&status["observedGeneration"]),
    ) && observed < generation
    {
        return false;
    }
    !status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Reconciled" && c["status"] == "False")
}

/// `value` as the foreign type `T`, refusing anything `T` would drop (a field the mesh's
/// schema does not have).
pub fn convert<T: Serialize + DeserializeOwned>(
    value: &impl Serialize,
    field: &str,
    what: &str,
) -> Result<T, PlanError> {
    let invalid = |message: String| PlanError::Invalid {
        field: field.to_string(),
        message,
    };
    let input = serde_json::to_value(value).map_err(|e| invalid(e.to_string()))?;
    let out: T = serde_json::from_value(input.clone())
        .map_err(|e| invalid(format!("{what} does not accept it: {e}")))?;
    let back = serde_json::to_value(&out).map_err(|e| invalid(e.to_string()))?;
    if let Some(path) = lost(&input, &back, "") {
        return Err(invalid(format!(
            "{what} has no field {path}; remove it (see the mesh's API reference for what it accepts)"
        )));
    }
    Ok(out)
}

/// The first path set in `a` that `b` does not hold (numbers compared by value).
fn lost(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match b.get(k) {
                None if !v.is_null() => Some(path),
                None => None,
                Some(w) => lost(v, w, &path),
            }
        }),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| lost(v, w, &format!("{at}[{i}]"))),
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then(|| at.to_string()),
        (a, b) => (a != b).then(|| at.to_string()),
    }
}

fn destination_rule(cx: &Context<'_>, name: &str) -> Result<Object, PlanError> {
    let policy = cx
        .canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.traffic_policy.as_ref());
    let dr = DestinationRule {
        metadata: cx.meta(name, None),
        spec: DestinationRuleSpec {
            host: name.to_string(),
            traffic_policy: policy
                .map(|p| {
                    convert(
                        p,
                        "spec.service.trafficPolicy",
                        "Istio's DestinationRule trafficPolicy",
                    )
                })
                .transpose()?,
            ..Default::default()
        },
        status: None,
    };
    Ok(Object::new(Kind::DestinationRule, &dr))
}

fn is_tcp(cx: &Context<'_>) -> bool {
    cx.canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.app_protocol.as_deref())
        .is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
}

/// Whether a route or destination list names Siskin's Services.
fn ours(cx: &Context<'_>, hosts: impl IntoIterator<Item = String>) -> bool {
    let (p, c) = (cx.primary_service(), cx.canary_service());
    hosts.into_iter().any(|h| h == p || h == c)
}

fn virtual_service(
    cx: &Context<'_>,
    intent: &RoutingIntent,
    cluster: &Cluster,
) -> Result<Object, PlanError> {
    let service = cx.canary.spec.service.as_ref();
    let delegation = service.and_then(|s| s.delegation).unwrap_or(false);
    let mut hosts = service.and_then(|s| s.hosts.clone()).unwrap_or_default();
    let mut gateways = service.and_then(|s| s.gateways.clone()).unwrap_or_default();
    if delegation && (!hosts.is_empty() || !gateways.is_empty()) {
        return Err(PlanError::Invalid {
            field: "spec.service.delegation".into(),
            message: "a delegate VirtualService has no hosts or gateways (the root one has); remove service.hosts and service.gateways, or delegation".into(),
        });
    }
    if !delegation {
        if !hosts.iter().any(|h| h == cx.apex() || h == "*") {
            hosts.push(cx.apex().to_string());
        }
        if gateways.is_empty() {
            gateways.push("mesh".into());
        }
    }
    let raw = cluster.raw(Kind::VirtualService, cx.namespace, cx.apex());
    let existing: Option<VirtualServiceSpec> =
        cluster.spec(Kind::VirtualService, cx.namespace, cx.apex())?;
    let mut spec = VirtualServiceSpec {
        hosts: (!hosts.is_empty()).then_some(hosts),
        gateways: (!gateways.is_empty()).then_some(gateways),
        ..Default::default()
    };
    let theirs = existing.as_ref();
    if is_tcp(cx) {
        let mut tcp = vec![tcp_route(cx, intent)?];
        tcp.extend(
            theirs
                .and_then(|s| s.tcp.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|r| {
                    !ours(
                        cx,
                        r.route.iter().flatten().map(|d| d.destination.host.clone()),
                    )
                }),
        );
        spec.tcp = Some(tcp);
        spec.http = theirs.and_then(|s| s.http.clone());
    } else {
        let their_http: Vec<VirtualServiceHttp> = theirs
            .and_then(|s| s.http.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !SiskinRule::is_owned(r.name.as_deref()))
            .collect();
        let (specific, catch_all): (Vec<_>, Vec<_>) = their_http
            .into_iter()
            .partition(|r| r.r#match.as_ref().is_some_and(|m| !m.is_empty()));
        let mut http = specific;
        http.extend(http_routes(cx, intent)?);
        http.extend(catch_all);
        spec.http = Some(http);
        spec.tcp = theirs.and_then(|s| s.tcp.clone());
    }
    if let Some(t) = theirs {
        spec.tls = t.tls.clone();
        spec.export_to = t.export_to.clone();
    }
    let mut meta = cx.meta(cx.apex(), service.and_then(|s| s.apex.as_ref()));
    let adopted = !owned_by(cx, raw);
    if adopted {
        meta.owner_references = None;
    }
    // The spec as it was before Siskin first wrote it: carried forward once stored, stored
    // when Siskin adopts a VirtualService it did not create.
    let stored = raw
        .and_then(|r| r["metadata"]["annotations"][ORIGINAL].as_str())
        .map(str::to_string);
    let original = match (stored, adopted, raw) {
        (Some(s), _, _) => Some(s),
        (None, true, Some(r)) => Some(r["spec"].to_string()),
        _ => None,
    };
    if let Some(o) = original {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ORIGINAL.into(), o);
    }
    let vs = VirtualService {
        metadata: meta,
        spec,
        status: None,
    };
    Ok(Object::new(Kind::VirtualService, &vs))
}

/// The destination port, written as Flagger does: with `portDiscovery` behind a gateway
/// other than the mesh, or in a delegate.
fn port(cx: &Context<'_>) -> Result<Option<i64>, PlanError> {
    let service = cx.canary.spec.service.as_ref();
    let discovery = service.and_then(|s| s.port_discovery).unwrap_or(false);
    let gateways = service
        .and_then(|s| s.gateways.as_deref())
        .unwrap_or_default();
    let delegation = service.and_then(|s| s.delegation).unwrap_or(false);
    let behind_gateway = gateways.first().is_some_and(|g| g != "mesh");
    Ok((discovery && (behind_gateway || delegation)).then_some(i64::from(cx.port()?)))
}

fn destination(
    host: String,
    port: Option<i64>,
    weight: Weight,
    cookie: Option<&SessionCookie>,
) -> VirtualServiceHttpRoute {
    VirtualServiceHttpRoute {
        destination: VirtualServiceHttpRouteDestination {
            host,
            port: port.map(|n| VirtualServiceHttpRouteDestinationPort { number: Some(n) }),
            subset: None,
        },
        headers: cookie.map(|c| VirtualServiceHttpRouteHeaders {
            request: None,
            response: Some(VirtualServiceHttpRouteHeadersResponse {
                add: Some([("Set-Cookie".to_string(), c.to_header())].into()),
                ..Default::default()
            }),
        }),
        weight: Some(i32::from(weight)),
    }
}

fn matches(
    list: &[HttpMatchRequest],
    field: &str,
) -> Result<Vec<VirtualServiceHttpMatch>, PlanError> {
    list.iter()
        .enumerate()
        .map(|(i, m)| convert(m, &format!("{field}[{i}]"), "Istio's HTTPMatchRequest"))
        .collect()
}

/// The route's own conditions, each with a `cookie` header condition for `pair`.
fn carrying(route: &[VirtualServiceHttpMatch], pair: &str) -> Vec<VirtualServiceHttpMatch> {
    let cookie = VirtualServiceHttpMatchHeaders {
        regex: Some(format!("^(.*;\\s*)?{}(;.*)?$", regex_escape(pair))),
        ..Default::default()
    };
    let with = |mut m: VirtualServiceHttpMatch| {
        m.headers
            .get_or_insert_with(BTreeMap::new)
            .insert("cookie".into(), cookie.clone());
        m
    };
    if route.is_empty() {
        return vec![with(VirtualServiceHttpMatch::default())];
    }
    route.iter().cloned().map(with).collect()
}

/// Siskin's HTTP routes for `intent`.
fn http_routes(
    cx: &Context<'_>,
    intent: &RoutingIntent,
) -> Result<Vec<VirtualServiceHttp>, PlanError> {
    let service = cx.canary.spec.service.as_ref();
    let port = port(cx)?;
    let split = &intent.split;
    let (primary, canary) = (cx.primary_service(), cx.canary_service());
    let route_matches = matches(&intent.route_requests, "spec.service.match")?;
    let base = VirtualServiceHttp {
        r#match: (!route_matches.is_empty()).then(|| route_matches.clone()),
        rewrite: service
            .and_then(|s| s.rewrite.as_ref())
            .map(|r| VirtualServiceHttpRewrite {
                authority: r.authority.clone(),
                uri: r.uri.clone(),
                uri_regex_rewrite: None,
            }),
        timeout: service.and_then(|s| s.timeout.clone()),
        retries: service
            .and_then(|s| s.retries.as_ref())
            .map(|r| convert(r, "spec.service.retries", "Istio's HTTPRetry"))
            .transpose()?,
        cors_policy: service
            .and_then(|s| s.cors_policy.as_ref())
            .map(|c| convert(c, "spec.service.corsPolicy", "Istio's CorsPolicy"))
            .transpose()?,
        headers: service
            .and_then(|s| s.headers.as_ref())
            .map(|h| convert(h, "spec.service.headers", "Istio's Headers"))
            .transpose()?,
        ..Default::default()
    };
    let weighted = |cookies: (Option<&SessionCookie>, Option<&SessionCookie>)| {
        vec![
            destination(primary.clone(), port, split.primary(), cookies.0),
            destination(canary.clone(), port, split.canary(), cookies.1),
        ]
    };
    let one_side = |to_canary: bool| {
        vec![
            destination(
                primary.clone(),
                port,
                if to_canary {
                    Weight::ZERO
                } else {
                    Weight::FULL
                },
                None,
            ),
            destination(
                canary.clone(),
                port,
                if to_canary {
                    Weight::FULL
                } else {
                    Weight::ZERO
                },
                None,
            ),
        ]
    };
    let name = |rule: SiskinRule| Some(rule.name().to_string());
    let mirror = split.mirror.map(|pct| {
        (
            VirtualServiceHttpMirror {
                host: canary.clone(),
                port: None,
                subset: None,
            },
            (pct < Weight::FULL).then(|| VirtualServiceHttpMirrorPercentage {
                value: Some(f64::from(pct.get())),
            }),
        )
    });
    if !intent.ab_requests.is_empty() {
        let ab = matches(&intent.ab_requests, "spec.analysis.match")?;
        return Ok(vec![
            VirtualServiceHttp {
                name: name(SiskinRule::Ab),
                r#match: Some(ab),
                route: Some(weighted((None, None))),
                ..base.clone()
            },
            VirtualServiceHttp {
                name: name(SiskinRule::Primary),
                route: Some(vec![destination(primary.clone(), port, Weight::FULL, None)]),
                ..base
            },
        ]);
    }
    let mut out = Vec::new();
    let cookies = intent.cookies.as_ref();
    if let Some(cookies) = cookies {
        if let (Some(c), true) = (&cookies.canary, split.canary() > Weight::ZERO) {
            out.push(VirtualServiceHttp {
                name: name(SiskinRule::StickyCanary),
                r#match: Some(carrying(&route_matches, &format!("{}={}", c.name, c.value))),
                route: Some(one_side(true)),
                ..base.clone()
            });
        }
        if let (Some(c), true) = (&cookies.primary, split.primary() > Weight::ZERO) {
            out.push(VirtualServiceHttp {
                name: name(SiskinRule::StickyPrimary),
                r#match: Some(carrying(&route_matches, &format!("{}={}", c.name, c.value))),
                route: Some(one_side(false)),
                ..base.clone()
            });
        }
        if let Some(pair) = cookies.expire.as_deref() {
            let mut headers: VirtualServiceHttpHeaders = base.headers.clone().unwrap_or_default();
            headers
                .response
                .get_or_insert_with(VirtualServiceHttpHeadersResponse::default)
                .add
                .get_or_insert_with(BTreeMap::new)
                .insert("Set-Cookie".into(), format!("{pair}; Max-Age=-1"));
            out.push(VirtualServiceHttp {
                name: name(SiskinRule::StickyExpire),
                r#match: Some(carrying(&route_matches, pair)),
                headers: Some(headers),
                route: Some(weighted((None, None))),
                ..base.clone()
            });
        }
    }
    let sides = cookies.map_or((None, None), |c| {
        (
            c.primary.as_ref().filter(|_| split.canary() > Weight::ZERO),
            c.canary.as_ref().filter(|_| split.canary() > Weight::ZERO),
        )
    });
    let mut canary_route = VirtualServiceHttp {
        name: name(SiskinRule::Canary),
        route: Some(weighted(sides)),
        ..base
    };
    if let Some((m, pct)) = mirror {
        canary_route.mirror = Some(m);
        canary_route.mirror_percentage = pct;
    }
    out.push(canary_route);
    Ok(out)
}

fn tcp_route(cx: &Context<'_>, intent: &RoutingIntent) -> Result<VirtualServiceTcp, PlanError> {
    let port = port(cx)?;
    let d = |host: String, weight: Weight| VirtualServiceTcpRoute {
        destination: VirtualServiceTcpRouteDestination {
            host,
            port: port.map(|n| VirtualServiceTcpRouteDestinationPort { number: Some(n) }),
            subset: None,
        },
        weight: Some(i32::from(weight)),
    };
    let ports: Vec<VirtualServiceTcpMatch> = intent
        .route_requests
        .iter()
        .filter_map(|m| m.port)
        .map(|p| VirtualServiceTcpMatch {
            port: Some(i64::from(p)),
            ..Default::default()
        })
        .collect();
    Ok(VirtualServiceTcp {
        r#match: (!ports.is_empty()).then_some(ports),
        route: Some(vec![
            d(cx.primary_service(), intent.split.primary()),
            d(cx.canary_service(), intent.split.canary()),
        ]),
    })
}

/// The split Siskin's weighted route carries.
fn observe(cx: &Context<'_>, spec: &VirtualServiceSpec) -> Option<Split> {
    let canary_name = cx.canary_service();
    let share = |weights: Vec<(String, Option<i32>)>| {
        let (mut canary, mut total) = (0u64, 0u64);
        for (host, w) in weights {
            let w = u64::try_from(w.unwrap_or(0)).unwrap_or(0);
            total += w;
            if host == canary_name {
                canary += w;
            }
        }
        Weight::share(canary, total)
    };
    if is_tcp(cx) {
        let route = spec.tcp.iter().flatten().find(|r| {
            ours(
                cx,
                r.route.iter().flatten().map(|d| d.destination.host.clone()),
            )
        })?;
        return Some(Split::to_canary(share(
            route
                .route
                .iter()
                .flatten()
                .map(|d| (d.destination.host.clone(), d.weight))
                .collect(),
        )));
    }
    let route = spec.http.iter().flatten().find(|r| {
        r.name
            .as_deref()
            .and_then(SiskinRule::parse)
            .is_some_and(SiskinRule::carries_split)
    })?;
    let mut split = Split::to_canary(share(
        route
            .route
            .iter()
            .flatten()
            .map(|d| (d.destination.host.clone(), d.weight))
            .collect(),
    ));
    split.mirror = route
        .mirror
        .as_ref()
        .filter(|m| m.host == canary_name)
        .map(|_| {
            let pct = route
                .mirror_percentage
                .as_ref()
                .and_then(|p| p.value)
                .unwrap_or(100.0);
            Weight::clamped(pct.round() as i64)
        });
    Some(split)
}
