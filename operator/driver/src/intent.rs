//! The routing intent: what live routing must look like, resolved from the engine's split and
//! the spec once, so no traffic backend reaches back into the spec for cookie attributes or
//! timeouts.

use siskin_api::{
    CanarySpec, Weight,
    analysis::SessionAffinity,
    service::{HttpMatchRequest, StringMatch},
};
use siskin_engine::Split;
use siskin_route::{Match, PathMatch, PathMatchType, SessionCookie, ValueMatch, ValueMatchType};

use crate::Error;

/// Routing as it must be now.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingIntent {
    /// Weights and mirroring, as the engine decided.
    pub split: Split,
    /// A/B: only requests matching one of these follow the weights; every other request of the
    /// route goes to the primary. Each is an `analysis.match` entry merged with each of the
    /// route's own (`service.match`; its headers and query parameters win, as in Flagger).
    /// Empty: the weights apply to every request.
    pub ab_matches: Vec<Match>,
    /// Session affinity cookies of this run, with their attributes.
    pub cookies: Option<Cookies>,
    /// Request timeouts of the route (`service.timeout`, `service.backendTimeout`), Gateway
    /// API durations.
    pub timeouts: Timeouts,
    /// The route's own conditions (`service.match`): requests that match none of them are not
    /// the route's. Empty: every request.
    pub route_matches: Vec<Match>,
    /// The A/B conditions as written (Istio's shape), each merged with each of the route's own:
    /// for backends that speak that shape (Istio, Consul) and can match on more than
    /// [`Match`] holds (`sourceLabels`, `authority`, ...).
    pub ab_requests: Vec<HttpMatchRequest>,
    /// The route's own conditions as written (`service.match`).
    pub route_requests: Vec<HttpMatchRequest>,
    /// The first condition [`Match`] cannot hold, when there is one: `ab_matches` and
    /// `route_matches` are then empty, and a backend that routes by them must refuse the
    /// Canary with this field and message ([`RoutingIntent::unmatchable`]).
    pub unmatchable: Option<Unmatchable>,
}

/// A request condition a [`Match`] cannot hold: the field and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmatchable {
    /// The field (`spec.analysis.match[0].sourceLabels`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Session affinity cookies: each side sets its cookie on its responses, and a request that
/// carries one goes back to that side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookies {
    /// Set on responses from the canary.
    pub canary: Option<SessionCookie>,
    /// Set on responses from the primary (`primaryCookieName`).
    pub primary: Option<SessionCookie>,
    /// The previous run's canary cookie (`name=value`): answered with `Max-Age=-1`.
    pub expire: Option<String>,
}

/// Request timeouts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request.
    pub request: Option<String>,
    /// Each attempt to a backend.
    pub backend_request: Option<String>,
}

// === impl RoutingIntent ===

