//! The request path: select a rule and backend, apply filters, forward with retries and
//! timeouts, mirror, set session cookies, record statistics.

use std::{
    cell::Cell,
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{self, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, SET_COOKIE, UPGRADE},
    request::Parts,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use siskin_route::{
    CompiledRule, Filter, PathModifier, Protocol, Redirect, RuleFilter, SessionCookie, Sticky,
};

use crate::{
    ErrorKind,
    server::Shared,
    state::State,
    upstream::{Body, BoxError, UpstreamClient},
};

/// Default bound on bodies buffered for retries and mirrors.
pub const DEFAULT_BUFFER_BYTES: u32 = 64 * 1024;

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1);
    let addr = &t as *const u128 as u64;
    (t as u64 ^ addr.rotate_left(32)) | 1
}

/// A fast thread-local xorshift random number (weighted picks, load balancing, mirror sampling).
pub fn rand32() -> u32 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x >> 32) as u32
    })
}

fn now_secs() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        d.as_secs(),
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    )
}

/// Serves one request. Never fails: errors become responses with a classified status.
pub async fn handle(
    shared: Arc<Shared>,
    mut req: Request<ClientBody>,
    _peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let state = shared.state.load_full();
    let Ok(_permit) = shared.limit.try_acquire() else {
        let (sec, _) = now_secs();
        state
            .unrouted
            .record(sec, 503, Some(ErrorKind::Overloaded), started.elapsed());
        return Ok(error_response(ErrorKind::Overloaded));
    };
    // Rules match, and upstreams receive, the normalized path (dot segments, merged slashes,
    // decoded unreserved escapes): `/public/../admin` is `/admin` to both.
    if req.method() != http::Method::CONNECT {
        match crate::normalize::path(req.uri().path()) {
            Err(_) if req.method() == http::Method::OPTIONS && req.uri().path() == "*" => {}
            Err(_) => {
                let (sec, _) = now_secs();
                state
                    .unrouted
                    .record(sec, 400, Some(ErrorKind::BadPath), started.elapsed());
                return Ok(error_response(ErrorKind::BadPath));
            }
            Ok(std::borrow::Cow::Borrowed(_)) => {}
            Ok(std::borrow::Cow::Owned(normal)) => {
                let pq = match req.uri().query() {
                    Some(q) => format!("{normal}?{q}"),
                    None => normal,
                };
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = pq.parse().ok();
                match http::Uri::from_parts(parts) {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(_) => return Ok(error_response(ErrorKind::BadPath)),
                }
            }
        }
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let selection = state.table.select(
        req.method(),
        host,
        req.uri().path(),
        req.uri().query(),
        req.headers(),
        rand32(),
    );
    let Some(sel) = selection else {
        let (sec, _) = now_secs();
        state
            .unrouted
            .record(sec, 404, Some(ErrorKind::NoRoute), started.elapsed());
        return Ok(error_response(ErrorKind::NoRoute));
    };
    let rule = sel.rule;
    let work = forward(
        &shared,
        &state,
        rule,
        sel.backend,
        sel.sticky,
        sel.matched_prefix,
        req,
    );
    let result = match rule.policy().timeouts.request {
        Some(t) => tokio::time::timeout(t.0, work)
            .await
            .unwrap_or(Err(ErrorKind::RequestTimeout)),
        None => work.await,
    };
    let (sec, _) = now_secs();
    let series = sel
        .backend
        .and_then(|b| state.rule_series(sel.rule_index).get(b));
    let response = match result {
        Ok(resp) => {
            if let Some(s) = series {
                s.record(sec, resp.status().as_u16(), None, started.elapsed());
            }
            resp
        }
        Err(kind) => {
            let s = series.unwrap_or(&state.unrouted);
            s.record(sec, kind.status().as_u16(), Some(kind), started.elapsed());
            error_response(kind)
        }
    };
    Ok(response)
}

fn error_response(kind: ErrorKind) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("siskin-router: {}\n", kind.label())));
    let mut r = Response::new(body.map_err(|e| -> BoxError { match e {} }).boxed());
    *r.status_mut() = kind.status();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// How an attempt goes out: exchanged by this task from the client's request (cleartext
/// HTTP/1.1 with the body at hand), or as a request built for hyper's client.
enum Outbound<'a> {
    Own(&'a crate::upstream::Http1Client, Bytes),
    Built(Request<Body>),
}

