//! Semantic validation: what Flagger's `verifyCanary` checks, what its schema checks, and more.
//!
//! Every problem names the field (a JSON path under the object) and how to fix it. The same
//! function backs `siskin validate`, the operator's status condition and its events.

use std::{fmt, sync::OnceLock};

use serde_json::Value;

use crate::{
    AlertProvider, ApiGroup, Canary, CanarySpec, Capabilities, MetricTemplate, Provider,
    analysis::{CanaryAnalysis, CanaryMetric, CanaryWebhook, HookType, MIN_INTERVAL},
    canary::{AutoscalerKind, TargetKind},
    duration,
    metric_template::MetricsProviderType,
    service::{HttpMatchRequest, StringMatch},
};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The object is refused.
    Error,
    /// Accepted, but probably not what the author meant.
    Warning,
}

/// One problem with an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// JSON path of the field, e.g. `spec.analysis.stepWeights[2]` (empty: the whole object).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

// === impl Problem ===

impl Problem {
    /// An error at `path`.
    pub fn error(path: &str, message: impl Into<String>, hint: &str) -> Self {
        Problem {
            severity: Severity::Error,
            path: path.to_string(),
            message: message.into(),
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        }
    }

    /// A warning at `path`.
    pub fn warning(path: &str, message: impl Into<String>, hint: &str) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(path, message, hint)
        }
    }

    /// Whether this problem refuses the object.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(object)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (fix: {h})")?;
        }
        Ok(())
    }
}

/// What the traffic backends can execute. The operator's backend registry answers, so a
/// provider name that no code implements is refused here, at reconcile and in `siskin validate`.
pub trait Backends {
    /// The capabilities of `provider`'s backend for `spec` (a backend may write different
    /// objects for different Canaries, e.g. Linkerd's TrafficSplit or Gateway API route); None
    /// when no backend implements it.
    fn capabilities(&self, provider: Provider, spec: &CanarySpec) -> Option<Capabilities>;
    /// Every provider with a backend, in the registry's order.
    fn implemented(&self) -> Vec<Provider>;
}

/// Options that are not part of the object.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Provider used when `spec.provider` is unset (the operator's `--mesh-provider`).
    pub default_provider: Provider,
    /// The backends that exist.
    pub backends: &'a dyn Backends,
}

/// The provider a Canary uses and what its backend can do.
struct Route<'a> {
    provider: Provider,
    caps: Capabilities,
    backends: &'a dyn Backends,
    spec: &'a CanarySpec,
}

// === impl Route ===

impl Route<'_> {
    /// The implemented providers whose backend can do `f`, for a fix.
    fn able(&self, f: impl Fn(&Capabilities) -> bool) -> String {
        let names: Vec<&str> = self
            .backends
            .implemented()
            .into_iter()
            .filter(|p| {
                self.backends
                    .capabilities(*p, self.spec)
                    .is_some_and(|c| f(&c))
            })
            .map(Provider::name)
            .collect();
        if names.is_empty() {
            "no provider of this Siskin can yet".to_string()
        } else {
            format!("use provider {}", names.join(" or "))
        }
    }
}