impl RoutingIntent {
    /// The intent for `split` under `spec`. A condition [`Match`] cannot hold is recorded in
    /// `unmatchable` (backends that need it refuse the Canary; Istio's does not).
    pub fn resolve(spec: &CanarySpec, split: &Split) -> Result<RoutingIntent, Error> {
        let analysis = spec.analysis();
        let sa = analysis.session_affinity.as_ref();
        let interval = i64::try_from(analysis.interval().as_secs()).unwrap_or(60);
        let cookies = split.sticky.as_ref().map(|s| Cookies {
            canary: session_cookie(s.canary.as_deref(), sa.map(SessionAffinity::max_age), sa),
            // The primary's cookie lasts one interval: a client that came back to the primary
            // is asked again at the next step.
            primary: session_cookie(s.primary.as_deref(), Some(interval), sa),
            expire: s.previous.clone(),
        });
        let service = spec.service.as_ref();
        let own = service
            .and_then(|s| s.r#match.as_deref())
            .unwrap_or_default();
        let mut ab_requests = Vec::new();
        let mut ab_at = Vec::new();
        for (i, m) in split.matches.iter().enumerate() {
            let at = format!("spec.analysis.match[{i}]");
            if own.is_empty() {
                ab_requests.push(m.clone());
                ab_at.push(at.clone());
            }
            for r in own {
                ab_requests.push(merge(r, m));
                ab_at.push(at.clone());
            }
        }
        let resolved = (|| -> Result<(Vec<Match>, Vec<Match>), Error> {
            let route = own
                .iter()
                .enumerate()
                .map(|(i, m)| condition(m, &format!("spec.service.match[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let ab = ab_requests
                .iter()
                .zip(&ab_at)
                .map(|(m, at)| condition(m, at))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((route, ab))
        })();
        let (route_matches, ab_matches, unmatchable) = match resolved {
            Ok((route, ab)) => (route, ab, None),
            Err(Error::Invalid { field, message }) => {
                (Vec::new(), Vec::new(), Some(Unmatchable { field, message }))
            }
            Err(e) => return Err(e),
        };
        Ok(RoutingIntent {
            split: split.clone(),
            ab_matches,
            cookies,
            timeouts: Timeouts {
                request: service.and_then(|s| s.timeout.clone()),
                backend_request: service.and_then(|s| s.backend_timeout.clone()),
            },
            route_matches,
            ab_requests,
            route_requests: own.to_vec(),
            unmatchable,
        })
    }

    /// The conditions as [`Match`]es, or the field a router of them cannot match on.
    pub fn unmatchable(&self) -> Result<(), &Unmatchable> {
        self.unmatchable.as_ref().map_or(Ok(()), Err)
    }

    /// The canary's share.
    pub fn canary(&self) -> Weight {
        self.split.canary()
    }

    /// The primary's share.
    pub fn primary(&self) -> Weight {
        self.split.primary()
    }
}

/// The cookie for `pair` (`name=value`) with the attributes of `sessionAffinity`.
pub fn session_cookie(
    pair: Option<&str>,
    max_age: Option<i64>,
    sa: Option<&SessionAffinity>,
) -> Option<SessionCookie> {
    let (name, value) = pair?.split_once('=')?;
    Some(SessionCookie {
        name: name.into(),
        value: value.into(),
        max_age,
        domain: sa.and_then(|s| s.domain.clone()),
        path: sa.and_then(|s| s.path.clone()),
        secure: sa.and_then(|s| s.secure).unwrap_or(false),
        http_only: sa.and_then(|s| s.http_only).unwrap_or(false),
        partitioned: sa.and_then(|s| s.partitioned).unwrap_or(false),
        same_site: sa.and_then(|s| s.same_site).map(|v| format!("{v:?}")),
    })
}

/// An A/B condition merged into one of the route's own: its headers, query parameters and
/// source labels override, its path and method apply when the route's has none (as Flagger
/// merges them).
pub fn merge(route: &HttpMatchRequest, ab: &HttpMatchRequest) -> HttpMatchRequest {
    let mut m = route.clone();
    if ab.source_labels.is_some() {
        m.source_labels = ab.source_labels.clone();
    }
    if ab.without_headers.is_some() {
        m.without_headers = ab.without_headers.clone();
    }
    if let Some(h) = &ab.headers {
        m.headers
            .get_or_insert_with(Default::default)
            .extend(h.clone());
    }
    if let Some(q) = &ab.query_params {
        m.query_params
            .get_or_insert_with(Default::default)
            .extend(q.clone());
    }
    if m.uri.is_none() {
        m.uri = ab.uri.clone();
    }
    if m.method.is_none() {
        m.method = ab.method.clone();
    }
    m
}

/// `s` with the characters a regular expression gives meaning escaped.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A string condition as an exact value or a regular expression matching the whole value
/// (anchored, so it means the same to a router that matches whole values and to one that
/// searches).
fn value(m: &StringMatch) -> (ValueMatchType, String) {
    if let Some(v) = &m.exact {
        (ValueMatchType::Exact, v.clone())
    } else if let Some(v) = &m.prefix {
        (
            ValueMatchType::RegularExpression,
            format!("^{}.*$", regex_escape(v)),
        )
    } else if let Some(v) = &m.suffix {
        (
            ValueMatchType::RegularExpression,
            format!("^.*{}$", regex_escape(v)),
        )
    } else {
        (
            ValueMatchType::RegularExpression,
            m.regex.clone().unwrap_or_else(|| ".*".into()),
        )
    }
}

/// A Flagger match (Istio's shape) as a request condition routers can check: path, method,
/// headers and query parameters. Anything else is an error naming the field.
fn condition(m: &HttpMatchRequest, at: &str) -> Result<Match, Error> {
    let unsupported = [
        ("scheme", m.scheme.is_some()),
        ("authority", m.authority.is_some()),
        ("port", m.port.is_some()),
        ("sourceLabels", m.source_labels.is_some()),
        ("gateways", m.gateways.is_some()),
        ("ignoreUriCase", m.ignore_uri_case.is_some()),
        ("withoutHeaders", m.without_headers.is_some()),
        ("sourceNamespace", m.source_namespace.is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(Error::invalid(
            format!("{at}.{field}"),
            format!(
                "the route cannot match on {field}; remove it (uri, method, headers and queryParams can be matched)"
            ),
        ));
    }
    let pairs = |map: &Option<std::collections::BTreeMap<String, StringMatch>>| {
        map.iter()
            .flatten()
            .map(|(name, sm)| {
                let (kind, value) = value(sm);
                ValueMatch {
                    kind,
                    name: name.clone(),
                    value,
                }
            })
            .collect()
    };
    let path = m.uri.as_ref().map(|uri| match (&uri.exact, &uri.prefix) {
        (Some(v), _) => PathMatch {
            kind: PathMatchType::Exact,
            value: v.clone(),
        },
        (None, Some(v)) => PathMatch {
            kind: PathMatchType::PathPrefix,
            value: v.clone(),
        },
        _ => PathMatch {
            kind: PathMatchType::RegularExpression,
            value: value(uri).1,
        },
    });
    const METHODS: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let method = match &m.method {
        None => None,
        Some(sm) => Some(
            sm.exact
                .as_deref()
                .map(str::to_ascii_uppercase)
                .filter(|v| METHODS.contains(&v.as_str()))
                .ok_or_else(|| {
                    Error::invalid(
                        format!("{at}.method"),
                        "a route matches one HTTP method exactly; use exact: GET (or POST, PUT, ...)",
                    )
                })?,
        ),
    };
    Ok(Match {
        path,
        headers: pairs(&m.headers),
        query_params: pairs(&m.query_params),
        method,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(yaml: &str) -> CanarySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn ab(m: &str) -> Split {
        let mut s = Split::to_canary(Weight::FULL);
        s.matches = vec![serde_yaml::from_str(m).unwrap()];
        s
    }

    #[test]
    fn conditions_are_resolved_once_for_every_router() {
        let i = RoutingIntent::resolve(
            &spec("analysis: {}"),
            &ab("{headers: {x-user: {prefix: a.b}}, method: {exact: get}}"),
        )
        .unwrap();
        let m = &i.ab_matches[0];
        assert_eq!(m.headers[0].kind, ValueMatchType::RegularExpression);
        assert_eq!(m.headers[0].value, "^a\\.b.*$");
        assert_eq!(m.method.as_deref(), Some("GET"));
    }

    #[test]
    fn ab_conditions_merge_with_the_routes_own() {
        let i = RoutingIntent::resolve(
            &spec("service: {match: [{uri: {prefix: /api}}, {uri: {prefix: /v2}}]}"),
            &ab("{headers: {x-canary: {exact: insider}}}"),
        )
        .unwrap();
        assert_eq!(i.route_matches.len(), 2);
        assert_eq!(i.ab_matches.len(), 2, "one per route condition");
        assert!(
            i.ab_matches
                .iter()
                .all(|m| m.path.is_some() && m.headers[0].value == "insider")
        );
    }

    #[test]
    fn what_no_router_can_match_is_named() {
        let i =
            RoutingIntent::resolve(&spec("analysis: {}"), &ab("{sourceLabels: {app: x}}")).unwrap();
        let e = i.unmatchable().unwrap_err();
        assert_eq!(e.field, "spec.analysis.match[0].sourceLabels");
        assert!(i.ab_matches.is_empty());
        assert_eq!(
            i.ab_requests[0].source_labels.as_ref().unwrap()["app"],
            "x",
            "kept as written for backends that can match on it"
        );
        let i =
            RoutingIntent::resolve(&spec("analysis: {}"), &ab("{method: {prefix: G}}")).unwrap();
        assert_eq!(
            i.unmatchable().unwrap_err().field,
            "spec.analysis.match[0].method"
        );
    }
}
