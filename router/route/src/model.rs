//! The configuration model: routes (Gateway API `HTTPRoute` shape) and backends.

use serde::{Deserialize, Serialize};

use crate::{Duration, Role};

/// Everything the router serves: routes, and the endpoints of each backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Routes, in precedence order for ties (earlier wins, as the oldest route does in Gateway API).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Backends referenced by the routes.
    #[serde(default)]
    pub backends: Vec<Backend>,
}

/// An HTTP route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// Unique name, e.g. `namespace/name`.
    pub name: String,
    /// Host names served (`example.com`, `*.example.com`); empty means any.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules; the most specific match across all routes wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A rule: conditions, filters, backends and policies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Rule name; an owner (the operator) manages only the rules it named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions (any one matches); none means every request (path prefix `/`).
    #[serde(default)]
    pub matches: Vec<Match>,
    /// Filters applied in order.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Session cookies of earlier runs: answered with `Set-Cookie: …; Max-Age=-1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expire_cookies: Vec<String>,
}

/// Conditions on a request; all must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// Path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions.
    #[serde(default)]
    pub query_params: Vec<ValueMatch>,
    /// Method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// A path condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    /// How `value` is compared.
    #[serde(default, rename = "type")]
    pub kind: PathMatchType,
    /// The path, prefix or regular expression.
    pub value: String,
}

/// Path comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatchType {
    /// Equal to the value.
    Exact,
    /// The value's path segments are a prefix (`/foo` matches `/foo/bar`, not `/foobar`).
    #[default]
    PathPrefix,
    /// A regular expression matching the whole path.
    RegularExpression,
}

/// A header or query parameter condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueMatch {
    /// How `value` is compared.
    #[serde(default, rename = "type")]
    pub kind: ValueMatchType,
    /// Header name (case-insensitive) or parameter name (case-sensitive).
    pub name: String,
    /// Value or regular expression.
    pub value: String,
}

/// Value comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatchType {
    /// Equal.
    #[default]
    Exact,
    /// A regular expression matching the whole value.
    RegularExpression,
}

/// A filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "PascalCase", deny_unknown_fields)]
pub enum Filter {
    /// Change request headers.
    RequestHeaderModifier {
        /// The changes.
        #[serde(rename = "requestHeaderModifier")]
        modifier: HeaderModifier,
    },
    /// Change response headers.
    ResponseHeaderModifier {
        /// The changes.
        #[serde(rename = "responseHeaderModifier")]
        modifier: HeaderModifier,
    },
    /// Send a copy of (a percentage of) requests to another backend; its answers are discarded.
    RequestMirror {
        /// Where and how much.
        #[serde(rename = "requestMirror")]
        mirror: Mirror,
    },
    /// Rewrite host and path.
    #[serde(rename = "URLRewrite")]
    UrlRewrite {
        /// The rewrite.
        #[serde(rename = "urlRewrite")]
        rewrite: UrlRewrite,
    },
    /// Answer with a redirect.
    RequestRedirect {
        /// The redirect.
        #[serde(rename = "requestRedirect")]
        redirect: Redirect,
    },
}

/// Header changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderModifier {
    /// Overwrite.
    #[serde(default)]
    pub set: Vec<Header>,
    /// Append.
    #[serde(default)]
    pub add: Vec<Header>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A mirror.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirror {
    /// The backend receiving copies.
    pub backend_ref: BackendName,
    /// Percentage of requests copied (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
}

/// A reference to a backend by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendName {
    /// Backend name.
    pub name: String,
}

/// URL rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    /// New Host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// Path replacement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath {
        /// New path.
        #[serde(rename = "replaceFullPath")]
        path: String,
    },
    /// Replace the matched prefix.
    ReplacePrefixMatch {
        /// New prefix.
        #[serde(rename = "replacePrefixMatch")]
        prefix: String,
    },
}

/// A redirect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    /// Scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 301 or 302 (default 302).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// A weighted backend of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    /// Backend name.
    pub name: String,
    /// Relative weight (default 1, as in Gateway API).
    #[serde(default = "one")]
    pub weight: u32,
    /// Session persistence: responses from this backend set this cookie, and requests
    /// carrying it come back here while the backend has weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cookie: Option<SessionCookie>,
}

fn one() -> u32 {
    1
}

