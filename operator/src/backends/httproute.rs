//! The Gateway API `HTTPRoute` of the `builtin` and `gatewayapi` backends, as a pure plan over
//! the generated type the router reads too. Rules Siskin owns are named `siskin-*`
//! ([`SiskinRule`]); every other rule of the route is the user's and is kept.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use siskin_api::Weight;
use siskin_driver::{RoutingIntent, regex_escape};
use siskin_engine::Split;
use siskin_foreign::gateway::httproutes::{
    HttpRoute, HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs,
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesBackendRefsFiltersResponseHeaderModifier,
    HttpRouteRulesBackendRefsFiltersResponseHeaderModifierAdd,
    HttpRouteRulesBackendRefsFiltersType, HttpRouteRulesFilters,
    HttpRouteRulesFiltersRequestHeaderModifier, HttpRouteRulesFiltersRequestHeaderModifierAdd,
    HttpRouteRulesFiltersRequestHeaderModifierSet, HttpRouteRulesFiltersRequestMirror,
    HttpRouteRulesFiltersRequestMirrorBackendRef, HttpRouteRulesFiltersResponseHeaderModifier,
    HttpRouteRulesFiltersResponseHeaderModifierAdd, HttpRouteRulesFiltersResponseHeaderModifierSet,
    HttpRouteRulesFiltersType, HttpRouteRulesFiltersUrlRewrite,
    HttpRouteRulesFiltersUrlRewritePath, HttpRouteRulesFiltersUrlRewritePathType,
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeaders, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesMethod, HttpRouteRulesMatchesPath, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParams, HttpRouteRulesMatchesQueryParamsType, HttpRouteRulesTimeouts,
    HttpRouteSpec,
};
use siskin_route::{Match, PathMatchType, SiskinRule, ValueMatch, ValueMatchType};

use crate::{
    backends::{Context, PlanError, owned_by},
    objects::{Change, Cluster, Kind, Object, ObjectRef},
};

/// How a backend attaches its route.
#[derive(Clone, Debug)]
pub struct Shape {
    /// The API version written (`v1`, `v1beta1`).
    pub version: &'static str,
    /// Parents (Gateways, or the apex Service).
    pub parents: Vec<HttpRouteParentRefs>,
    /// Host names (empty: the parents decide).
    pub hostnames: Vec<String>,
    /// Whether `timeouts` exist at this version.
    pub timeouts: bool,
}

/// The route as it is, if it exists.
pub fn existing(
    cx: &Context<'_>,
    cluster: &Cluster,
    version: &'static str,
) -> Result<Option<HttpRoute>, PlanError> {
    Ok(cluster.get(Kind::HttpRoute(version), cx.namespace, cx.apex())?)
}

/// The route for `intent`: Siskin's rules first, then the user's rules of the route as it is.
pub fn plan(
    cx: &Context<'_>,
    intent: &RoutingIntent,
    cluster: &Cluster,
    shape: &Shape,
) -> Result<Object, PlanError> {
    let current = existing(cx, cluster, shape.version)?;
    let mut rules = rules(cx, intent, shape)?;
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
    let raw = cluster.raw(Kind::HttpRoute(shape.version), cx.namespace, cx.apex());
    if !owned_by(cx, raw) {
        meta.owner_references = None;
    }
    let route = HttpRoute {
        metadata: meta,
        spec: HttpRouteSpec {
            parent_refs: Some(shape.parents.clone()),
            hostnames: (!shape.hostnames.is_empty()).then(|| shape.hostnames.clone()),
            rules: Some(rules),
        },
        status: None,
    };
    Ok(Object::new(Kind::HttpRoute(shape.version), &route))
}

/// The split Siskin's rules carry, if the route has them.
pub fn observe(cx: &Context<'_>, route: &HttpRoute) -> Option<Split> {
    let rule = route
        .spec
        .rules
        .iter()
        .flatten()
        .find(|r| carries_split(r.name.as_deref()))?;
    Some(split_of(
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
    ))
}

/// Whether a rule of this name is Siskin's weighted one.
pub fn carries_split(name: Option<&str>) -> bool {
    name.and_then(SiskinRule::parse)
        .is_some_and(SiskinRule::carries_split)
}

