//! The routing intent: what live routing must look like, resolved from the engine's split and
//! the spec once, so no traffic backend reaches back into the spec for cookie attributes or
//! timeouts.

use siskin_api::{CanarySpec, Weight, analysis::SessionAffinity, service::HttpMatchRequest};
use siskin_engine::Split;
use siskin_route::SessionCookie;

/// Routing as it must be now.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingIntent {
    /// Weights, mirroring and A/B conditions, as the engine decided.
    pub split: Split,
    /// Session affinity cookies of this run, with their attributes.
    pub cookies: Option<Cookies>,
    /// Request timeouts of the route (`service.timeout`, `service.backendTimeout`), Gateway
    /// API durations.
    pub timeouts: Timeouts,
    /// The route's own conditions (`service.match`): requests that match none of them are not
    /// the route's. Empty: every request.
    pub route_matches: Vec<HttpMatchRequest>,
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
    /// The intent for `split` under `spec`.
    pub fn resolve(spec: &CanarySpec, split: &Split) -> RoutingIntent {
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
        RoutingIntent {
            split: split.clone(),
            cookies,
            timeouts: Timeouts {
                request: service.and_then(|s| s.timeout.clone()),
                backend_request: service.and_then(|s| s.backend_timeout.clone()),
            },
            route_matches: service.and_then(|s| s.r#match.clone()).unwrap_or_default(),
        }
    }

    /// All traffic to the primary.
    pub fn primary_only(spec: &CanarySpec) -> RoutingIntent {
        RoutingIntent::resolve(spec, &Split::primary_only())
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