/// A session cookie with its attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie value.
    pub value: String,
    /// `Max-Age` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    /// `Domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `Path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Secure`.
    #[serde(default)]
    pub secure: bool,
    /// `HttpOnly`.
    #[serde(default)]
    pub http_only: bool,
    /// `Partitioned`.
    #[serde(default)]
    pub partitioned: bool,
    /// `SameSite` (`Strict`, `Lax`, `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

/// Timeouts of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Whole request, retries included (504 when exceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Duration>,
    /// Each attempt to a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<Duration>,
}

/// Retry policy. Retries happen only where safe: connection failures always; response codes
/// only for idempotent methods or bodies already buffered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Extra attempts (default 1).
    #[serde(default = "one_u8")]
    pub attempts: u8,
    /// Pause between attempts (default 25ms, doubled each time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
    /// Response codes that are retried (e.g. 502, 503, 504).
    #[serde(default)]
    pub codes: Vec<u16>,
    /// Largest request body buffered for a retry (default 64 KiB); larger bodies are not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u32>,
}

fn one_u8() -> u8 {
    1
}

/// A backend: a set of endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Name referenced by rules (shared with the statistics of every rule that sends to it).
    pub name: std::sync::Arc<str>,
    /// `host:port` addresses (`*.localhost` names resolve to loopback).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Protocol to the endpoints.
    #[serde(default)]
    pub protocol: Protocol,
    /// The role of this backend in a release, for metrics (`primary`, `canary`); default `primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Speak TLS to the endpoints (Gateway API `BackendTLSPolicy`); cleartext when absent.
    /// (Boxed: most backends have none, and inline it would double every backend's size.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<BackendTls>>,
}

/// TLS to a backend's endpoints: the name to ask for and verify, and whom to trust. Exactly
/// one of `caCertificates`, `caFile` and `wellKnownCACertificates` says whom.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTls {
    /// Sent as SNI, and the name the endpoint's certificate must carry.
    pub hostname: String,
    /// CA certificates to trust, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// A PEM file of CA certificates to trust (read when the configuration loads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// `System`: trust the operating system's CA certificates.
    #[serde(
        default,
        rename = "wellKnownCACertificates",
        skip_serializing_if = "Option::is_none"
    )]
    pub well_known_ca_certificates: Option<String>,
}

/// Upstream protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 without TLS (prior knowledge), also for gRPC.
    H2c,
}

// === impl SessionCookie ===

impl SessionCookie {
    /// The `Set-Cookie` header value.
    pub fn to_header(&self) -> String {
        let mut s = format!("{}={}", self.name, self.value);
        if let Some(a) = self.max_age {
            s.push_str(&format!("; Max-Age={a}"));
        }
        if let Some(d) = &self.domain {
            s.push_str(&format!("; Domain={d}"));
        }
        if let Some(p) = &self.path {
            s.push_str(&format!("; Path={p}"));
        }
        if self.http_only {
            s.push_str("; HttpOnly");
        }
        if self.partitioned {
            s.push_str("; Partitioned");
        }
        if let Some(ss) = &self.same_site {
            s.push_str(&format!("; SameSite={ss}"));
        }
        if self.secure {
            s.push_str("; Secure");
        }
        s
    }

    /// Reads a `Set-Cookie` header value (the inverse of [`SessionCookie::to_header`]).
    pub fn parse(header: &str) -> Option<SessionCookie> {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts.next()?.split_once('=')?;
        if name.is_empty() {
            return None;
        }
        let mut c = SessionCookie {
            name: name.to_string(),
            value: value.to_string(),
            ..Default::default()
        };
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_lowercase().as_str() {
                "max-age" => c.max_age = v.parse().ok(),
                "domain" => c.domain = Some(v.to_string()),
                "path" => c.path = Some(v.to_string()),
                "httponly" => c.http_only = true,
                "partitioned" => c.partitioned = true,
                "samesite" => c.same_site = Some(v.to_string()),
                "secure" => c.secure = true,
                _ => {}
            }
        }
        Some(c)
    }
}

#[cfg(test)]
mod cookie_tests {
    #![allow(clippy::unwrap_used)]

    use super::SessionCookie;

    #[test]
    fn set_cookie_round_trips() {
        let c = SessionCookie {
            name: "siskin-canary".into(),
            value: "abc".into(),
            max_age: Some(86400),
            domain: Some("example.com".into()),
            path: Some("/".into()),
            secure: true,
            http_only: true,
            partitioned: false,
            same_site: Some("Strict".into()),
        };
        assert_eq!(SessionCookie::parse(&c.to_header()).unwrap(), c);
        assert!(SessionCookie::parse("=x").is_none());
    }
}
