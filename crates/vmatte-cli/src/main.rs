//! `vmatte`: alpha mattes from videos.

mod batch;
mod bench;
mod cli;
mod matte;
mod models;
mod progress;
mod runtime;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Matte(args) => matte::run(args),
        Command::Models(cmd) => models::run(cmd),
        Command::Batch(args) => batch::run(args),
        Command::Status { outdir, json } => batch::status(&outdir, json),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmatte: {e:#}");
            ExitCode::FAILURE
        }
    }
}
