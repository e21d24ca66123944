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

use std::net::SocketAddr;

use clap::Parser;
use siskin_sample_app::{App, serve};

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
    /// Latency added to every request, in milliseconds (the median with --latency-spread).
    #[arg(long, env = "SAMPLE_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Spread the latency log-normally: the standard deviation of its logarithm (0.3 is a
    /// typical service; 0 keeps every request at --latency-ms).
    #[arg(long, env = "SAMPLE_LATENCY_SPREAD", default_value_t = 0.0)]
    latency_spread: f64,
    /// Fail requests at random at --error-rate, instead of spreading failures evenly.
    #[arg(long, env = "SAMPLE_RANDOM_ERRORS")]
    random_errors: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.error_rate),
        "--error-rate must be between 0 and 1, got {}",
        args.error_rate
    );
    anyhow::ensure!(
        (0.0..=5.0).contains(&args.latency_spread),
        "--latency-spread must be between 0 and 5, got {}",
        args.latency_spread
    );
    let app = App::new(&args.name, &args.version, args.error_rate, args.latency_ms);
    app.set_latency_spread(args.latency_spread);
    app.set_random_errors(args.random_errors);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(serve(args.listen, app))
}