/// Validates a Canary.
pub fn canary(c: &Canary, opts: &Options<'_>) -> Vec<Problem> {
    let mut v = Vec::new();
    let spec = &c.spec;
    let provider = spec.provider.unwrap_or(opts.default_provider);
    let caps = match opts.backends.capabilities(provider, spec) {
        Some(caps) => caps,
        None => {
            let implemented: Vec<&str> = opts
                .backends
                .implemented()
                .into_iter()
                .map(Provider::name)
                .collect();
            let field = if spec.provider.is_some() {
                "spec.provider"
            } else {
                "(default provider)"
            };
            v.push(Problem::error(
                field,
                format!("provider {provider} is not implemented by this Siskin yet"),
                &format!("use one of {}", implemented.join(", ")),
            ));
            // Judge the rest as if the provider could do everything: one error, not a cascade.
            Capabilities::ALL
        }
    };
    let route = Route {
        provider,
        caps,
        backends: opts.backends,
        spec,
    };
    match &spec.target_ref {
        None => v.push(Problem::error(
            "spec.targetRef",
            "targetRef is required",
            "set apiVersion, kind and name of the Deployment, DaemonSet or Service to release",
        )),
        Some(t) => {
            if t.name.is_empty() {
                v.push(Problem::error(
                    "spec.targetRef.name",
                    "name is required",
                    "name the workload",
                ));
            }
            if t.api_version.is_empty() {
                v.push(Problem::error(
                    "spec.targetRef.apiVersion",
                    "apiVersion is required",
                    "use apps/v1 for a Deployment or DaemonSet, v1 for a Service",
                ));
            }
            let knative = t.api_version.starts_with("serving.knative.dev/");
            if knative != (provider == Provider::Knative) {
                v.push(Problem::error(
                    "spec.provider",
                    format!("provider {provider} and target {} do not fit together", t.api_version),
                    "a Knative Service target needs provider knative, and provider knative needs one",
                ));
            }
            if knative && t.kind != TargetKind::Service {
                v.push(Problem::error(
                    "spec.targetRef.kind",
                    "a Knative target must be a Service",
                    "set kind: Service",
                ));
            }
        }
    }
    check_service(c, &route, &mut v);
    check_refs(c, provider, &mut v);
    if let Some(s) = spec.progress_deadline_seconds
        && s <= 0
    {
        v.push(Problem::error(
            "spec.progressDeadlineSeconds",
            format!("{s} is not a positive number of seconds"),
            "remove it (600s) or set a positive value",
        ));
    }
    if spec.canary_analysis.is_some() {
        let path = "spec.canaryAnalysis";
        if spec.analysis.is_some() {
            v.push(Problem::error(
                path,
                "both analysis and canaryAnalysis are set",
                "keep only analysis",
            ));
        } else {
            v.push(Problem::warning(
                path,
                "canaryAnalysis is deprecated",
                "rename it to analysis",
            ));
        }
    }
    match spec.analysis.as_ref().or(spec.canary_analysis.as_ref()) {
        None => v.push(Problem::error(
            "spec.analysis",
            "analysis is required",
            "add an analysis block (set skipAnalysis: true to promote without checks)",
        )),
        Some(a) => {
            let base = if spec.analysis.is_some() {
                "spec.analysis"
            } else {
                "spec.canaryAnalysis"
            };
            check_analysis(a, base, &route, &mut v);
        }
    }
    v
}

fn check_service(c: &Canary, route: &Route<'_>, v: &mut Vec<Problem>) {
    let provider = route.provider;
    let Some(s) = &c.spec.service else {
        if provider == Provider::Knative {
            return; // Knative routes revisions itself; no Services are generated.
        }
        v.push(Problem::error(
            "spec.service",
            "service is required",
            "add service.port: the port the workload listens on",
        ));
        return;
    };
    match s.port {
        None => v.push(Problem::error(
            "spec.service.port",
            "port is required",
            "set the Service port",
        )),
        Some(p) if !(1..=65535).contains(&p) => v.push(Problem::error(
            "spec.service.port",
            format!("{p} is not a port"),
            "use 1-65535",
        )),
        _ => {}
    }
    for (field, value) in [
        ("timeout", &s.timeout),
        ("backendTimeout", &s.backend_timeout),
    ] {
        check_duration(&format!("spec.service.{field}"), value.as_deref(), v);
    }
    if let Some(r) = &s.retries {
        check_duration(
            "spec.service.retries.perTryTimeout",
            r.per_try_timeout.as_deref(),
            v,
        );
    }
    if s.delegation == Some(true) && (s.hosts.is_some() || s.gateways.is_some()) {
        v.push(Problem::error(
            "spec.service.delegation",
            "a delegate VirtualService cannot have hosts or gateways",
            "remove service.hosts and service.gateways, or delegation",
        ));
    }
    if matches!(
        provider,
        Provider::GatewayApiV1 | Provider::GatewayApiV1beta1
    ) && s.gateway_refs.as_ref().is_none_or(Vec::is_empty)
    {
        v.push(Problem::error(
            "spec.service.gatewayRefs",
            format!("provider {provider} needs the Gateway (or Service) the route attaches to"),
            "add service.gatewayRefs, e.g. [{name: gateway, namespace: istio-ingress}]",
        ));
    }
    if provider == Provider::AppMesh && s.mesh_name.as_deref().unwrap_or_default().is_empty() {
        v.push(Problem::error(
            "spec.service.meshName",
            "provider appmesh needs meshName",
            "set service.meshName",
        ));
    }
    for (i, m) in s.r#match.iter().flatten().enumerate() {
        check_match(&format!("spec.service.match[{i}]"), m, v);
    }
    check_route_options(s, route, v);
}