/// A client's request body: hyper's, or none at all (a request the router's own HTTP/1.1
/// server read, see [`crate::h1server`]).
#[derive(Debug)]
pub enum ClientBody {
    /// Read by hyper's server.
    Hyper(Incoming),
    /// No body.
    Empty,
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx),
            ClientBody::Empty => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Empty => true,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Empty => hyper::body::SizeHint::with_exact(0),
        }
    }
}

/// The request body: buffered (replayable) or streamed once.
enum ReqBody {
    Buffered(Bytes),
    Streaming(Option<ClientBody>),
}

impl ReqBody {
    fn take(&mut self) -> Body {
        match self {
            ReqBody::Buffered(b) => Full::new(b.clone())
                .map_err(|e| -> BoxError { match e {} })
                .boxed(),
            ReqBody::Streaming(s) => match s.take() {
                Some(b) => b.map_err(BoxError::from).boxed(),
                None => Full::new(Bytes::new())
                    .map_err(|e| -> BoxError { match e {} })
                    .boxed(),
            },
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, ReqBody::Buffered(_))
    }

    /// The whole body, when it is at hand: buffered, or a stream that has already ended.
    fn bytes(&self) -> Option<Bytes> {
        match self {
            ReqBody::Buffered(b) => Some(b.clone()),
            ReqBody::Streaming(Some(s)) if s.is_end_stream() => Some(Bytes::new()),
            ReqBody::Streaming(_) => None,
        }
    }
}

