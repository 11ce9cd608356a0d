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
    /// What is held, under one lock so a renewal's verdict can only land
    /// on the holding it was made for.
    state: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Job id to the owner holding it, and which holding that is.
    owners: BTreeMap<i64, (String, u64)>,
    /// Held jobs whose lease another owner has taken.
    lost: BTreeSet<i64>,
    /// Numbers the holdings, so a verdict on one never lands on a later one.
    next: u64,
}

impl Leases {
    /// Starts renewing `job` for `owner`: a fresh holding, never lost yet.
    pub fn hold(&self, job: i64, owner: &str) {
        let mut held = lock(&self.state);
        held.next += 1;
        let holding = held.next;
        held.owners.insert(job, (owner.to_string(), holding));
        held.lost.remove(&job);
    }

    /// Stops renewing `job`; whether it was lost meanwhile.
    pub fn release(&self, job: i64) -> bool {
        let mut held = lock(&self.state);
        held.owners.remove(&job);
        held.lost.remove(&job)
    }

    fn held(&self) -> BTreeMap<i64, (String, u64)> {
        lock(&self.state).owners.clone()
    }

    /// A renewal of `job` was refused: lost, if that holding is still the
    /// one (not released, or taken up again, meanwhile).
    fn refused(&self, job: i64, holding: u64) {
        let mut held = lock(&self.state);
        if held.owners.get(&job).is_some_and(|(_, h)| *h == holding) {
            held.lost.insert(job);
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
            for (job, (owner, holding)) in self.held() {
                match queue.heartbeat(job, &owner, lease) {
                    Ok(true) => {}
                    Ok(false) => self.refused(job, holding),
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
