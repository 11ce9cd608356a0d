//! The queue's interface and vocabulary, shared by its two stores: what
//! a job to enqueue is, what submitting made of it, what `vmatte status`
//! shows of attempts, workers and throughput, and the [`JobQueue`] trait.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::outputs::Outputs;
pub use crate::store::Submitted;
use crate::store::{Claim, CopyRow, JobRow, Progress};

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob<'a> {
    pub input: &'a Path,
    pub outdir: &'a Path,
    pub content_id: &'a str,
    pub settings_id: &'a str,
    pub settings_json: &'a str,
    /// Attempts before a failure is final.
    pub max_attempts: u32,
    /// Give a job that already failed a fresh set of attempts.
    pub retry_failed: bool,
}

/// What [`JobQueue::submit`] made of an input: its job, and the copy when
/// the input is a second name for content the job already covers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Submission {
    pub job: JobRow,
    pub submitted: Submitted,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyRow>,
}

/// One claim of a job and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    pub job_id: i64,
    pub attempt: u32,
    pub worker: String,
    #[serde(rename = "started", serialize_with = "crate::store::time")]
    pub started_ms: i64,
    #[serde(rename = "finished", serialize_with = "crate::store::opt_time")]
    pub finished_ms: Option<i64>,
    /// done, failed, lost or released; none while it runs.
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// A worker process as the queue last heard from it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub devices: String,
    #[serde(rename = "started", serialize_with = "crate::store::time")]
    pub started_ms: i64,
    #[serde(rename = "last_seen", serialize_with = "crate::store::time")]
    pub last_seen_ms: i64,
    #[serde(rename = "stopped", serialize_with = "crate::store::opt_time")]
    pub stopped_ms: Option<i64>,
    pub jobs_done: u64,
    /// Jobs it holds a lease on now.
    pub running: Vec<i64>,
}

/// Work finished in the last `window_s` seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    pub window_s: u64,
    pub jobs: u64,
    pub frames: u64,
    pub jobs_per_hour: f64,
    pub frames_per_s: f64,
}

impl Throughput {
    pub fn new(window: Duration, jobs: u64, frames: u64) -> Self {
        let s = window.as_secs_f64().max(1.0);
        Self {
            window_s: window.as_secs(),
            jobs,
            frames,
            jobs_per_hour: jobs as f64 * 3600.0 / s,
            frames_per_s: frames as f64 / s,
        }
    }
}

/// Who is asking, for `vmatte status`.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub devices: String,
}

/// The operations every queue offers. Each connection is one `JobQueue`;
/// threads that need their own transactions (a heartbeat) open their own.
pub trait JobQueue: Send {
    /// The queue's location, safe to print.
    fn describe(&self) -> String;

    /// Enqueues a job with a fresh output name unique in its folder, or
    /// finds the one already there for this content and these settings (a
    /// copy of it when the content arrives under a second name).
    fn submit(&mut self, job: &NewJob) -> Result<Submission>;

    /// Claims the oldest job that is free, for `owner`, until `lease` from
    /// now; jobs whose holders stopped renewing are freed first.
    fn claim_next(&mut self, owner: &str, lease: Duration) -> Result<Option<JobRow>>;

    /// Tries to take job `job_id` for `owner` until `lease` from now: a
    /// queued job, a running one whose lease ran out or whose holder on
    /// this host is gone, and with `retry_failed` a failed one.
    fn claim(
        &mut self,
        job_id: i64,
        owner: &str,
        lease: Duration,
        retry_failed: bool,
    ) -> Result<Claim>;

    /// Renews `owner`'s lease; `false` means the job is no longer its own.
    fn heartbeat(&mut self, job_id: i64, owner: &str, lease: Duration) -> Result<bool>;

    /// Records how far `owner`'s running job is; `false` means the job is
    /// no longer its own.
    fn report(&mut self, job_id: i64, owner: &str, progress: Progress) -> Result<bool>;

    /// Marks the job done with what it produced; only its lease holder may.
    fn complete(
        &mut self,
        job_id: i64,
        owner: &str,
        frames: u64,
        seconds: f64,
        outputs: &Outputs,
    ) -> Result<JobRow>;

    /// Queues a done job again: its outputs are gone or damaged.
    fn redo(&mut self, job_id: i64) -> Result<JobRow>;

    /// The copies of `job_id` (every job's, for `None`).
    fn copies(&mut self, job_id: Option<i64>) -> Result<Vec<CopyRow>>;

    /// Records the outputs a copy was given.
    fn copy_linked(&mut self, copy_id: i64, outputs: &Outputs) -> Result<CopyRow>;

    /// Records a failed attempt: queued again after `backoff` (doubled per
    /// earlier attempt) while attempts remain, failed for good after.
    fn fail(&mut self, job_id: i64, owner: &str, error: &str, backoff: Duration) -> Result<JobRow>;

    /// Gives the job back without spending an attempt (the worker was asked
    /// to stop).
    fn release(&mut self, job_id: i64, owner: &str) -> Result<JobRow>;

    /// Stops a queued or running job for good: failed with `reason`, its
    /// lease ended (a worker running it sees its lease refused and stops).
    /// A done or failed job is left as it is. `None`: no such job.
    fn cancel(&mut self, job_id: i64, reason: &str) -> Result<Option<JobRow>>;

    /// Queues a failed job again with a fresh set of attempts; a job in
    /// another state is left as it is. `None`: no such job.
    fn retry(&mut self, job_id: i64) -> Result<Option<JobRow>>;

    /// Forgets a job that is not running, with its copies; the row as it
    /// was. Its files are the caller's to remove. `None`: no such job.
    /// A running job is left as it is (cancel it first).
    fn delete(&mut self, job_id: i64) -> Result<Option<JobRow>>;

    /// Every job, oldest first.
    fn jobs(&mut self) -> Result<Vec<JobRow>>;

    /// One job, if there is one of that id.
    fn job(&mut self, job_id: i64) -> Result<Option<JobRow>>;

    /// Queued (including waiting out a backoff) or running jobs.
    fn unfinished(&mut self) -> Result<u64>;

    /// Every attempt of every job, where the queue keeps them.
    fn attempts(&mut self) -> Result<Vec<Attempt>>;

    /// Announces (or re-announces, as a heartbeat) a worker process.
    fn worker_alive(&mut self, worker: &WorkerInfo) -> Result<()>;

    fn worker_stopped(&mut self, worker_id: &str) -> Result<()>;

    /// Workers seen recently, with what they hold.
    fn workers(&mut self) -> Result<Vec<WorkerRow>>;

    fn throughput(&mut self, window: Duration) -> Result<Throughput>;
}

/// The retry delay after `attempts` tries: `base`, doubled per earlier
/// attempt, at most ten minutes.
pub fn backoff_after(attempts: u32, base: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (base * (1u32 << doublings)).min(Duration::from_secs(600).max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff_after(1, base), Duration::from_secs(30));
        assert_eq!(backoff_after(2, base), Duration::from_secs(60));
        assert_eq!(backoff_after(3, base), Duration::from_secs(120));
        assert_eq!(backoff_after(40, base), Duration::from_secs(600));
    }
}
