//! `siskin`: Siskin's command line.

use std::process::ExitCode;

use clap::Parser;

mod alerts;
mod analysis;
mod backends;
mod cli;
mod hooks;
mod kubernetes;
mod objects;
mod plan;
mod services;
mod standalone;
mod workloads;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("siskin: {e:#}");
            ExitCode::from(2)
        }
    }
}
