//! What each metric of a Canary asks, and where: pure, so `siskin render --queries` prints
//! exactly what the operator and `siskin run` send.
//!
//! - The built-in checks: the router's statistics for the `builtin` provider; for the others,
//!   their observer's PromQL against the metrics server (`spec.metricsServer`, else the
//!   operator's `--metrics-server`).
//! - An inline `query` (deprecated in Flagger): PromQL against the metrics server.
//! - A `templateRef`: the MetricTemplate's query, rendered, against its provider.

use std::{collections::BTreeMap, time::Duration};

use siskin_api::{MetricTemplateSpec, MetricsProviderType, Provider, analysis::CanaryMetric};
use siskin_route::Role;

use crate::{
    BuiltinMetric, ProviderError, Query,
    judge::JudgeKind,
    observers::{self, Observer},
    template::{self, Vars},
};

/// Where a metric's value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The built-in router's live statistics.
    Router,
    /// A metrics provider.
    Provider(ProviderSpec),
}

/// A metrics provider as a MetricTemplate (or the metrics server) describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderSpec {
    /// Its type.
    pub kind: MetricsProviderType,
    /// Its API address.
    pub address: Option<String>,
    /// Extra request headers (Prometheus).
    pub headers: BTreeMap<String, Vec<String>>,
    /// Skip TLS verification.
    pub insecure_skip_verify: bool,
    /// Region (CloudWatch).
    pub region: Option<String>,
    /// The Secret with its credentials (`namespace`, `name`).
    pub secret: Option<(String, String)>,
}

/// One metric, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The metric's name.
    pub metric: String,
    /// Where it is asked.
    pub source: Source,
    /// What is asked.
    pub query: Query,
    /// The window the query covers.
    pub window: Duration,
}

/// What every metric of one Canary is resolved with.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// The template variables (the interval is each metric's own).
    pub vars: Vars,
    /// The Canary's traffic provider.
    pub provider: Provider,
    /// The Prometheus for built-in and inline queries (`spec.metricsServer`, else the
    /// operator's `--metrics-server`).
    pub metrics_server: Option<&'a str>,
    /// The route the built-in router reports statistics under.
    pub route: &'a str,
    /// The MetricTemplates the Canary's metrics name, by (`namespace`, `name`).
    pub templates: &'a BTreeMap<(String, String), MetricTemplateSpec>,
    /// How many checks a clean run of the Canary makes (the judge spends its confidence over
    /// them): [`siskin_api::CanaryAnalysis::checks_per_run`].
    pub checks: u32,
}

// === impl Resolved ===

impl Resolved {
    /// The provider's name, as checks show it (`builtin` for the router).
    pub fn provider(&self) -> String {
        match &self.source {
            Source::Router => "builtin".to_string(),
            Source::Provider(p) => type_name(p.kind),
        }
    }

    /// The query as sent, as checks show it.
    pub fn text(&self) -> String {
        match &self.query {
            Query::Text(q) => q.clone(),
            Query::Builtin {
                metric,
                route,
                backend,
                window,
            } => format!(
                "{} of the {backend} backends of route {route} over the last {}s",
                match metric {
                    BuiltinMetric::SuccessRate => "success rate",
                    BuiltinMetric::DurationP99 => "p99 latency",
                },
                window.as_secs()
            ),
            Query::Judge {
                kind,
                route,
                window,
            } => format!(
                "{} of the canary against the primary on route {route} over the last {}s",
                match kind {
                    JudgeKind::Latency => "Mann-Whitney rank test of the latency",
                    JudgeKind::Errors => "two-proportion test of the failure rate",
                },
                window.as_secs()
            ),
        }
    }

    /// The address asked (None for the router, which the adapter knows).
    pub fn address(&self) -> Option<&str> {
        match &self.source {
            Source::Router => None,
            Source::Provider(p) => p.address.as_deref(),
        }
    }
}

/// The name of a provider type (`prometheus`, `datadog`, ...).
pub fn type_name(kind: MetricsProviderType) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The built-in check a metric names, if it is one.
pub fn builtin(m: &CanaryMetric) -> Option<BuiltinMetric> {
    match m.name.as_str() {
        siskin_api::METRIC_REQUEST_SUCCESS_RATE if m.is_builtin() => {
            Some(BuiltinMetric::SuccessRate)
        }
        siskin_api::METRIC_REQUEST_DURATION if m.is_builtin() => Some(BuiltinMetric::DurationP99),
        _ => None,
    }
}

