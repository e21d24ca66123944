//! The Gateway API `GRPCRoute` of the `gatewayapi:v1` backend, for a Canary whose
//! `service.appProtocol` is `grpc`: the same split as the HTTPRoute, in gRPC terms. Rules
//! Siskin owns are named `siskin-*`; the user's rules of the route are kept.
//!
//! A route condition on the path becomes a method match (`/pkg.Service/Method` exactly, or
//! the prefix `/pkg.Service/` as the whole service); headers match as they are. Anything a
//! GRPCRoute cannot match on (query parameters, methods other than POST, regular-expression
//! paths) is an error naming the field.

use siskin_api::Weight;
use siskin_driver::RoutingIntent;
use siskin_engine::Split;
use siskin_foreign::gateway::{
    grpcroutes::{
        GrpcRoute, GrpcRouteParentRefs, GrpcRouteRules, GrpcRouteRulesBackendRefs,
        GrpcRouteRulesFilters, GrpcRouteRulesFiltersRequestHeaderModifier,
        GrpcRouteRulesFiltersRequestHeaderModifierAdd,
        GrpcRouteRulesFiltersRequestHeaderModifierSet, GrpcRouteRulesFiltersRequestMirror,
        GrpcRouteRulesFiltersRequestMirrorBackendRef, GrpcRouteRulesFiltersResponseHeaderModifier,
        GrpcRouteRulesFiltersResponseHeaderModifierAdd,
        GrpcRouteRulesFiltersResponseHeaderModifierSet, GrpcRouteRulesFiltersType,
        GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeaders, GrpcRouteRulesMatchesHeadersType,
        GrpcRouteRulesMatchesMethod, GrpcRouteRulesMatchesMethodType, GrpcRouteSpec,
    },
    httproutes::HttpRouteParentRefs,
};
use siskin_route::{Match, PathMatchType, SiskinRule, ValueMatchType};

use crate::{
    backends::{Context, PlanError, httproute, owned_by},
    objects::{Change, Cluster, Kind, Object, ObjectRef},
};

/// Whether the Canary's Service speaks gRPC (`service.appProtocol: grpc`).
pub fn is_grpc(spec: &siskin_api::CanarySpec) -> bool {
    spec.service
        .as_ref()
        .and_then(|s| s.app_protocol.as_deref())
        .is_some_and(|p| p.eq_ignore_ascii_case("grpc"))
}

/// The route as it is, if it exists.
pub fn existing(cx: &Context<'_>, cluster: &Cluster) -> Result<Option<GrpcRoute>, PlanError> {
    Ok(cluster.get(Kind::GrpcRoute, cx.namespace, cx.apex())?)
}

