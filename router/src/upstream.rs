//! Upstream endpoints: load balancing (power of two choices over a latency EWMA), outlier
//! ejection after consecutive failures, and the HTTP clients with their pooled connections.
//!
//! HTTP/1.1 upstreams go through the router's own pool: each endpoint keeps a stack of idle
//! keep-alive connections, a request takes the most recent one (or dials), and the response
//! body puts it back the moment its last byte is read. No task is spawned per request and
//! no pool key is hashed. Over cleartext, requests with an empty or small known body are
//! exchanged by the request's own task ([`crate::h1`]); streamed uploads, upgrades and TLS
//! upstreams use hyper's client connections. HTTP/2 upstreams (h2c, h2 over TLS) multiplex on
//! hyper-util's client.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, Uri, uri::Scheme};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    body::{Body as HttpBody, Frame, Incoming, SizeHint},
    client::conn::http1,
    rt::{Read, Write},
};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use siskin_route::{BackendTls, Protocol};

use crate::h1;

/// Boxed error crossing layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request and response bodies inside the router.
pub type Body = BoxBody<Bytes, BoxError>;

/// Consecutive failures that eject an endpoint.
pub const EJECT_AFTER: u32 = 5;
/// First ejection time; doubles with each ejection, up to [`MAX_EJECTION`].
pub const BASE_EJECTION: Duration = Duration::from_secs(5);
/// Latency a failure counts as in the EWMA.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);
/// Longest ejection.
pub const MAX_EJECTION: Duration = Duration::from_secs(60);
/// How long an idle upstream connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle HTTP/1.1 connections kept per endpoint.
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made: nothing was sent, so another attempt is always safe.
    #[error("connect: {0}")]
    Connect(BoxError),
    /// The request was sent, or the connection failed while it was.
    #[error("{0}")]
    Send(BoxError),
}

impl UpstreamError {
    /// Whether the connection was never made.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

/// One endpoint (`host:port`) with its load-balancing state. Shared across configuration
/// versions, so a reload keeps what was learned.
#[derive(Debug)]
pub struct Endpoint {
    /// `ip:port` dialled.
    pub addr: String,
    /// The same, parsed once for building request URIs.
    pub authority: http::uri::Authority,
    ewma_us: AtomicU64,
    inflight: AtomicU32,
    failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Idle HTTP/1.1 connections, oldest first, each tagged with the client that dialled it
    /// (cleartext and each TLS setting keep their own).
    idle: Mutex<Vec<Idle>>,
}

/// An idle keep-alive connection to an endpoint.
#[derive(Debug)]
struct Idle {
    client: u64,
    conn: IdleConn,
    since: Instant,
}

/// The two kinds of pooled HTTP/1.1 connections.
#[derive(Debug)]
enum IdleConn {
    /// A hyper client connection (its task reads and writes the socket).
    Hyper(http1::SendRequest<Body>),
    /// A socket the request's own task exchanges on ([`crate::h1`]).
    Own(h1::Conn),
}

impl IdleConn {
    /// Known to be closed (an own connection is checked when taken).
    fn is_closed(&self) -> bool {
        match self {
            IdleConn::Hyper(s) => s.is_closed(),
            IdleConn::Own(_) => false,
        }
    }
}

/// The endpoints of a backend.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Endpoints.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The client (with its connection pool) requests to them go through, shared by every
    /// backend that uses the same protocol and TLS setting.
    pub client: Arc<UpstreamClient>,
}

/// An upstream HTTP client: cleartext (shared by every cleartext backend of a protocol) or TLS
/// (one per backend TLS setting, kept across reloads).
#[derive(Clone, Debug)]
pub enum UpstreamClient {
    /// HTTP/1.1, cleartext or TLS, over the endpoints' own connection pools.
    Http1(Http1Client),
    /// HTTP/2 with prior knowledge (`h2c`).
    H2c(Client<HttpConnector, Body>),
    /// HTTP/2 over TLS (ALPN h2), with the backend's SNI name and trust anchors.
    H2Tls(Client<HttpsConnector<HttpConnector>, Body>),
}

/// HTTP/1.1 to upstreams: dials through `dial`, keeps connections idle on each endpoint.
#[derive(Clone, Debug)]
pub struct Http1Client {
    /// Tags this client's idle connections on an endpoint.
    id: u64,
    dial: Dial,
}