async fn forward(
    shared: &Shared,
    state: &State,
    rule: &CompiledRule,
    backend: Option<usize>,
    sticky: Sticky,
    matched_prefix: Option<&str>,
    mut req: Request<ClientBody>,
) -> Result<Response<Body>, ErrorKind> {
    for f in &rule.policy().filters {
        if let RuleFilter::Other(Filter::RequestRedirect { redirect }) = f {
            return Ok(redirect_response(redirect, &req, matched_prefix));
        }
    }
    let Some(bi) = backend else {
        return Err(ErrorKind::NoBackend);
    };
    let (backend_index, _, cookie) = &rule.backends[bi];
    let pool = &state.pools[*backend_index];
    let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    // Only rules that expire old session cookies need to look at the request's cookies later.
    let request_cookies: Vec<String> = if rule.policy().expire_cookies.is_empty() {
        Vec::new()
    } else {
        req.headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let (mut parts, incoming) = req.into_parts();
    apply_request_filters(rule, &mut parts, matched_prefix);

    let length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max_body = shared.options.max_body_bytes;
    if max_body > 0 && length.is_some_and(|l| l > max_body) {
        return Err(ErrorKind::BodyTooLarge);
    }
    let mirror = rule
        .policy()
        .mirror
        .filter(|(_, pct)| u64::from(rand32() % 100) < u64::from(*pct));
    let bound = rule
        .policy()
        .retry
        .as_ref()
        .and_then(|r| r.max_body_bytes)
        .unwrap_or(DEFAULT_BUFFER_BYTES);
    let wants_buffer = rule.policy().retry.is_some() || mirror.is_some();
    let small = incoming.is_end_stream() || length.is_some_and(|l| l <= u64::from(bound));
    let mut body = if wants_buffer && small && client_upgrade.is_none() {
        let limited = Limited::new(incoming, bound as usize);
        match limited.collect().await {
            Ok(c) => ReqBody::Buffered(c.to_bytes()),
            Err(_) => return Err(ErrorKind::UpstreamFailed),
        }
    } else {
        ReqBody::Streaming(Some(incoming))
    };
    if let (Some((mirror_backend, _)), ReqBody::Buffered(bytes)) = (mirror, &body) {
        spawn_mirror(state, mirror_backend, &parts, bytes.clone());
    }

    let retry = rule.policy().retry.as_ref().filter(|_| body.replayable());
    let attempts = 1 + retry.map_or(0, |r| u32::from(r.attempts));
    let idempotent = crate::h1::idempotent(&parts.method);
    let mut backoff = retry
        .and_then(|r| r.backoff)
        .map_or(Duration::from_millis(25), |d| d.0);
    let client = &pool.client;
    let mut last = ErrorKind::NoEndpoint;
    let mut failed: Option<Arc<crate::upstream::Endpoint>> = None;
    for attempt in 0..attempts {
        let (_, now_ms) = now_secs();
        let Some(endpoint) = pool
            .pick(rand32(), rand32(), now_ms, failed.as_ref())
            .cloned()
        else {
            return Err(ErrorKind::NoEndpoint);
        };
        // Cleartext HTTP/1.1 with the body at hand is sent straight from the client's request
        // by this task (crate::h1); otherwise an upstream request is built for hyper's client,
        // the last attempt taking the request's headers and earlier ones copying them.
        let outbound = match client.own().filter(|_| client_upgrade.is_none()) {
            Some(http1) if let Some(bytes) = body.bytes() => Outbound::Own(http1, bytes),
            _ => {
                let headers = if more_after(attempt, attempts) {
                    Headers::Copy(&parts.headers)
                } else {
                    Headers::Move(std::mem::take(&mut parts.headers))
                };
                Outbound::Built(upstream_request(
                    &parts,
                    headers,
                    (client, &endpoint.authority),
                    body.take(),
                    client_upgrade.is_some(),
                )?)
            }
        };
        let _inflight = endpoint.start();
        let t0 = Instant::now();
        let sent = async {
            match outbound {
                Outbound::Own(http1, bytes) => {
                    let host = (!parts.headers.contains_key(HOST)).then(|| {
                        parts
                            .uri
                            .authority()
                            .unwrap_or(&endpoint.authority)
                            .as_str()
                    });
                    let out = crate::h1::Outgoing::new(&parts, hop_by_hop, host, &bytes);
                    http1.send_own(&endpoint, &out).await
                }
                Outbound::Built(upstream) => client.request(&endpoint, upstream).await,
            }
        };
        let outcome = match rule.policy().timeouts.backend_request {
            Some(t) => tokio::time::timeout(t.0, sent)
                .await
                .map_err(|_| ErrorKind::BackendTimeout),
            None => Ok(sent.await),
        };
        let more = more_after(attempt, attempts);
        let (_, now_ms) = now_secs();
        match outcome {
            Ok(Ok(mut resp)) => {
                let status = resp.status();
                endpoint.report(status.as_u16() < 500, t0.elapsed(), now_ms);
                let retry_code = retry.is_some_and(|r| r.codes.contains(&status.as_u16()))
                    && (idempotent || body.replayable());
                if retry_code && more {
                    failed = Some(endpoint.clone());
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                if status == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_up) = client_upgrade
                {
                    let upstream_up = hyper::upgrade::on(&mut resp);
                    tokio::spawn(tunnel(client_up, upstream_up));
                    let (head, _) = resp.into_parts();
                    return Ok(Response::from_parts(
                        head,
                        Full::new(Bytes::new())
                            .map_err(|e| -> BoxError { match e {} })
                            .boxed(),
                    ));
                }
                apply_response_filters(rule, resp.headers_mut());
                session_cookies(
                    resp.headers_mut(),
                    cookie.as_deref(),
                    sticky,
                    rule,
                    &request_cookies,
                );
                return Ok(resp);
            }
            Ok(Err(e)) => {
                endpoint.report(false, t0.elapsed(), now_ms);
                last = if e.is_connect() {
                    ErrorKind::ConnectFailed
                } else {
                    ErrorKind::UpstreamFailed
                };
                // A connection that was never made sent nothing: always safe to try again.
                let safe = e.is_connect() || (idempotent && body.replayable());
                if retry.is_some() && safe && more {
                    failed = Some(endpoint.clone());
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                tracing::debug!(endpoint = %endpoint.addr, error = %e, "upstream request failed");
                return Err(last);
            }
            Err(kind) => {
                endpoint.report(false, t0.elapsed(), now_ms);
                last = kind;
                if retry.is_some() && idempotent && body.replayable() && more {
                    failed = Some(endpoint.clone());
                    continue;
                }
                return Err(kind);
            }
        }
    }
    Err(last)
}

async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
        return;
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut u = hyper_util::rt::TokioIo::new(u);
    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(UPGRADE)
        && h.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("upgrade"))
        })
}

/// Hop-by-hop headers are not forwarded (RFC 9110 §7.6.1), except an upgrade request's.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
];

/// Whether another attempt may follow attempt `attempt` (0-based) of `attempts`.
fn more_after(attempt: u32, attempts: u32) -> bool {
    attempt + 1 < attempts
}

/// The headers an upstream request is built from: copied when the request may be sent again
/// (a retry, a mirror), taken when this is the last use.
enum Headers<'a> {
    Copy(&'a HeaderMap),
    Move(HeaderMap),
}

