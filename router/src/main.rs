//! `siskin-router`: Siskin's L7 router.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use siskin_router::{
    H2Limits, Options, Router, Source, TlsListener, conn::Limits, kube_source::KubeOptions,
};

/// Siskin's built-in L7 router: weighted split, matches, mirroring, sticky sessions, retries.
#[derive(Debug, Parser)]
#[command(name = "siskin-router", version, about)]
struct Args {
    /// Route configuration (YAML, docs/router.md); reloaded when it changes.
    #[arg(
        long,
        env = "SISKIN_ROUTER_CONFIG",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    config: Option<PathBuf>,
    /// Read routes from the cluster: HTTPRoutes whose parent is a Service or a Gateway of
    /// --gateway-class, and the EndpointSlices of their backends (in-cluster or KUBECONFIG).
    #[arg(long, env = "SISKIN_ROUTER_KUBERNETES")]
    kubernetes: bool,
    /// Gateway class served in --kubernetes mode.
    #[arg(long, env = "SISKIN_ROUTER_GATEWAY_CLASS", default_value = "siskin")]
    gateway_class: String,
    /// Watch only this namespace in --kubernetes mode (default: all).
    #[arg(long, env = "SISKIN_ROUTER_NAMESPACE")]
    namespace: Option<String>,
    /// Address to serve traffic on.
    #[arg(long, env = "SISKIN_ROUTER_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the admin port (/metrics, /stats, /config, /healthz, /readyz).
    #[arg(long, env = "SISKIN_ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9901")]
    admin_addr: SocketAddr,
    /// Worker threads (default: one per core).
    #[arg(long, env = "SISKIN_ROUTER_WORKERS")]
    workers: Option<usize>,
    /// Requests served at once; more are answered 503.
    #[arg(
        long,
        env = "SISKIN_ROUTER_MAX_CONCURRENT_REQUESTS",
        default_value_t = 10_000
    )]
    max_concurrent_requests: usize,
    /// Largest request head in bytes.
    #[arg(long, env = "SISKIN_ROUTER_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Largest request body in bytes (0: unlimited).
    #[arg(long, env = "SISKIN_ROUTER_MAX_BODY_BYTES", default_value_t = 0)]
    max_body_bytes: u64,
    /// Connect timeout to endpoints, in milliseconds.
    #[arg(long, env = "SISKIN_ROUTER_CONNECT_TIMEOUT_MS", default_value_t = 2000)]
    connect_timeout_ms: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long, env = "SISKIN_ROUTER_DRAIN_SECONDS", default_value_t = 10)]
    drain_seconds: u64,
    /// Milliseconds a client has to send a complete HTTP/1 request head, from the connection
    /// or from the first byte of the next request; slower clients are disconnected.
    #[arg(long, env = "SISKIN_ROUTER_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_ms: u64,
    /// Milliseconds a connection may stay open with no request in flight and no bytes moving
    /// (HTTP/1.1 and HTTP/2; HTTP/2 clients get a GOAWAY).
    #[arg(long, env = "SISKIN_ROUTER_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,
    /// Client connections open at once (both listeners); more are closed as soon as they
    /// are accepted and counted in siskin_router_connections_refused_total.
    #[arg(long, env = "SISKIN_ROUTER_MAX_CONNECTIONS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// HTTP/2 streams a client may have open at once on one connection.
    #[arg(long, env = "SISKIN_ROUTER_H2_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    h2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may reset before the router takes them up; more end the
    /// connection (rapid reset protection).
    #[arg(
        long,
        env = "SISKIN_ROUTER_H2_MAX_PENDING_RESETS",
        default_value_t = 20
    )]
    h2_max_pending_resets: usize,
    /// Address of a TLS listener; ALPN offers h2 and http/1.1. Certificates come from
    /// --tls-certificate and, in --kubernetes mode, from the certificateRefs Secrets of the
    /// HTTPS listeners of Gateways of --gateway-class.
    #[arg(long, env = "SISKIN_ROUTER_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// CERT_FILE,KEY_FILE (PEM) for the TLS listener; repeat for more names. The certificate
    /// whose subjectAltName matches the client's SNI is served (the first when none does);
    /// the files are reloaded when they change.
    #[arg(
        long,
        env = "SISKIN_ROUTER_TLS_CERTIFICATE",
        value_delimiter = ';',
        requires = "tls_listen"
    )]
    tls_certificate: Vec<siskin_router::tls::CertificateFiles>,
    /// Milliseconds a TLS client has to complete its handshake.
    #[arg(long, env = "SISKIN_ROUTER_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    tls_handshake_timeout_ms: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.tls_listen.is_some() && !args.kubernetes && args.tls_certificate.is_empty() {
        anyhow::bail!(
            "--tls-listen needs --tls-certificate CERT_FILE,KEY_FILE (with --config; in --kubernetes mode certificates can also come from Gateway listeners)"
        );
    }
    let options = Options {
        source: match args.config {
            Some(path) => Source::File(path),
            None => Source::Kubernetes(KubeOptions {
                gateway_class: args.gateway_class,
                namespace: args.namespace,
            }),
        },
        listen: args.listen,
        admin: args.admin_addr,
        max_concurrent: args.max_concurrent_requests,
        max_header_bytes: args.max_header_bytes,
        max_body_bytes: args.max_body_bytes,
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        drain_timeout: Duration::from_secs(args.drain_seconds),
        limits: Limits {
            header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            tls_handshake_timeout: Duration::from_millis(args.tls_handshake_timeout_ms),
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        },
        h2: H2Limits {
            max_concurrent_streams: args.h2_max_concurrent_streams,
            max_pending_reset_streams: args.h2_max_pending_resets,
            max_local_error_reset_streams: 1024,
        },
        tls: args.tls_listen.map(|listen| TlsListener {
            listen,
            certificates: args.tls_certificate,
        }),
    };
    let router = Router::new(options).map_err(|e| anyhow::anyhow!("cannot start: {e}"))?;
    // One worker: a current-thread runtime, linkerd2-proxy's default (no work-stealing cost).
    let mut rt = match args.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all().build()?.block_on(router.run())?;
    Ok(())
}