/// How an HTTP/1.1 client connects.
#[derive(Clone, Debug)]
enum Dial {
    Plain(HttpConnector),
    Tls(HttpsConnector<HttpConnector>),
}

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

impl UpstreamClient {
    /// Sends a request to `endpoint`. HTTP/1.1 requests carry an origin-form target and a
    /// `Host` header; HTTP/2 ones an absolute URI ([`UpstreamClient::absolute`]).
    pub async fn request(
        &self,
        endpoint: &Arc<Endpoint>,
        req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let legacy = |e: hyper_util::client::legacy::Error| {
            if e.is_connect() {
                UpstreamError::Connect(e.into())
            } else {
                UpstreamError::Send(e.into())
            }
        };
        let boxed = |r: Response<Incoming>| r.map(|b| b.map_err(BoxError::from).boxed());
        match self {
            UpstreamClient::Http1(c) => c.request(endpoint, req).await,
            UpstreamClient::H2c(c) => c.request(req).await.map(boxed).map_err(legacy),
            UpstreamClient::H2Tls(c) => c.request(req).await.map(boxed).map_err(legacy),
        }
    }

    /// The HTTP/1.1 client whose requests the router can exchange itself (cleartext ones).
    pub fn own(&self) -> Option<&Http1Client> {
        match self {
            UpstreamClient::Http1(c) if matches!(c.dial, Dial::Plain(_)) => Some(c),
            _ => None,
        }
    }

    /// The protocol spoken through this client.
    pub fn protocol(&self) -> Protocol {
        match self {
            UpstreamClient::Http1(_) => Protocol::Http1,
            UpstreamClient::H2c(_) | UpstreamClient::H2Tls(_) => Protocol::H2c,
        }
    }

    /// The scheme of the absolute URI an HTTP/2 request needs; `None` for HTTP/1.1, whose
    /// requests are sent in origin form.
    pub fn absolute(&self) -> Option<Scheme> {
        match self {
            UpstreamClient::Http1(_) => None,
            UpstreamClient::H2c(_) => Some(Scheme::HTTP),
            UpstreamClient::H2Tls(_) => Some(Scheme::HTTPS),
        }
    }
}

impl Http1Client {
    fn new(dial: Dial) -> Self {
        Http1Client {
            id: NEXT_CLIENT.fetch_add(1, Relaxed),
            dial,
        }
    }