/// The route for `intent`: Siskin's rules first, then the user's rules of the route as it is.
pub fn plan(
    cx: &Context<'_>,
    intent: &RoutingIntent,
    cluster: &Cluster,
    parents: &[HttpRouteParentRefs],
    hostnames: &[String],
) -> Result<Object, PlanError> {
    if let Err(u) = intent.unmatchable() {
        return Err(PlanError::Invalid {
            field: u.field.clone(),
            message: u.message.clone(),
        });
    }
    let port = cx.port()?;
    let split = &intent.split;
    let filters = filters(cx, intent, port);
    let route_matches = intent
        .route_matches
        .iter()
        .enumerate()
        .map(|(i, m)| to_match(m, &format!("spec.service.match[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let backends = |(p, c): (Weight, Weight)| {
        let one = |name: String, w: Weight| GrpcRouteRulesBackendRefs {
            group: Some(String::new()),
            kind: Some("Service".into()),
            name,
            port: Some(port),
            weight: Some(i32::from(w)),
            ..Default::default()
        };
        Some(vec![
            one(cx.primary_service(), p),
            one(cx.canary_service(), c),
        ])
    };
    let base = GrpcRouteRules {
        filters: (!filters.is_empty()).then_some(filters),
        matches: (!route_matches.is_empty()).then(|| route_matches.clone()),
        ..Default::default()
    };
    let name = |r: SiskinRule| Some(r.name().to_string());
    let mut rules = if intent.ab_matches.is_empty() {
        vec![GrpcRouteRules {
            name: name(SiskinRule::Canary),
            backend_refs: backends((split.primary(), split.canary())),
            ..base
        }]
    } else {
        let ab = intent
            .ab_matches
            .iter()
            .enumerate()
            .map(|(i, m)| to_match(m, &format!("spec.analysis.match[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        vec![
            GrpcRouteRules {
                name: name(SiskinRule::Ab),
                matches: Some(ab),
                backend_refs: backends((split.primary(), split.canary())),
                ..base.clone()
            },
            GrpcRouteRules {
                name: name(SiskinRule::Primary),
                backend_refs: backends((Weight::FULL, Weight::ZERO)),
                filters: None,
                ..base
            },
        ]
    };
    let current = existing(cx, cluster)?;
    rules.extend(
        current
            .iter()
            .flat_map(|r| r.spec.rules.iter().flatten())
            .filter(|r| !SiskinRule::is_owned(r.name.as_deref()))
            .cloned(),
    );
    let mut meta = cx.meta(
        cx.apex(),
        cx.canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.apex.as_ref()),
    );
    if !owned_by(cx, cluster.raw(Kind::GrpcRoute, cx.namespace, cx.apex())) {
        meta.owner_references = None;
    }
    let route = GrpcRoute {
        metadata: meta,
        spec: GrpcRouteSpec {
            parent_refs: Some(
                parents
                    .iter()
                    .map(|p| GrpcRouteParentRefs {
                        group: p.group.clone(),
                        kind: p.kind.clone(),
                        name: p.name.clone(),
                        namespace: p.namespace.clone(),
                        port: p.port,
                        section_name: p.section_name.clone(),
                    })
                    .collect(),
            ),
            hostnames: (!hostnames.is_empty()).then(|| hostnames.to_vec()),
            rules: Some(rules),
        },
        status: None,
    };
    Ok(Object::new(Kind::GrpcRoute, &route))
}

/// The split Siskin's rules carry, and whether every parent that reports on the route has
/// accepted its current generation.
pub fn observe(cx: &Context<'_>, route: &GrpcRoute) -> Option<(Split, bool)> {
    let rule = route
        .spec
        .rules
        .iter()
        .flatten()
        .find(|r| httproute::carries_split(r.name.as_deref()))?;
    let split = httproute::split_of(
        cx,
        rule.backend_refs
            .iter()
            .flatten()
            .map(|b| (b.name.as_str(), b.weight)),
        rule.filters
            .iter()
            .flatten()
            .filter_map(|f| f.request_mirror.as_ref())
            .map(|m| (m.backend_ref.name.as_str(), m.percent)),
    );
    let accepted = httproute::accepted(
        route.metadata.generation,
        route
            .status
            .iter()
            .flat_map(|s| &s.parents)
            .map(|p| p.conditions.as_slice()),
    );
    Some((split, accepted))
}

/// Siskin's rules out of the route: the route without them, or its deletion when no rule of
/// the user's remains.
pub fn revert(cx: &Context<'_>, cluster: &Cluster) -> Result<Option<Change>, PlanError> {
    let Some(mut route) = existing(cx, cluster)? else {
        return Ok(None);
    };
    let theirs: Vec<GrpcRouteRules> = route
        .spec
        .rules
        .iter()
        .flatten()
        .filter(|r| !SiskinRule::is_owned(r.name.as_deref()))
        .cloned()
        .collect();
    if theirs.is_empty() {
        return Ok(Some(Change::Delete(ObjectRef::new(
            Kind::GrpcRoute,
            cx.namespace,
            cx.apex(),
        ))));
    }
    route.spec.rules = Some(theirs);
    route.status = None;
    route.metadata.managed_fields = None;
    route.metadata.resource_version = None;
    Ok(Some(Change::Apply(Object::new(Kind::GrpcRoute, &route))))
}

fn filter(kind: GrpcRouteRulesFiltersType) -> GrpcRouteRulesFilters {
    GrpcRouteRulesFilters {
        extension_ref: None,
        request_header_modifier: None,
        request_mirror: None,
        response_header_modifier: None,
        r#type: kind,
    }
}

/// `service.headers` and the release's mirror to the canary.
fn filters(cx: &Context<'_>, intent: &RoutingIntent, port: i32) -> Vec<GrpcRouteRulesFilters> {
    let mut out = Vec::new();
    let pairs = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        })
    };
    let headers = cx
        .canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.headers.as_ref());
    if let Some(ops) = headers.and_then(|h| h.request.as_ref()) {
        out.push(GrpcRouteRulesFilters {
            request_header_modifier: Some(GrpcRouteRulesFiltersRequestHeaderModifier {
                add: pairs(ops.add.as_ref()).map(|v| {
                    v.into_iter()
                        .map(
                            |(name, value)| GrpcRouteRulesFiltersRequestHeaderModifierAdd {
                                name,
                                value,
                            },
                        )
                        .collect()
                }),
                set: pairs(ops.set.as_ref()).map(|v| {
                    v.into_iter()
                        .map(
                            |(name, value)| GrpcRouteRulesFiltersRequestHeaderModifierSet {
                                name,
                                value,
                            },
                        )
                        .collect()
                }),
                remove: ops.remove.clone(),
            }),
            ..filter(GrpcRouteRulesFiltersType::RequestHeaderModifier)
        });
    }
    if let Some(ops) = headers.and_then(|h| h.response.as_ref()) {
        out.push(GrpcRouteRulesFilters {
            response_header_modifier: Some(GrpcRouteRulesFiltersResponseHeaderModifier {
                add: pairs(ops.add.as_ref()).map(|v| {
                    v.into_iter()
                        .map(
                            |(name, value)| GrpcRouteRulesFiltersResponseHeaderModifierAdd {
                                name,
                                value,
                            },
                        )
                        .collect()
                }),
                set: pairs(ops.set.as_ref()).map(|v| {
                    v.into_iter()
                        .map(
                            |(name, value)| GrpcRouteRulesFiltersResponseHeaderModifierSet {
                                name,
                                value,
                            },
                        )
                        .collect()
                }),
                remove: ops.remove.clone(),
            }),
            ..filter(GrpcRouteRulesFiltersType::ResponseHeaderModifier)
        });
    }
    if let Some(pct) = intent.split.mirror {
        out.push(GrpcRouteRulesFilters {
            request_mirror: Some(GrpcRouteRulesFiltersRequestMirror {
                backend_ref: GrpcRouteRulesFiltersRequestMirrorBackendRef {
                    group: Some(String::new()),
                    kind: Some("Service".into()),
                    name: cx.canary_service(),
                    namespace: None,
                    port: Some(port),
                },
                fraction: None,
                percent: (pct < Weight::FULL).then(|| i32::from(pct)),
            }),
            ..filter(GrpcRouteRulesFiltersType::RequestMirror)
        });
    }
    out
}

