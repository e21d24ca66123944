//! Request → rule → backend, as a pure function.
//!
//! Precedence follows Gateway API: the most specific host name, then an exact path, then the
//! longest path prefix (regular expressions after prefixes), then a method condition, then the
//! most header conditions, then the most query conditions; remaining ties go to the earlier route,
//! then the earlier rule.

use std::cmp::Reverse;

use http::{HeaderMap, Method, header::COOKIE};

use crate::{
    Table,
    compile::{CompiledMatch, CompiledRule, PathCond, RuleIdsIter, ValueCond},
};

/// How the backend was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sticky {
    /// By weight.
    Weighted,
    /// By the request's session cookie.
    Cookie,
}

/// The outcome of selection.
#[derive(Debug)]
pub struct Selection<'a> {
    /// Index of the rule in [`Table::rules`].
    pub rule_index: usize,
    /// The rule.
    pub rule: &'a CompiledRule,
    /// Index into `rule.backends`; `None` when no backend has weight (answer 500).
    pub backend: Option<usize>,
    /// How it was chosen.
    pub sticky: Sticky,
    /// The prefix that matched (for `ReplacePrefixMatch`).
    pub matched_prefix: Option<&'a str>,
}

/// Precedence of a candidate: larger is more specific.
type Rank = (u8, usize, u8, usize, bool, usize, usize, Reverse<usize>);

// === impl Table ===

impl Table {
    /// Finds the rule for a request and picks a backend. `sample` is a uniformly random
    /// `u32` (the caller's RNG, or a seeded one in tests).
    pub fn select(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        sample: u32,
    ) -> Option<Selection<'_>> {
        let host = host.map(normalize_host).unwrap_or_default();
        let host: &str = &host;
        let mut best: Option<(Rank, usize, &CompiledMatch)> = None;
        let mut consider = |host_rank: (u8, usize), rules: RuleIdsIter<'_>| {
            for ri in rules {
                for m in self.rules[ri].matches() {
                    if !matches(m, method, path, query, headers) {
                        continue;
                    }
                    let (path_rank, path_len) = match &m.path {
                        PathCond::Exact(p) => (3, p.len()),
                        PathCond::Prefix(p) => (2, p.len()),
                        PathCond::Regex(_) => (1, 0),
                    };
                    let rank = (
                        host_rank.0,
                        host_rank.1,
                        path_rank,
                        path_len,
                        m.method.is_some(),
                        m.headers.len(),
                        m.query.len(),
                        Reverse(ri),
                    );
                    if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                        best = Some((rank, ri, m));
                    }
                }
            }
        };
        if let Some(rules) = self.hosts.exact.get(host) {
            consider((2, host.len()), rules.iter());
        }
        if !self.hosts.wildcard.is_empty() {
            // `*.example.com` serves `a.example.com` and `a.b.example.com`, not `example.com`.
            for (i, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
                let suffix = &host[i..];
                if let Some(rules) = self.hosts.wildcard.get(suffix) {
                    consider((1, suffix.len()), rules.iter());
                }
            }
        }
        consider((0, 0), self.hosts.any.iter());
        let (_, rule_index, m) = best?;
        let rule = &self.rules[rule_index];
        let (backend, sticky) = pick(rule, headers, sample);
        let matched_prefix = match &m.path {
            PathCond::Prefix(p) => Some(p.as_str()),
            _ => None,
        };
        Some(Selection {
            rule_index,
            rule,
            backend,
            sticky,
            matched_prefix,
        })
    }
}

/// The host name without port or trailing dot, lower-cased (allocating only when needed).
fn normalize_host(h: &str) -> std::borrow::Cow<'_, str> {
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    let name = name.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

fn matches(
    m: &CompiledMatch,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> bool {
    let path_ok = match &m.path {
        PathCond::Exact(p) => path == p,
        PathCond::Prefix(p) => {
            path.starts_with(p.as_str())
                && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
        }
        PathCond::Regex(r) => r.is_match(path),
    };
    if !path_ok || m.method.as_ref().is_some_and(|want| want != method) {
        return false;
    }
    let headers_ok = m.headers.iter().all(|(name, cond)| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| value_ok(cond, v))
    });
    headers_ok
        && m.query.iter().all(|(name, cond)| {
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .find(|(k, _)| k == name)
                .is_some_and(|(_, v)| value_ok(cond, v))
        })
}

fn value_ok(cond: &ValueCond, v: &str) -> bool {
    match cond {
        ValueCond::Exact(want) => v == want,
        ValueCond::Regex(r) => r.is_match(v),
    }
}

/// Picks a backend: a request carrying a backend's session cookie goes to that backend while
/// it has weight; otherwise by weight, scaling `sample` onto the total.
fn pick(rule: &CompiledRule, headers: &HeaderMap, sample: u32) -> (Option<usize>, Sticky) {
    if rule.backends.iter().any(|(_, _, c)| c.is_some()) {
        for cookie in headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for pair in cookie.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                let hit = rule.backends.iter().position(|(_, w, c)| {
                    *w > 0
                        && c.as_ref()
                            .is_some_and(|c| c.name == name && c.value == value)
                });
                if let Some(i) = hit {
                    return (Some(i), Sticky::Cookie);
                }
            }
        }
    }
    if rule.total_weight == 0 {
        return (None, Sticky::Weighted);
    }
    let mut point = (u64::from(sample) * rule.total_weight) >> 32;
    for (i, (_, w, _)) in rule.backends.iter().enumerate() {
        let w = u64::from(*w);
        if point < w {
            return (Some(i), Sticky::Weighted);
        }
        point -= w;
    }
    (rule.backends.len().checked_sub(1), Sticky::Weighted)
}
