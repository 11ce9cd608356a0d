//! One lease keeper per run: every job a stream holds has its lease renewed
//! from one connection of its own, so a long video never loses its job,
//! and a job another process took over (this one stalled) is noticed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vmatte_jobs::queue::WorkerInfo;

use crate::observer::Observer;
use crate::sync::{lock, Connect};

#[derive(Default)]
pub struct Leases {
    /// Job id to the owner holding it.
    held: Mutex<BTreeMap<i64, String>>,
    /// Held jobs whose lease another owner has taken.
    lost: Mutex<BTreeSet<i64>>,
}

impl Leases {
    pub fn hold(&self, job: i64, owner: &str) {
        lock(&self.held).insert(job, owner.to_string());
    }

    /// Stops renewing `job`; whether it was lost meanwhile.
    pub fn release(&self, job: i64) -> bool {
        lock(&self.held).remove(&job);
        lock(&self.lost).remove(&job)
    }

    pub fn held(&self) -> BTreeMap<i64, String> {
        lock(&self.held).clone()
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
            for (job, owner) in self.held() {
                match queue.heartbeat(job, &owner, lease) {
                    Ok(true) => {}
                    Ok(false) => {
                        lock(&self.lost).insert(job);
                    }
                    Err(e) => trouble = Some(format!("job {job}: cannot renew its lease: {e}")),
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