/// The split of a Gateway API rule (HTTPRoute or GRPCRoute): its backendRefs' weights
/// (`name`, `weight`; unset is 1) and its mirrors (`name`, `percent`; unset is 100).
pub fn split_of<'a>(
    cx: &Context<'_>,
    backends: impl Iterator<Item = (&'a str, Option<i32>)>,
    mirrors: impl Iterator<Item = (&'a str, Option<i32>)>,
) -> Split {
    let canary_name = cx.canary_service();
    let (mut canary, mut total) = (0u64, 0u64);
    for (name, weight) in backends {
        let w = u64::try_from(weight.unwrap_or(1)).unwrap_or(0);
        total += w;
        if name == canary_name {
            canary += w;
        }
    }
    let mut mirrors = mirrors;
    let mut split = Split::to_canary(Weight::share(canary, total));
    split.mirror = mirrors
        .find(|(name, _)| *name == canary_name)
        .map(|(_, pct)| Weight::clamped(i64::from(pct.unwrap_or(100))));
    split
}

/// Whether every parent that reports on the route has accepted its current generation. A
/// route no controller reports on counts as accepted.
pub fn accepted_by_parents(route: &HttpRoute) -> bool {
    accepted(
        route.metadata.generation,
        route
            .status
            .iter()
            .flat_map(|s| &s.parents)
            .map(|p| p.conditions.as_slice()),
    )
}

/// Whether each parent's conditions say `Accepted` for `generation` or later.
pub fn accepted<'a>(
    generation: Option<i64>,
    parents: impl IntoIterator<Item = &'a [Condition]>,
) -> bool {
    let generation = generation.unwrap_or(0);
    parents.into_iter().all(|conditions| {
        conditions.iter().any(|c| {
            c.type_ == "Accepted"
                && c.status == "True"
                && c.observed_generation.unwrap_or(0) >= generation
        })
    })
}

/// Siskin's rules out of the route: the route without them, or its deletion when no rule of
/// the user's remains.
pub fn revert(
    cx: &Context<'_>,
    cluster: &Cluster,
    version: &'static str,
) -> Result<Option<Change>, PlanError> {
    let Some(mut route) = existing(cx, cluster, version)? else {
        return Ok(None);
    };
    let theirs: Vec<HttpRouteRules> = route
        .spec
        .rules
        .iter()
        .flatten()
        .filter(|r| !SiskinRule::is_owned(r.name.as_deref()))
        .cloned()
        .collect();
    if theirs.is_empty() {
        return Ok(Some(Change::Delete(ObjectRef::new(
            Kind::HttpRoute(version),
            cx.namespace,
            cx.apex(),
        ))));
    }
    route.spec.rules = Some(theirs);
    route.status = None;
    route.metadata.managed_fields = None;
    route.metadata.resource_version = None;
    Ok(Some(Change::Apply(Object::new(
        Kind::HttpRoute(version),
        &route,
    ))))
}

// === the rules ===

fn backends(
    cx: &Context<'_>,
    port: i32,
    split: (Weight, Weight),
) -> Vec<HttpRouteRulesBackendRefs> {
    let one = |name: String, weight: Weight| HttpRouteRulesBackendRefs {
        group: Some(String::new()),
        kind: Some("Service".into()),
        name,
        port: Some(port),
        weight: Some(i32::from(weight)),
        ..Default::default()
    };
    vec![
        one(cx.primary_service(), split.0),
        one(cx.canary_service(), split.1),
    ]
}

fn named(rule: SiskinRule, mut r: HttpRouteRules) -> HttpRouteRules {
    r.name = Some(rule.name().to_string());
    r
}

