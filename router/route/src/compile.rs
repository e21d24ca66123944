//! Compiling a [`Config`] once per version into a lookup [`Table`].

use std::{
    collections::{HashMap, HashSet},
    io::Read,
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
    /// Filters, mirror, timeouts, retry and cookies to expire, when the rule has any (boxed:
    /// most rules have none, and inline they were half of every rule); see [`Self::policy`].
    policy: Option<Box<RulePolicy>>,
}

/// What a rule does besides choosing a backend.
#[derive(Debug)]
pub struct RulePolicy {
    /// Filters other than mirrors, in order; header modifiers parsed once here.
    pub filters: Vec<RuleFilter>,
    /// Mirror target (backend index) and percentage.
    pub mirror: Option<(usize, u8)>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// Cookies (`name=value`) to expire on sight.
    pub expire_cookies: Vec<(String, String)>,
}

/// The policy of a rule that has none.
static NO_POLICY: RulePolicy = RulePolicy {
    filters: Vec::new(),
    mirror: None,
    timeouts: Timeouts {
        request: None,
        backend_request: None,
    },
    retry: None,
    expire_cookies: Vec::new(),
};

/// The condition of a rule without matches: every request (path prefix `/`, stored trimmed
/// like all prefixes). Shared, so such a rule holds no match of its own.
pub(crate) static MATCH_ALL: CompiledMatch = CompiledMatch {
    path: PathCond::Prefix(String::new()),
    headers: Vec::new(),
    query: Vec::new(),
    method: None,
};

impl CompiledRule {
    /// Filters, mirror, timeouts, retry and cookies to expire.
    pub fn policy(&self) -> &RulePolicy {
        self.policy.as_deref().unwrap_or(&NO_POLICY)
    }

    /// The rule's conditions (any one matches).
    pub(crate) fn matches(&self) -> &[CompiledMatch] {
        if self.matches.is_empty() {
            std::slice::from_ref(&MATCH_ALL)
        } else {
            &self.matches
        }
    }
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
    pub(crate) exact: HashMap<Box<str>, RuleIds>,
    /// `*.example.com` stored as `.example.com` → rule indices, in route order.
    pub(crate) wildcard: HashMap<Box<str>, RuleIds>,
    /// Rules of routes without host names.
    pub(crate) any: RuleIds,
}

/// Rule indices, in route order: most often one route's rules, which are consecutive and kept
/// as a range (no allocation); a list when routes share a host name.
#[derive(Debug, Clone)]
pub(crate) enum RuleIds {
    /// `start..end`.
    Range(u32, u32),
    /// Any other set.
    List(Box<[u32]>),
}

impl Default for RuleIds {
    fn default() -> Self {
        RuleIds::Range(0, 0)
    }
}

impl RuleIds {
    /// Appends `start..end` (a route's rules, after every rule already here).
    fn extend(&mut self, start: u32, end: u32) {
        if start == end {
            return;
        }
        match self {
            RuleIds::Range(a, b) if *a == *b => *self = RuleIds::Range(start, end),
            RuleIds::Range(_, b) if *b == start => *b = end,
            RuleIds::Range(a, b) => {
                *self = RuleIds::List((*a..*b).chain(start..end).collect());
            }
            RuleIds::List(list) => {
                *list = list.iter().copied().chain(start..end).collect();
            }
        }
    }

    /// The indices.
    pub(crate) fn iter(&self) -> RuleIdsIter<'_> {
        match self {
            RuleIds::Range(a, b) => RuleIdsIter::Range(*a..*b),
            RuleIds::List(list) => RuleIdsIter::List(list.iter()),
        }
    }
}

/// Iterator over [`RuleIds`].
pub(crate) enum RuleIdsIter<'a> {
    Range(std::ops::Range<u32>),
    List(std::slice::Iter<'a, u32>),
}

impl Iterator for RuleIdsIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            RuleIdsIter::Range(r) => r.next(),
            RuleIdsIter::List(l) => l.next().copied(),
        }
        .map(|i| i as usize)
    }
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
    /// The configuration this table was built from, as JSON compressed with DEFLATE (what the
    /// router's `/config` serves, see [`Table::config_json`]). Neither the parsed [`Config`]
    /// nor plain text: the compiled rules already hold what a request needs, a second parsed
    /// copy cost more than the table itself, and the text a third of it.
    config_deflated: Box<[u8]>,
}

