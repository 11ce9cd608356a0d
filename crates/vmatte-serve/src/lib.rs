//! `vmatte serve`: a JSON API, live events and a web page over the job
//! engine that `vmatte batch` and `vmatte worker` share. A job made here is
//! a row of the same store (an output folder's SQLite store, or a
//! PostgreSQL queue), so `vmatte status` and remote workers see it too.
//!
//! ```text
//!  browser / client ──HTTP──► auth.rs (token, origin) ─► api.rs (router):
//!     ├─ jobs: create, list, get, cancel, retry, delete ─► jobs.rs (find, confine, submit)
//!     ├─ upload.rs   multipart ─► OUTDIR/uploads/ ─► jobs.rs
//!     ├─ files.rs    outputs (Range), sequences as a zip (zipstream.rs), input, log
//!     ├─ preview.rs  a browser-playable video of each output
//!     ├─ events.rs   Server-Sent Events ◄── broadcast
//!     ├─ ops.rs      /healthz /readyz /metrics
//!     └─ page.rs     the web page (embedded assets)
//!  store ◄── db.rs (connections, off the async threads)
//!  engine thread (workers.rs) ── Observer ──► live.rs (progress) ──► broadcast
//!  poller.rs ── the store's state changes ──► broadcast, webhook.rs (signed, retried)
//!  app.rs: what all of these share
//! ```
//! Library code here names no command-line flag: the front end gives a
//! typed [`ServeConfig`] and a [`Resolve`] that turns a request's options
//! into a job.

mod api;
mod app;
mod auth;
mod config;
mod db;
mod error;
mod events;
mod files;
mod jobs;
mod live;
mod openapi;
mod ops;
mod page;
mod poller;
mod preview;
mod upload;
mod view;
mod webhook;
mod workers;
mod zipstream;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use config::{FieldError, Resolve, ServeConfig, Token, Workers};

use crate::app::App;
use crate::live::Live;

/// Starts the service and blocks until `stop` is set (the front end's
/// interrupt flag): in-process workers then give their running jobs back
/// to the queue, and the server stops taking requests. `bound` is told the
/// address listened on once requests are taken.
pub fn run(
    config: ServeConfig,
    resolver: Box<dyn Resolve>,
    workers: Option<Workers>,
    stop: Arc<AtomicBool>,
    bound: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    // However this returns, whatever else watches `stop` (a watched
    // folder) stops too.
    let _stop_all = StopOnDrop(stop.clone());
    upload::prepare(&config.outdir)?;
    let db = db::Db::open(&config.queue)?;
    let webhooks = webhook::Webhooks::open(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    let listen = config.listen;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .map_err(|e| format!("cannot listen on {listen} ({e}); choose another address or port"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the address listened on: {e}"))?;
    let app = Arc::new(App {
        resolver,
        db,
        live: Live::new(),
        webhooks,
        workers: workers.is_some(),
        stop: stop.clone(),
        config,
    });
    upload::sweep(&app);
    let engine = workers.map(|w| workers::start(app.clone(), w, stop.clone()));
    let poller = poller::start(app.clone(), stop.clone());
    bound(addr);
    let served = runtime.block_on(async {
        let until = stop.clone();
        let stopped = async move {
            while !until.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let server = axum::serve(listener, api::router(app.clone()))
            .with_graceful_shutdown(stopped)
            .into_future();
        // Requests in flight get a few seconds to finish; a long download
        // or upload does not hold the stop up longer.
        let deadline = async {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            done = server => done.map_err(|e| format!("the HTTP server stopped: {e}")),
            () = deadline => Ok(()),
        }
    });
    // Open event streams never end by themselves: give them a moment, then
    // drop them with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    if let Some(engine) = engine {
        engine.join()?;
    }
    let _ = poller.join();
    served
}

/// How long requests in flight may take once the service is stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Sets the stop flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