/// Whether a header is dropped on the way upstream: hop-by-hop headers (RFC 9110 §7.6.1),
/// unless the request is an upgrade, and `TE` other than `trailers`.
fn dropped(name: &header::HeaderName, value: &HeaderValue, upgrade: bool) -> bool {
    (!upgrade && HOP_BY_HOP.contains(&name.as_str()))
        || (name == header::TE && value.as_bytes() != b"trailers")
}

/// Hop-by-hop header fields of a request that is not an upgrade: never forwarded.
fn hop_by_hop(name: &header::HeaderName, value: &HeaderValue) -> bool {
    dropped(name, value, false)
}

fn upstream_request(
    parts: &Parts,
    headers: Headers<'_>,
    (client, addr): (&UpstreamClient, &http::uri::Authority),
    body: Body,
    upgrade: bool,
) -> Result<Request<Body>, ErrorKind> {
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    // HTTP/2 carries the target as :scheme and :authority; HTTP/1.1 in origin form.
    let protocol = client.protocol();
    let uri = match client.absolute() {
        Some(scheme) => Uri::builder()
            .scheme(scheme)
            .authority(addr.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| ErrorKind::UpstreamFailed)?,
        None => Uri::from(pq),
    };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = match protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::H2c => Version::HTTP_2,
    };
    let out = req.headers_mut();
    match headers {
        Headers::Copy(from) => {
            out.reserve(from.len());
            for (name, value) in from {
                if !dropped(name, value, upgrade) {
                    out.append(name.clone(), value.clone());
                }
            }
        }
        Headers::Move(mut from) => {
            // Usually nothing is dropped: one pass to look, removals only when needed.
            if from.iter().any(|(n, v)| dropped(n, v, upgrade)) {
                let names: Vec<header::HeaderName> = from
                    .iter()
                    .filter(|(n, v)| dropped(n, v, upgrade))
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in names {
                    if name == header::TE {
                        // Keep `TE: trailers`, drop the rest.
                        let kept: Vec<HeaderValue> = from
                            .get_all(&name)
                            .iter()
                            .filter(|v| v.as_bytes() == b"trailers")
                            .cloned()
                            .collect();
                        from.remove(&name);
                        for v in kept {
                            from.append(header::TE, v);
                        }
                    } else {
                        from.remove(&name);
                    }
                }
            }
            *out = from;
        }
    }
    // An HTTP/1.1 request needs a Host: the client's authority (HTTP/2 clients send
    // :authority only), else the endpoint's.
    if protocol == Protocol::Http1
        && !out.contains_key(HOST)
        && let Ok(a) = HeaderValue::from_str(parts.uri.authority().unwrap_or(addr).as_str())
    {
        out.insert(HOST, a);
    }
    // A body of unknown length goes out chunked. hyper's client would add that itself for
    // most methods, but sends GET, HEAD and CONNECT with no body at all: a GET with a body
    // (a search API's, or any HTTP/2 client's request without content-length) would reach
    // the upstream empty and be answered before the client has finished sending.
    if protocol == Protocol::Http1
        && !upgrade
        && !req.body().is_end_stream()
        && req.body().size_hint().exact().is_none()
        && !req.headers().contains_key(header::CONTENT_LENGTH)
    {
        req.headers_mut().insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    Ok(req)
}

fn spawn_mirror(state: &State, backend: usize, parts: &Parts, body: Bytes) {
    let pool = state.pools[backend].clone();
    let client = pool.client.clone();
    let (_, now_ms) = now_secs();
    let Some(endpoint) = pool.pick(rand32(), rand32(), now_ms, None).cloned() else {
        return;
    };
    let full = Full::new(body)
        .map_err(|e| -> BoxError { match e {} })
        .boxed();
    let target = (&*client, &endpoint.authority);
    let Ok(req) = upstream_request(parts, Headers::Copy(&parts.headers), target, full, false)
    else {
        return;
    };
    // The copy runs on its own; the client's answer never waits for it.
    tokio::spawn(async move {
        let _inflight = endpoint.start();
        if let Ok(Ok(resp)) =
            tokio::time::timeout(Duration::from_secs(30), client.request(&endpoint, req)).await
        {
            let _ = resp.into_body().collect().await;
        }
    });
}

