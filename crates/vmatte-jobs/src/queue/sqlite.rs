//! The embedded store of one output folder as a [`JobQueue`], so
//! `vmatte worker --queue sqlite:OUTDIR` runs what `vmatte submit` queued
//! there. It keeps the last error of a job rather than every attempt, and
//! retries failures only when asked (`--retry-failed`): one machine, one
//! person watching.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::interface::{
    Attempt, JobQueue, NewJob, Submission, Submitted, Throughput, WorkerInfo, WorkerRow,
};
use crate::error::{Error, Result};
use crate::outputs::Outputs;
use crate::owner::owner_host_pid;
use crate::store::{Claim, CopyRow, JobRow, JobState, JobStore, Progress};
use crate::time::now_ms;

impl JobStore {
    fn with_outdir(&self, mut row: JobRow) -> JobRow {
        row.outdir = Some(self.outdir().to_path_buf());
        row
    }

    /// Whether `outdir` is this store's folder (recorded absolute).
    fn same_folder(&self, outdir: &Path) -> bool {
        std::fs::canonicalize(outdir).unwrap_or_else(|_| outdir.to_path_buf()) == self.outdir()
    }
}

impl JobQueue for JobStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path().display())
    }

    fn submit(&mut self, job: &NewJob) -> Result<Submission> {
        if !self.same_folder(job.outdir) {
            return Err(Error::OtherOutdir {
                path: self.path().to_path_buf(),
                outdir: self.outdir().to_path_buf(),
                asked: job.outdir.to_path_buf(),
            });
        }
        let (row, submitted, copy) = self.find_or_insert(
            job.input,
            job.content_id,
            job.settings_id,
            job.settings_json,
        )?;
        // A failed job is retried whichever of its inputs asks, a copy's
        // included (which stays a copy).
        let (row, submitted) = if row.state == JobState::Failed && job.retry_failed {
            let again = self.requeue_failed(row.id)?;
            match submitted {
                Submitted::Copy => (again, Submitted::Copy),
                _ => (again, Submitted::Requeued),
            }
        } else {
            (row, submitted)
        };
        Ok(Submission {
            job: self.with_outdir(row),
            submitted,
            copy,
        })
    }

    fn claim(
        &mut self,
        job_id: i64,
        owner: &str,
        lease: Duration,
        retry_failed: bool,
    ) -> Result<Claim> {
        let claim = JobStore::claim(self, job_id, owner, lease, retry_failed)?;
        Ok(match claim {
            Claim::Claimed(r) => Claim::Claimed(self.with_outdir(r)),
            Claim::AlreadyDone(r) => Claim::AlreadyDone(self.with_outdir(r)),
            Claim::Failed(r) => Claim::Failed(self.with_outdir(r)),
            Claim::Busy(r) => Claim::Busy(self.with_outdir(r)),
        })
    }

    fn redo(&mut self, job_id: i64) -> Result<JobRow> {
        let row = JobStore::redo(self, job_id)?;
        Ok(self.with_outdir(row))
    }

    fn copies(&mut self, job_id: Option<i64>) -> Result<Vec<CopyRow>> {
        JobStore::copies(self, job_id)
    }

    fn copy_linked(&mut self, copy_id: i64, outputs: &Outputs) -> Result<CopyRow> {
        JobStore::copy_linked(self, copy_id, outputs)
    }

    fn claim_next(&mut self, owner: &str, lease: Duration) -> Result<Option<JobRow>> {
        Ok(JobStore::claim_next(self, owner, lease, false)?.map(|row| self.with_outdir(row)))
    }

    fn heartbeat(&mut self, job_id: i64, owner: &str, lease: Duration) -> Result<bool> {
        JobStore::heartbeat(self, job_id, owner, lease)
    }

    fn report(&mut self, job_id: i64, owner: &str, progress: Progress) -> Result<bool> {
        JobStore::report(self, job_id, owner, progress)
    }

    fn complete(
        &mut self,
        job_id: i64,
        owner: &str,
        frames: u64,
        seconds: f64,
        outputs: &Outputs,
    ) -> Result<JobRow> {
        let row = JobStore::complete(self, job_id, owner, frames, seconds, outputs)?;
        Ok(self.with_outdir(row))
    }

    fn fail(&mut self, job_id: i64, owner: &str, error: &str, _: Duration) -> Result<JobRow> {
        let row = JobStore::fail(self, job_id, owner, error)?;
        Ok(self.with_outdir(row))
    }

    fn release(&mut self, job_id: i64, owner: &str) -> Result<JobRow> {
        let row = JobStore::release(self, job_id, owner)?;
        Ok(self.with_outdir(row))
    }

    fn cancel(&mut self, job_id: i64, reason: &str) -> Result<Option<JobRow>> {
        Ok(JobStore::cancel(self, job_id, reason)?.map(|r| self.with_outdir(r)))
    }

    fn retry(&mut self, job_id: i64) -> Result<Option<JobRow>> {
        if JobStore::job(self, job_id)?.is_none() {
            return Ok(None);
        }
        let row = self.requeue_failed(job_id)?;
        Ok(Some(self.with_outdir(row)))
    }

    fn delete(&mut self, job_id: i64) -> Result<Option<JobRow>> {
        Ok(JobStore::delete(self, job_id)?.map(|r| self.with_outdir(r)))
    }

    fn job(&mut self, job_id: i64) -> Result<Option<JobRow>> {
        Ok(JobStore::job(self, job_id)?.map(|r| self.with_outdir(r)))
    }

    fn jobs(&mut self) -> Result<Vec<JobRow>> {
        let rows = JobStore::jobs(self)?;
        Ok(rows.into_iter().map(|r| self.with_outdir(r)).collect())
    }

    fn unfinished(&mut self) -> Result<u64> {
        let rows = JobStore::jobs(self)?;
        Ok(rows
            .iter()
            .filter(|r| matches!(r.state, JobState::Queued | JobState::Running))
            .count() as u64)
    }

    fn attempts(&mut self) -> Result<Vec<Attempt>> {
        Ok(Vec::new())
    }

    fn worker_alive(&mut self, _: &WorkerInfo) -> Result<()> {
        Ok(())
    }

    fn worker_stopped(&mut self, _: &str) -> Result<()> {
        Ok(())
    }

    /// Workers are not registered in a SQLite store; its lease holders are
    /// the nearest thing.
    fn workers(&mut self) -> Result<Vec<WorkerRow>> {
        let now = now_ms();
        let mut by_owner: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for row in JobStore::jobs(self)? {
            if let (true, Some(owner)) = (row.lease_live(now), row.lease_owner) {
                by_owner.entry(owner).or_default().push(row.id);
            }
        }
        Ok(by_owner
            .into_iter()
            .map(|(id, running)| WorkerRow {
                host: owner_host_pid(&id)
                    .map(|(host, _)| host.to_string())
                    .unwrap_or_default(),
                pid: owner_host_pid(&id).map(|(_, pid)| pid).unwrap_or(0),
                id,
                devices: String::new(),
                started_ms: now,
                last_seen_ms: now,
                stopped_ms: None,
                jobs_done: 0,
                running,
            })
            .collect())
    }

    fn throughput(&mut self, window: Duration) -> Result<Throughput> {
        let since = now_ms() - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let rows = JobStore::jobs(self)?;
        let recent = rows
            .iter()
            .filter(|r| r.state == JobState::Done && r.finished_ms.is_some_and(|t| t > since));
        let (jobs, frames) = recent.fold((0, 0), |(j, f), r| (j + 1, f + r.frames.unwrap_or(0)));
        Ok(Throughput::new(window, jobs, frames))
    }
}
