//! Compiling a [`Config`] once per version into a lookup [`Table`].

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use http::{HeaderName, Method};
use regex::Regex;

use crate::{
    Backend, Config, Filter, PathMatchType, Retry, SessionCookie, Timeouts, ValueMatch,
    ValueMatchType,
};

/// A configuration that cannot be served, with the place it is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Two routes share a name.
    #[error("routes[{index}]: duplicate route name {name:?}")]
    DuplicateRoute {
        /// Index of the second one.
        index: usize,
        /// The name.
        name: String,
    },
    /// Two backends share a name.
    #[error("backends: duplicate backend name {0:?}")]
    DuplicateBackend(String),
    /// A rule refers to a backend that is not defined.
    #[error("{at}: unknown backend {name:?}; define it under backends")]
    UnknownBackend {
        /// Where.
        at: String,
        /// The name.
        name: String,
    },
    /// A value is not valid where it is.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: String,
        /// What is wrong.
        message: String,
    },
}

/// A compiled rule: ready to match and pick.
#[derive(Debug)]
pub struct CompiledRule {
    /// `route/rule` label used in metrics and stats (the rule's name, or its index).
    pub label: Arc<str>,
    /// Name of the route (shared by its rules and their statistics).
    pub route: Arc<str>,
    pub(crate) matches: Vec<CompiledMatch>,
    /// Backends: index into [`Table::backends`], weight, session cookie (boxed: most backends
    /// have none, and inline it would triple every entry).
    pub backends: Vec<(usize, u32, Option<Box<SessionCookie>>)>,
    pub(crate) total_weight: u64,
    /// Filters other than mirrors, in order; header modifiers parsed once here.
    pub filters: Vec<RuleFilter>,
    /// Mirror target (backend index) and percentage.
    pub mirror: Option<(usize, u8)>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retry policy (boxed: most rules have none).
    pub retry: Option<Box<Retry>>,
    /// Cookies (`name=value`) to expire on sight.
    pub expire_cookies: Vec<(String, String)>,
}

/// A filter of a compiled rule.
#[derive(Clone, Debug)]
pub enum RuleFilter {
    /// `RequestHeaderModifier`, parsed.
    RequestHeaders(HeaderEdit),
    /// `ResponseHeaderModifier`, parsed.
    ResponseHeaders(HeaderEdit),
    /// Any other filter, as configured.
    Other(Filter),
}

