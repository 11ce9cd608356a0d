//! The resumable on-disk state of `vmatte batch INPUT... -o OUTDIR`.
//!
//! A job is one input under one set of settings, identified by what the
//! input *contains* and what the settings *say*, so a rerun of the same
//! command (or of a moved file) finds the work already done. The state lives
//! in `OUTDIR/.vmatte/jobs.db`, a SQLite database that any number of vmatte
//! processes on one machine share through leases; `OUTDIR/manifest.csv` is
//! its human-readable summary.
//!
//! [`queue`] puts that store and a PostgreSQL database shared by workers on
//! many machines behind one interface.

mod error;
mod identity;
mod manifest;
mod names;
pub mod outputs;
mod owner;
pub mod queue;
mod store;
mod time;

pub use error::{Error, Result};
pub use identity::{content_id, settings_id};
pub use manifest::{write_manifest, MANIFEST_FILE};
pub use names::{ensure_output_is_not_input, names_on_disk, safe_stem, NameAllocator, MAX_STEM};
pub use outputs::Outputs;
pub use owner::{holder_is_dead, hostname, owner_host_pid, owner_id, owner_id_named};
pub use store::{
    store_path, Claim, CopyRow, JobRow, JobState, JobStore, Progress, BUSY_TIMEOUT, SCHEMA_VERSION,
};
pub use time::{now_ms, rfc3339_ms};
