//! `vmatte._native`: the Rust side of the Python package (python/vmatte).
//!
//! ```text
//! vmatte.main() ─► cli_main(argv) ─► vmatte_cli::main_from   (the vmatte script: prints, exits)
//! vmatte.matte(...) ─► run(argv) ─► worker thread: vmatte_cli::embed::run ─► JSON values
//!        ▲                 │  (the caller waits without the GIL, checking for Ctrl-C)
//!        └─ VmatteError ◄──┘
//! vmatte.Matter ─► matter::Matter: frames in, alpha and foreground out, state kept
//! ```
//! The exceptions are the Python package's own classes (vmatte/_errors.py),
//! raised from here by name.

mod matter;

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use vmatte_cli::embed::{self, FailureKind, Takes};

/// Raises the package's exception `class` (a name in vmatte._errors).
pub(crate) fn error(py: Python<'_>, class: &str, message: String) -> PyErr {
    match py
        .import("vmatte._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message,)))
    {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// The `vmatte` script: the whole command line, as the binary runs it; its
/// exit status. The GIL is held throughout: the command owns the process,
/// its signals included, as the binary does.
#[pyfunction]
fn cli_main(argv: Vec<OsString>) -> u8 {
    // A panic was said in one line by the CLI's hook; end as the binary
    // does (101) instead of unwinding into the interpreter.
    let code = std::panic::catch_unwind(|| vmatte_cli::main_from(argv))
        .unwrap_or_else(|_| std::process::ExitCode::from(101));
    // ExitCode keeps its number to itself; it compares, though.
    (0..=u8::MAX)
        .find(|&c| std::process::ExitCode::from(c) == code)
        .unwrap_or(1)
}

/// Runs the command line `argv` (`vmatte`, a command, its arguments) as
/// values: `{"success": bool, "json": [...]}` as a JSON text, or the
/// package's exception with the line the CLI prints. The command runs on a
/// thread of its own; this one waits without the GIL and turns Ctrl-C into
/// a clean stop (outputs of the unfinished input removed) before raising
/// KeyboardInterrupt.
#[pyfunction]
fn run(py: Python<'_>, argv: Vec<OsString>) -> PyResult<String> {
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    // Waited on without the GIL, so from a closure that must be Send.
    let rx = std::sync::Mutex::new(rx);
    let stop = cancel.clone();
    let worker = std::thread::Builder::new()
        .name("vmatte".into())
        .spawn(move || {
            let _ = tx.send(embed::run(argv, stop));
        })
        .map_err(|e| error(py, "VmatteError", format!("cannot start a thread: {e}")))?;
    let mut interrupted = None;
    let outcome = loop {
        match py.detach(|| {
            rx.lock()
                .unwrap_or_else(|p| p.into_inner())
                .recv_timeout(Duration::from_millis(100))
        }) {
            Ok(outcome) => break Some(outcome),
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interrupted.is_none() {
                    if let Err(e) = py.check_signals() {
                        cancel.store(true, Ordering::Relaxed);
                        interrupted = Some(e);
                    }
                }
            }
        }
    };
    let _ = worker.join();
    if let Some(e) = interrupted {
        return Err(e);
    }
    match outcome {
        Some(Ok(done)) => Ok(serde_json::json!({ "success": done.success, "json": done.json })
            .to_string()),
        Some(Err(f)) => Err(error(
            py,
            match f.kind {
                FailureKind::Options => "OptionError",
                FailureKind::Model => "ModelError",
                FailureKind::Run => "RunError",
                FailureKind::Bug => "InternalError",
            },
            f.message,
        )),
        None => Err(error(
            py,
            "InternalError",
            "internal error (a bug): the command's thread ended without an answer; please report it"
                .into(),
        )),
    }
}

/// Every option of `command` ("matte", "batch", "models install", ...):
/// a list of dicts with `name`, `flag`, `takes` (switch, value, list,
/// repeated) and `help`.
#[pyfunction]
fn options<'py>(py: Python<'py>, command: &str) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let Some(all) = embed::options(command) else {
        return Err(error(py, "OptionError", format!("no command '{command}'")));
    };
    all.into_iter()
        .map(|o| {
            let d = PyDict::new(py);
            d.set_item("name", o.name)?;
            d.set_item("flag", o.flag)?;
            d.set_item(
                "takes",
                match o.takes {
                    Takes::Switch => "switch",
                    Takes::Value => "value",
                    Takes::List => "list",
                    Takes::Repeated => "repeated",
                },
            )?;
            d.set_item("help", o.help)?;
            Ok(d)
        })
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Before any model loads: the same process settings as the binary's,
    // so `Matter` runs as fast and names settings as `vmatte.matte` does.
    embed::prepare();
    // Every frame allocates and frees the same multi-megabyte buffers:
    // kept in the process, they are not faulted in again each frame (12%
    // of `Matter.step`'s time at 720p without it, docs/benchmarks.md).
    // VMATTE_KEEP_FREED_MEMORY=0 leaves the host's allocator as it is.
    if std::env::var_os("VMATTE_KEEP_FREED_MEMORY").is_none_or(|v| v != "0") {
        vmatte_cli::keep_freed_blocks();
    }
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(options, m)?)?;
    m.add_class::<matter::Matter>()?;
    m.add_class::<matter::HostArray>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