/// The rules Siskin owns for `intent`.
fn rules(
    cx: &Context<'_>,
    intent: &RoutingIntent,
    shape: &Shape,
) -> Result<Vec<HttpRouteRules>, PlanError> {
    let port = cx.port()?;
    if let Err(u) = intent.unmatchable() {
        return Err(PlanError::Invalid {
            field: u.field.clone(),
            message: u.message.clone(),
        });
    }
    let split = &intent.split;
    let weights = (split.primary(), split.canary());
    let route_matches: Vec<HttpRouteRulesMatches> =
        intent.route_matches.iter().map(to_match).collect();
    let base = HttpRouteRules {
        filters: none_if_empty(filters(cx, intent, port)?),
        matches: none_if_empty(route_matches.clone()),
        timeouts: timeouts(intent, shape),
        ..Default::default()
    };
    if !intent.ab_matches.is_empty() {
        // A/B: the conditions (each merged with the route's own) follow the weights; the rest
        // of the route's traffic stays on the primary.
        let matches = intent.ab_matches.iter().map(to_match).collect();
        return Ok(vec![
            named(
                SiskinRule::Ab,
                HttpRouteRules {
                    matches: Some(matches),
                    backend_refs: Some(backends(cx, port, weights)),
                    ..base.clone()
                },
            ),
            named(
                SiskinRule::Primary,
                HttpRouteRules {
                    backend_refs: Some(backends(cx, port, (Weight::FULL, Weight::ZERO))),
                    filters: None,
                    ..base
                },
            ),
        ]);
    }
    let Some(cookies) = &intent.cookies else {
        return Ok(vec![named(
            SiskinRule::Canary,
            HttpRouteRules {
                backend_refs: Some(backends(cx, port, weights)),
                ..base
            },
        )]);
    };
    // Session affinity in standard Gateway API terms (as Flagger writes it): each backendRef
    // adds its cookie to its responses, and a request carrying a cookie matches a rule that
    // sends it back to that side; the previous run's cookie is expired when it is seen.
    let mut weighted = backends(cx, port, weights);
    weighted[0].filters = cookies
        .primary
        .as_ref()
        .map(|c| vec![set_cookie(c.to_header())]);
    weighted[1].filters = cookies
        .canary
        .as_ref()
        .map(|c| vec![set_cookie(c.to_header())]);
    let carrying = |pair: &str| -> Vec<HttpRouteRulesMatches> {
        let cookie = HttpRouteRulesMatchesHeaders {
            name: "Cookie".into(),
            r#type: Some(HttpRouteRulesMatchesHeadersType::RegularExpression),
            value: format!("^(.*;\\s*)?{}(;.*)?$", regex_escape(pair)),
        };
        if route_matches.is_empty() {
            return vec![HttpRouteRulesMatches {
                headers: Some(vec![cookie]),
                ..Default::default()
            }];
        }
        route_matches
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.headers.get_or_insert_with(Vec::new).push(cookie.clone());
                m
            })
            .collect()
    };
    let mut out = Vec::new();
    if let (Some(c), true) = (&cookies.canary, split.canary() > Weight::ZERO) {
        out.push(named(
            SiskinRule::StickyCanary,
            HttpRouteRules {
                matches: Some(carrying(&format!("{}={}", c.name, c.value))),
                backend_refs: Some(backends(cx, port, (Weight::ZERO, Weight::FULL))),
                ..base.clone()
            },
        ));
    }
    if let (Some(c), true) = (&cookies.primary, split.primary() > Weight::ZERO) {
        out.push(named(
            SiskinRule::StickyPrimary,
            HttpRouteRules {
                matches: Some(carrying(&format!("{}={}", c.name, c.value))),
                backend_refs: Some(backends(cx, port, (Weight::FULL, Weight::ZERO))),
                ..base.clone()
            },
        ));
    }
    if let Some(pair) = cookies.expire.as_deref() {
        let mut filters = base.filters.clone().unwrap_or_default();
        filters.push(HttpRouteRulesFilters {
            r#type: HttpRouteRulesFiltersType::ResponseHeaderModifier,
            response_header_modifier: Some(HttpRouteRulesFiltersResponseHeaderModifier {
                add: Some(vec![HttpRouteRulesFiltersResponseHeaderModifierAdd {
                    name: "Set-Cookie".into(),
                    value: format!("{pair}; Max-Age=-1"),
                }]),
                ..Default::default()
            }),
            ..filter_default(HttpRouteRulesFiltersType::ResponseHeaderModifier)
        });
        out.push(named(
            SiskinRule::StickyExpire,
            HttpRouteRules {
                matches: Some(carrying(pair)),
                filters: Some(filters),
                backend_refs: Some(weighted.clone()),
                ..base.clone()
            },
        ));
    }
    out.push(named(
        SiskinRule::Canary,
        HttpRouteRules {
            backend_refs: Some(weighted),
            ..base
        },
    ));
    Ok(out)
}