    /// Sends `req` on an idle connection to `endpoint`, or a new one. A request an idle
    /// connection could not take (it closed meanwhile) goes on the next one, or a new one.
    async fn request(
        &self,
        endpoint: &Arc<Endpoint>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        // An upgraded connection belongs to the tunnel; it never returns to the pool.
        let upgrade = req.headers().contains_key(http::header::UPGRADE);
        if matches!(self.dial, Dial::Plain(_))
            && !upgrade
            && req
                .body()
                .size_hint()
                .exact()
                .is_some_and(|n| n <= h1::MAX_BUFFERED)
        {
            // Boxed: the usual own exchange starts from the client's request in the proxy
            // (UpstreamClient::own), and this rarer one would otherwise make every request's
            // future larger.
            return Box::pin(self.exchange(endpoint, req)).await;
        }
        loop {
            let (mut sender, reused) = match endpoint.take_idle(self.id) {
                Some(s) => (s, true),
                None => (Box::pin(self.connect(endpoint)).await?, false),
            };
            if reused
                && std::future::poll_fn(|cx| sender.poll_ready(cx))
                    .await
                    .is_err()
            {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let keep = !upgrade && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
                    let back = keep.then(|| Checkin {
                        endpoint: endpoint.clone(),
                        client: self.id,
                        sender,
                    });
                    return Ok(resp.map(|body| Pooled::new(body, back).boxed()));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Send(e.into_error().into())),
                },
            }
        }
    }

    /// Sends `req` (whose body is small and of known length) on an own connection.
    async fn exchange(
        &self,
        endpoint: &Arc<Endpoint>,
        req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map_err(UpstreamError::Send)?
            .to_bytes();
        let out = h1::Outgoing::new(&parts, |_, _| false, None, &body);
        self.send_own(endpoint, &out).await
    }

    /// Sends a request on an own connection of a cleartext client: the most recent idle one,
    /// or a new one. A reused connection found closed before it answered takes the request
    /// again on the next (or a new) one when nothing was written, or when the method is
    /// idempotent: the keep-alive race, where the upstream closed an idle connection as the
    /// request went out.
    pub async fn send_own(
        &self,
        endpoint: &Arc<Endpoint>,
        out: &h1::Outgoing<'_>,
    ) -> Result<Response<Body>, UpstreamError> {
        let Dial::Plain(connector) = &self.dial else {
            return Err(UpstreamError::Connect(
                "own HTTP/1.1 exchanges are cleartext only".into(),
            ));
        };
        loop {
            let (mut conn, reused) = match endpoint.take_own(self.id) {
                Some(c) => (c, true),
                None => (self.dial_own(connector, endpoint).await?, false),
            };
            match conn.exchange(out).await {
                Ok(head) => return Ok(self.respond(endpoint, conn, head)),
                Err(h1::H1Error::Closed { unsent })
                    if reused && (unsent || h1::idempotent(out.method)) => {}
                Err(e) => return Err(UpstreamError::Send(e.into())),
            }
        }
    }

    /// Dials a new own connection.
    async fn dial_own(
        &self,
        connector: &HttpConnector,
        endpoint: &Endpoint,
    ) -> Result<h1::Conn, UpstreamError> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(endpoint.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Connect(e.into()))?;
        let io = dial(connector.clone(), uri).await?;
        Ok(h1::Conn::new(io.into_inner()))
    }

    /// The response of an own exchange: a body that has arrived whole is handed over as bytes
    /// and its connection goes back at once; any other streams, and returns the connection at
    /// its end.
    fn respond(
        &self,
        endpoint: &Arc<Endpoint>,
        mut conn: h1::Conn,
        head: h1::Head,
    ) -> Response<Body> {
        let whole = match head.framing {
            h1::Framing::Empty => Some(Bytes::new()),
            h1::Framing::Length(n) => conn.take_whole(n),
            h1::Framing::Chunked | h1::Framing::Close => None,
        };
        let body = match whole {
            Some(bytes) => {
                if head.keep_alive && !conn.has_leftover() {
                    endpoint.put_idle(self.id, IdleConn::Own(conn));
                }
                Full::new(bytes)
                    .map_err(|e| -> BoxError { match e {} })
                    .boxed()
            }
            None => {
                let (endpoint, client) = (endpoint.clone(), self.id);
                h1::Streaming::new(conn, head.framing, head.keep_alive, move |c| {
                    endpoint.put_idle(client, IdleConn::Own(c));
                })
                .boxed()
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        resp
    }

    /// Dials `endpoint` and starts the connection's task.
    async fn connect(
        &self,
        endpoint: &Endpoint,
    ) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let scheme = match self.dial {
            Dial::Plain(_) => Scheme::HTTP,
            Dial::Tls(_) => Scheme::HTTPS,
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(endpoint.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Connect(e.into()))?;
        match &self.dial {
            Dial::Plain(c) => handshake(dial(c.clone(), uri).await?).await,
            Dial::Tls(c) => handshake(dial(c.clone(), uri).await?).await,
        }
    }
}

/// Connects through a connector service.
async fn dial<C>(mut connector: C, uri: Uri) -> Result<C::Response, UpstreamError>
where
    C: tower_service::Service<Uri>,
    C::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| UpstreamError::Connect(e.into()))?;
    connector
        .call(uri)
        .await
        .map_err(|e| UpstreamError::Connect(e.into()))
}

