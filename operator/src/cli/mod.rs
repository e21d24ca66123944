//! Command-line surface of `siskin`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
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
    /// Release upstreams listed in a file through the built-in router (no Kubernetes).
    Run(RunArgs),
    /// Watch a good release promoted and a bad one rolled back, on this machine.
    Demo(demo::Args),
}

/// Arguments of `siskin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The standalone file (docs/standalone.md); edit its `canary` list to start a release.
    file: std::path::PathBuf,
    /// Stop once the current release has succeeded or failed.
    #[arg(long)]
    once: bool,
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Demo(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(demo::run(&args))
        }
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(crate::standalone::driver::run(&args.file, args.once))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