fn none_if_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn timeouts(intent: &RoutingIntent, shape: &Shape) -> Option<HttpRouteRulesTimeouts> {
    let t = &intent.timeouts;
    if !shape.timeouts || (t.request.is_none() && t.backend_request.is_none()) {
        return None;
    }
    Some(HttpRouteRulesTimeouts {
        request: t.request.clone(),
        backend_request: t.backend_request.clone(),
    })
}

fn set_cookie(value: String) -> HttpRouteRulesBackendRefsFilters {
    HttpRouteRulesBackendRefsFilters {
        cors: None,
        extension_ref: None,
        request_header_modifier: None,
        request_mirror: None,
        request_redirect: None,
        response_header_modifier: Some(HttpRouteRulesBackendRefsFiltersResponseHeaderModifier {
            add: Some(vec![
                HttpRouteRulesBackendRefsFiltersResponseHeaderModifierAdd {
                    name: "Set-Cookie".into(),
                    value,
                },
            ]),
            ..Default::default()
        }),
        r#type: HttpRouteRulesBackendRefsFiltersType::ResponseHeaderModifier,
        url_rewrite: None,
    }
}

fn filter_default(kind: HttpRouteRulesFiltersType) -> HttpRouteRulesFilters {
    HttpRouteRulesFilters {
        cors: None,
        extension_ref: None,
        request_header_modifier: None,
        request_mirror: None,
        request_redirect: None,
        response_header_modifier: None,
        r#type: kind,
        url_rewrite: None,
    }
}

/// The rule filters: `service.headers`, `service.rewrite`, `service.mirror`, and the release's
/// mirror to the canary.
fn filters(
    cx: &Context<'_>,
    intent: &RoutingIntent,
    port: i32,
) -> Result<Vec<HttpRouteRulesFilters>, PlanError> {
    let mut out = Vec::new();
    let service = cx.canary.spec.service.as_ref();
    if let Some(h) = service.and_then(|s| s.headers.as_ref()) {
        if let Some(ops) = &h.request {
            out.push(HttpRouteRulesFilters {
                request_header_modifier: Some(HttpRouteRulesFiltersRequestHeaderModifier {
                    set: pairs(ops.set.as_ref(), |name, value| {
                        HttpRouteRulesFiltersRequestHeaderModifierSet { name, value }
                    }),
                    add: pairs(ops.add.as_ref(), |name, value| {
                        HttpRouteRulesFiltersRequestHeaderModifierAdd { name, value }
                    }),
                    remove: ops.remove.clone(),
                }),
                ..filter_default(HttpRouteRulesFiltersType::RequestHeaderModifier)
            });
        }
        if let Some(ops) = &h.response {
            out.push(HttpRouteRulesFilters {
                response_header_modifier: Some(HttpRouteRulesFiltersResponseHeaderModifier {
                    set: pairs(ops.set.as_ref(), |name, value| {
                        HttpRouteRulesFiltersResponseHeaderModifierSet { name, value }
                    }),
                    add: pairs(ops.add.as_ref(), |name, value| {
                        HttpRouteRulesFiltersResponseHeaderModifierAdd { name, value }
                    }),
                    remove: ops.remove.clone(),
                }),
                ..filter_default(HttpRouteRulesFiltersType::ResponseHeaderModifier)
            });
        }
    }
    if let Some(r) = service.and_then(|s| s.rewrite.as_ref()) {
        let path = r.uri.as_ref().map(|uri| {
            if r.r#type.as_deref() == Some("ReplaceFullPath") {
                HttpRouteRulesFiltersUrlRewritePath {
                    r#type: HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath,
                    replace_full_path: Some(uri.clone()),
                    replace_prefix_match: None,
                }
            } else {
                HttpRouteRulesFiltersUrlRewritePath {
                    r#type: HttpRouteRulesFiltersUrlRewritePathType::ReplacePrefixMatch,
                    replace_full_path: None,
                    replace_prefix_match: Some(uri.clone()),
                }
            }
        });
        out.push(HttpRouteRulesFilters {
            url_rewrite: Some(HttpRouteRulesFiltersUrlRewrite {
                hostname: r.authority.clone(),
                path,
            }),
            ..filter_default(HttpRouteRulesFiltersType::UrlRewrite)
        });
    }
    for m in service
        .and_then(|s| s.mirror.as_ref())
        .into_iter()
        .flatten()
    {
        let b = &m.backend_ref;
        out.push(mirror(
            HttpRouteRulesFiltersRequestMirrorBackendRef {
                group: b.group.clone(),
                kind: b.kind.clone(),
                name: b.name.clone(),
                namespace: b.namespace.clone(),
                port: b.port,
            },
            None,
        ));
    }
    if let Some(pct) = intent.split.mirror {
        out.push(mirror(
            HttpRouteRulesFiltersRequestMirrorBackendRef {
                group: Some(String::new()),
                kind: Some("Service".into()),
                name: cx.canary_service(),
                namespace: None,
                port: Some(port),
            },
            Some(pct),
        ));
    }
    Ok(out)
}

