//! Upstream endpoints: load balancing (power of two choices over a latency EWMA), outlier
//! ejection after consecutive failures, and the pooled HTTP clients.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, ResponseFuture, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use siskin_route::{BackendTls, Protocol};

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
}

/// The endpoints of a backend.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Endpoints.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Protocol spoken to them.
    pub protocol: Protocol,
    /// The client (with its connection pool) requests to them go through, shared by every
    /// backend that uses the same protocol and TLS setting.
    pub client: Arc<UpstreamClient>,
}

/// A pooled HTTP client: cleartext (shared by every cleartext backend of a protocol) or TLS
/// (one per backend TLS setting, kept across reloads).
#[derive(Clone, Debug)]
pub enum UpstreamClient {
    /// `http://`.
    Plain(Client<HttpConnector, Body>),
    /// `https://`, with the backend's SNI name and trust anchors.
    Tls(Client<HttpsConnector<HttpConnector>, Body>),
}

impl UpstreamClient {
    /// Sends a request.
    pub fn request(&self, req: http::Request<Body>) -> ResponseFuture {
        match self {
            UpstreamClient::Plain(c) => c.request(req),
            UpstreamClient::Tls(c) => c.request(req),
        }
    }

    /// The URI scheme requests through this client use.
    pub fn scheme(&self) -> http::uri::Scheme {
        match self {
            UpstreamClient::Plain(_) => http::uri::Scheme::HTTP,
            UpstreamClient::Tls(_) => http::uri::Scheme::HTTPS,
        }
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
        }
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
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        Clients {
            http1: Arc::new(UpstreamClient::Plain(http1)),
            h2c: Arc::new(UpstreamClient::Plain(h2c)),
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
        let client = match p {
            Protocol::Http1 => Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .build(builder.enable_http1().wrap_connector(http)),
            Protocol::H2c => Client::builder(TokioExecutor::new())
                .http2_only(true)
                .pool_idle_timeout(Duration::from_secs(90))
                .build(builder.enable_http2().wrap_connector(http)),
        };
        Ok(UpstreamClient::Tls(client))
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
