//! `siskin`: Siskin's command line.

use std::process::ExitCode;

use clap::Parser;

mod alerts;
mod analysis;
mod backends;
mod cli;
mod control;
mod dashboard;
mod hooks;
mod kubernetes;
mod objects;
mod plan;
mod services;
mod standalone;
mod workloads;

fn main() -> ExitCode {
    // Installed as `kubectl-siskin` (a link or copy on PATH), kubectl runs it as `kubectl
    // siskin ...`: the same commands, named so in help and errors.
    let plugin = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().starts_with("kubectl-siskin"))
        })
        .unwrap_or(false);
    let args = if plugin {
        use clap::{CommandFactory, FromArgMatches};
        let matches = cli::Cli::command()
            .name("kubectl-siskin")
            .bin_name("kubectl siskin")
            .get_matches();
        match cli::Cli::from_arg_matches(&matches) {
            Ok(a) => a,
            Err(e) => e.exit(),
        }
    } else {
        cli::Cli::parse()
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("siskin: {e:#}");
            ExitCode::from(2)
        }
    }
}