fn apply_request_filters(rule: &CompiledRule, parts: &mut Parts, matched_prefix: Option<&str>) {
    for f in &rule.policy().filters {
        match f {
            RuleFilter::RequestHeaders(edit) => edit.apply(&mut parts.headers),
            RuleFilter::Other(Filter::UrlRewrite { rewrite }) => {
                if let Some(h) = rewrite
                    .hostname
                    .as_deref()
                    .and_then(|h| HeaderValue::from_str(h).ok())
                {
                    parts.headers.insert(HOST, h);
                }
                if let Some(p) = &rewrite.path {
                    let new_path = rewrite_path(parts.uri.path(), p, matched_prefix);
                    let pq = match parts.uri.query() {
                        Some(q) => format!("{new_path}?{q}"),
                        None => new_path,
                    };
                    if let Ok(uri) = pq.parse() {
                        parts.uri = uri;
                    }
                }
            }
            _ => {}
        }
    }
}

fn rewrite_path(path: &str, m: &PathModifier, matched_prefix: Option<&str>) -> String {
    match m {
        PathModifier::ReplaceFullPath { path } => path.clone(),
        PathModifier::ReplacePrefixMatch { prefix } => {
            let rest = path
                .strip_prefix(matched_prefix.unwrap_or(""))
                .unwrap_or(path);
            let joined = format!(
                "{}/{}",
                prefix.trim_end_matches('/'),
                rest.trim_start_matches('/')
            );
            if joined.len() > 1 && rest.is_empty() {
                joined.trim_end_matches('/').to_string()
            } else {
                joined
            }
        }
    }
}

fn apply_response_filters(rule: &CompiledRule, headers: &mut HeaderMap) {
    for f in &rule.policy().filters {
        if let RuleFilter::ResponseHeaders(edit) = f {
            edit.apply(headers);
        }
    }
}

/// A backend with a session cookie sets it on responses it answered by weight; a request
/// carrying a cookie of an earlier run gets that cookie expired.
fn session_cookies(
    headers: &mut HeaderMap,
    cookie: Option<&SessionCookie>,
    sticky: Sticky,
    rule: &CompiledRule,
    request_cookies: &[String],
) {
    if let (Some(c), Sticky::Weighted) = (cookie, sticky)
        && let Ok(v) = HeaderValue::from_str(&set_cookie(c))
    {
        headers.append(SET_COOKIE, v);
    }
    for (name, value) in &rule.policy().expire_cookies {
        let carried = request_cookies.iter().flat_map(|h| h.split(';')).any(|p| {
            p.trim()
                .split_once('=')
                .is_some_and(|(n, v)| n == name && v == value)
        });
        if carried && let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Max-Age=-1")) {
            headers.append(SET_COOKIE, v);
        }
    }
}

/// `Set-Cookie` value with every attribute.
pub fn set_cookie(c: &SessionCookie) -> String {
    c.to_header()
}

fn redirect_response<B>(
    r: &Redirect,
    req: &Request<B>,
    matched_prefix: Option<&str>,
) -> Response<Body> {
    let scheme = r.scheme.clone().unwrap_or_else(|| "http".to_string());
    let host = r.hostname.clone().or_else(|| {
        req.headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(':').next().unwrap_or(h).to_string())
    });
    let path = match &r.path {
        Some(m) => rewrite_path(req.uri().path(), m, matched_prefix),
        None => req.uri().path().to_string(),
    };
    let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = format!("{scheme}://{}{port}{path}{query}", host.unwrap_or_default());
    let mut resp = Response::new(
        Full::new(Bytes::new())
            .map_err(|e| -> BoxError { match e {} })
            .boxed(),
    );
    *resp.status_mut() =
        StatusCode::from_u16(r.status_code.unwrap_or(302)).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrite_follows_gateway_api() {
        let m = PathModifier::ReplacePrefixMatch {
            prefix: "/v2".into(),
        };
        assert_eq!(rewrite_path("/api/users", &m, Some("/api")), "/v2/users");
        assert_eq!(rewrite_path("/api", &m, Some("/api")), "/v2");
        let root = PathModifier::ReplacePrefixMatch { prefix: "/".into() };
        assert_eq!(rewrite_path("/api/users", &root, Some("/api")), "/users");
    }

    #[test]
    fn cookie_attributes_are_complete() {
        let c = SessionCookie {
            name: "c".into(),
            value: "v".into(),
            max_age: Some(3600),
            domain: Some("example.com".into()),
            path: Some("/".into()),
            secure: true,
            http_only: true,
            partitioned: true,
            same_site: Some("Lax".into()),
        };
        assert_eq!(
            set_cookie(&c),
            "c=v; Max-Age=3600; Domain=example.com; Path=/; HttpOnly; Partitioned; SameSite=Lax; Secure"
        );
    }
}