/// A header modifier with its names and values parsed, so a request only copies them.
#[derive(Clone, Debug, Default)]
pub struct HeaderEdit {
    set: Vec<(HeaderName, http::HeaderValue)>,
    add: Vec<(HeaderName, http::HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderEdit {
    /// Parses `m`; `at` names it in errors.
    pub fn compile(m: &crate::HeaderModifier, at: &str) -> Result<HeaderEdit, CompileError> {
        let pair = |h: &crate::Header| -> Result<(HeaderName, http::HeaderValue), CompileError> {
            let value = http::HeaderValue::from_str(&h.value)
                .map_err(|_| invalid(at, format!("invalid header value {:?}", h.value)))?;
            Ok((header_name(&h.name, at)?, value))
        };
        Ok(HeaderEdit {
            set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|n| header_name(n, at))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Sets, then adds, then removes (Gateway API's order).
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

#[derive(Debug)]
pub(crate) struct CompiledMatch {
    pub(crate) path: PathCond,
    pub(crate) headers: Vec<(HeaderName, ValueCond)>,
    pub(crate) query: Vec<(String, ValueCond)>,
    pub(crate) method: Option<Method>,
}

#[derive(Debug)]
pub(crate) enum PathCond {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
pub(crate) enum ValueCond {
    Exact(String),
    Regex(Regex),
}

/// Rules by host name: a request's host is looked up once for its exact name and once per
/// dot for wildcards, so selection does not grow with the number of routes.
#[derive(Debug, Default)]
pub(crate) struct HostIndex {
    /// Lower-cased host name → rule indices, in route order.
    pub(crate) exact: HashMap<String, Vec<usize>>,
    /// `*.example.com` stored as `.example.com` → rule indices, in route order.
    pub(crate) wildcard: HashMap<String, Vec<usize>>,
    /// Rules of routes without host names.
    pub(crate) any: Vec<usize>,
}

/// Routes and backends compiled for lookup. Built once per configuration version; the
/// request path only reads it.
#[derive(Debug)]
pub struct Table {
    /// Every rule of every route, route by route.
    pub rules: Vec<CompiledRule>,
    /// The rules by the host names they serve, looked up rather than scanned.
    pub(crate) hosts: HostIndex,
    /// Backends, by index.
    pub backends: Vec<Backend>,
    /// The configuration this table was built from, as JSON (what the router's `/config`
    /// serves). Text rather than the parsed [`Config`]: the compiled rules already hold what a
    /// request needs, and a second parsed copy cost more than the table itself.
    pub config_json: String,
}

// === impl Table ===

impl Table {
    /// Compiles `config`, refusing anything that cannot be served.
    pub fn compile(config: Config) -> Result<Table, CompileError> {
        let mut backend_index = HashMap::new();
        for (i, b) in config.backends.iter().enumerate() {
            if backend_index.insert(b.name.clone(), i).is_some() {
                return Err(CompileError::DuplicateBackend(b.name.clone()));
            }
            if let Some(tls) = &b.tls {
                let at = format!("backends[{i}].tls");
                if tls.hostname.is_empty() {
                    return Err(invalid(
                        &format!("{at}.hostname"),
                        "give the name the endpoints' certificate carries (sent as SNI)".into(),
                    ));
                }
                let trust = [
                    tls.ca_certificates.is_some(),
                    tls.ca_file.is_some(),
                    tls.well_known_ca_certificates.is_some(),
                ];
                if trust.iter().filter(|t| **t).count() != 1 {
                    return Err(invalid(
                        &at,
                        "set exactly one of caCertificates (PEM), caFile or wellKnownCACertificates: System".into(),
                    ));
                }
                if let Some(w) = &tls.well_known_ca_certificates
                    && w != "System"
                {
                    return Err(invalid(
                        &format!("{at}.wellKnownCACertificates"),
                        format!("{w:?}: the only value is System"),
                    ));
                }
            }
            for (j, e) in b.endpoints.iter().enumerate() {
                if e.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(invalid(
                        &format!("backends[{i}].endpoints[{j}]"),
                        format!("{e:?} is not host:port"),
                    ));
                }
            }
        }
        let mut names = HashSet::new();
        let mut rules = Vec::new();
        let mut hosts = HostIndex::default();
        for (ri, route) in config.routes.iter().enumerate() {
            if !names.insert(route.name.clone()) {
                return Err(CompileError::DuplicateRoute {
                    index: ri,
                    name: route.name.clone(),
                });
            }
            let first = rules.len();
            let route_name: Arc<str> = Arc::from(route.name.as_str());
            for (ki, rule) in route.rules.iter().enumerate() {
                let at = format!("routes[{ri}].rules[{ki}]");
                rules.push(compile_rule(&route_name, ki, rule, &at, &backend_index)?);
            }
            let ids: Vec<usize> = (first..rules.len()).collect();
            if route.hostnames.is_empty() {
                hosts.any.extend(&ids);
            }
            for h in &route.hostnames {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) if suffix.starts_with('.') => hosts
                        .wildcard
                        .entry(suffix.to_string())
                        .or_default()
                        .extend(&ids),
                    Some(_) => {
                        return Err(invalid(
                            &format!("routes[{ri}].hostnames"),
                            format!("{h:?}: a wildcard must be *.domain"),
                        ));
                    }
                    None => hosts.exact.entry(h).or_default().extend(&ids),
                }
            }
        }
        let config_json = serde_json::to_string(&config).map_err(|e| {
            invalid(
                "config",
                format!("cannot be written as JSON for /config: {e}"),
            )
        })?;
        rules.shrink_to_fit();
        for ids in hosts.exact.values_mut().chain(hosts.wildcard.values_mut()) {
            ids.shrink_to_fit();
        }
        hosts.exact.shrink_to_fit();
        hosts.wildcard.shrink_to_fit();
        let mut backends = config.backends;
        for b in &mut backends {
            b.endpoints.shrink_to_fit();
        }
        backends.shrink_to_fit();
        Ok(Table {
            rules,
            hosts,
            backends,
            config_json,
        })
    }

    /// Index of a backend by name.
    pub fn backend(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

fn invalid(at: &str, message: String) -> CompileError {
    CompileError::Invalid {
        at: at.to_string(),
        message,
    }
}

fn compile_rule(
    route: &Arc<str>,
    index: usize,
    rule: &crate::Rule,
    at: &str,
    backends: &HashMap<String, usize>,
) -> Result<CompiledRule, CompileError> {
    let lookup = |name: &str, at: String| {
        backends
            .get(name)
            .copied()
            .ok_or_else(|| CompileError::UnknownBackend {
                at,
                name: name.to_string(),
            })
    };
    // Vectors are sized exactly: a table lives as long as its configuration, and a vector
    // grown by push holds room for four.
    let mut refs = Vec::with_capacity(rule.backend_refs.len());
    for (i, b) in rule.backend_refs.iter().enumerate() {
        refs.push((
            lookup(&b.name, format!("{at}.backendRefs[{i}]"))?,
            b.weight,
            b.session_cookie.clone().map(Box::new),
        ));
    }
    let mut mirror = None;
    let mut filters = Vec::new();
    for (i, f) in rule.filters.iter().enumerate() {
        match f {
            Filter::RequestMirror { mirror: m } => {
                let percent = m.percent.unwrap_or(100);
                if percent > 100 {
                    return Err(invalid(
                        &format!("{at}.filters[{i}].requestMirror.percent"),
                        format!("{percent} is not a percentage"),
                    ));
                }
                mirror = Some((
                    lookup(&m.backend_ref.name, format!("{at}.filters[{i}]"))?,
                    percent,
                ));
            }
            Filter::RequestHeaderModifier { modifier } => filters.push(RuleFilter::RequestHeaders(
                HeaderEdit::compile(modifier, &format!("{at}.filters[{i}]"))?,
            )),
            Filter::ResponseHeaderModifier { modifier } => {
                filters.push(RuleFilter::ResponseHeaders(HeaderEdit::compile(
                    modifier,
                    &format!("{at}.filters[{i}]"),
                )?))
            }
            other => filters.push(RuleFilter::Other(other.clone())),
        }
    }
    let mut matches = Vec::with_capacity(rule.matches.len().max(1));
    for (i, m) in rule.matches.iter().enumerate() {
        matches.push(compile_match(m, &format!("{at}.matches[{i}]"))?);
    }
    if matches.is_empty() {
        // No match means every request: path prefix "/" (stored trimmed, like all prefixes).
        matches.push(CompiledMatch {
            path: PathCond::Prefix(String::new()),
            headers: vec![],
            query: vec![],
            method: None,
        });
    }
    filters.shrink_to_fit();
    let expire_cookies = rule
        .expire_cookies
        .iter()
        .filter_map(|c| {
            c.split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect();
    Ok(CompiledRule {
        label: Arc::from(format!(
            "{route}/{}",
            rule.name.clone().unwrap_or_else(|| index.to_string())
        )),
        route: route.clone(),
        total_weight: refs.iter().map(|(_, w, _)| u64::from(*w)).sum(),
        backends: refs,
        matches,
        filters,
        mirror,
        timeouts: rule.timeouts.clone().unwrap_or_default(),
        retry: rule.retry.clone().map(Box::new),
        expire_cookies,
    })
}

fn header_name(name: &str, at: &str) -> Result<HeaderName, CompileError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(at, format!("invalid header name {name:?}")))
}

fn regex(pattern: &str, at: &str) -> Result<Regex, CompileError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| invalid(at, format!("invalid regular expression: {e}")))
}

fn value_cond(v: &ValueMatch, at: &str) -> Result<ValueCond, CompileError> {
    Ok(match v.kind {
        ValueMatchType::Exact => ValueCond::Exact(v.value.clone()),
        ValueMatchType::RegularExpression => ValueCond::Regex(regex(&v.value, at)?),
    })
}

fn compile_match(m: &crate::Match, at: &str) -> Result<CompiledMatch, CompileError> {
    let path = match &m.path {
        None => PathCond::Prefix(String::new()),
        Some(p) => {
            if p.kind != PathMatchType::RegularExpression && !p.value.starts_with('/') {
                return Err(invalid(
                    &format!("{at}.path"),
                    format!("{:?} must start with /", p.value),
                ));
            }
            match p.kind {
                PathMatchType::Exact => PathCond::Exact(p.value.clone()),
                PathMatchType::PathPrefix => {
                    PathCond::Prefix(p.value.trim_end_matches('/').to_string())
                }
                PathMatchType::RegularExpression => {
                    PathCond::Regex(regex(&p.value, &format!("{at}.path"))?)
                }
            }
        }
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.iter().enumerate() {
        let p = format!("{at}.headers[{i}]");
        headers.push((header_name(&h.name, &p)?, value_cond(h, &p)?));
    }
    let mut query = Vec::with_capacity(m.query_params.len());
    for (i, q) in m.query_params.iter().enumerate() {
        query.push((
            q.name.clone(),
            value_cond(q, &format!("{at}.queryParams[{i}]"))?,
        ));
    }
    let method = match &m.method {
        None => None,
        Some(s) => Some(
            Method::from_bytes(s.as_bytes())
                .map_err(|_| invalid(&format!("{at}.method"), format!("invalid method {s:?}")))?,
        ),
    };
    Ok(CompiledMatch {
        path,
        headers,
        query,
        method,
    })
}
