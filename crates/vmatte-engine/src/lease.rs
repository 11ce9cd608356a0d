//! One lease keeper per run: every job a stream holds has its lease renewed
//! from one connection of its own, so a long video never loses its job,
//! and a job another process took over (this one stalled) is noticed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmatte_jobs::queue::WorkerInfo;
use vmatte_jobs::Progress;

use crate::observer::Observer;
use crate::sync::{lock, Connect};

#[derive(Default)]
pub struct Leases {
    /// What is held, under one lock so a renewal's verdict can only land
    /// on the holding it was made for.
    state: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// By job id.
    jobs: BTreeMap<i64, Holding>,
    /// Numbers the holdings, so a verdict on one never lands on a later one.
    next: u64,
}

struct Holding {
    owner: String,
    number: u64,
    /// The job's lease was refused: another owner took it, or the job was
    /// cancelled or deleted. Also the running job's stop flag, so that it
    /// stops at its next chunk instead of making what nobody will keep.
    lost: Arc<AtomicBool>,
    /// How far the job is (set by its stream), reported with the renewals.
    progress: Arc<Mutex<Option<Progress>>>,
    /// What was last reported, so an unchanged figure is not written again.
    reported: Option<Progress>,
}

/// A holding as its stream sees it: the flag set if the job is lost, and
/// where its progress goes.
pub struct Handle {
    pub lost: Arc<AtomicBool>,
    pub progress: Arc<Mutex<Option<Progress>>>,
}

impl Leases {
    /// Starts renewing `job` for `owner`: a fresh holding, never lost yet.
    pub fn hold(&self, job: i64, owner: &str) -> Handle {
        let mut held = lock(&self.state);
        held.next += 1;
        let handle = Handle {
            lost: Arc::new(AtomicBool::new(false)),
            progress: Arc::default(),
        };
        let holding = Holding {
            owner: owner.to_string(),
            number: held.next,
            lost: handle.lost.clone(),
            progress: handle.progress.clone(),
            reported: None,
        };
        held.jobs.insert(job, holding);
        handle
    }

    /// Stops renewing `job`; whether it was lost meanwhile.
    pub fn release(&self, job: i64) -> bool {
        lock(&self.state)
            .jobs
            .remove(&job)
            .is_some_and(|h| h.lost.load(Ordering::Relaxed))
    }

    /// Each held job with its owner, holding number, and its progress when
    /// it changed since it was last reported.
    fn held(&self) -> Vec<(i64, String, u64, Option<Progress>)> {
        let held = lock(&self.state);
        held.jobs
            .iter()
            .map(|(job, h)| {
                let now = *lock(&h.progress);
                let changed = now.filter(|p| Some(*p) != h.reported);
                (*job, h.owner.clone(), h.number, changed)
            })
            .collect()
    }

    /// `progress` of that holding is in the store.
    fn reported(&self, job: i64, holding: u64, progress: Progress) {
        if let Some(h) = lock(&self.state).jobs.get_mut(&job) {
            if h.number == holding {
                h.reported = Some(progress);
            }
        }
    }

    /// A renewal of `job` was refused: lost, if that holding is still the
    /// one (not released, or taken up again, meanwhile).
    fn refused(&self, job: i64, holding: u64) {
        if let Some(h) = lock(&self.state).jobs.get_mut(&job) {
            if h.number == holding {
                h.lost.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Renews every held lease (and the worker's presence) every sixth of
    /// `lease` until `done`. A renewal that fails (the database briefly out
    /// of reach, or restarted) is said once per outage, and the next round
    /// connects afresh: the lease has five more chances.
    pub fn keep(
        &self,
        connect: &Connect<'_>,
        lease: Duration,
        worker: Option<&WorkerInfo>,
        done: &AtomicBool,
        observer: &dyn Observer,
    ) {
        let mut queue = None;
        let mut last = Instant::now();
        let mut failing = false;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            if last.elapsed() < lease / 6 {
                continue;
            }
            last = Instant::now();
            if queue.is_none() {
                match connect() {
                    Ok(q) => queue = Some(q),
                    Err(e) => {
                        if !failing {
                            failing = true;
                            observer.note(&format!("warning: cannot renew leases: {e}"));
                        }
                        continue;
                    }
                }
            }
            let Some(queue) = queue.as_mut() else {
                continue;
            };
            let mut trouble = None;
            if let Some(w) = worker {
                if let Err(e) = queue.worker_alive(w) {
                    trouble = Some(e.to_string());
                }
            }
            for (job, owner, holding, progress) in self.held() {
                match queue.heartbeat(job, &owner, lease) {
                    Ok(true) => {}
                    Ok(false) => self.refused(job, holding),
                    Err(e) => trouble = Some(format!("job {job}: cannot renew its lease: {e}")),
                }
                // Progress is for people watching: a failed report is
                // tried again with the next renewal, never a reason to stop.
                if let Some(p) = progress {
                    if let Ok(true) = queue.report(job, &owner, p) {
                        self.reported(job, holding, p);
                    }
                }
            }
            match trouble {
                Some(why) if !failing => {
                    failing = true;
                    observer.note(&format!("warning: {why}"));
                }
                Some(_) => {}
                None => failing = false,
            }
            if failing {
                // A connection that failed is not trusted again.
                *queue = match connect() {
                    Ok(q) => q,
                    Err(_) => continue,
                };
            }
        }
    }
}
