//! The sample service (see the `siskin-sample-app` binary) as a library, so `siskin demo` can run
//! versions of it in-process.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};

/// The settings of a running sample service.
pub struct App {
    name: String,
    version: String,
    /// Error rate in parts per million.
    error_ppm: AtomicU64,
    latency_ms: AtomicU64,
    /// Log-normal spread of the latency (sigma × 1000; 0: every request takes `latency_ms`).
    spread_milli: AtomicU64,
    /// Errors drawn at random (independently per request) instead of evenly spread.
    random_errors: AtomicBool,
    seq: AtomicU64,
    draws: AtomicU64,
    by_status: [AtomicU64; 6],
}

impl App {
    /// A service named `name` at `version`, failing `error_rate` of requests after `latency_ms`.
    pub fn new(name: &str, version: &str, error_rate: f64, latency_ms: u64) -> Arc<App> {
        Arc::new(App {
            name: name.to_string(),
            version: version.to_string(),
            error_ppm: AtomicU64::new((error_rate.clamp(0.0, 1.0) * 1e6).round() as u64),
            latency_ms: AtomicU64::new(latency_ms),
            spread_milli: AtomicU64::new(0),
            random_errors: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            draws: AtomicU64::new(0),
            by_status: Default::default(),
        })
    }

    /// Spreads the latency log-normally around `latency_ms` (its median) with `sigma`, the
    /// standard deviation of its logarithm (0.3: a quarter of requests 35 % slower than the
    /// median or more), as real services vary.
    pub fn set_latency_spread(&self, sigma: f64) {
        let milli = (sigma.clamp(0.0, 5.0) * 1000.0).round() as u64;
        self.spread_milli.store(milli, Relaxed);
    }

    /// Draws each request's failure at random (at the error rate) instead of spreading the
    /// failures evenly: the counts then vary as real failures do.
    pub fn set_random_errors(&self, on: bool) {
        self.random_errors.store(on, Relaxed);
    }

    /// A uniform draw in (0, 1) (SplitMix64 over a counter: repeatable, no shared state).
    fn uniform(&self) -> f64 {
        let mut z = self
            .draws
            .fetch_add(1, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// This request's latency.
    fn latency(&self) -> Duration {
        let ms = self.latency_ms.load(Relaxed) as f64;
        let sigma = self.spread_milli.load(Relaxed) as f64 / 1000.0;
        if ms == 0.0 || sigma == 0.0 {
            return Duration::from_secs_f64(ms / 1000.0);
        }
        // Box-Muller: one standard normal draw.
        let (u, v) = (self.uniform(), self.uniform());
        let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        Duration::from_secs_f64((ms * (sigma * normal).exp()).min(60_000.0) / 1000.0)
    }
}

/// Serves `app` on `listen` until Ctrl-C.
pub async fn serve(listen: SocketAddr, app: Arc<App>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "{} {} listening on {}",
        app.name,
        app.version,
        listener.local_addr()?
    );
    serve_on(listener, app).await
}

/// Serves `app` on a bound listener until Ctrl-C.
pub async fn serve_on(listener: tokio::net::TcpListener, app: Arc<App>) -> anyhow::Result<()> {
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
    if app.random_errors.load(Relaxed) {
        return app.uniform() * 1e6 < ppm as f64;
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
    let latency = app.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
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
