//! Listening, serving connections, reloading the configuration, draining on shutdown.

use std::{
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{Semaphore, watch},
};

use crate::{
    admin,
    config::{self},
    conn::{self, Activity, Expired, Metered},
    h1server, proxy,
    state::{Registry, State},
    upstream::Clients,
};

/// Where routes come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A YAML file, reloaded when it changes.
    File(PathBuf),
    /// HTTPRoutes, Services and EndpointSlices of a cluster.
    Kubernetes(crate::kube_source::KubeOptions),
}

/// Router settings (from the command line).
#[derive(Clone, Debug)]
pub struct Options {
    /// Where routes come from.
    pub source: Source,
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Requests served at once; more are answered 503 at once.
    pub max_concurrent: usize,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// Largest request body (0: unlimited).
    pub max_body_bytes: u64,
    /// Connect timeout to endpoints.
    pub connect_timeout: Duration,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// Connection timeouts and the connection limit.
    pub limits: conn::Limits,
    /// HTTP/2 limits.
    pub h2: H2Limits,
    /// A TLS listener, when configured.
    pub tls: Option<TlsListener>,
}

impl Options {
    /// Settings with the command line's defaults.
    pub fn new(source: Source, listen: SocketAddr, admin: SocketAddr) -> Options {
        Options {
            source,
            listen,
            admin,
            max_concurrent: 10_000,
            max_header_bytes: 64 * 1024,
            max_body_bytes: 0,
            connect_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            limits: conn::Limits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                tls_handshake_timeout: Duration::from_secs(10),
                max_connections: 20_000,
            },
            h2: H2Limits {
                max_concurrent_streams: 128,
                max_pending_reset_streams: 20,
                max_local_error_reset_streams: 1024,
            },
            tls: None,
        }
    }
}

/// HTTP/2 limits for client connections (the header list is bounded by `max_header_bytes`,
/// across CONTINUATION frames too).
#[derive(Clone, Copy, Debug)]
pub struct H2Limits {
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Streams a client may reset before the router has taken them up; more end the
    /// connection with ENHANCE_YOUR_CALM (the "rapid reset" attack, CVE-2023-44487).
    pub max_pending_reset_streams: usize,
    /// Streams the router may reset for a client's protocol errors before it ends the
    /// connection.
    pub max_local_error_reset_streams: usize,
}

/// A TLS listener: its address and certificates (chosen by SNI).
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// Address to serve TLS on.
    pub listen: SocketAddr,
    /// Certificate and key files; the first is served when SNI matches none.
    pub certificates: Vec<crate::tls::CertificateFiles>,
}

/// State shared by every connection.
pub struct Shared {
    /// The routing state in service; swapped atomically on reload.
    pub state: ArcSwap<State>,
    /// Keeps endpoints and series across reloads.
    pub registry: Registry,
    /// Upstream clients.
    pub clients: Clients,
    /// Concurrency limit.
    pub limit: Semaphore,
    /// Settings.
    pub options: Options,
    /// Reload status (admin only; the request path never touches it).
    pub config_status: Mutex<siskin_route::ConfigStatus>,
    /// Start time.
    pub started: Instant,
    /// Connection counters.
    pub connections: conn::ConnCounters,
    /// Open connections (one permit each, of `limits.max_connections`).
    pub open: Arc<Semaphore>,
    /// Certificates of the TLS listener.
    pub certificates: Option<Arc<crate::tls::CertStore>>,
    /// Set once a configuration from the source is in service: at start in file mode, after
    /// the first complete read of the API in Kubernetes mode. `/readyz` answers 503 until then,
    /// so a restarted pod gets traffic only once it knows its routes.
    pub ready: std::sync::atomic::AtomicBool,
}

/// A running router.
pub struct Router {
    shared: Arc<Shared>,
}

// === impl Router ===

