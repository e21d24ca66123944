//! The HTTP API (Flagger's load tester, `pkg/loadtester/server.go`): tasks, gates, rollback
//! gates, health and metrics. Every POST body is the webhook payload.
// Handlers answer early with the response itself (axum's `Response` is 128 bytes); boxing it
// on every error path would buy nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};

use crate::{
    cli::Config,
    gates::{self, CanaryKey, Change, Gates},
    load::Limits,
    metrics::Metrics,
    payload::Payload,
    runs::Runs,
    tasks,
};

/// Everything a request handler needs.
pub struct App {
    /// The settings.
    pub config: Config,
    /// The gates.
    pub gates: Gates,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Background `cmd` runs.
    pub runs: Arc<Runs>,
}

// === impl App ===

impl App {
    /// Bounds for the built-in generator.
    pub fn limits(&self) -> Limits {
        Limits {
            max_duration: self.config.timeout,
        }
    }
}

/// The routes. Like Flagger's, they answer any method.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", any(task))
        .route("/healthz", any(|| async { "OK" }))
        .route("/metrics", any(metrics))
        .route("/gate/approve", any(|| async { "OK" }))
        .route(
            "/gate/halt",
            any(|| async { (StatusCode::FORBIDDEN, "Forbidden") }),
        )
        .route("/gate/check", any(gate_check))
        .route("/gate/open", any(gate_open))
        .route("/gate/close", any(gate_close))
        .route("/rollback/check", any(rollback_check))
        .route("/rollback/open", any(rollback_open))
        .route("/rollback/close", any(rollback_close))
        .with_state(app)
}

fn bad_request(e: String) -> Response {
    (StatusCode::BAD_REQUEST, e).into_response()
}

async fn task(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match Payload::parse(&body) {
        Ok(p) => tasks::handle(app, p).await,
        Err(e) => bad_request(e),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    match app.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn checked(open: bool) -> Response {
    if open {
        (StatusCode::OK, "Approved").into_response()
    } else {
        (StatusCode::FORBIDDEN, "Forbidden").into_response()
    }
}

fn stored(result: Result<(), gates::StoreError>, done: &'static str) -> Response {
    match result {
        Ok(()) => (StatusCode::ACCEPTED, done).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "gate change not persisted");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("gate change not persisted (nothing changed): {e}"),
            )
                .into_response()
        }
    }
}

async fn gate_check(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let p = match Payload::parse(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let key = gates::check_key(&p.namespace, &p.name, p.hook_type());
    let open = app.gates.is_open(&key).await;
    tracing::debug!(canary = %p.name, namespace = %p.namespace, gate = %key.gate, open, "gate check");
    checked(open)
}

async fn gate_change(app: &App, body: &[u8], change: Change) -> Response {
    let p = match Payload::parse(body) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let keys = gates::change_keys(&p.namespace, &p.name, p.hook_type());
    let result = app.gates.set(&keys, change).await;
    if result.is_ok() {
        let gates: Vec<&str> = keys.iter().map(|k| k.gate.as_str()).collect();
        tracing::info!(canary = %p.name, namespace = %p.namespace, ?gates, ?change, "gates changed");
    }
    stored(
        result,
        if change == Change::Open {
            "Gate opened"
        } else {
            "Gate closed"
        },
    )
}

async fn gate_open(State(app): State<Arc<App>>, body: Bytes) -> Response {
    gate_change(&app, &body, Change::Open).await
}

async fn gate_close(State(app): State<Arc<App>>, body: Bytes) -> Response {
    gate_change(&app, &body, Change::Close).await
}

fn canary_key(body: &[u8]) -> Result<CanaryKey, Response> {
    let p = Payload::parse(body).map_err(bad_request)?;
    Ok(CanaryKey {
        namespace: p.namespace,
        name: p.name,
    })
}

async fn rollback_check(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match canary_key(&body) {
        Ok(k) => checked(app.gates.is_rollback_open(&k).await),
        Err(r) => r,
    }
}

async fn rollback_change(app: &App, body: &[u8], change: Change) -> Response {
    let key = match canary_key(body) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let result = app.gates.set_rollback(&key, change).await;
    if result.is_ok() {
        tracing::info!(canary = %key.name, namespace = %key.namespace, ?change, "rollback gate changed");
    }
    stored(
        result,
        if change == Change::Open {
            "Rollback opened"
        } else {
            "Rollback closed"
        },
    )
}

async fn rollback_open(State(app): State<Arc<App>>, body: Bytes) -> Response {
    rollback_change(&app, &body, Change::Open).await
}

async fn rollback_close(State(app): State<Arc<App>>, body: Bytes) -> Response {
    rollback_change(&app, &body, Change::Close).await
}
