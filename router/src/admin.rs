//! The admin port: `/metrics`, `/healthz`, `/readyz`, `/config`, `/stats`.

use std::{
    fmt::Write,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use siskin_route::StatsReport;
use tokio::net::TcpListener;

use crate::server::Shared;

/// Serves the admin endpoints until the process ends.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/config", get(config))
        .route("/stats", get(stats))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "admin server stopped");
    }
}

/// 200 once a configuration from the source is in service, 503 before.
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.ready.load(Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first complete read of routes, Gateways, Services and EndpointSlices from the Kubernetes API\n",
        )
    }
}

fn now_sec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// [`siskin_route::ConfigReport`] as written: the configuration goes out as the JSON text
/// the table kept of it (compressed, expanded here).
#[derive(serde::Serialize)]
struct ConfigReportOut<'a> {
    generation: u64,
    status: siskin_route::ConfigStatus,
    config: &'a serde_json::value::RawValue,
}

async fn config(State(shared): State<Arc<Shared>>) -> Result<impl IntoResponse, StatusCode> {
    let state = shared.state.load_full();
    let status = shared
        .config_status
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let json = state
        .table
        .config_json()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let config: &serde_json::value::RawValue =
        serde_json::from_str(&json).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let body = serde_json::to_string(&ConfigReportOut {
        generation: state.generation,
        status,
        config,
    })
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// `GET /stats[?window=SECONDS]`: with `window` (1–60), every entry also carries the judge's
/// samples of that window.
async fn stats(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Json<StatsReport>, (StatusCode, String)> {
    let mut window = None;
    for pair in query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("window", v)) => match v.parse::<u64>() {
                Ok(w) if (1..=60).contains(&w) => window = Some(w),
                _ => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("window={v}: give the window in whole seconds, 1 to 60\n"),
                    ));
                }
            },
            _ => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {pair:?}: /stats takes only window=SECONDS\n"),
                ));
            }
        }
    }
    let state = shared.state.load_full();
    let now = now_sec();
    let report = |s: &crate::stats::BackendStats| {
        let mut r = s.report(now);
        r.samples = window.map(|w| s.samples(now, w));
        r
    };
    Ok(Json(StatsReport {
        generation: state.generation,
        backends: state.all_series().iter().map(|s| report(s)).collect(),
        unrouted: report(&state.unrouted),
    }))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let state = shared.state.load_full();
    let status = shared
        .config_status
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let mut out = String::with_capacity(4096);
    out.push_str("# HELP siskin_router_requests_total Requests answered, by route, rule, backend role, backend and status class.\n# TYPE siskin_router_requests_total counter\n");
    out.push_str("# HELP siskin_router_request_duration_seconds Time to the response head, by route, rule and backend.\n# TYPE siskin_router_request_duration_seconds histogram\n");
    out.push_str("# HELP siskin_router_errors_total Requests the router failed, by error kind.\n# TYPE siskin_router_errors_total counter\n");
    for s in state.all_series() {
        s.render(&mut out);
    }
    if state.unrouted.has_requests() {
        state.unrouted.render(&mut out);
    }
    let _ = writeln!(
        out,
        "# HELP siskin_router_config_generation Configuration version in service.\n# TYPE siskin_router_config_generation gauge\nsiskin_router_config_generation {}",
        state.generation
    );
    let _ = writeln!(
        out,
        "# HELP siskin_router_config_reload_errors_total Configuration files refused (the last good one stays).\n# TYPE siskin_router_config_reload_errors_total counter\nsiskin_router_config_reload_errors_total {}",
        status.errors_total
    );
    let _ = writeln!(
        out,
        "# HELP siskin_router_config_valid 1 when the file on disk is the configuration in service.\n# TYPE siskin_router_config_valid gauge\nsiskin_router_config_valid {}",
        u8::from(status.last_error.is_none())
    );
    let c = &shared.connections;
    let open = shared.options.limits.max_connections - shared.open.available_permits();
    for (name, help, kind, value) in [
        (
            "connections_open",
            "Client connections open.",
            "gauge",
            open as u64,
        ),
        (
            "connections_accepted_total",
            "Client connections accepted.",
            "counter",
            c.accepted.load(Relaxed),
        ),
        (
            "connections_refused_total",
            "Client connections closed at once because --max-connections were open.",
            "counter",
            c.refused.load(Relaxed),
        ),
        (
            "connections_header_timeouts_total",
            "Connections closed because no complete request head arrived within --header-read-timeout-ms.",
            "counter",
            c.header_timeouts.load(Relaxed),
        ),
        (
            "connections_idle_closed_total",
            "Connections closed after --idle-timeout-ms without a request.",
            "counter",
            c.idle_closed.load(Relaxed),
        ),
        (
            "tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
            "counter",
            c.tls_handshake_failures.load(Relaxed),
        ),
        (
            "tls_reload_errors_total",
            "Certificate sets refused on reload (the ones in service stay).",
            "counter",
            c.tls_reload_errors.load(Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP siskin_router_{name} {help}\n# TYPE siskin_router_{name} {kind}\nsiskin_router_{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP siskin_router_uptime_seconds Seconds since start.\n# TYPE siskin_router_uptime_seconds gauge\nsiskin_router_uptime_seconds {}",
        shared.started.elapsed().as_secs()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
