//! vmatte's job engine: one worker pool that `vmatte batch`, `vmatte
//! worker` (and the HTTP service) submit to.
//!
//! ```text
//! batch:  inputs ─► JobSpec ─► JobQueue::submit (SQLite) ─► Feed::Tickets ─┐
//! submit: inputs ─► JobSpec ─► JobQueue::submit (PostgreSQL, SQLite)       │
//! worker:                                         Feed::Queue ─────────────┤
//!                                                                          ▼
//!        Engine: lanes (one per device) × streams ─► claim ─► load (cached per lane)
//!          ─► JobLog + pipeline (staged outputs) ─► complete ─► publish ─► link copies
//!          out of memory: halve streams (job back to the feed), then the CPU
//! ```
//! A job's identity and stored form come from [`spec`]; how it runs (device,
//! chunk, precision, fault injection) is the run's own and never part of it.
//! Library code here names no command-line flag in its decisions; what it
//! says goes through the [`Observer`](observer::Observer) a front end gives.

pub mod joblog;
mod lanes;
mod lease;
pub mod load;
pub mod observer;
pub mod outcome;
mod pool;
pub mod spec;
mod sync;
pub mod telemetry;

pub use lanes::LanePlan;
pub use pool::{ensure_linked, settle_copy, Engine, EngineConfig, Feed, Report, Ticket};
pub use sync::{lock, sleep_unless, Connect};