/// Starts HTTP/1.1 on a connected socket; its connection task runs until the socket closes.
async fn handshake<I>(io: I) -> Result<http1::SendRequest<Body>, UpstreamError>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::Connect(e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Where a response's connection goes back to once its body has been read.
struct Checkin {
    endpoint: Arc<Endpoint>,
    client: u64,
    sender: http1::SendRequest<Body>,
}

/// A response body that returns its connection to the endpoint's pool at its last byte. A
/// body dropped before its end, or failed, takes the connection down with it.
struct Pooled {
    body: Incoming,
    back: Option<Checkin>,
}

impl Pooled {
    fn new(body: Incoming, back: Option<Checkin>) -> Self {
        let mut p = Pooled { body, back };
        if p.body.is_end_stream() {
            p.checkin();
        }
        p
    }

    fn checkin(&mut self) {
        if let Some(c) = self.back.take() {
            c.endpoint.put_idle(c.client, IdleConn::Hyper(c.sender));
        }
    }
}

impl HttpBody for Pooled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.checkin(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.checkin(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        frame.map(|f| f.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// HTTP clients with pooled connections, one per upstream protocol.
#[derive(Clone)]
pub struct Clients {
    http1: Arc<UpstreamClient>,
    h2c: Arc<UpstreamClient>,
    connector: HttpConnector,
}

// === impl Endpoint ===

impl Endpoint {
    /// A fresh endpoint.
    pub fn new(addr: String) -> Self {
        let authority = addr
            .parse()
            .unwrap_or_else(|_| http::uri::Authority::from_static("invalid.invalid:1"));
        Endpoint {
            addr,
            authority,
            ewma_us: AtomicU64::new(1000),
            inflight: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently idled hyper connection of `client` that is open, not too old, and
    /// ready for a request. Closed and expired ones met on the way go; one that is not ready
    /// yet (still sending the body of a request its upstream answered early) stays, so a new
    /// request never waits behind another's upload.
    fn take_idle(&self, client: u64) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut at = idle.len();
        while at > 0 {
            at -= 1;
            let i = &idle[at];
            if i.client != client {
                continue;
            }
            let IdleConn::Hyper(sender) = &i.conn else {
                continue;
            };
            if sender.is_closed() || i.since.elapsed() >= IDLE_TIMEOUT {
                idle.remove(at);
            } else if sender.is_ready() {
                if let IdleConn::Hyper(sender) = idle.remove(at).conn {
                    return Some(sender);
                }
                return None;
            }
        }
        None
    }

    /// The most recently idled own connection of `client` that is not too old and has seen
    /// nothing arrive since its last response. Others met on the way go.
    fn take_own(&self, client: u64) -> Option<h1::Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut at = idle.len();
        while at > 0 {
            at -= 1;
            let i = &idle[at];
            if i.client != client || !matches!(i.conn, IdleConn::Own(_)) {
                continue;
            }
            let fresh = i.since.elapsed() < IDLE_TIMEOUT;
            if let IdleConn::Own(mut conn) = idle.remove(at).conn
                && fresh
                && conn.reusable()
            {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose response has been read for the next request; closed and
    /// expired ones at the old end go, and the oldest when [`MAX_IDLE_PER_ENDPOINT`] are kept.
    fn put_idle(&self, client: u64, conn: IdleConn) {
        if conn.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while idle
            .first()
            .is_some_and(|i| i.conn.is_closed() || now.duration_since(i.since) >= IDLE_TIMEOUT)
            || idle.len() >= MAX_IDLE_PER_ENDPOINT
        {
            idle.remove(0);
        }
        idle.push(Idle {
            client,
            conn,
            since: now,
        });
    }

    fn cost(&self) -> u64 {
        self.ewma_us.load(Relaxed).max(1) * (u64::from(self.inflight.load(Relaxed)) + 1)
    }

    fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Relaxed) > now_ms
    }

    /// Marks the start of a request; the guard ends it.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// Reports an outcome: success resets the failure streak and feeds the EWMA; a streak of
    /// [`EJECT_AFTER`] failures ejects the endpoint for a while.
    pub fn report(&self, ok: bool, latency: Duration, now_ms: u64) {
        // A failure counts as a slow response, so balancing moves away from it at once
        // (a refused connection is fast, and would otherwise look attractive).
        let latency = if ok {
            latency
        } else {
            latency.max(FAILURE_PENALTY)
        };
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let old = self.ewma_us.load(Relaxed);
        // Peak-sensitive: a slower response moves the average at once, a faster one slowly.
        let new = if us > old { us } else { (old * 7 + us) / 8 };
        self.ewma_us.store(new, Relaxed);
        if ok {
            self.failures.store(0, Relaxed);
            self.ejections.store(0, Relaxed);
            return;
        }
        if self.failures.fetch_add(1, Relaxed) + 1 >= EJECT_AFTER {
            self.failures.store(0, Relaxed);
            let n = self.ejections.fetch_add(1, Relaxed).min(4);
            let time = (BASE_EJECTION * 2u32.pow(n)).min(MAX_EJECTION);
            let until = now_ms + u64::try_from(time.as_millis()).unwrap_or(u64::MAX);
            self.ejected_until_ms.store(until, Relaxed);
            tracing::warn!(endpoint = %self.addr, seconds = time.as_secs(), "endpoint ejected after consecutive failures");
        }
    }
}

/// Decrements the in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

// === impl Pool ===

impl Pool {
    /// Picks an endpoint: two random candidates among those not ejected (all, if every one
    /// is), the cheaper by EWMA × in-flight wins. `a` and `b` are random numbers. `avoid`
    /// (the endpoint that just failed, on a retry) is skipped when there is another.
    pub fn pick(
        &self,
        a: u32,
        b: u32,
        now_ms: u64,
        avoid: Option<&Arc<Endpoint>>,
    ) -> Option<&Arc<Endpoint>> {
        let eps = &self.endpoints;
        match eps.len() {
            0 => return None,
            1 => return eps.first(),
            _ => {}
        }
        let usable =
            |e: &&Arc<Endpoint>| !e.ejected(now_ms) && avoid.is_none_or(|x| !Arc::ptr_eq(x, e));
        let healthy = eps.iter().filter(usable).count();
        let nth = |r: u32| -> &Arc<Endpoint> {
            if healthy == 0 {
                return &eps[r as usize % eps.len()];
            }
            let i = r as usize % healthy;
            eps.iter().filter(usable).nth(i).unwrap_or(&eps[0])
        };
        let (x, y) = (nth(a), nth(b));
        Some(if y.cost() < x.cost() { y } else { x })
    }
}

// === impl Clients ===

impl Clients {
    /// Clients with connection pooling and the given connect timeout.
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(true);
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector.clone());
        Clients {
            http1: Arc::new(UpstreamClient::Http1(Http1Client::new(Dial::Plain(
                connector.clone(),
            )))),
            h2c: Arc::new(UpstreamClient::H2c(h2c)),
            connector,
        }
    }

    /// The cleartext client for a protocol.
    pub fn for_protocol(&self, p: Protocol) -> Arc<UpstreamClient> {
        match p {
            Protocol::Http1 => self.http1.clone(),
            Protocol::H2c => self.h2c.clone(),
        }
    }

    /// A TLS client for a backend: SNI and verification by `tls.hostname`, trusting the CAs
    /// it names; `h2c` backends speak HTTP/2 over TLS (ALPN h2), `http1` ones HTTP/1.1.
    pub fn tls(&self, tls: &BackendTls, p: Protocol) -> Result<UpstreamClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        let pem = match (&tls.ca_certificates, &tls.ca_file) {
            (Some(pem), _) => Some(pem.as_bytes().to_vec()),
            (None, Some(file)) => {
                Some(std::fs::read(file).map_err(|e| format!("tls.caFile {file}: {e}"))?)
            }
            (None, None) => None,
        };
        match pem {
            Some(pem) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("tls CA certificates: {e}"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err("tls CA certificates: no usable CERTIFICATE block".into());
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(format!(
                        "tls.wellKnownCACertificates System: no CA certificates found on this system ({:?})",
                        native.errors.first().map(ToString::to_string)
                    ));
                }
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        // ALPN: hyper-rustls offers h2 for HTTP/2; for HTTP/1.1 none is offered (the default).
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                rustls::pki_types::ServerName::try_from(tls.hostname.clone())
                    .map_err(|e| format!("tls.hostname {:?}: {e}", tls.hostname))?,
            ));
        let mut http = self.connector.clone();
        http.enforce_http(false);
        Ok(match p {
            Protocol::Http1 => UpstreamClient::Http1(Http1Client::new(Dial::Tls(
                builder.enable_http1().wrap_connector(http),
            ))),
            Protocol::H2c => UpstreamClient::H2Tls(
                Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .pool_idle_timeout(IDLE_TIMEOUT)
                    .build(builder.enable_http2().wrap_connector(http)),
            ),
        })
    }
}

/// Resolves `*.localhost` names to loopback (RFC 6761), the way endpoints of local processes
/// are published; other names are dialled as given.
pub fn dial_addr(endpoint: &str) -> String {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if host == "localhost" || host.ends_with(".localhost") => {
            format!("127.0.0.1:{port}")
        }
        _ => endpoint.to_string(),
    }
}