/// The routing options of `spec.service` the backend does not apply are refused: a field that
/// is accepted and does nothing is a bug.
fn check_route_options(s: &crate::CanaryService, route: &Route<'_>, v: &mut Vec<Problem>) {
    let set = [
        ("match", s.r#match.is_some()),
        ("retries", s.retries.is_some()),
        ("rewrite", s.rewrite.is_some()),
        ("mirror", s.mirror.is_some()),
        ("headers", s.headers.is_some()),
        ("gateways", s.gateways.is_some()),
        ("gatewayRefs", s.gateway_refs.is_some()),
        ("corsPolicy", s.cors_policy.is_some()),
        ("trafficPolicy", s.traffic_policy.is_some()),
        ("hosts", s.hosts.is_some()),
        ("delegation", s.delegation.is_some()),
        ("timeout", s.timeout.is_some()),
        ("backendTimeout", s.backend_timeout.is_some()),
        ("meshName", s.mesh_name.is_some()),
        ("backends", s.backends.is_some()),
        ("headless", s.headless.is_some()),
        ("portDiscovery", s.port_discovery.is_some()),
    ];
    for (field, present) in set {
        if present && !route.caps.service_fields.contains(&field) {
            v.push(Problem::error(
                &format!("spec.service.{field}"),
                format!("provider {} does not apply service.{field}", route.provider),
                &format!(
                    "remove it, or {}",
                    route.able(|c| c.service_fields.contains(&field))
                ),
            ));
        }
    }
}

fn check_refs(c: &Canary, provider: Provider, v: &mut Vec<Problem>) {
    let spec = &c.spec;
    if matches!(provider, Provider::Nginx | Provider::Skipper) && spec.ingress_ref.is_none() {
        v.push(Problem::error(
            "spec.ingressRef",
            format!("provider {provider} needs the Ingress to copy"),
            "set ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: ...}",
        ));
    }
    if provider == Provider::Apisix && spec.route_ref.is_none() {
        v.push(Problem::error(
            "spec.routeRef",
            "provider apisix needs the ApisixRoute to copy",
            "set routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: ...}",
        ));
    }
    if let Some(a) = &spec.autoscaler_ref {
        if provider == Provider::Knative {
            v.push(Problem::error(
                "spec.autoscalerRef",
                "Knative targets scale themselves",
                "remove autoscalerRef",
            ));
        }
        if a.kind == AutoscalerKind::HorizontalPodAutoscaler && a.api_version != "autoscaling/v2" {
            v.push(Problem::error(
                "spec.autoscalerRef.apiVersion",
                format!("{:?} is not supported", a.api_version),
                "use autoscaling/v2",
            ));
        }
    }
}

fn check_analysis(a: &CanaryAnalysis, base: &str, route: &Route<'_>, v: &mut Vec<Problem>) {
    let (provider, caps) = (route.provider, route.caps);
    let p = |field: &str| format!("{base}.{field}");
    match a.interval.as_deref() {
        None => v.push(Problem::error(
            &p("interval"),
            "interval is required",
            "set it, e.g. interval: 1m",
        )),
        Some(s) => match duration::parse(s) {
            Err(e) => v.push(Problem::error(
                &p("interval"),
                e.to_string(),
                "use e.g. 30s or 1m",
            )),
            Ok(d) if d < MIN_INTERVAL => v.push(Problem::warning(
                &p("interval"),
                format!("{s} is below the 10s minimum and runs every 10s"),
                "use 10s or more",
            )),
            Ok(_) => {}
        },
    }
    match a.threshold {
        None => v.push(Problem::error(
            &p("threshold"),
            "threshold is required",
            "set how many failed checks roll back, e.g. 5",
        )),
        Some(t) if t < 1 => v.push(Problem::error(
            &p("threshold"),
            format!("{t} would roll back at once"),
            "use 1 or more",
        )),
        _ => {}
    }
    let modes = [
        a.iterations.is_some(),
        a.step_weight.is_some(),
        a.step_weights.is_some(),
    ];
    match modes.iter().filter(|m| **m).count() {
        0 => v.push(Problem::error(
            base,
            "no traffic strategy",
            "set stepWeight or stepWeights (canary) or iterations (blue/green, A/B)",
        )),
        1 => {}
        _ => v.push(Problem::error(
            base,
            "iterations, stepWeight and stepWeights are mutually exclusive",
            "keep one of them",
        )),
    }
    check_weights(a, base, route, v);
    if !a.matches().is_empty() {
        if a.iterations() == 0 {
            v.push(Problem::error(
                &p("match"),
                "A/B testing needs iterations",
                "set iterations, e.g. 10",
            ));
        }
        if !caps.header_match {
            v.push(Problem::error(
                &p("match"),
                format!("provider {provider} cannot route by header, cookie or query"),
                &format!("remove match, or {}", route.able(|c| c.header_match)),
            ));
        }
        for (i, m) in a.matches().iter().enumerate() {
            check_match(&format!("{base}.match[{i}]"), m, v);
        }
    }
    check_mirror(a, base, route, v);
    check_session_affinity(a, base, route, v);
    let mut names = std::collections::BTreeSet::new();
    for (i, m) in a.metrics.iter().flatten().enumerate() {
        check_metric(m, &format!("{base}.metrics[{i}]"), v);
        check_judge(m, &format!("{base}.metrics[{i}]"), provider, v);
        if !names.insert(("metric", m.name.as_str())) {
            v.push(Problem::error(
                &format!("{base}.metrics[{i}].name"),
                format!("duplicate metric {:?}", m.name),
                "give every metric its own name",
            ));
        }
    }
    for (i, h) in a.webhooks.iter().flatten().enumerate() {
        check_webhook(h, &format!("{base}.webhooks[{i}]"), v);
        if !names.insert(("webhook", h.name.as_str())) {
            v.push(Problem::error(
                &format!("{base}.webhooks[{i}].name"),
                format!("duplicate webhook {:?}", h.name),
                "give every webhook its own name",
            ));
        }
    }
    for (i, al) in a.alerts.iter().flatten().enumerate() {
        if al.name.is_empty() {
            v.push(Problem::error(
                &format!("{base}.alerts[{i}].name"),
                "name is required",
                "name the alert",
            ));
        }
        if al.provider_ref.name.is_empty() {
            v.push(Problem::error(
                &format!("{base}.alerts[{i}].providerRef.name"),
                "providerRef.name is required",
                "name an AlertProvider",
            ));
        }
    }
}

fn check_weights(a: &CanaryAnalysis, base: &str, route: &Route<'_>, v: &mut Vec<Problem>) {
    let provider = route.provider;
    let p = |field: &str| format!("{base}.{field}");
    let percent = |field: &str, value: Option<i32>, v: &mut Vec<Problem>| {
        if let Some(w) = value
            && !(0..=100).contains(&w)
        {
            v.push(Problem::error(
                &p(field),
                format!("{w} is not a percentage"),
                "use 0-100",
            ));
        }
    };
    percent("maxWeight", a.max_weight, v);
    percent("stepWeight", a.step_weight, v);
    percent("stepWeightPromotion", a.step_weight_promotion, v);
    percent("mirrorWeight", a.mirror_weight, v);
    percent("primaryReadyThreshold", a.primary_ready_threshold, v);
    percent("canaryReadyThreshold", a.canary_ready_threshold, v);
    if a.step_weight == Some(0) {
        v.push(Problem::error(
            &p("stepWeight"),
            "a step of 0 never moves traffic",
            "use 1-100",
        ));
    }
    if let (Some(s), Some(m)) = (a.step_weight, a.max_weight)
        && s > m
        && m > 0
    {
        v.push(Problem::warning(
            &p("stepWeight"),
            format!("step {s} is above maxWeight {m}: the first step goes to {m}"),
            "lower stepWeight",
        ));
    }
    if let Some(steps) = &a.step_weights {
        if steps.is_empty() {
            v.push(Problem::error(
                &p("stepWeights"),
                "stepWeights is empty",
                "list the weights, e.g. [1, 10, 50]",
            ));
        }
        for (i, w) in steps.iter().enumerate() {
            if !(1..=100).contains(w) {
                v.push(Problem::error(
                    &format!("{base}.stepWeights[{i}]"),
                    format!("{w} is not a weight"),
                    "use 1-100",
                ));
            }
            if i > 0 && *w <= steps[i - 1] {
                v.push(Problem::error(
                    &format!("{base}.stepWeights[{i}]"),
                    format!(
                        "{w} does not come after {}: steps must be strictly ascending",
                        steps[i - 1]
                    ),
                    "sort the steps and remove duplicates",
                ));
            }
        }
        if a.max_weight.is_some() {
            v.push(Problem::warning(
                &p("maxWeight"),
                "maxWeight is ignored with stepWeights (the last step is the maximum)",
                "remove maxWeight",
            ));
        }
    }
    let weighted = a.step_weight.is_some() || a.step_weights.is_some();
    if weighted && !route.caps.weights {
        v.push(Problem::error(
            base,
            format!("provider {provider} cannot shift traffic by weight (blue/green only)"),
            &format!(
                "set iterations instead of stepWeight(s), or {}",
                route.able(|c| c.weights)
            ),
        ));
    }
}

fn check_mirror(a: &CanaryAnalysis, base: &str, route: &Route<'_>, v: &mut Vec<Problem>) {
    let (provider, caps) = (route.provider, route.caps);
    if a.mirror() {
        let canary_mode = a.iterations() == 0;
        if !caps.mirror {
            v.push(Problem::error(
                &format!("{base}.mirror"),
                format!("provider {provider} cannot mirror traffic"),
                &format!("remove mirror, or {}", route.able(|c| c.mirror)),
            ));
        } else if canary_mode && !caps.mirror_in_canary {
            v.push(Problem::error(
                &format!("{base}.mirror"),
                format!("provider {provider} mirrors only in blue/green runs"),
                &format!(
                    "set iterations (blue/green), or {}",
                    route.able(|c| c.mirror_in_canary)
                ),
            ));
        }
        if !a.matches().is_empty() {
            v.push(Problem::error(
                &format!("{base}.mirror"),
                "mirroring cannot be combined with A/B match",
                "remove one of them",
            ));
        }
    }
    if a.mirror_weight.is_some() {
        if !a.mirror() {
            v.push(Problem::error(
                &format!("{base}.mirrorWeight"),
                "mirrorWeight needs mirror: true",
                "set mirror: true or remove mirrorWeight",
            ));
        } else if caps.mirror && !caps.mirror_weight {
            v.push(Problem::error(
                &format!("{base}.mirrorWeight"),
                format!("provider {provider} cannot mirror a percentage"),
                &format!(
                    "remove mirrorWeight, or {}",
                    route.able(|c| c.mirror_weight)
                ),
            ));
        }
    }
}

fn check_session_affinity(a: &CanaryAnalysis, base: &str, route: &Route<'_>, v: &mut Vec<Problem>) {
    let Some(s) = &a.session_affinity else { return };
    let (provider, caps) = (route.provider, route.caps);
    let path = format!("{base}.sessionAffinity");
    if !caps.session_affinity {
        v.push(Problem::error(
            &path,
            format!("provider {provider} cannot pin sessions"),
            &format!(
                "remove sessionAffinity, or {}",
                route.able(|c| c.session_affinity)
            ),
        ));
    }
    if s.cookie_name.is_empty() {
        v.push(Problem::error(
            &format!("{path}.cookieName"),
            "cookieName is required",
            "name the cookie",
        ));
    }
    if let Some(primary) = &s.primary_cookie_name {
        if *primary == s.cookie_name {
            v.push(Problem::error(
                &format!("{path}.primaryCookieName"),
                "must differ from cookieName",
                "use another name",
            ));
        }
        if caps.session_affinity && !caps.primary_cookie {
            v.push(Problem::error(
                &format!("{path}.primaryCookieName"),
                format!("provider {provider} has no primary cookie"),
                &format!(
                    "remove primaryCookieName, or {}",
                    route.able(|c| c.primary_cookie)
                ),
            ));
        }
    }
    if let Some(m) = s.max_age
        && m < 1
    {
        v.push(Problem::error(
            &format!("{path}.maxAge"),
            format!("{m} would expire the cookie at once"),
            "use a positive number of seconds",
        ));
    }
}

fn check_metric(m: &CanaryMetric, path: &str, v: &mut Vec<Problem>) {
    if m.name.is_empty() {
        v.push(Problem::error(
            &format!("{path}.name"),
            "name is required",
            "name the metric",
        ));
    }
    check_duration(&format!("{path}.interval"), m.interval.as_deref(), v);
    if m.template_ref.is_none() && m.query.is_none() && !m.is_builtin() {
        v.push(Problem::error(
            path,
            format!(
                "metric {:?} is not built in and has no templateRef or query",
                m.name
            ),
            "use request-success-rate, request-duration, judge-latency or judge-errors, or add templateRef",
        ));
    }
    if let Some(t) = &m.template_ref {
        if t.name.is_empty() {
            v.push(Problem::error(
                &format!("{path}.templateRef.name"),
                "name is required",
                "name the MetricTemplate",
            ));
        }
        if m.query.is_some() {
            v.push(Problem::error(
                path,
                "both templateRef and query are set",
                "keep templateRef",
            ));
        }
    }
    if m.query.is_some() && m.template_ref.is_none() {
        v.push(Problem::warning(
            &format!("{path}.query"),
            "inline queries are deprecated",
            "move the query into a MetricTemplate",
        ));
    }
    let range = m.threshold_range.as_ref();
    let (min, max) = (range.and_then(|r| r.min), range.and_then(|r| r.max));
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        v.push(Problem::error(
            &format!("{path}.thresholdRange"),
            format!("min {lo} is above max {hi}"),
            "swap them",
        ));
    }
    if min.is_none() && max.is_none() && m.threshold.is_none() {
        let effect = if m.name == crate::METRIC_REQUEST_SUCCESS_RATE {
            "the check could never fail"
        } else {
            "the check fails on any value above 0"
        };
        v.push(Problem::error(
            path,
            format!("no threshold or thresholdRange: {effect}"),
            "set thresholdRange.min (success rates) or thresholdRange.max (latency, errors)",
        ));
    }
    if m.threshold.is_some() && range.is_some() {
        v.push(Problem::warning(
            &format!("{path}.threshold"),
            "threshold is ignored when thresholdRange is set",
            "remove threshold",
        ));
    }
}

