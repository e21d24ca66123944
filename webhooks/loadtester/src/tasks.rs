//! `/`: the task a hook's `metadata` describes (`type`, default `cmd`).
// Handlers answer early with the response itself (axum's `Response` is 128 bytes); boxing it
// on every error path would buy nothing.
#![allow(clippy::result_large_err)]

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    App, exec,
    load::{self, Plan, Route, RunContext},
    metrics::CanaryLabels,
    payload::Payload,
    runs::RunKey,
};

/// The task types this load tester runs.
pub const KNOWN_TYPES: &[&str] = &["cmd", "bash", "helm", "helmv3", "kubectl"];

/// Flagger task types this load tester does not implement.
const UNSUPPORTED_TYPES: &[&str] = &["concord", "ngrinder"];

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

/// Handles a task request.
pub async fn handle(app: Arc<App>, payload: Payload) -> Response {
    if let Some(re) = &app.config.namespace_regexp
        && !re.is_match(&payload.namespace)
    {
        app.metrics.task("any", "refused");
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "namespace {:?} does not match --namespace-regexp {:?}",
                payload.namespace,
                re.as_str()
            ),
        );
    }
    let meta = match &payload.metadata {
        Some(m) if !m.is_empty() => m.clone(),
        _ => return text(StatusCode::BAD_REQUEST, "metadata not found in payload"),
    };
    let kind = meta
        .get("type")
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("cmd");
    match kind {
        "cmd" | "bash" => match cmd_line(&meta) {
            Ok(cmd) if kind == "cmd" => background(app, &payload, &meta, cmd),
            Ok(cmd) => bash(app, &payload, &meta, cmd).await,
            Err(r) => r,
        },
        "helm" | "helmv3" | "kubectl" => match cmd_line(&meta) {
            Ok(cmd) => tool(app, &meta, kind, cmd).await,
            Err(r) => r,
        },
        t if UNSUPPORTED_TYPES.contains(&t) => {
            app.metrics.task(t, "refused");
            text(
                StatusCode::BAD_REQUEST,
                format!(
                    "task type {t:?} is not supported by siskin-loadtester; supported types: {}",
                    KNOWN_TYPES.join(", ")
                ),
            )
        }
        t => {
            app.metrics.task("unknown", "refused");
            text(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown task type {t:?}; known types: {}",
                    KNOWN_TYPES.join(", ")
                ),
            )
        }
    }
}

fn cmd_line(meta: &BTreeMap<String, String>) -> Result<&str, Response> {
    meta.get("cmd")
        .map(String::as_str)
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| text(StatusCode::BAD_REQUEST, "cmd not found in metadata"))
}

fn refuse_exec(app: &App, kind: &str, what: &str) -> Response {
    app.metrics.task(kind, "refused");
    text(
        StatusCode::FORBIDDEN,
        format!(
            "{what} runs a process, which this load tester does not do: start siskin-loadtester with --enable-exec"
        ),
    )
}

/// What a `cmd`/`bash` line turned into, or the answer when it cannot run.
enum Decided {
    InProcess(Box<Plan>),
    Process,
}

fn decide(app: &App, kind: &str, cmd: &str) -> Result<Decided, Response> {
    match load::route(cmd, &app.limits()) {
        Route::InProcess(plan) => Ok(Decided::InProcess(plan)),
        Route::Invalid(e) => {
            app.metrics.task(kind, "invalid");
            Err(text(StatusCode::BAD_REQUEST, e))
        }
        Route::Process { .. } if app.config.enable_exec => Ok(Decided::Process),
        Route::Process {
            why: Some(why),
            bad_request: true,
        } => {
            app.metrics.task(kind, "refused");
            Err(text(StatusCode::BAD_REQUEST, why))
        }
        Route::Process { why, .. } => {
            let what = match why {
                Some(why) => format!("task type {kind} ({why})"),
                None => format!("task type {kind} with a command other than hey or ghz"),
            };
            Err(refuse_exec(app, kind, &what))
        }
    }
}

fn run_context(app: &App, payload: &Payload, cmd: &str) -> RunContext {
    RunContext {
        command: cmd.to_string(),
        labels: CanaryLabels {
            namespace: payload.namespace.clone(),
            canary: payload.name.clone(),
        },
        metrics: app.metrics.clone(),
        limit: app.config.timeout,
    }
}

