//! Where a command's results go and where its stop comes from.
//!
//! The `vmatte` binary prints its JSON on stdout and stops on SIGINT or
//! SIGTERM. A program that embeds the CLI ([`crate::embed`], the Python
//! package) collects the JSON as values and stops a command by setting a
//! flag, its own signal handlers left alone.
//!
//! Invariant: a command runs on the thread that called it, and prints its
//! JSON and installs its stop there, so the embedding is kept per thread
//! and two embedded commands on two threads do not see each other's.

use std::cell::RefCell;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;

struct Embedding {
    cancel: Arc<AtomicBool>,
    json: Vec<serde_json::Value>,
}

thread_local! {
    static EMBEDDING: RefCell<Option<Embedding>> = const { RefCell::new(None) };
}

/// Runs `f` embedded: its JSON results collected and returned with its
/// value, `cancel` as its stop.
pub fn embedded<R>(cancel: Arc<AtomicBool>, f: impl FnOnce() -> R) -> (R, Vec<serde_json::Value>) {
    EMBEDDING.with_borrow_mut(|e| {
        *e = Some(Embedding {
            cancel,
            json: Vec::new(),
        })
    });
    // Taken back whether `f` returns or unwinds (the caller catches it).
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            EMBEDDING.with_borrow_mut(|e| *e = None);
        }
    }
    let _clear = Clear;
    let value = f();
    let json = EMBEDDING.with_borrow_mut(|e| e.as_mut().map(|e| std::mem::take(&mut e.json)));
    (value, json.unwrap_or_default())
}

/// The embedding program's stop flag, when there is one.
pub fn cancel_flag() -> Option<Arc<AtomicBool>> {
    EMBEDDING.with_borrow(|e| e.as_ref().map(|e| e.cancel.clone()))
}

/// One result: a line of JSON on stdout, or a value for the embedding
/// program.
pub fn json_line(value: &impl Serialize) -> anyhow::Result<()> {
    emit(value, serde_json::to_string)
}

/// A whole document (a list, a table): pretty JSON on stdout, or a value
/// for the embedding program.
pub fn json_document(value: &impl Serialize) -> anyhow::Result<()> {
    emit(value, serde_json::to_string_pretty)
}

/// An input that failed, as `--json` says it: `{"input", "error"}`.
pub fn json_failure(input: &std::path::Path, error: &str) -> anyhow::Result<()> {
    json_line(&serde_json::json!({ "input": input, "error": error }))
}

fn emit<T: Serialize>(value: &T, text: fn(&T) -> serde_json::Result<String>) -> anyhow::Result<()> {
    let kept = EMBEDDING.with_borrow_mut(|e| match e {
        Some(e) => serde_json::to_value(value)
            .map(|v| e.json.push(v))
            .map(|()| true),
        None => Ok(false),
    })?;
    if !kept {
        println!("{}", text(value)?);
    }
    Ok(())
}
