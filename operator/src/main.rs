//! `siskin`: Siskin's command line.

use std::process::ExitCode;

use clap::Parser;

mod analysis_run;
mod cli;
mod cookies;
mod hooks;
mod operator;
mod standalone;

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
