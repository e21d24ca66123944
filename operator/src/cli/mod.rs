//! Command-line surface of `siskin`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod ctl;
mod demo;
mod render;
mod validate;

/// Siskin: progressive delivery with its own L7 router.
#[derive(Debug, Parser)]
#[command(name = "siskin", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check Canary, MetricTemplate and AlertProvider manifests (siskin.dev or flagger.app).
    Validate(validate::Args),
    /// Print every object the operator would apply for a Canary at a routing state.
    Render(render::Args),
    /// Print the traffic providers this build implements: what each can do and writes.
    Providers,
    /// Release upstreams listed in a file through the built-in router (no Kubernetes).
    Run(RunArgs),
    /// Watch a good release promoted and a bad one rolled back, on this machine.
    Demo(demo::Args),
    /// Run the Kubernetes operator (Canaries under siskin.dev, or flagger.app).
    Operator(Box<crate::kubernetes::Args>),
    /// Serve the sample application (version, error rate and latency set by flags).
    SampleApp(SampleAppArgs),
    #[command(flatten)]
    Ctl(ctl::Ctl),
}

/// Arguments of `siskin sample-app` (the same as `siskin-sample-app`'s).
#[derive(Debug, clap::Args)]
pub struct SampleAppArgs {
    /// Address to listen on.
    #[arg(long, env = "SAMPLE_LISTEN", default_value = "127.0.0.1:9898")]
    listen: std::net::SocketAddr,
    /// Service name reported in answers.
    #[arg(long, env = "SAMPLE_NAME", default_value = "podinfo")]
    name: String,
    /// Version reported in answers.
    #[arg(long = "app-version", env = "SAMPLE_VERSION", default_value = "1.0.0")]
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

/// Arguments of `siskin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The standalone file (docs/standalone.md); edit its `canary` list to start a release.
    file: std::path::PathBuf,
    /// Stop once the current release has succeeded (exit 0) or failed (exit 1).
    #[arg(long)]
    once: bool,
    /// Release these addresses (repeatable): they replace the file's `canary` list for this run.
    #[arg(long, value_name = "ADDR")]
    canary: Vec<String>,
    /// Hand all traffic to the file's `canary` upstreams without analysis and retire the
    /// primary (what `revertOnDeletion` does on Kubernetes); with --once, exit when done.
    #[arg(long)]
    revert: bool,
    /// Webhook told every event when the file's analysis has no `event` webhook.
    #[arg(long, env = "EVENT_WEBHOOK_URL")]
    event_webhook: Option<String>,
    /// Where alerts go when the file's analysis has no alerts.
    #[command(flatten)]
    alerts: crate::alerts::GlobalAlertArgs,
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Providers => {
            print!("{}", crate::backends::provider_matrix());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(demo::run(&args))
        }
        Command::Operator(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(crate::kubernetes::run(*args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SampleApp(a) => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&a.error_rate),
                "--error-rate must be between 0 and 1, got {}",
                a.error_rate
            );
            anyhow::ensure!(
                (0.0..=5.0).contains(&a.latency_spread),
                "--latency-spread must be between 0 and 5, got {}",
                a.latency_spread
            );
            let app = siskin_sample_app::App::new(&a.name, &a.version, a.error_rate, a.latency_ms);
            app.set_latency_spread(a.latency_spread);
            app.set_random_errors(a.random_errors);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?
                .block_on(siskin_sample_app::serve(a.listen, app))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl(cmd) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ctl::run(cmd)),
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let opts = crate::standalone::run::RunOptions {
                once: args.once,
                canary: args.canary,
                revert: args.revert,
                output: crate::standalone::world::Output::Print,
                event_webhook: args.event_webhook,
                alerts: args.alerts.destination(),
            };
            let phase = rt.block_on(crate::standalone::run::run(&args.file, opts))?;
            Ok(if phase == siskin_api::Phase::Failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every subcommand's flags (unique names, groups, defaults).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