// === impl Table ===

impl Table {
    /// Compiles `config`, refusing anything that cannot be served.
    pub fn compile(config: Config) -> Result<Table, CompileError> {
        // Written first: the routes are consumed below.
        let config_deflated = deflate_json(&config)?;
        let Config { routes, backends } = config;
        let mut builder = TableBuilder::new(backends)?;
        // Each route is dropped once compiled, so the memory it held is reused by the next
        // routes' compiled rules rather than left as holes below them.
        for route in routes {
            builder.add_route(route)?;
        }
        Ok(builder.finish(config_deflated))
    }

    /// The configuration this table was built from, as JSON text (what `/config` serves).
    pub fn config_json(&self) -> Result<String, std::io::Error> {
        let mut text = String::new();
        flate2::read::DeflateDecoder::new(&self.config_deflated[..]).read_to_string(&mut text)?;
        Ok(text)
    }

    /// Bytes the configuration's JSON takes in this table (compressed).
    pub fn config_bytes(&self) -> usize {
        self.config_deflated.len()
    }

    /// Index of a backend by name.
    pub fn backend(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| *b.name == *name)
    }
}

/// Compiles a configuration a route at a time, so that a caller reading routes one by one
/// never holds them all ([`Table::from_yaml`]); [`Table::compile`] feeds it a whole [`Config`].
#[derive(Debug)]
pub(crate) struct TableBuilder {
    backends: Vec<Backend>,
    /// Indices into `backends`, sorted by name: looked up while compiling, then dropped.
    by_name: Vec<usize>,
    /// Route names seen, for duplicates (shared with the compiled rules).
    names: HashSet<Arc<str>>,
    rules: Vec<CompiledRule>,
    hosts: HostIndex,
    /// Routes added so far (the index of the next one, for errors).
    routes: usize,
}

/// Backends by name, while compiling.
struct BackendNames<'a> {
    backends: &'a [Backend],
    by_name: &'a [usize],
}

impl BackendNames<'_> {
    fn get(&self, name: &str) -> Option<usize> {
        self.by_name
            .binary_search_by(|i| (*self.backends[*i].name).cmp(name))
            .ok()
            .map(|at| self.by_name[at])
    }
}

impl TableBuilder {
    /// Checks the backends, refusing anything that cannot be served.
    pub(crate) fn new(backends: Vec<Backend>) -> Result<TableBuilder, CompileError> {
        for (i, b) in backends.iter().enumerate() {
            check_backend(i, b)?;
        }
        let mut by_name: Vec<usize> = (0..backends.len()).collect();
        // Stable: of two backends with one name, the second is the duplicate.
        by_name.sort_by(|a, b| backends[*a].name.cmp(&backends[*b].name));
        if let Some(w) = by_name
            .windows(2)
            .filter(|w| backends[w[0]].name == backends[w[1]].name)
            .min_by_key(|w| w[1])
        {
            return Err(CompileError::DuplicateBackend(
                backends[w[1]].name.to_string(),
            ));
        }
        Ok(TableBuilder {
            backends,
            by_name,
            names: HashSet::new(),
            rules: Vec::new(),
            hosts: HostIndex::default(),
            routes: 0,
        })
    }