/// The judge comparison a metric names, if it is one.
pub fn judge(m: &CanaryMetric) -> Option<JudgeKind> {
    if !m.is_builtin() {
        return None;
    }
    match m.name.as_str() {
        siskin_api::METRIC_JUDGE_LATENCY => Some(JudgeKind::Latency),
        siskin_api::METRIC_JUDGE_ERRORS => Some(JudgeKind::Errors),
        _ => None,
    }
}

fn prometheus(cx: &Context<'_>, what: &str) -> Result<ProviderSpec, ProviderError> {
    let Some(address) = cx.metrics_server else {
        return Err(ProviderError::Config(format!(
            "{what} runs against Prometheus: set spec.metricsServer or the operator's --metrics-server"
        )));
    };
    Ok(ProviderSpec {
        kind: MetricsProviderType::Prometheus,
        address: Some(address.to_string()),
        headers: BTreeMap::new(),
        insecure_skip_verify: false,
        region: None,
        secret: None,
    })
}

/// Resolves `m`; `window` overrides the metric's interval (the critical checks' live window).
pub fn resolve(
    m: &CanaryMetric,
    cx: &Context<'_>,
    window: Option<Duration>,
) -> Result<Resolved, ProviderError> {
    let window = window.unwrap_or_else(|| m.interval());
    let mut vars = cx.vars.clone();
    vars.interval = m
        .interval
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| match window.as_secs() {
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        });
    vars.variables = m.template_variables.clone().unwrap_or_default();
    let done = |source, query| {
        Ok(Resolved {
            metric: m.name.clone(),
            source,
            query,
            window,
        })
    };
    if let Some(kind) = judge(m) {
        if observers::observer(cx.provider) != Some(Observer::Router) {
            return Err(ProviderError::Config(format!(
                "{} compares the built-in router's samples; provider {} has none (use provider builtin)",
                m.name, cx.provider
            )));
        }
        return done(
            Source::Router,
            Query::Judge {
                kind,
                route: cx.route.to_string(),
                window: window.min(crate::judge::MAX_WINDOW),
            },
        );
    }
    if let Some(metric) = builtin(m) {
        let Some(observer) = observers::observer(cx.provider) else {
            return Err(ProviderError::Config(format!(
                "the built-in check {} has no query for provider {}; use a MetricTemplate",
                m.name, cx.provider
            )));
        };
        if observer == Observer::Router {
            return done(
                Source::Router,
                Query::Builtin {
                    metric,
                    route: cx.route.to_string(),
                    backend: Role::Canary,
                    window,
                },
            );
        }
        let template_text = observers::query(observer, metric).unwrap_or_default();
        let q = template::render(&format!("built-in {}", m.name), template_text, &vars)
            .map_err(|e| ProviderError::BadQuery(e.to_string()))?;
        return done(
            Source::Provider(prometheus(cx, &format!("the built-in check {}", m.name))?),
            Query::Text(template::collapse(&q)),
        );
    }
    if let Some(inline) = &m.query {
        let q = template::render(&format!("metric {}", m.name), inline, &vars)
            .map_err(|e| ProviderError::BadQuery(e.to_string()))?;
        return done(
            Source::Provider(prometheus(cx, &format!("the query of metric {}", m.name))?),
            Query::Text(template::collapse(&q)),
        );
    }
    let Some(r) = &m.template_ref else {
        return Err(ProviderError::Config(format!(
            "metric {} is neither a built-in check nor has a query or templateRef",
            m.name
        )));
    };
    let ns = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| cx.vars.namespace.clone());
    let Some(t) = cx.templates.get(&(ns.clone(), r.name.clone())) else {
        return Err(ProviderError::Config(format!(
            "MetricTemplate {ns}/{} does not exist; create it or fix templateRef",
            r.name
        )));
    };
    let q = template::render(&format!("{ns}/{}", r.name), &t.query, &vars)
        .map_err(|e| ProviderError::BadQuery(e.to_string()))?;
    let p = &t.provider;
    let query = if p.r#type == MetricsProviderType::Prometheus {
        template::collapse(&q)
    } else {
        q
    };
    done(
        Source::Provider(ProviderSpec {
            kind: p.r#type,
            address: p.address.clone().filter(|a| !a.is_empty()),
            headers: p.headers.clone().unwrap_or_default(),
            insecure_skip_verify: p.insecure_skip_verify.unwrap_or(false),
            region: p.region.clone(),
            secret: p.secret_ref.as_ref().map(|s| (ns.clone(), s.name.clone())),
        }),
        Query::Text(query),
    )
}
