//! In-process workers: the job engine on the service's store, fed by the
//! queue like `vmatte worker`, telling its progress to [`Live`](crate::live::Live).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vmatte_engine::telemetry::Hub;
use vmatte_engine::{Engine, Feed};
use vmatte_jobs::queue;

use crate::app::App;
use crate::config::Workers;

/// How often an idle stream asks the store for work.
const POLL: Duration = Duration::from_millis(500);

pub struct Running {
    thread: JoinHandle<Option<String>>,
}

impl Running {
    /// Waits for the engine to give its running jobs back; the reason it
    /// stopped early, if its store failed.
    pub fn join(self) -> Result<(), String> {
        match self.thread.join() {
            Ok(None) => Ok(()),
            Ok(Some(fatal)) => Err(fatal),
            Err(_) => Err("the job engine's thread panicked".into()),
        }
    }
}

pub fn start(app: Arc<App>, workers: Workers, stop: Arc<AtomicBool>) -> Running {
    let thread = std::thread::spawn(move || {
        let live = app.live.clone();
        let hub = Hub::start(
            &workers.devices,
            move |samples| live.gpu_sampled(samples),
            |info| eprintln!("vmatte: info: {info}"),
        );
        let config = (workers.engine)(hub.as_ref());
        let url = app.db.url().clone();
        let connect = move || queue::open(&url);
        let report =
            Engine::new(&config, &connect, &app.live, hub.as_ref(), stop).run(Feed::Queue {
                exit_when_idle: false,
                poll: POLL,
            });
        report.fatal
    });
    Running { thread }
}