/// `cmd`: started in the background, 202 at once; skipped while the same one runs.
fn background(
    app: Arc<App>,
    payload: &Payload,
    meta: &BTreeMap<String, String>,
    cmd: &str,
) -> Response {
    let decided = match decide(&app, "cmd", cmd) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let key = RunKey {
        namespace: payload.namespace.clone(),
        name: payload.name.clone(),
        cmd: cmd.to_string(),
    };
    let (guard, last) = app.runs.try_start(key);
    let kind = match &decided {
        Decided::InProcess(p) => p.tool(),
        Decided::Process => "cmd",
    };
    let Some(mut guard) = guard else {
        app.metrics.task(kind, "skipped");
        tracing::info!(canary = %payload.name, namespace = %payload.namespace, cmd, "command already running; skipped");
        return match decided {
            Decided::InProcess(_) => (
                StatusCode::ACCEPTED,
                Json(json!({"status": "running", "lastRun": last})),
            )
                .into_response(),
            Decided::Process => text(StatusCode::ACCEPTED, "already running"),
        };
    };
    app.metrics.task(kind, "started");
    let log_output = meta.get("logCmdOutput").is_some_and(|v| v == "true");
    let (canary, namespace) = (payload.name.clone(), payload.namespace.clone());
    let ctx = run_context(&app, payload, cmd);
    let cmd = cmd.to_string();
    match decided {
        Decided::InProcess(plan) => {
            let tool = plan.tool();
            tokio::spawn(async move {
                tracing::info!(%canary, %namespace, %cmd, "load run started");
                match load::run(*plan, ctx).await {
                    Ok(s) => {
                        tracing::info!(%canary, %namespace, %cmd, requests = s.requests, errors = s.errors, p99_ms = s.latency_ms.p99, "load run finished");
                        app.metrics
                            .task(tool, if s.errors == 0 { "succeeded" } else { "failed" });
                        guard.keep(s);
                    }
                    Err(e) => {
                        tracing::warn!(%canary, %namespace, %cmd, error = %e, "load run failed");
                        app.metrics.task(tool, "failed");
                    }
                }
            });
            (
                StatusCode::ACCEPTED,
                Json(json!({"status": "started", "lastRun": last})),
            )
                .into_response()
        }
        Decided::Process => {
            tokio::spawn(async move {
                let _guard = guard;
                tracing::info!(%canary, %namespace, %cmd, "command started");
                let args = vec!["-c".to_string(), cmd.clone()];
                match exec::run("sh", &args, app.config.timeout).await {
                    Ok(out) => {
                        if log_output {
                            tracing::info!(%canary, %namespace, %cmd, output = %out.text, "command output");
                        }
                        if out.success {
                            app.metrics.task("cmd", "succeeded");
                            tracing::info!(%canary, %namespace, %cmd, "command finished");
                        } else {
                            app.metrics.task("cmd", "failed");
                            tracing::warn!(%canary, %namespace, %cmd, output = %out.text, "command failed");
                        }
                    }
                    Err(e) => {
                        app.metrics.task("cmd", "failed");
                        tracing::warn!(%canary, %namespace, %cmd, error = %e, "command failed");
                    }
                }
            });
            text(StatusCode::ACCEPTED, "started")
        }
    }
}

/// `bash`: synchronous; the built-in hey/ghz answer their results as JSON.
async fn bash(
    app: Arc<App>,
    payload: &Payload,
    meta: &BTreeMap<String, String>,
    cmd: &str,
) -> Response {
    match decide(&app, "bash", cmd) {
        Err(r) => r,
        Ok(Decided::InProcess(plan)) => {
            let tool = plan.tool();
            match load::run(*plan, run_context(&app, payload, cmd)).await {
                Ok(s) => {
                    app.metrics
                        .task(tool, if s.errors == 0 { "succeeded" } else { "failed" });
                    (StatusCode::OK, Json(s)).into_response()
                }
                Err(e) => {
                    app.metrics.task(tool, "failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, e)
                }
            }
        }
        Ok(Decided::Process) => {
            let args = vec!["-c".to_string(), cmd.to_string()];
            finish(
                &app,
                meta,
                "bash",
                exec::run("bash", &args, app.config.timeout).await,
            )
        }
    }
}

/// `helm`, `helmv3`, `kubectl`: synchronous, the command split on whitespace.
async fn tool(app: Arc<App>, meta: &BTreeMap<String, String>, kind: &str, cmd: &str) -> Response {
    if !app.config.enable_exec {
        return refuse_exec(&app, kind, &format!("task type {kind}"));
    }
    let program = match kind {
        // Flagger's image ships Helm 3 as `helmv3`; use plain `helm` where that is all there is.
        "helmv3" if which("helmv3") => "helmv3",
        "helmv3" => "helm",
        other => other,
    };
    let args: Vec<String> = cmd.split_whitespace().map(String::from).collect();
    finish(
        &app,
        meta,
        kind,
        exec::run(program, &args, app.config.timeout).await,
    )
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn finish(
    app: &App,
    meta: &BTreeMap<String, String>,
    kind: &str,
    result: Result<exec::Output, String>,
) -> Response {
    let return_output = meta.get("returnCmdOutput").is_some_and(|v| v == "true");
    match result {
        Ok(out) if out.success => {
            app.metrics.task(kind, "succeeded");
            text(
                StatusCode::OK,
                if return_output {
                    out.text
                } else {
                    String::new()
                },
            )
        }
        Ok(out) => {
            app.metrics.task(kind, "failed");
            tracing::warn!(task = kind, output = %out.text, "command failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, out.text)
        }
        Err(e) => {
            app.metrics.task(kind, "failed");
            tracing::warn!(task = kind, error = %e, "command failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}