/// The statistical judge's metrics: what they compare, and the fields that mean something
/// only to them.
fn check_judge(m: &CanaryMetric, path: &str, provider: Provider, v: &mut Vec<Problem>) {
    if !m.is_judge() {
        if m.confidence.is_some() {
            v.push(Problem::error(
                &format!("{path}.confidence"),
                "confidence is read only by the judge metrics (judge-latency, judge-errors)",
                "remove it",
            ));
        }
        return;
    }
    if provider != Provider::Builtin {
        v.push(Problem::error(
            &format!("{path}.name"),
            format!(
                "{} compares the built-in router's per-backend samples; provider {provider} has none",
                m.name
            ),
            "use provider builtin, or request-success-rate and request-duration on Prometheus",
        ));
    }
    if m.threshold_range.as_ref().is_some_and(|r| r.min.is_some()) {
        v.push(Problem::error(
            &format!("{path}.thresholdRange.min"),
            "the judge fails a canary that is worse than tolerated; a minimum means nothing to it",
            "remove min; set max to the tolerance (percent slower, or percentage points more errors)",
        ));
    }
    if let Some(c) = m.confidence
        && !(0.5..=0.999_999).contains(&c)
    {
        v.push(Problem::error(
            &format!("{path}.confidence"),
            format!("{c} is not a confidence between 0.5 and 0.999999"),
            "use e.g. 0.95 or 0.99",
        ));
    }
    if m.is_critical() {
        v.push(Problem::error(
            &format!("{path}.critical"),
            "the judge spends its confidence over the run's interval checks; a live watch would overrun it",
            "remove critical (request-success-rate with critical: true rolls back in seconds)",
        ));
    }
    if m.interval() > std::time::Duration::from_secs(60) {
        v.push(Problem::error(
            &format!("{path}.interval"),
            "the router keeps the judge's samples for the last minute",
            "use an interval of 60s or less",
        ));
    }
}

