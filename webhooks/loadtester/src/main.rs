//! `siskin-loadtester`: Flagger's load-tester API (`/` tasks, `/gate/*`, `/rollback/*`,
//! `/healthz`, `/metrics`) with a built-in `hey`/`ghz` load generator, gates kept per canary
//! and per gate type in a file or a ConfigMap, and real processes only with `--enable-exec`.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

mod cli;
mod duration;
mod exec;
mod gates;
mod load;
mod metrics;
mod payload;
mod runs;
mod server;
mod tasks;

pub(crate) use server::App;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse_from(cli::normalize_args(std::env::args()));
    init_logs(&cli)?;
    // The workspace uses rustls with the ring provider only (reqwest and kube are built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = cli.config()?;
    if config.gates == cli::GatesStore::Memory {
        tracing::warn!(
            "gates are kept in memory and lost on restart: set --gates-file or --gates-configmap"
        );
    }
    let (backend, state) = gates::Backend::open(&config.gates).await?;
    let metrics = Arc::new(metrics::Metrics::new());
    let open_gates = state.gates.len() + state.rollbacks.len();
    let app = Arc::new(App {
        gates: gates::Gates::new(backend, state, metrics.clone()),
        runs: Arc::default(),
        metrics,
        config,
    });
    let listener = tokio::net::TcpListener::bind(app.config.listen)
        .await
        .with_context(|| format!("listen on {}", app.config.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        gates = app.gates.location(),
        open_gates,
        timeout = %duration::format(app.config.timeout),
        enable_exec = app.config.enable_exec,
        "siskin-loadtester listening"
    );
    axum::serve(listener, server::router(app))
        .with_graceful_shutdown(shutdown())
        .await
        .context("serve")
}

fn init_logs(cli: &cli::Cli) -> anyhow::Result<()> {
    // Flagger's zap levels: fatal and panic are errors here.
    let level = match cli.log_level.as_str() {
        "fatal" | "panic" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
