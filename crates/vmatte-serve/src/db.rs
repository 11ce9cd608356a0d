//! The store, from async handlers: a few connections kept open, each used
//! by one blocking task at a time (the stores' drivers are blocking).

use std::sync::{Arc, Mutex};

use vmatte_jobs::queue::{self, JobQueue, QueueUrl};

use vmatte_engine::lock;

use crate::error::ApiError;

/// Connections kept for reuse; more are opened under load and the extra
/// ones closed when returned.
const KEEP: usize = 4;

pub struct Db {
    url: QueueUrl,
    idle: Arc<Mutex<Vec<Box<dyn JobQueue>>>>,
}

impl Db {
    /// Opens (creating or upgrading) the store once, so a bad URL or an
    /// unwritable folder stops the service before it listens.
    pub fn open(url: &QueueUrl) -> Result<Self, String> {
        let first = queue::open(url).map_err(|e| e.to_string())?;
        Ok(Self {
            url: url.clone(),
            idle: Arc::new(Mutex::new(vec![first])),
        })
    }

    pub fn url(&self) -> &QueueUrl {
        &self.url
    }

    /// A connection for this thread (blocking callers).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn JobQueue) -> vmatte_jobs::Result<T>,
    ) -> Result<T, String> {
        with_idle(&self.url, &self.idle, f)
    }

    /// Runs `f` on a connection off the async threads.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn JobQueue) -> vmatte_jobs::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (url, idle) = (self.url.clone(), self.idle.clone());
        tokio::task::spawn_blocking(move || with_idle(&url, &idle, f))
            .await
            .map_err(|e| ApiError::unavailable(format!("the job store task failed: {e}")))?
            .map_err(ApiError::unavailable)
    }
}

fn with_idle<T>(
    url: &QueueUrl,
    idle: &Mutex<Vec<Box<dyn JobQueue>>>,
    f: impl FnOnce(&mut dyn JobQueue) -> vmatte_jobs::Result<T>,
) -> Result<T, String> {
    let taken = lock(idle).pop();
    let mut conn = match taken {
        Some(c) => c,
        None => queue::open(url).map_err(|e| e.to_string())?,
    };
    match f(conn.as_mut()) {
        Ok(v) => {
            let mut idle = lock(idle);
            if idle.len() < KEEP {
                idle.push(conn);
            }
            Ok(v)
        }
        // A connection that failed is not trusted again.
        Err(e) => Err(e.to_string()),
    }
}
