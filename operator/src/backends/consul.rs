//! `consul`: Consul service mesh config entries (`consul.hashicorp.com/v1alpha1`), as
//! consul-k8s's CRDs accept them. No peer project drives Consul; the objects follow Consul's
//! own canary pattern with Siskin's Services as Consul services:
//!
//! - `ServiceDefaults` `<apex>`, `<apex>-primary`, `<apex>-canary`: the L7 protocol
//!   (`http`, or `grpc`/`http2` from `service.appProtocol`), which splitters and routers need;
//! - `ServiceSplitter` `<apex>`: the weights, to the services `<apex>-primary` and
//!   `<apex>-canary` (consul-k8s registers each Kubernetes Service as a Consul service);
//! - `ServiceRouter` `<apex>`: A/B, requests matching `analysis.match` to the canary.
//!
//! Consul needs no `ServiceResolver` here: each split names a whole service, whose default
//! resolver applies. The apex Service selects the primary's pods, so clients outside the mesh
//! reach the primary.

use siskin_api::{
    Capabilities, Provider, Weight,
    service::{HttpMatchRequest, StringMatch},
};
use siskin_driver::{RoutingIntent, regex_escape};
use siskin_engine::{RouteState, Split};
use siskin_foreign::consul::{
    servicedefaults::{ServiceDefaults, ServiceDefaultsSpec},
    servicerouters::{
        ServiceRouter, ServiceRouterRoutes, ServiceRouterRoutesDestination,
        ServiceRouterRoutesMatch, ServiceRouterRoutesMatchHttp, ServiceRouterRoutesMatchHttpHeader,
        ServiceRouterRoutesMatchHttpQueryParam, ServiceRouterSpec,
    },
    servicesplitters::{ServiceSplitter, ServiceSplitterSpec, ServiceSplitterSplits},
};
use siskin_route::ConfigReport;

use super::{Context, PlanError, TrafficBackend, owned_by};
use crate::{
    objects::{Change, Cluster, Kind, Object, ObjectRef, Read},
    services::{self, ApexSelector},
};

/// The Consul backend.
pub struct Consul;