impl Router {
    /// Loads the configuration (refusing to start on a bad one) and prepares to serve.
    pub fn new(options: Options) -> Result<Router, String> {
        let (table, path) = match &options.source {
            Source::File(path) => (config::load(path)?, path.clone()),
            Source::Kubernetes(_) => (
                siskin_route::Table::compile(siskin_route::Config::default())
                    .map_err(|e| e.to_string())?,
                PathBuf::from("kubernetes"),
            ),
        };
        let path = path.display().to_string();
        // In Kubernetes mode certificates also come from Gateway listeners, so files are
        // optional there.
        let certificates = match (&options.tls, &options.source) {
            (Some(t), Source::File(_)) => Some(crate::tls::CertStore::load(t.certificates.clone())),
            (Some(t), Source::Kubernetes(_)) => {
                Some(crate::tls::CertStore::with_files(t.certificates.clone()))
            }
            (None, _) => None,
        }
        .transpose()
        .map_err(|e| e.to_string())?
        .map(Arc::new);
        let registry = Registry::default();
        let clients = Clients::new(options.connect_timeout);
        let state = registry.build(table, 1, &clients, None)?;
        let status = siskin_route::ConfigStatus {
            path,
            generation: 1,
            reloads_total: 1,
            ..Default::default()
        };
        Ok(Router {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(state),
                registry,
                clients,
                limit: Semaphore::new(options.max_concurrent),
                config_status: Mutex::new(status),
                started: Instant::now(),
                connections: conn::ConnCounters::default(),
                open: Arc::new(Semaphore::new(options.limits.max_connections)),
                ready: std::sync::atomic::AtomicBool::new(matches!(
                    options.source,
                    Source::File(_)
                )),
                certificates,
                options,
            }),
        })
    }

    /// Serves until SIGINT or SIGTERM, then drains.
    pub async fn run(self) -> std::io::Result<()> {
        let shared = self.shared;
        let listener = TcpListener::bind(shared.options.listen).await?;
        let admin_listener = TcpListener::bind(shared.options.admin).await?;
        let tls_listener = match (&shared.options.tls, &shared.certificates) {
            (Some(t), Some(store)) => {
                let config = store.server_config().map_err(std::io::Error::other)?;
                let l = TcpListener::bind(t.listen).await?;
                tracing::info!(listen = %t.listen, names = ?store.names(), "serving TLS");
                tokio::spawn(crate::tls::watch(
                    store.clone(),
                    shared.connections.tls_reload_errors.clone(),
                ));
                Some((l, tokio_rustls::TlsAcceptor::from(config)))
            }
            _ => None,
        };
        tracing::info!(listen = %shared.options.listen, admin = %shared.options.admin, "siskin-router serving");
        tokio::spawn(admin::serve(admin_listener, shared.clone()));
        match shared.options.source.clone() {
            Source::File(path) => {
                tokio::spawn(watch_config(shared.clone(), path));
            }
            Source::Kubernetes(opts) => {
                let client = kube::Client::try_default().await.map_err(|e| {
                    std::io::Error::other(format!("cannot reach the Kubernetes API: {e}"))
                })?;
                let target = shared.clone();
                let sink = shared.certificates.clone().map(|store| {
                    let target = shared.clone();
                    Box::new(move |pairs: Vec<crate::tls::PemPair>| {
                        for e in store.install_secrets(&pairs) {
                            target.connections.tls_reload_errors.fetch_add(1, Relaxed);
                            tracing::error!(error = %e, "certificate refused; the last good one from it stays");
                        }
                        tracing::info!(names = ?store.names(), "TLS certificates from Gateways");
                    }) as crate::kube_source::CertificateSink
                });
                tokio::spawn(crate::kube_source::run(
                    client,
                    opts,
                    move |config| {
                        let compiled =
                            siskin_route::Table::compile(config).map_err(|e| e.to_string());
                        install(&target, compiled);
                    },
                    sink,
                ));
            }
        }

        let auto = http_builder(&shared.options);
        let builder = Arc::new(Builders {
            h2_only: auto.clone().http2_only(),
            auto,
        });
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut loops = vec![tokio::spawn(accept_loop(
            listener,
            None,
            shared.clone(),
            builder.clone(),
            drain_rx.clone(),
        ))];
        if let Some((l, acceptor)) = tls_listener {
            loops.push(tokio::spawn(accept_loop(
                l,
                Some(acceptor),
                shared.clone(),
                builder,
                drain_rx,
            )));
        }
        shutdown_signal().await;
        let _ = drain_tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        let drain = shared.options.drain_timeout;
        tracing::info!(seconds = drain.as_secs(), "draining connections");
        let deadline = Instant::now() + drain;
        let all = shared.options.limits.max_connections;
        while shared.open.available_permits() < all {
            if Instant::now() >= deadline {
                tracing::warn!("drain timeout passed; closing remaining connections");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// How long a connection the watchdog shut down may take to finish before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Connection builders: one that tells HTTP/1.1 from HTTP/2 by the first bytes (cleartext,
/// and TLS without ALPN), and one for TLS connections that chose h2 by ALPN (where an HTTP/1.1
/// request line is a bad preface, not a fallback).
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h2_only: auto::Builder<TokioExecutor>,
}

fn http_builder(options: &Options) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer also runs between keep-alive requests; conn::watchdog keeps the
    // header-read and idle timeouts apart.
    builder
        .http1()
        .max_buf_size(options.max_header_bytes.max(8192))
        .header_read_timeout(None)
        .timer(TokioTimer::new());
    builder
        .http2()
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(options.h2.max_concurrent_streams)
        .max_pending_accept_reset_streams(options.h2.max_pending_reset_streams)
        .max_local_error_reset_streams(options.h2.max_local_error_reset_streams)
        .timer(TokioTimer::new());
    builder
}

/// Accepts connections until the drain starts; beyond the connection limit a connection is
/// closed as soon as it is accepted (and counted).
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    builder: Arc<Builders>,
    drain: watch::Receiver<bool>,
) {
    let mut stop = drain.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = shared.open.clone().try_acquire_owned() else {
            shared.connections.refused.fetch_add(1, Relaxed);
            drop(stream);
            continue;
        };
        shared.connections.accepted.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        let (shared, builder, drain, tls) =
            (shared.clone(), builder.clone(), drain.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = tls else {
                return serve(stream, false, peer, shared, &builder, drain).await;
            };
            let handshake = shared.options.limits.tls_handshake_timeout;
            match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    serve(tls, h2, peer, shared, &builder, drain).await;
                }
                Ok(Err(e)) => {
                    shared
                        .connections
                        .tls_handshake_failures
                        .fetch_add(1, Relaxed);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    shared
                        .connections
                        .tls_handshake_failures
                        .fetch_add(1, Relaxed);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

/// Serves one connection until it ends, its watchdog expires, or the drain starts. `h2`: the
/// client chose HTTP/2 by ALPN, so the connection is served as HTTP/2 only.
async fn serve<S>(
    io: S,
    h2: bool,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builders: &Builders,
    drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new(h2);
    let (service_activity, service_shared) = (activity.clone(), shared.clone());
    let service = service_fn(move |req| {
        let guard = service_activity.request();
        let work = proxy::handle(
            service_shared.clone(),
            req.map(proxy::ClientBody::Hyper),
            peer,
        );
        async move {
            let response = work.await?;
            Ok::<_, std::convert::Infallible>(response.map(|b| conn::Guarded::new(b, guard)))
        }
    });
    let io = Metered::new(io, activity.clone());
    let watchdog = conn::watchdog(activity.clone(), shared.options.limits);
    if h2 {
        let io = TokioIo::new(io);
        let conn = builders.h2_only.serve_connection(io, service);
        drive(
            conn,
            |c| c.graceful_shutdown(),
            watchdog,
            peer,
            &shared,
            drain,
        )
        .await;
    } else {
        // Simple HTTP/1.1 requests on the router's own server; the first request that is not
        // simple hands the connection, with the bytes read, to hyper's.
        let stop = Arc::new(h1server::Stop::default());
        let own = OwnConn {
            serving: Box::pin(h1server::serve(
                io,
                shared.clone(),
                peer,
                activity.clone(),
                stop.clone(),
            )),
            stop,
        };
        let Some(Some(rewound)) = drive(
            own,
            |c| c.stop.stop(),
            watchdog,
            peer,
            &shared,
            drain.clone(),
        )
        .await
        else {
            return;
        };
        let conn = builders
            .auto
            .serve_connection_with_upgrades(TokioIo::new(rewound), service);
        drive(
            conn,
            |c| c.graceful_shutdown(),
            conn::watchdog(activity, shared.options.limits),
            peer,
            &shared,
            drain,
        )
        .await;
    }
}

/// A connection on the router's own HTTP/1.1 server, with the switch that stops it.
struct OwnConn<F> {
    serving: Pin<Box<F>>,
    stop: Arc<h1server::Stop>,
}

impl<F: std::future::Future> std::future::Future for OwnConn<F> {
    type Output = F::Output;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.serving.as_mut().poll(cx)
    }
}

/// Runs a connection to its end; on the watchdog's word or the drain, shuts it down gracefully
/// (and, for the watchdog, drops it after [`CLOSE_GRACE`]). The connection's output when it
/// ended well; `None` when it failed or was dropped.
async fn drive<C, T, E>(
    conn: C,
    shutdown: fn(std::pin::Pin<&mut C>),
    watchdog: impl std::future::Future<Output = Expired>,
    peer: SocketAddr,
    shared: &Shared,
    mut drain: watch::Receiver<bool>,
) -> Option<T>
where
    C: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let mut watchdog = std::pin::pin!(watchdog);
    let mut hard_close = std::pin::pin!(tokio::time::sleep(Duration::from_secs(86_400 * 365)));
    let (mut closing, mut draining) = (false, false);
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                return match ended {
                    Ok(out) => Some(out),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                        None
                    }
                };
            }
            expired = &mut watchdog, if !closing => {
                let counter = match expired {
                    Expired::HeaderTimeout => &shared.connections.header_timeouts,
                    Expired::Idle => &shared.connections.idle_closed,
                };
                counter.fetch_add(1, Relaxed);
                tracing::debug!(%peer, ?expired, "closing the connection");
                shutdown(conn.as_mut());
                closing = true;
                hard_close.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = drain.changed(), if !draining => {
                draining = true;
                shutdown(conn.as_mut());
            }
            () = &mut hard_close, if closing => return None,
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

/// Reloads the file when it changes.
async fn watch_config(shared: Arc<Shared>, path: PathBuf) {
    let mut seen = config::fingerprint(&path);
    loop {
        tokio::time::sleep(config::POLL).await;
        let now = config::fingerprint(&path);
        if now == seen {
            continue;
        }
        seen = now;
        install(&shared, config::load(&path));
    }
}

/// Swaps a good table in for new requests; a bad one keeps the last good configuration and is
/// reported on the admin port and in metrics.
fn install(shared: &Shared, loaded: Result<siskin_route::Table, String>) {
    let mut status = shared
        .config_status
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match loaded {
        Ok(table) => {
            let generation = status.generation + 1;
            let previous = shared.state.load_full();
            let built = shared
                .registry
                .build(table, generation, &shared.clients, Some(&previous));
            drop(previous);
            let state = match built {
                Ok(state) => state,
                Err(e) => {
                    status.errors_total += 1;
                    tracing::error!(error = %e, generation = status.generation, "configuration refused; keeping the last good one");
                    status.last_error = Some(e);
                    return;
                }
            };
            shared.state.store(Arc::new(state));
            shared.ready.store(true, Relaxed);
            status.generation = generation;
            status.reloads_total += 1;
            status.last_error = None;
            tracing::info!(generation, "configuration reloaded");
        }
        Err(e) => {
            status.errors_total += 1;
            tracing::error!(error = %e, generation = status.generation, "configuration refused; keeping the last good one");
            status.last_error = Some(e);
        }
    }
}
