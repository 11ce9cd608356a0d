//! The `vmatte` command as a library: [`main_from`] is the whole command
//! line (the `vmatte` binary is one call of it, the Python package's
//! `vmatte` script another), and [`embed`] runs `matte`, `batch`, `finish`
//! and `models` for a program that wants their results as values instead of
//! printed text (the Python package's `vmatte.matte`).
//!
//! ```text
//! argv ─► clap (cli.rs: LowArgs) ─► config.rs (typed settings: HiArgs) ─► matte / batch / ...
//!                                              │
//!              host.rs: stdout or a collector, signals or a cancel flag
//! ```

pub(crate) mod batch;
pub(crate) mod bench;
pub(crate) mod bench_gvm;
pub(crate) mod cli;
pub(crate) mod config;
pub mod embed;
pub(crate) mod finish;
pub(crate) mod gpu;
pub(crate) mod host;
pub(crate) mod matte;
pub(crate) mod models;
pub(crate) mod presets;
pub(crate) mod progress;
pub(crate) mod queue;
pub(crate) mod report;
pub(crate) mod runtime;
pub(crate) mod serve;
pub(crate) mod signals;
pub(crate) mod watch;

use std::process::ExitCode;

pub use runtime::keep_freed_blocks;

use clap::error::ErrorKind;
use clap::Parser;

use cli::{Cli, Command};

/// Runs the command line `args` (the program's name first) as the `vmatte`
/// binary does, printing what it prints; the exit status to end with.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    runtime::keep_freed_memory();
    runtime::leave_cores_to_rayon();
    runtime::one_line_panics();
    // Messages name settings as this front end takes them: as flags.
    vmatte_pipeline::show_settings_as(vmatte_pipeline::SettingStyle::Flag);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // A bad value is one line, like every other error; help, version
        // and missing arguments keep clap's own page.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            eprintln!("vmatte: {}", usage_line(&e));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmatte: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A refused command line as one line: clap's first, without its `error: `.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_string()
}

/// Runs one parsed command.
fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Matte(args) => matte::run(args),
        Command::Finish(args) => finish::run(args),
        Command::Models(cmd) => models::run(cmd),
        Command::Batch(args) => batch::run(args),
        Command::Status {
            outdir,
            queue,
            json,
        } => match (outdir, queue) {
            (_, Some(url)) => queue::status(&url, json),
            (Some(outdir), None) => batch::status(&outdir, json),
            (None, None) => unreachable!("clap requires OUTDIR or --queue"),
        },
        Command::Submit(args) => queue::submit(args),
        Command::Worker(args) => queue::worker::run(args),
        Command::Presets {
            input,
            config,
            json,
        } => presets_cmd(input.as_deref(), config.as_deref(), json),
        Command::Bench(args) => bench::run(args),
        Command::BenchGvm(args) => bench_gvm::run(args),
        Command::Monitor {
            interval_ms,
            count,
            json,
        } => gpu::monitor(std::time::Duration::from_millis(interval_ms), count, json),
        Command::Report { outdir, output } => report::run(&outdir, output.as_deref()),
        Command::Serve(args) => serve::run(args),
        Command::Watch(args) => watch::run(args),
    }
}

/// `vmatte presets`: every preset, with its values for `input`'s size (or
/// for 1080p, 720p and 4K).
fn presets_cmd(
    input: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let sizes: Vec<(String, u32, u32)> = match input {
        Some(path) => {
            let src = vmatte_media::open_source(path, None)?;
            let i = src.info();
            vec![(format!("{}x{}", i.width, i.height), i.height, i.width)]
        }
        None => vec![
            ("1280x720".into(), 720, 1280),
            ("1920x1080".into(), 1080, 1920),
            ("3840x2160".into(), 2160, 3840),
        ],
    };
    let all = presets::all(config)?;
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|p| {
                let resolved: std::collections::BTreeMap<_, _> = sizes
                    .iter()
                    .map(|(label, h, w)| (label.clone(), presets::resolved(p, *h, *w)))
                    .collect();
                serde_json::json!({ "preset": p, "resolved": resolved })
            })
            .collect();
        host::json_document(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in &all {
        println!("{:<10} {} [{}]", p.name, p.description, p.source);
        for (label, h, w) in &sizes {
            let r = presets::resolved(p, *h, *w);
            println!("           {label:>9}: {}", presets::describe(&r));
        }
    }
    Ok(ExitCode::SUCCESS)
}