impl TrafficBackend for Consul {
    fn provider(&self) -> Provider {
        Provider::Consul
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            weights: true,
            header_match: true,
            mirror: false,
            mirror_in_canary: false,
            mirror_weight: false,
            session_affinity: false,
            primary_cookie: false,
            service_fields: &[],
        }
    }

    fn writes(&self) -> &'static str {
        "`consul.hashicorp.com/v1alpha1` `ServiceDefaults` (protocol) for `<apex>`, `<apex>-primary`, `<apex>-canary`, `ServiceSplitter` `<apex>` (weights) and `ServiceRouter` `<apex>` (A/B); waits while consul-k8s reports `Synced: False`"
    }

    fn reads(&self, cx: &Context<'_>) -> Vec<Read> {
        let mut out = vec![
            Read::Named(ObjectRef::new(
                Kind::ServiceSplitter,
                cx.namespace,
                cx.apex(),
            )),
            Read::Named(ObjectRef::new(Kind::ServiceRouter, cx.namespace, cx.apex())),
            Read::Named(ObjectRef::new(Kind::Service, cx.namespace, cx.apex())),
        ];
        for name in names(cx) {
            out.push(Read::Named(ObjectRef::new(
                Kind::ServiceDefaults,
                cx.namespace,
                &name,
            )));
        }
        out
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
        let protocol = protocol(cx);
        for name in names(cx) {
            let mut meta = cx.meta(&name, None);
            if !owned_by(cx, cluster.raw(Kind::ServiceDefaults, cx.namespace, &name)) {
                meta.owner_references = None;
            }
            out.push(Object::new(
                Kind::ServiceDefaults,
                &ServiceDefaults {
                    metadata: meta,
                    spec: ServiceDefaultsSpec {
                        protocol: Some(protocol.to_string()),
                        ..Default::default()
                    },
                    status: None,
                },
            ));
        }
        let ab = !intent.ab_requests.is_empty();
        // A/B: everything the router does not send to the canary stays on the primary.
        let (p, c) = if ab {
            (Weight::FULL, Weight::ZERO)
        } else {
            (intent.primary(), intent.canary())
        };
        let split = |service: String, w: Weight| ServiceSplitterSplits {
            service: Some(service),
            weight: Some(f64::from(w.get())),
            ..Default::default()
        };
        let meta = |kind: Kind| {
            let mut m = cx.meta(cx.apex(), None);
            if !owned_by(cx, cluster.raw(kind, cx.namespace, cx.apex())) {
                m.owner_references = None;
            }
            m
        };
        out.push(Object::new(
            Kind::ServiceSplitter,
            &ServiceSplitter {
                metadata: meta(Kind::ServiceSplitter),
                spec: ServiceSplitterSpec {
                    splits: Some(vec![
                        split(cx.primary_service(), p),
                        split(cx.canary_service(), c),
                    ]),
                },
                status: None,
            },
        ));
        let to = if intent.canary() > Weight::ZERO {
            cx.canary_service()
        } else {
            cx.primary_service()
        };
        let routes = intent
            .ab_requests
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(ServiceRouterRoutes {
                    r#match: Some(ServiceRouterRoutesMatch {
                        http: Some(http_match(m, &format!("spec.analysis.match[{i}]"))?),
                    }),
                    destination: Some(ServiceRouterRoutesDestination {
                        service: Some(to.clone()),
                        ..Default::default()
                    }),
                })
            })
            .collect::<Result<Vec<_>, PlanError>>()?;
        out.push(Object::new(
            Kind::ServiceRouter,
            &ServiceRouter {
                metadata: meta(Kind::ServiceRouter),
                spec: ServiceRouterSpec {
                    routes: Some(routes),
                },
                status: None,
            },
        ));
        Ok(out)
    }

    /// The splitter's weights (the router's A/B routes send matching requests to the canary),
    /// once consul-k8s has synced them into Consul (`Synced`); an entry it refused
    /// (`Synced: False`) is not what Consul serves.
    fn observe(
        &self,
        cx: &Context<'_>,
        cluster: &Cluster,
        _routers: Option<&[ConfigReport]>,
    ) -> Result<RouteState, PlanError> {
        // Specs typed, statuses as JSON: consul-k8s leaves out a condition's reason and
        // message when they are empty, which the typed Condition requires.
        let Some(splitter) =
            cluster.spec::<ServiceSplitterSpec>(Kind::ServiceSplitter, cx.namespace, cx.apex())?
        else {
            return Ok(RouteState::Absent);
        };
        let router: Option<ServiceRouterSpec> =
            cluster.spec(Kind::ServiceRouter, cx.namespace, cx.apex())?;
        let splitter_raw = cluster.raw(Kind::ServiceSplitter, cx.namespace, cx.apex());
        let router_raw = cluster.raw(Kind::ServiceRouter, cx.namespace, cx.apex());
        let synced = |raw: Option<&serde_json::Value>| {
            !raw.and_then(|r| r["status"]["conditions"].as_array())
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Synced" && c["status"] == "False")
        };
        if !synced(splitter_raw) || !synced(router_raw) {
            return Ok(RouteState::Converging);
        }
        let canary_name = cx.canary_service();
        let to_canary = router
            .iter()
            .flat_map(|r| r.routes.iter().flatten())
            .any(|r| {
                r.destination.as_ref().and_then(|d| d.service.as_deref())
                    == Some(canary_name.as_str())
            });
        if to_canary {
            return Ok(RouteState::Applied(Split::to_canary(Weight::FULL)));
        }
        let (mut canary, mut total) = (0.0, 0.0);
        for s in splitter.splits.iter().flatten() {
            let w = s.weight.unwrap_or(0.0);
            total += w;
            if s.service.as_deref() == Some(canary_name.as_str()) {
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
        let mut out = Vec::new();
        for kind in [Kind::ServiceRouter, Kind::ServiceSplitter] {
            if cluster.raw(kind, cx.namespace, cx.apex()).is_some() {
                out.push(Change::Delete(ObjectRef::new(
                    kind,
                    cx.namespace,
                    cx.apex(),
                )));
            }
        }
        for name in [cx.primary_service(), cx.canary_service()] {
            out.push(Change::Delete(ObjectRef::new(
                Kind::ServiceDefaults,
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

/// The three Consul services.
fn names(cx: &Context<'_>) -> [String; 3] {
    [
        cx.apex().to_string(),
        cx.primary_service(),
        cx.canary_service(),
    ]
}

/// The L7 protocol Consul proxies the services with.
fn protocol(cx: &Context<'_>) -> &'static str {
    let app = cx
        .canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.app_protocol.as_deref())
        .unwrap_or("http")
        .to_ascii_lowercase();
    match app.as_str() {
        "grpc" => "grpc",
        "http2" | "h2c" | "kubernetes.io/h2c" => "http2",
        _ => "http",
    }
}

/// A string condition as Consul's: exact, prefix, suffix or regex (query parameters have no
/// prefix or suffix, so those become a regex).
fn consul_value(
    m: &StringMatch,
) -> (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    (
        m.exact.clone(),
        m.prefix.clone(),
        m.suffix.clone(),
        m.regex.clone(),
    )
}

/// A Flagger match as a Consul `ServiceRouter` HTTP match; what Consul cannot match on is an
/// error naming the field.
fn http_match(m: &HttpMatchRequest, at: &str) -> Result<ServiceRouterRoutesMatchHttp, PlanError> {
    let unsupported = [
        ("scheme", m.scheme.is_some()),
        ("authority", m.authority.is_some()),
        ("port", m.port.is_some()),
        ("sourceLabels", m.source_labels.is_some()),
        ("gateways", m.gateways.is_some()),
        ("withoutHeaders", m.without_headers.is_some()),
        ("sourceNamespace", m.source_namespace.is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(PlanError::Invalid {
            field: format!("{at}.{field}"),
            message: format!(
                "Consul's ServiceRouter cannot match on {field}; remove it (uri, method, headers and queryParams can be matched)"
            ),
        });
    }
    let mut out = ServiceRouterRoutesMatchHttp {
        case_insensitive: m.ignore_uri_case,
        ..Default::default()
    };
    if let Some(uri) = &m.uri {
        out.path_exact = uri.exact.clone();
        out.path_prefix = uri.prefix.clone();
        out.path_regex = match (&uri.suffix, &uri.regex) {
            (Some(s), _) => Some(format!(".*{}", regex_escape(s))),
            (None, r) => r.clone(),
        };
    }
    if let Some(method) = &m.method {
        let Some(exact) = &method.exact else {
            return Err(PlanError::Invalid {
                field: format!("{at}.method"),
                message: "Consul matches methods exactly; use exact: GET (or POST, PUT, ...)"
                    .into(),
            });
        };
        out.methods = Some(vec![exact.to_ascii_uppercase()]);
    }
    let headers: Vec<ServiceRouterRoutesMatchHttpHeader> = m
        .headers
        .iter()
        .flatten()
        .map(|(name, sm)| {
            let (exact, prefix, suffix, regex) = consul_value(sm);
            ServiceRouterRoutesMatchHttpHeader {
                name: name.clone(),
                exact,
                prefix,
                suffix,
                regex,
                ..Default::default()
            }
        })
        .collect();
    out.header = (!headers.is_empty()).then_some(headers);
    let params: Vec<ServiceRouterRoutesMatchHttpQueryParam> = m
        .query_params
        .iter()
        .flatten()
        .map(|(name, sm)| {
            let (exact, prefix, suffix, regex) = consul_value(sm);
            let regex = match (prefix, suffix) {
                (Some(p), _) => Some(format!("{}.*", regex_escape(&p))),
                (None, Some(s)) => Some(format!(".*{}", regex_escape(&s))),
                _ => regex,
            };
            ServiceRouterRoutesMatchHttpQueryParam {
                name: name.clone(),
                exact,
                regex,
                ..Default::default()
            }
        })
        .collect();
    out.query_param = (!params.is_empty()).then_some(params);
    Ok(out)
}