fn mirror(
    backend_ref: HttpRouteRulesFiltersRequestMirrorBackendRef,
    percent: Option<Weight>,
) -> HttpRouteRulesFilters {
    HttpRouteRulesFilters {
        request_mirror: Some(HttpRouteRulesFiltersRequestMirror {
            backend_ref,
            fraction: None,
            percent: percent.map(i32::from),
        }),
        ..filter_default(HttpRouteRulesFiltersType::RequestMirror)
    }
}

fn pairs<T>(
    map: Option<&std::collections::BTreeMap<String, String>>,
    f: impl Fn(String, String) -> T,
) -> Option<Vec<T>> {
    map.map(|m| m.iter().map(|(k, v)| f(k.clone(), v.clone())).collect())
}

/// A resolved request condition as a Gateway API `HTTPRouteMatch`.
fn to_match(m: &Match) -> HttpRouteRulesMatches {
    let path = m.path.as_ref().map(|p| HttpRouteRulesMatchesPath {
        r#type: Some(match p.kind {
            PathMatchType::Exact => HttpRouteRulesMatchesPathType::Exact,
            PathMatchType::PathPrefix => HttpRouteRulesMatchesPathType::PathPrefix,
            PathMatchType::RegularExpression => HttpRouteRulesMatchesPathType::RegularExpression,
        }),
        value: Some(p.value.clone()),
    });
    let regex = |v: &ValueMatch| v.kind == ValueMatchType::RegularExpression;
    let headers = m
        .headers
        .iter()
        .map(|h| HttpRouteRulesMatchesHeaders {
            name: h.name.clone(),
            r#type: Some(if regex(h) {
                HttpRouteRulesMatchesHeadersType::RegularExpression
            } else {
                HttpRouteRulesMatchesHeadersType::Exact
            }),
            value: h.value.clone(),
        })
        .collect::<Vec<_>>();
    let query_params = m
        .query_params
        .iter()
        .map(|q| HttpRouteRulesMatchesQueryParams {
            name: q.name.clone(),
            r#type: Some(if regex(q) {
                HttpRouteRulesMatchesQueryParamsType::RegularExpression
            } else {
                HttpRouteRulesMatchesQueryParamsType::Exact
            }),
            value: q.value.clone(),
        })
        .collect::<Vec<_>>();
    HttpRouteRulesMatches {
        headers: none_if_empty(headers),
        method: m.method.as_deref().and_then(method),
        path,
        query_params: none_if_empty(query_params),
    }
}

/// A method as Gateway API spells it (the intent only carries the nine HTTP methods).
fn method(m: &str) -> Option<HttpRouteRulesMatchesMethod> {
    use HttpRouteRulesMatchesMethod::*;
    Some(match m {
        "GET" => Get,
        "HEAD" => Head,
        "POST" => Post,
        "PUT" => Put,
        "DELETE" => Delete,
        "CONNECT" => Connect,
        "OPTIONS" => Options,
        "TRACE" => Trace,
        "PATCH" => Patch,
        _ => return None,
    })
}