fn check_webhook(h: &CanaryWebhook, path: &str, v: &mut Vec<Problem>) {
    if h.name.is_empty() {
        v.push(Problem::error(
            &format!("{path}.name"),
            "name is required",
            "name the webhook",
        ));
    }
    if !is_http_url(&h.url) {
        v.push(Problem::error(
            &format!("{path}.url"),
            format!("{:?} is not an http(s) URL", h.url),
            "use an absolute URL such as http://siskin-loadtester.test/",
        ));
    }
    check_duration(&format!("{path}.timeout"), h.timeout.as_deref(), v);
    if let Some(r) = h.retries
        && !(0..=10).contains(&r)
    {
        v.push(Problem::error(
            &format!("{path}.retries"),
            format!("{r} retries"),
            "use 0-10",
        ));
    }
    if h.hook_type() == HookType::Event && h.mute_alert.is_some() {
        v.push(Problem::warning(
            &format!("{path}.muteAlert"),
            "muteAlert has no effect on event hooks",
            "remove it",
        ));
    }
}

fn check_match(path: &str, m: &HttpMatchRequest, v: &mut Vec<Problem>) {
    let mut one = |p: String, sm: &StringMatch| {
        let set = [&sm.exact, &sm.prefix, &sm.suffix, &sm.regex]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if set > 1 {
            v.push(Problem::error(
                &p,
                "more than one of exact, prefix, suffix, regex",
                "keep one",
            ));
        }
        if let Some(re) = &sm.regex
            && re.is_empty()
        {
            v.push(Problem::error(
                &p,
                "empty regex",
                "write a pattern or use exact",
            ));
        }
    };
    for (field, sm) in [
        ("uri", &m.uri),
        ("method", &m.method),
        ("scheme", &m.scheme),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            one(format!("{path}.{field}"), sm);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (k, sm) in map.iter().flatten() {
            one(format!("{path}.{field}.{k}"), sm);
        }
    }
}

