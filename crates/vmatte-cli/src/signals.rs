//! Ctrl-C and SIGTERM: the first asks the run to stop cleanly (no new
//! videos; running ones stop at their next chunk, their partial outputs
//! deleted and their jobs queued again, then the summary), the second ends
//! the process at once.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

pub struct Interrupt {
    flag: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

impl Interrupt {
    /// The process's SIGINT and SIGTERM handlers, or, for a command run by
    /// a program that embeds the CLI, that program's stop flag (its own
    /// handlers stay).
    pub fn install() -> Result<Self> {
        if let Some(flag) = crate::host::cancel_flag() {
            return Ok(Self {
                flag,
                which: Arc::default(),
            });
        }
        let flag = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            // Registered first, so it sees the flag as the earlier signal
            // left it: set means this is the second.
            signal_hook::flag::register_conditional_shutdown(signal, code, flag.clone())
                .and_then(|_| {
                    signal_hook::flag::register_usize(signal, which.clone(), signal as usize)
                })
                .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
                .context("cannot install the SIGINT/SIGTERM handler")?;
        }
        Ok(Self { flag, which })
    }

    /// Set once a stop was asked for.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The exit status of a run that was stopped: 128 + the signal.
    pub fn exit_code(&self) -> Option<ExitCode> {
        match self.which.load(Ordering::Relaxed) {
            0 => None,
            s => Some(ExitCode::from(128 + s as u8)),
        }
    }
}
