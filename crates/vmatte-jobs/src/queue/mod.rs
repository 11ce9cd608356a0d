//! One job queue behind one interface: the embedded SQLite store of an
//! output folder (`vmatte batch`, one machine) or a PostgreSQL database
//! that workers on many machines share (`vmatte submit` / `vmatte worker`).
//!
//! A worker claims a job with a lease, renews it with heartbeats, and ends
//! it as done, failed or released. A worker that dies simply stops renewing;
//! once its lease runs out the job is someone else's.
//!
//! ```text
//! interface.rs (JobQueue, NewJob, ...) <── postgres.rs (PgQueue), sqlite.rs (JobStore)
//!        ^                                        ^
//!        └──────────── mod.rs: open(QueueUrl) ────┘
//! ```

mod interface;
mod postgres;
mod sqlite;
mod url;

pub use self::interface::{
    backoff_after, Attempt, JobQueue, NewJob, Submission, Submitted, Throughput, WorkerInfo,
    WorkerRow,
};
pub use self::postgres::PgQueue;
pub use self::url::{percent_decode, redact, PgUrl, QueueUrl, TlsMode};
use crate::error::Result;
use crate::store::JobStore;

/// Opens a connection to the queue `url` names, creating or upgrading its
/// schema on first use.
pub fn open(url: &QueueUrl) -> Result<Box<dyn JobQueue>> {
    Ok(match url {
        QueueUrl::Postgres(pg) => Box::new(PgQueue::connect(pg)?),
        QueueUrl::Sqlite { outdir } => Box::new(JobStore::open(outdir)?),
    })
}
