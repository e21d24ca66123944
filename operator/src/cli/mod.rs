//! Command-line surface of `siskin`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
    }
}
