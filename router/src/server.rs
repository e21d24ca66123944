//! Listening, serving connections, reloading the configuration, draining on shutdown.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{
    admin,
    config::{self},
    proxy,
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
        let registry = Registry::default();
        let state = registry.build(table, 1);
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
                clients: Clients::new(options.connect_timeout),
                limit: Semaphore::new(options.max_concurrent),
                config_status: Mutex::new(status),
                started: Instant::now(),
                options,
            }),
        })
    }

    /// Serves until SIGINT or SIGTERM, then drains.
    pub async fn run(self) -> std::io::Result<()> {
        let shared = self.shared;
        let listener = TcpListener::bind(shared.options.listen).await?;
        let admin_listener = TcpListener::bind(shared.options.admin).await?;
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
                tokio::spawn(crate::kube_source::run(client, opts, move |config| {
                    let compiled = siskin_route::Table::compile(config).map_err(|e| e.to_string());
                    install(&target, compiled);
                }));
            }
        }

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .max_buf_size(shared.options.max_header_bytes.max(8192))
            .timer(hyper_util::rt::TokioTimer::new());
        builder.http2().max_header_list_size(
            u32::try_from(shared.options.max_header_bytes).unwrap_or(u32::MAX),
        );
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown_signal());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let service = service_fn(move |req| proxy::handle(shared.clone(), req, peer));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        let drain = shared.options.drain_timeout;
        tracing::info!(seconds = drain.as_secs(), "draining connections");
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout passed; closing remaining connections");
        }
        Ok(())
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
            let state = shared.registry.build(table, generation);
            shared.state.store(Arc::new(state));
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
