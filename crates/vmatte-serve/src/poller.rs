//! Every job's state as the store has it, polled (so jobs that remote
//! workers run, or that `vmatte submit` adds, show too): each change goes
//! out as an event, and a job that ended calls its webhook.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use vmatte_jobs::{JobRow, JobState};

use vmatte_engine::sleep_unless;

use crate::app::App;

const POLL: Duration = Duration::from_millis(500);

/// What of a job, when it changes, is worth telling: state, attempts,
/// error, finish time, outputs, and the frames its worker reported.
type Signature = (
    JobState,
    u32,
    Option<String>,
    Option<i64>,
    usize,
    Option<u64>,
);

fn signature(row: &JobRow) -> Signature {
    (
        row.state,
        row.attempts,
        row.error.clone(),
        row.finished_ms,
        row.outputs.len(),
        row.progress.map(|p| p.frames_done),
    )
}

/// Polls the store until `stop`: each job that changed goes out as a `job`
/// event, each that disappeared as `deleted`; a job that reached done or
/// failed calls its webhook.
pub fn start(app: Arc<App>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen: HashMap<i64, Signature> = HashMap::new();
        let mut first = true;
        while !stop.load(Ordering::Relaxed) {
            let jobs = app.db.with(|q| q.jobs());
            if jobs.is_err() {
                app.live.polled(None);
            }
            if let Ok(jobs) = jobs {
                let mut now = HashMap::with_capacity(jobs.len());
                for row in &jobs {
                    let sig = signature(row);
                    let before = seen.get(&row.id);
                    if before != Some(&sig) {
                        let view = crate::view::job(&app.live, row);
                        if !first {
                            app.live.send("job", &view);
                        }
                        let ended = matches!(row.state, JobState::Done | JobState::Failed);
                        let was_ended = before
                            .is_some_and(|b| matches!(b.0, JobState::Done | JobState::Failed));
                        if ended && (!was_ended || first) {
                            app.webhooks.ended(row.id, &view);
                        }
                    }
                    now.insert(row.id, sig);
                }
                for id in seen.keys().filter(|id| !now.contains_key(id)) {
                    app.live.send("deleted", &json!({ "id": id }));
                }
                app.live.polled(Some(JobState::counts(&jobs)));
                seen = now;
                first = false;
            }
            sleep_unless(|| stop.load(Ordering::Relaxed), POLL);
        }
    })
}