fn check_duration(path: &str, value: Option<&str>, v: &mut Vec<Problem>) {
    if let Some(s) = value
        && let Err(e) = duration::parse(s)
    {
        v.push(Problem::error(path, e.to_string(), "use e.g. 30s or 1m"));
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !host.contains(char::is_whitespace)
    })
}

/// Validates a MetricTemplate.
pub fn metric_template(t: &MetricTemplate) -> Vec<Problem> {
    let mut v = Vec::new();
    let p = &t.spec.provider;
    if t.spec.query.trim().is_empty() {
        v.push(Problem::error(
            "spec.query",
            "query is required",
            "write the query",
        ));
    }
    use MetricsProviderType::*;
    let needs_address = matches!(
        p.r#type,
        Prometheus | Graphite | Influxdb | Dynatrace | Splunk
    );
    match &p.address {
        None if needs_address => v.push(Problem::error(
            "spec.provider.address",
            format!("provider {:?} needs an address", type_name(p.r#type)),
            "set the API URL, e.g. http://prometheus.monitoring:9090",
        )),
        Some(a) if !is_http_url(a) => v.push(Problem::error(
            "spec.provider.address",
            format!("{a:?} is not an http(s) URL"),
            "use an absolute URL",
        )),
        _ => {}
    }
    if p.r#type == Cloudwatch && p.region.is_none() {
        v.push(Problem::error(
            "spec.provider.region",
            "cloudwatch needs a region",
            "set region, e.g. us-east-1",
        ));
    }
    let needs_secret = matches!(p.r#type, Datadog | Newrelic | Dynatrace | Splunk);
    if needs_secret && p.secret_ref.is_none() {
        v.push(Problem::error(
            "spec.provider.secretRef",
            format!("{} needs credentials", type_name(p.r#type)),
            "set secretRef to a Secret with the API keys",
        ));
    }
    v
}

fn type_name(t: MetricsProviderType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Validates an AlertProvider.
pub fn alert_provider(a: &AlertProvider) -> Vec<Problem> {
    let mut v = Vec::new();
    match (&a.spec.address, &a.spec.secret_ref) {
        (None, None) => v.push(Problem::error(
            "spec",
            "neither address nor secretRef is set",
            "set address (the webhook URL) or secretRef (a Secret with an address key)",
        )),
        (Some(addr), _) if !is_http_url(addr) => v.push(Problem::error(
            "spec.address",
            format!("{addr:?} is not an http(s) URL"),
            "use the webhook URL",
        )),
        _ => {}
    }
    if let Some(p) = &a.spec.proxy
        && !is_http_url(p)
    {
        v.push(Problem::error(
            "spec.proxy",
            format!("{p:?} is not an http(s) URL"),
            "use e.g. http://proxy:3128",
        ));
    }
    v
}

/// Field names the schema knows under `parent` (a dotted path, indices as numbers), for
/// spelling hints. Unions over our three kinds.
pub fn known_fields(parent: &str) -> Vec<String> {
    static SCHEMAS: OnceLock<Vec<Value>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        crate::crd::all(ApiGroup::Siskin)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|crd| serde_json::to_value(&crd.spec.versions[0].schema).ok())
            .map(|v| v["openAPIV3Schema"].clone())
            .collect()
    });
    let mut out = Vec::new();
    for root in schemas {
        let mut node = root;
        let mut ok = true;
        for seg in parent.split('.').filter(|s| !s.is_empty()) {
            node = if let Some(n) = node.get("properties").and_then(|p| p.get(seg)) {
                n
            } else if let Some(n) = node.get("items").filter(|_| seg.parse::<usize>().is_ok()) {
                n
            } else if let Some(n) = node.get("additionalProperties").filter(|n| n.is_object()) {
                n
            } else {
                ok = false;
                break;
            };
        }
        if let (true, Some(Value::Object(props))) = (ok, node.get("properties")) {
            out.extend(props.keys().cloned());
        }
    }
    out.sort();
    out.dedup();
    out
}
