//! `siskin-sample-app`: a small HTTP service whose version, error rate and latency are set by
//! flags (or changed at run time), used by `siskin demo`, the end-to-end tests and benchmarks.
//!
//! | path | answer |
//! |---|---|
//! | `/` and any other path | 200 `{"name","version","path"}`, or 500 at `--error-rate`, after `--latency` |
//! | `/version` | the version, as text |
//! | `/status/{code}` | that status |
//! | `/delay/{ms}` | 200 after that many milliseconds |
//! | `/healthz`, `/readyz` | `ok` (no injected errors or latency) |
//! | `/metrics` | Prometheus text: requests by status |
//! | `PUT /admin/faults?error_rate=0.5&latency_ms=200` | change the faults while running |

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};

/// A sample service with injectable faults.
#[derive(Debug, Parser)]
#[command(name = "siskin-sample-app", about, disable_version_flag = true)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SAMPLE_LISTEN", default_value = "127.0.0.1:9898")]
    listen: SocketAddr,
    /// Service name reported in answers.
    #[arg(long, env = "SAMPLE_NAME", default_value = "podinfo")]
    name: String,
    /// Version reported in answers.
    #[arg(long, env = "SAMPLE_VERSION", default_value = "1.0.0")]
    version: String,
    /// Fraction of requests answered 500 (0.0 to 1.0).
    #[arg(long, env = "SAMPLE_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, env = "SAMPLE_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
}

struct App {
    name: String,
    version: String,
    /// Error rate in parts per million.
    error_ppm: AtomicU64,
    latency_ms: AtomicU64,
    seq: AtomicU64,
    by_status: [AtomicU64; 6],
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.error_rate),
        "--error-rate must be between 0 and 1, got {}",
        args.error_rate
    );
    let app = Arc::new(App {
        name: args.name,
        version: args.version,
        error_ppm: AtomicU64::new((args.error_rate * 1e6).round() as u64),
        latency_ms: AtomicU64::new(args.latency_ms),
        seq: AtomicU64::new(0),
        by_status: Default::default(),
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(serve(args.listen, app))
}

async fn serve(listen: SocketAddr, app: Arc<App>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "{} {} listening on {}",
        app.name,
        app.version,
        listener.local_addr()?
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app = app.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(app.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// A deterministic, evenly spread share of errors: request n fails when a fixed scrambling of
/// n lands under the error rate, so runs are repeatable and bursts do not happen by chance.
fn fails(app: &App) -> bool {
    let ppm = app.error_ppm.load(Relaxed);
    if ppm == 0 {
        return false;
    }
    let n = app.seq.fetch_add(1, Relaxed);
    // Multiplying by a large odd constant spreads consecutive requests over the cycle.
    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) % 1_000_000 < ppm
}

async fn answer(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = route(&app, &req, &path).await;
    let class = usize::from(resp.status().as_u16() / 100).min(5);
    app.by_status[class].fetch_add(1, Relaxed);
    Ok(resp)
}

async fn route(app: &App, req: &Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
    match (req.method(), path) {
        (_, "/healthz" | "/readyz") => return text(StatusCode::OK, "ok\n"),
        (_, "/metrics") => return text(StatusCode::OK, metrics(app)),
        (&Method::PUT, "/admin/faults") => {
            return set_faults(app, req.uri().query().unwrap_or_default());
        }
        _ => {}
    }
    let latency = app.latency_ms.load(Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        return text(status, format!("{}\n", status.as_u16()));
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0).min(60_000))).await;
        return text(StatusCode::OK, "ok\n");
    }
    if fails(app) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{} {} injected error\n", app.name, app.version),
        );
    }
    if path == "/version" {
        return text(StatusCode::OK, format!("{}\n", app.version));
    }
    let body =
        serde_json::json!({"name": app.name, "version": app.version, "path": path}).to_string();
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn set_faults(app: &App, query: &str) -> Response<Full<Bytes>> {
    for pair in query.split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        match k {
            "error_rate" => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => {
                    app.error_ppm.store((r * 1e6).round() as u64, Relaxed)
                }
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("error_rate must be 0..1, got {v:?}\n"),
                    );
                }
            },
            "latency_ms" => match v.parse::<u64>() {
                Ok(ms) => app.latency_ms.store(ms, Relaxed),
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("latency_ms must be a whole number, got {v:?}\n"),
                    );
                }
            },
            other => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("unknown fault {other:?}: use error_rate or latency_ms\n"),
                );
            }
        }
    }
    text(StatusCode::OK, "ok\n")
}

fn metrics(app: &App) -> String {
    let mut out = String::from("# TYPE sample_requests_total counter\n");
    for (i, c) in app.by_status.iter().enumerate().skip(1) {
        out.push_str(&format!(
            "sample_requests_total{{version=\"{}\",status_class=\"{i}xx\"}} {}\n",
            app.version,
            c.load(Relaxed)
        ));
    }
    out
}
