//! The CLI's commands for a program that embeds vmatte (the Python
//! package): the same parser, checks and messages as the `vmatte` binary,
//! the results as JSON values instead of printed lines, refusals as typed
//! failures, and a flag instead of the process's signals to stop with.
//!
//! ```text
//! argv ─► clap ─► dispatch ─► host::json_line ─► Finished { json }
//!   │                 │
//!   └─ refused ───────┴─► Failure { kind, message }   (the line the CLI prints)
//! ```

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Once};

use clap::{ArgAction, CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::config::BadOptions;

/// Why an embedded command did not run to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// An option, its value or a combination of them was refused.
    Options,
    /// The model could not be found, opened or loaded.
    Model,
    /// The command ran and failed.
    Run,
    /// A bug in vmatte.
    Bug,
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    /// The line the `vmatte` binary prints, without its `vmatte: `.
    pub message: String,
}

/// A command that ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// The exit status would have been 0 (every input done).
    pub success: bool,
    /// What `--json` prints, one value per line or document.
    pub json: Vec<serde_json::Value>,
}

/// Runs the command line `args` (the program's name first) on this thread;
/// setting `cancel` stops it as Ctrl-C stops the binary.
pub fn run(args: Vec<OsString>, cancel: Arc<AtomicBool>) -> Result<Finished, Failure> {
    prepare();
    let cli = Cli::try_parse_from(args).map_err(|e| Failure {
        kind: FailureKind::Options,
        message: crate::usage_line(&e),
    })?;
    if let Some(name) = binary_only(&cli.command) {
        return Err(Failure {
            kind: FailureKind::Options,
            message: format!("`{name}` runs only as the vmatte command; run `vmatte {name}`"),
        });
    }
    let (result, json) = crate::host::embedded(cancel, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::dispatch(cli.command)
        }))
    });
    match result {
        Ok(Ok(code)) => Ok(Finished {
            success: code == ExitCode::SUCCESS,
            json,
        }),
        Ok(Err(e)) => Err(Failure {
            kind: if e.downcast_ref::<BadOptions>().is_some() {
                FailureKind::Options
            } else if e.downcast_ref::<vmatte_engine::load::LoadError>().is_some() {
                FailureKind::Model
            } else {
                FailureKind::Run
            },
            message: format!("{e:#}"),
        }),
        Err(panic) => Err(Failure {
            kind: FailureKind::Bug,
            message: format!(
                "internal error (a bug): {}; please report it",
                vmatte_pipeline::panic_text(&*panic)
            ),
        }),
    }
}

/// Process-wide settings the binary makes at start, made once (the
/// embedding program calls it as it loads vmatte; [`run`] makes sure): candle
/// leaves the cores to vmatte's kernels, and messages name settings as the
/// command line does. The allocator's are not made here: they are the host
/// program's to choose.
pub fn prepare() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::runtime::leave_cores_to_rayon();
        // The same messages as the command line, flags and all.
        vmatte_pipeline::show_settings_as(vmatte_pipeline::SettingStyle::Flag);
    });
}

/// The name of a command that runs only as the `vmatte` command (it serves,
/// watches, works a queue, measures or draws); `None` for those a program
/// may embed: matte, batch, finish, models, presets, status.
fn binary_only(c: &Command) -> Option<&'static str> {
    match c {
        Command::Matte(_)
        | Command::Finish(_)
        | Command::Models(_)
        | Command::Batch(_)
        | Command::Status { .. }
        | Command::Presets { .. } => None,
        Command::Submit(_) => Some("submit"),
        Command::Worker(_) => Some("worker"),
        Command::Bench(_) => Some("bench"),
        Command::BenchGvm(_) => Some("bench-gvm"),
        Command::Monitor { .. } => Some("monitor"),
        Command::Report { .. } => Some("report"),
        Command::Serve(_) => Some("serve"),
        Command::Watch(_) => Some("watch"),
    }
}

