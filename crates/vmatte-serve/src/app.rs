//! What every request handler and background thread of the service
//! shares.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Resolve, ServeConfig};
use crate::live::Live;
use crate::{db, webhook};

/// Everything a request handler reaches.
pub struct App {
    pub config: ServeConfig,
    pub resolver: Box<dyn Resolve>,
    pub db: db::Db,
    pub live: Live,
    pub webhooks: webhook::Webhooks,
    /// Whether this process runs jobs (else workers elsewhere do).
    pub workers: bool,
    /// Set when the service stops: event streams end.
    pub stop: Arc<AtomicBool>,
}

impl App {
    /// Where `job` writes: its own folder (a PostgreSQL queue keeps one per
    /// job), else this server's.
    pub fn outdir_of(&self, job: &vmatte_jobs::JobRow) -> PathBuf {
        job.outdir
            .clone()
            .unwrap_or_else(|| self.config.outdir.clone())
    }
}
