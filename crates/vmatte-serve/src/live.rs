//! What is happening now: the progress of the jobs this process runs (told
//! by the engine through [`Observer`]), GPU samples, and the job counts the
//! poller last saw. Each change goes out on one broadcast channel that the
//! event streams follow.
//!
//! ```text
//!  engine streams ─ started/progress ─► running ─┐
//!  GPU hub ─ samples ─► gpu (last 15 min) ───────┼─► broadcast ─► /api/events
//!  poller.rs ─ job changes ──────────────────────┘
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;
use vmatte_engine::lock;
use vmatte_engine::observer::{JobView, Observer};
use vmatte_engine::outcome::Outcome;
use vmatte_gpu::GpuSample;
use vmatte_jobs::JobRow;

/// GPU samples kept for a page that opens late (one a second per GPU).
const GPU_HISTORY: usize = 900;
/// A running job's progress is told at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One event of the stream: its name and its JSON.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: &'static str,
    pub data: String,
}

/// A running job's progress, as this process sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub id: i64,
    pub frames_done: u64,
    pub frames_total: Option<u64>,
    /// Frames per second since the attempt started.
    pub fps: f64,
    /// Seconds left at that rate.
    pub eta_s: Option<f64>,
    #[serde(skip)]
    started: Instant,
    #[serde(skip)]
    told: Option<Instant>,
}

#[derive(Clone)]
pub struct Live {
    inner: Arc<Inner>,
}

struct Inner {
    events: broadcast::Sender<Event>,
    running: Mutex<HashMap<i64, Progress>>,
    gpu: Mutex<VecDeque<GpuSample>>,
    /// Jobs by state at the last poll.
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Whether the last poll reached the store.
    store_ok: AtomicBool,
}

impl Live {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Inner {
                events,
                running: Mutex::default(),
                gpu: Mutex::default(),
                counts: Mutex::default(),
                store_ok: AtomicBool::new(true),
            }),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub fn send(&self, kind: &'static str, data: &impl Serialize) {
        let data = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        // No subscriber is not an error: nobody is watching.
        let _ = self.inner.events.send(Event { kind, data });
    }

    pub fn progress(&self, id: i64) -> Option<Progress> {
        lock(&self.inner.running).get(&id).cloned()
    }

    pub fn running(&self) -> Vec<Progress> {
        lock(&self.inner.running).values().cloned().collect()
    }

    pub fn gpu_samples(&self) -> Vec<GpuSample> {
        lock(&self.inner.gpu).iter().cloned().collect()
    }

    pub fn gpu_sampled(&self, samples: &[GpuSample]) {
        {
            let mut gpu = lock(&self.inner.gpu);
            for s in samples {
                if gpu.len() == GPU_HISTORY {
                    gpu.pop_front();
                }
                gpu.push_back(*s);
            }
        }
        self.send("gpu", &samples);
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.inner.counts).clone()
    }

    /// What the store held at the last poll (`None`: it could not be read).
    pub fn polled(&self, counts: Option<BTreeMap<&'static str, u64>>) {
        self.inner
            .store_ok
            .store(counts.is_some(), Ordering::Relaxed);
        if let Some(c) = counts {
            *lock(&self.inner.counts) = c;
        }
    }

    pub fn store_ok(&self) -> bool {
        self.inner.store_ok.load(Ordering::Relaxed)
    }
}

impl Observer for Live {
    fn started(&self, _label: &str, job: &JobRow) -> Box<dyn JobView> {
        let p = Progress {
            id: job.id,
            frames_done: 0,
            frames_total: None,
            fps: 0.0,
            eta_s: None,
            started: Instant::now(),
            told: None,
        };
        lock(&self.inner.running).insert(job.id, p);
        Box::new(View {
            live: self.clone(),
            id: job.id,
        })
    }

    fn settled(&self, _: &Outcome) {}

    fn note(&self, line: &str) {
        self.send("note", &json!({ "message": line }));
    }
}

/// One running job's progress reports.
struct View {
    live: Live,
    id: i64,
}

impl JobView for View {
    fn progress(&mut self, p: vmatte_pipeline::Progress) {
        let tell = {
            let mut running = lock(&self.live.inner.running);
            let Some(entry) = running.get_mut(&self.id) else {
                return;
            };
            let secs = entry.started.elapsed().as_secs_f64();
            entry.frames_done = p.frames_done;
            entry.frames_total = p.frames_total;
            entry.fps = if secs > 0.0 {
                p.frames_done as f64 / secs
            } else {
                0.0
            };
            entry.eta_s = match p.frames_total {
                Some(total) if entry.fps > 0.0 => {
                    Some(total.saturating_sub(p.frames_done) as f64 / entry.fps)
                }
                _ => None,
            };
            let due = entry.told.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
                || p.frames_total == Some(p.frames_done);
            if due {
                entry.told = Some(Instant::now());
            }
            due.then(|| entry.clone())
        };
        if let Some(entry) = tell {
            self.live.send("progress", &entry);
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        lock(&self.live.inner.running).remove(&self.id);
    }
}