/// How an option takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    /// A switch: present or not.
    Switch,
    /// One value.
    Value,
    /// A list, given as one value joined by commas.
    List,
    /// A value per occurrence; the option repeats.
    Repeated,
}

/// One option of a command, as an embedding program names it.
#[derive(Clone, Debug)]
pub struct OptionInfo {
    /// The keyword: the long flag with `_` for `-` (`downsample_ratio`).
    pub name: String,
    /// The flag itself (`--downsample-ratio`).
    pub flag: String,
    pub takes: Takes,
    /// What it means, from the CLI's help.
    pub help: String,
}

/// Every long option of `command` (`matte`, `batch`, `models install`, ...)
/// but `--json`, `--output` and `--help`, which the embedding program sets;
/// `None` for a command that does not exist.
pub fn options(command: &str) -> Option<Vec<OptionInfo>> {
    let mut cmd = Cli::command();
    for word in command.split_whitespace() {
        cmd = cmd.find_subcommand(word)?.clone();
    }
    let skip = ["json", "output", "help", "version"];
    Some(
        cmd.get_arguments()
            .filter_map(|a| {
                let long = a.get_long()?;
                if skip.contains(&long) {
                    return None;
                }
                let takes = match a.get_action() {
                    ArgAction::SetTrue | ArgAction::SetFalse => Takes::Switch,
                    _ if a.get_value_delimiter().is_some() => Takes::List,
                    ArgAction::Append => Takes::Repeated,
                    _ => Takes::Value,
                };
                Some(OptionInfo {
                    name: long.replace('-', "_"),
                    flag: format!("--{long}"),
                    takes,
                    help: a
                        .get_long_help()
                        .or(a.get_help())
                        .map(|h| h.to_string())
                        .unwrap_or_default(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_value_is_an_options_failure_with_the_cli_line() {
        let args = [
            "vmatte",
            "matte",
            "a.mp4",
            "-o",
            "out",
            "--downsample-ratio",
            "2",
        ]
        .map(OsString::from)
        .to_vec();
        let f = run(args, Arc::default()).unwrap_err();
        assert_eq!(f.kind, FailureKind::Options);
        assert!(
            f.message
                .starts_with("invalid value '2' for '--downsample-ratio"),
            "{}",
            f.message
        );
    }

    #[test]
    fn json_comes_back_as_values_not_printed() {
        let args = ["vmatte", "presets", "--json"].map(OsString::from).to_vec();
        let done = run(args, Arc::default()).unwrap();
        assert!(done.success);
        let [serde_json::Value::Array(rows)] = &done.json[..] else {
            panic!("one document, a list: {:?}", done.json)
        };
        assert!(
            rows.iter().any(|r| r["preset"]["name"] == "standard"),
            "{rows:?}"
        );
    }

    #[test]
    fn serve_is_refused() {
        let args = ["vmatte", "serve", "-o", "x"].map(OsString::from).to_vec();
        let f = run(args, Arc::default()).unwrap_err();
        assert_eq!(f.kind, FailureKind::Options);
        assert!(f.message.contains("vmatte serve"), "{}", f.message);
        // Each refused command is named as itself.
        let args = ["vmatte", "monitor", "--count", "1"]
            .map(OsString::from)
            .to_vec();
        let f = run(args, Arc::default()).unwrap_err();
        assert_eq!(
            f.message,
            "`monitor` runs only as the vmatte command; run `vmatte monitor`"
        );
    }

    #[test]
    fn options_name_flags_as_keywords() {
        let opts = options("matte").unwrap();
        let ratio = opts.iter().find(|o| o.name == "downsample_ratio").unwrap();
        assert_eq!(
            (ratio.flag.as_str(), ratio.takes),
            ("--downsample-ratio", Takes::Value)
        );
        let outputs = opts.iter().find(|o| o.name == "outputs").unwrap();
        assert_eq!(outputs.takes, Takes::List);
        assert!(opts.iter().all(|o| o.name != "json" && o.name != "output"));
        assert!(options("models install").is_some());
        assert!(options("nonsense").is_none());
    }
}