    /// Compiles the next route.
    pub(crate) fn add_route(&mut self, route: crate::Route) -> Result<(), CompileError> {
        let ri = self.routes;
        self.routes += 1;
        let route_name: Arc<str> = Arc::from(route.name.as_str());
        if !self.names.insert(route_name.clone()) {
            return Err(CompileError::DuplicateRoute {
                index: ri,
                name: route.name,
            });
        }
        let names = BackendNames {
            backends: &self.backends,
            by_name: &self.by_name,
        };
        let first = self.rules.len();
        for (ki, rule) in route.rules.iter().enumerate() {
            let at = format!("routes[{ri}].rules[{ki}]");
            self.rules
                .push(compile_rule(&route_name, ki, rule, &at, &names)?);
        }
        let too_many = || invalid("routes", "more than 4,294,967,295 rules".into());
        let start = u32::try_from(first).map_err(|_| too_many())?;
        let end = u32::try_from(self.rules.len()).map_err(|_| too_many())?;
        let hosts = &mut self.hosts;
        if route.hostnames.is_empty() {
            hosts.any.extend(start, end);
        }
        for mut h in route.hostnames {
            h.make_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => hosts
                    .wildcard
                    .entry(suffix.into())
                    .or_default()
                    .extend(start, end),
                Some(_) => {
                    return Err(invalid(
                        &format!("routes[{ri}].hostnames"),
                        format!("{h:?}: a wildcard must be *.domain"),
                    ));
                }
                None => hosts
                    .exact
                    .entry(h.into_boxed_str())
                    .or_default()
                    .extend(start, end),
            }
        }
        Ok(())
    }

    /// The backends, as given.
    pub(crate) fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The table, with the configuration's JSON as written while it was read.
    pub(crate) fn finish(self, config_deflated: Box<[u8]>) -> Table {
        let TableBuilder {
            mut backends,
            mut rules,
            mut hosts,
            ..
        } = self;
        rules.shrink_to_fit();
        hosts.exact.shrink_to_fit();
        hosts.wildcard.shrink_to_fit();
        for b in &mut backends {
            b.endpoints.shrink_to_fit();
        }
        backends.shrink_to_fit();
        Table {
            rules,
            hosts,
            backends,
            config_deflated,
        }
    }
}

fn check_backend(i: usize, b: &Backend) -> Result<(), CompileError> {
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
    Ok(())
}

/// `config` as JSON, compressed while it is written.
fn deflate_json(config: &Config) -> Result<Box<[u8]>, CompileError> {
    let mut json = JsonDeflater::new();
    json.value(config)?;
    json.finish()
}

/// The `/config` JSON: written as text, compressed once at the end, so the compressor's
/// working memory (a few hundred KiB) is taken and given back after the table is built rather
/// than left as a hole below it.
pub(crate) struct JsonDeflater(Vec<u8>);

impl JsonDeflater {
    pub(crate) fn new() -> JsonDeflater {
        JsonDeflater(Vec::new())
    }

    /// Writes JSON text as it is.
    pub(crate) fn raw(&mut self, text: &str) -> Result<(), CompileError> {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }

    /// Writes `value` as JSON.
    pub(crate) fn value(&mut self, value: &impl serde::Serialize) -> Result<(), CompileError> {
        serde_json::to_writer(&mut self.0, value).map_err(|e| json_failed(&e))
    }

    pub(crate) fn finish(self) -> Result<Box<[u8]>, CompileError> {
        let mut encoder = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(self.0.len() / 4),
            flate2::Compression::default(),
        );
        std::io::Write::write_all(&mut encoder, &self.0).map_err(|e| json_failed(&e))?;
        drop(self);
        let mut out = encoder.finish().map_err(|e| json_failed(&e))?;
        out.shrink_to_fit();
        Ok(out.into_boxed_slice())
    }
}

fn json_failed(e: &dyn std::fmt::Display) -> CompileError {
    invalid(
        "config",
        format!("cannot be written as JSON for /config: {e}"),
    )
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
    backends: &BackendNames<'_>,
) -> Result<CompiledRule, CompileError> {
    let lookup = |name: &str, at: String| {
        backends
            .get(name)
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
    // No match means every request ([`MATCH_ALL`], not stored).
    let mut matches = Vec::with_capacity(rule.matches.len());
    for (i, m) in rule.matches.iter().enumerate() {
        matches.push(compile_match(m, &format!("{at}.matches[{i}]"))?);
    }
    filters.shrink_to_fit();
    let expire_cookies: Vec<(String, String)> = rule
        .expire_cookies
        .iter()
        .filter_map(|c| {
            c.split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect();
    let timeouts = rule.timeouts.clone().unwrap_or_default();
    let policy = (!filters.is_empty()
        || mirror.is_some()
        || timeouts != Timeouts::default()
        || rule.retry.is_some()
        || !expire_cookies.is_empty())
    .then(|| {
        Box::new(RulePolicy {
            filters,
            mirror,
            timeouts,
            retry: rule.retry.clone(),
            expire_cookies,
        })
    });
    Ok(CompiledRule {
        label: Arc::from(format!(
            "{route}/{}",
            rule.name.clone().unwrap_or_else(|| index.to_string())
        )),
        route: route.clone(),
        total_weight: refs.iter().map(|(_, w, _)| u64::from(*w)).sum(),
        backends: refs,
        matches,
        policy,
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