/// A resolved request condition as a `GRPCRouteMatch`.
fn to_match(m: &Match, at: &str) -> Result<GrpcRouteRulesMatches, PlanError> {
    let invalid = |field: &str, message: &str| PlanError::Invalid {
        field: format!("{at}.{field}"),
        message: message.to_string(),
    };
    if !m.query_params.is_empty() {
        return Err(invalid(
            "queryParams",
            "gRPC requests have no query; match on headers or the method (uri)",
        ));
    }
    if m.method.as_deref().is_some_and(|x| x != "POST") {
        return Err(invalid(
            "method",
            "every gRPC call is a POST; remove method (match the gRPC method with uri)",
        ));
    }
    let method = match &m.path {
        None => None,
        Some(p) => {
            let path = p.value.trim_start_matches('/');
            let (service, method) = match p.kind {
                PathMatchType::Exact => match path.split_once('/') {
                    Some((s, m)) if !s.is_empty() && !m.is_empty() && !m.contains('/') => {
                        (s.to_string(), Some(m.to_string()))
                    }
                    _ => {
                        return Err(invalid(
                            "uri.exact",
                            "a gRPC method is /package.Service/Method",
                        ));
                    }
                },
                PathMatchType::PathPrefix if !path.trim_end_matches('/').contains('/') => {
                    (path.trim_end_matches('/').to_string(), None)
                }
                _ => {
                    return Err(invalid(
                        "uri",
                        "a GRPCRoute matches a method (exact: /package.Service/Method) or a whole service (prefix: /package.Service/)",
                    ));
                }
            };
            Some(GrpcRouteRulesMatchesMethod {
                service: (!service.is_empty()).then_some(service),
                method,
                r#type: Some(GrpcRouteRulesMatchesMethodType::Exact),
            })
        }
    };
    let headers: Vec<GrpcRouteRulesMatchesHeaders> = m
        .headers
        .iter()
        .map(|h| GrpcRouteRulesMatchesHeaders {
            name: h.name.clone(),
            r#type: Some(if h.kind == ValueMatchType::RegularExpression {
                GrpcRouteRulesMatchesHeadersType::RegularExpression
            } else {
                GrpcRouteRulesMatchesHeadersType::Exact
            }),
            value: h.value.clone(),
        })
        .collect();
    Ok(GrpcRouteRulesMatches {
        headers: (!headers.is_empty()).then_some(headers),
        method,
    })
}
