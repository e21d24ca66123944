//! The in-process router's configuration as a pure plan: the routing intent over the primary's
//! and the canary's upstreams, with the same rules (names, A/B conditions, mirror, cookies) the
//! operator writes into an HTTPRoute for the router in Kubernetes mode.

use siskin_api::Weight;
use siskin_driver::RoutingIntent;
use siskin_engine::Split;
use siskin_route::{
    Backend, BackendName, BackendRef, Config, Filter, Mirror, Role, Route, Rule, SiskinRule,
    Timeouts,
};

/// The two sides of the release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sides {
    /// Addresses serving as the primary.
    pub primary: Vec<String>,
    /// Addresses of the release.
    pub canary: Vec<String>,
}

/// A condition the router cannot express, named by field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Unsupported {
    /// The field.
    pub field: String,
    /// Why, and the fix.
    pub message: String,
}

fn backend(name: &str, role: Role, endpoints: Vec<String>) -> Backend {
    Backend {
        name: name.into(),
        endpoints,
        role: Some(role),
        ..Default::default()
    }
}

fn weighted(split: (Weight, Weight), intent: &RoutingIntent, cookies: bool) -> Vec<BackendRef> {
    let c = intent.cookies.as_ref().filter(|_| cookies);
    vec![
        BackendRef {
            name: "primary".into(),
            weight: u32::from(split.0),
            session_cookie: c.and_then(|c| c.primary.clone()),
        },
        BackendRef {
            name: "canary".into(),
            weight: u32::from(split.1),
            session_cookie: c.and_then(|c| c.canary.clone()),
        },
    ]
}

/// The router's configuration for `intent`, serving `route` from `sides`.
pub fn plan(route: &str, sides: &Sides, intent: &RoutingIntent) -> Result<Config, Unsupported> {
    if let Err(u) = intent.unmatchable() {
        return Err(Unsupported {
            field: u.field.clone(),
            message: u.message.clone(),
        });
    }
    let split = &intent.split;
    let weights = (split.primary(), split.canary());
    let timeouts = timeouts(intent)?;
    let mut filters = Vec::new();
    if let Some(pct) = split.mirror {
        filters.push(Filter::RequestMirror {
            mirror: Mirror {
                backend_ref: BackendName {
                    name: "canary".into(),
                },
                percent: Some(pct.get()),
            },
        });
    }
    let base = Rule {
        matches: intent.route_matches.clone(),
        filters,
        timeouts,
        ..Default::default()
    };
    let rules = if intent.ab_matches.is_empty() {
        vec![Rule {
            name: Some(SiskinRule::Canary.name().into()),
            backend_refs: weighted(weights, intent, true),
            expire_cookies: intent
                .cookies
                .as_ref()
                .and_then(|c| c.expire.clone())
                .into_iter()
                .collect(),
            ..base
        }]
    } else {
        // A/B: only requests that match go to the canary; everything else stays on the primary.
        vec![
            Rule {
                name: Some(SiskinRule::Ab.name().into()),
                matches: intent.ab_matches.clone(),
                backend_refs: weighted(weights, intent, false),
                ..base.clone()
            },
            Rule {
                name: Some(SiskinRule::Primary.name().into()),
                filters: Vec::new(),
                backend_refs: weighted((Weight::FULL, Weight::ZERO), intent, false),
                ..base
            },
        ]
    };
    Ok(Config {
        routes: vec![Route {
            name: route.to_string(),
            hostnames: vec![],
            rules,
        }],
        backends: vec![
            backend("primary", Role::Primary, sides.primary.clone()),
            backend("canary", Role::Canary, sides.canary.clone()),
        ],
    })
}

/// `revertOnDeletion`: every request to the target's upstreams (the file's `canary`), no split.
pub fn reverted(route: &str, target: Vec<String>) -> Config {
    Config {
        routes: vec![Route {
            name: route.to_string(),
            hostnames: vec![],
            rules: vec![Rule {
                name: Some(SiskinRule::Canary.name().into()),
                backend_refs: vec![BackendRef {
                    name: "canary".into(),
                    weight: 1,
                    session_cookie: None,
                }],
                ..Default::default()
            }],
        }],
        backends: vec![backend("canary", Role::Canary, target)],
    }
}

/// The split the router serves for `route`, from its `/config`.
pub fn served(report: &siskin_route::ConfigReport, route: &str) -> Option<Split> {
    let (p, c) = report.served_weights(route)?;
    Some(Split::to_canary(Weight::share(c, p + c)))
}

fn timeouts(intent: &RoutingIntent) -> Result<Option<Timeouts>, Unsupported> {
    let parse =
        |field: &str, v: &Option<String>| -> Result<Option<siskin_route::Duration>, Unsupported> {
            v.as_deref()
                .map(|s| {
                    s.parse().map_err(|e| Unsupported {
                        field: format!("service.{field}"),
                        message: format!("{s:?}: {e}"),
                    })
                })
                .transpose()
        };
    let t = &intent.timeouts;
    let request = parse("timeout", &t.request)?;
    let backend_request = parse("backendTimeout", &t.backend_request)?;
    Ok(
        (request.is_some() || backend_request.is_some()).then_some(Timeouts {
            request,
            backend_request,
        }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn intent(yaml_match: Option<&str>, canary: u8) -> RoutingIntent {
        let mut split = Split::to_canary(Weight::new(canary).unwrap());
        if let Some(y) = yaml_match {
            split.matches = vec![serde_yaml::from_str(y).unwrap()];
        }
        let spec: siskin_api::CanarySpec = serde_yaml::from_str("analysis: {}").unwrap();
        RoutingIntent::resolve(&spec, &split).unwrap()
    }

    fn sides() -> Sides {
        Sides {
            primary: vec!["127.0.0.1:1".into()],
            canary: vec!["127.0.0.1:2".into()],
        }
    }

    #[test]
    fn ab_sends_only_matching_requests_to_the_canary() {
        let c = plan(
            "standalone/app",
            &sides(),
            &intent(Some("headers: {x-canary: {exact: insider}}"), 100),
        )
        .unwrap();
        let rules = &c.routes[0].rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name.as_deref(), Some("siskin-ab"));
        assert_eq!(rules[0].matches[0].headers[0].value, "insider");
        assert_eq!(
            rules[1].backend_refs[1].weight, 0,
            "the rest to the primary"
        );
        siskin_route::Table::compile(c).unwrap();
    }

    #[test]
    fn a_split_without_matches_is_one_weighted_rule() {
        let c = plan("standalone/app", &sides(), &intent(None, 30)).unwrap();
        let r = &c.routes[0].rules[0];
        assert_eq!(
            (r.backend_refs[0].weight, r.backend_refs[1].weight),
            (70, 30)
        );
        let report = siskin_route::ConfigReport {
            config: c,
            ..Default::default()
        };
        assert_eq!(
            served(&report, "standalone/app").map(|s| s.canary().get()),
            Some(30)
        );
    }
}
