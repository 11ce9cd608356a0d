//! The PostgreSQL queue: many workers on many machines, one database.
//!
//! Claims use `FOR UPDATE SKIP LOCKED`, so workers never wait on each other
//! and never both take one job. Leases and backoffs are computed with the
//! server's `now()`, so the workers' own clocks do not matter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::{Client, GenericClient, NoTls, Row, Transaction};

use super::interface::{
    backoff_after, Attempt, JobQueue, NewJob, Submission, Submitted, Throughput, WorkerInfo,
    WorkerRow,
};
use super::url::{PgUrl, TlsMode};
use crate::error::{Error, Result};
use crate::names::{names_on_disk, NameAllocator};
use crate::outputs::{bytes_json, paths_json, Outputs};
use crate::store::{Claim, CopyFor, CopyRow, JobRow, JobState, Progress};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Held while migrating, so workers starting together upgrade once.
const MIGRATION_LOCK: i64 = 0x766d_6174_7465; // "vmatte"

/// A timestamp column as unix milliseconds.
macro_rules! ms {
    ($col:literal) => {
        concat!("(extract(epoch from ", $col, ") * 1000)::bigint")
    };
}

const JOB_COLUMNS: &str = concat!(
    "id, outdir, content_id, settings_id, input_path, safe_name, settings_json, state, \
     attempts, max_attempts, error, lease_owner, frames, seconds, outputs_json, \
     output_bytes_json, frames_done, frames_total, ",
    ms!("lease_expires"),
    " AS lease_expires_ms, ",
    ms!("created"),
    " AS created_ms, ",
    ms!("started"),
    " AS started_ms, ",
    ms!("finished"),
    " AS finished_ms, ",
    ms!("not_before"),
    " AS not_before_ms"
);

/// `now() + ms milliseconds`, with the milliseconds as parameter `$n`.
macro_rules! after_ms {
    ($n:literal) => {
        concat!("now() + make_interval(secs => $", $n, "::float8 / 1000.0)")
    };
}

pub struct PgQueue {
    client: Client,
    shown: String,
}

impl PgQueue {
    /// Connects (with TLS as the URL asks) and brings the schema up to date.
    pub fn connect(url: &PgUrl) -> Result<Self> {
        let shown = url.redacted();
        let config: postgres::Config = url.client_config.parse().map_err(|e| Error::Postgres {
            queue: shown.clone(),
            detail: format!("{e}; check the URL"),
        })?;
        let connected = match url.tls {
            TlsMode::Disable => config.connect(NoTls),
            _ => config.connect(tls_connector(url, &shown)?),
        };
        let client = connected.map_err(|e| Error::Postgres {
            queue: shown.clone(),
            detail: format!(
                "cannot connect ({}); check that the server is up, the URL, the credentials \
                 and the TLS mode (sslmode=)",
                one_line(&e)
            ),
        })?;
        let mut queue = Self { client, shown };
        queue.migrate()?;
        Ok(queue)
    }

    fn migrate(&mut self) -> Result<()> {
        let shown = self.shown.clone();
        let db = |e: postgres::Error| pg_error(&shown, e);
        self.client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db)?;
        let ran = embedded::migrations::runner().run(&mut self.client);
        self.client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .map_err(db)?;
        ran.map_err(|e| Error::Postgres {
            queue: shown,
            detail: format!(
                "cannot create or upgrade the queue's tables ({e}); connect as a user who may \
                 create tables in this database, or upgrade vmatte if a newer one made them"
            ),
        })?;
        Ok(())
    }

    fn db(&self) -> impl Fn(postgres::Error) -> Error + '_ {
        |e| pg_error(&self.shown, e)
    }

    fn row(&mut self, job_id: i64) -> Result<JobRow> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let shown = self.shown.clone();
        match self.client.query_opt(&sql, &[&job_id]) {
            Ok(Some(row)) => job_row(&row),
            Ok(None) => Err(Error::NoSuchJob {
                store: shown,
                id: job_id,
            }),
            Err(e) => Err(pg_error(&shown, e)),
        }
    }

    /// Runs `f` in one transaction, committed only if it succeeds.
    fn write<T>(&mut self, f: impl FnOnce(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        let shown = self.shown.clone();
        let mut tx = self.client.transaction().map_err(|e| pg_error(&shown, e))?;
        let out = f(&mut tx)?;
        tx.commit().map_err(|e| pg_error(&shown, e))?;
        Ok(out)
    }

    /// The holder-only end of an attempt: `update` must touch the job's
    /// row, which it does only while `owner` holds it.
    fn end_attempt(
        &mut self,
        job_id: i64,
        owner: &str,
        outcome: &str,
        error: Option<&str>,
        update: impl FnOnce(&mut Transaction<'_>, i32, i32) -> Result<()>,
    ) -> Result<JobRow> {
        let shown = self.shown.clone();
        self.write(|tx| {
            let held = tx
                .query_opt(
                    "SELECT attempts, max_attempts FROM jobs \
                     WHERE id = $1 AND state = 'running' AND lease_owner = $2 FOR UPDATE",
                    &[&job_id, &owner],
                )
                .map_err(|e| pg_error(&shown, e))?;
            let Some(held) = held else {
                return Err(lost_or_missing(tx, &shown, job_id, owner));
            };
            let (attempts, max_attempts): (i32, i32) = (held.get(0), held.get(1));
            update(tx, attempts, max_attempts)?;
            tx.execute(
                "UPDATE job_attempts SET finished = now(), outcome = $3, error = $4 \
                 WHERE job_id = $1 AND worker = $2 AND finished IS NULL",
                &[&job_id, &owner, &outcome, &error],
            )
            .map_err(|e| pg_error(&shown, e))?;
            Ok(())
        })?;
        self.row(job_id)
    }
}

impl JobQueue for PgQueue {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn submit(&mut self, job: &NewJob) -> Result<Submission> {
        let input = std::fs::canonicalize(job.input).unwrap_or_else(|_| job.input.to_path_buf());
        let input_text = input.to_string_lossy().into_owned();
        let outdir = std::fs::canonicalize(job.outdir).unwrap_or_else(|_| job.outdir.to_path_buf());
        let outdir_text = outdir.to_string_lossy().into_owned();
        let on_disk = names_on_disk(&outdir).map_err(|source| Error::Io {
            path: outdir.clone(),
            source,
        })?;
        let max_attempts = i32::try_from(job.max_attempts.max(1)).unwrap_or(i32::MAX);
        let shown = self.shown.clone();
        let db = |e| pg_error(&shown, e);
        let (id, submitted, copy) = self.write(|tx| {
            // Submitters to one folder take turns, so two never pick the
            // same free name.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&outdir_text],
            )
            .map_err(db)?;
            let existing = tx
                .query_opt(
                    "SELECT id, input_path, state FROM jobs \
                     WHERE outdir = $1 AND content_id = $2 AND settings_id = $3",
                    &[&outdir_text, &job.content_id, &job.settings_id],
                )
                .map_err(db)?;
            let taken = |tx: &mut Transaction<'_>| -> Result<Vec<String>> {
                let mut names: Vec<String> = tx
                    .query(
                        "SELECT safe_name FROM jobs WHERE outdir = $1 \
                         UNION ALL SELECT safe_name FROM copies WHERE outdir = $1",
                        &[&outdir_text],
                    )
                    .map_err(db)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                names.extend(on_disk.iter().cloned());
                Ok(names)
            };
            if let Some(row) = existing {
                let (id, seen_at, state): (i64, String, String) =
                    (row.get(0), row.get(1), row.get(2));
                // A failed job is retried whichever of its inputs asks,
                // a copy's included.
                let retry = state == "failed" && job.retry_failed;
                if retry {
                    tx.execute(
                        "UPDATE jobs SET state = 'queued', attempts = 0, max_attempts = $2, \
                         not_before = now(), finished = NULL WHERE id = $1",
                        &[&id, &max_attempts],
                    )
                    .map_err(db)?;
                }
                if seen_at != input_text {
                    if Path::new(&seen_at).exists() {
                        let copy = pg_copy_for(
                            tx,
                            &shown,
                            id,
                            (&input, &input_text),
                            &outdir_text,
                            taken,
                        )?;
                        return Ok((id, Submitted::Copy, Some(copy)));
                    }
                    tx.execute(
                        "UPDATE jobs SET input_path = $2 WHERE id = $1",
                        &[&id, &input_text],
                    )
                    .map_err(db)?;
                }
                let submitted = if retry {
                    Submitted::Requeued
                } else {
                    Submitted::Known
                };
                return Ok((id, submitted, None));
            }
            let name = NameAllocator::new(taken(tx)?).allocate(&input);
            let row = tx
                .query_one(
                    "INSERT INTO jobs (outdir, content_id, settings_id, input_path, safe_name, \
                     settings_json, max_attempts) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     RETURNING id",
                    &[
                        &outdir_text,
                        &job.content_id,
                        &job.settings_id,
                        &input_text,
                        &name,
                        &job.settings_json,
                        &max_attempts,
                    ],
                )
                .map_err(db)?;
            Ok((row.get(0), Submitted::Queued, None))
        })?;
        Ok(Submission {
            job: self.row(id)?,
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
        let lease_ms = lease.as_secs_f64() * 1000.0;
        let shown = self.shown.clone();
        let db = |e| pg_error(&shown, e);
        let taken = self.write(|tx| {
            let row = tx
                .query_opt(
                    "SELECT state, lease_owner, coalesce(lease_expires > now(), false) \
                     FROM jobs WHERE id = $1 FOR UPDATE",
                    &[&job_id],
                )
                .map_err(db)?;
            let Some(row) = row else {
                return Err(Error::NoSuchJob {
                    store: shown.clone(),
                    id: job_id,
                });
            };
            let (state, holder, live): (String, Option<String>, bool) =
                (row.get(0), row.get(1), row.get(2));
            let mine = holder.as_deref() == Some(owner);
            let held = live && !holder.as_deref().is_some_and(crate::owner::holder_is_dead);
            match state.as_str() {
                "done" => return Ok(Some("done")),
                "failed" if !retry_failed => return Ok(Some("failed")),
                "running" if !mine && held => return Ok(Some("busy")),
                _ => {}
            }
            let extend = concat!(
                "UPDATE jobs SET lease_expires = ",
                after_ms!(2),
                " WHERE id = $1"
            );
            if state == "running" && mine {
                tx.execute(extend, &[&job_id, &lease_ms]).map_err(db)?;
                return Ok(None);
            }
            if state == "running" {
                tx.execute(
                    "UPDATE job_attempts SET finished = now(), outcome = 'lost', \
                     error = 'its worker stopped renewing its lease' \
                     WHERE job_id = $1 AND finished IS NULL",
                    &[&job_id],
                )
                .map_err(db)?;
            }
            let attempt: i32 = tx
                .query_one(
                    concat!(
                        "UPDATE jobs SET state = 'running', lease_owner = $3, lease_expires = ",
                        after_ms!(2),
                        ", attempts = attempts + 1, started = now(), finished = NULL, \
                         error = NULL, frames_done = NULL, frames_total = NULL \
                         WHERE id = $1 RETURNING attempts"
                    ),
                    &[&job_id, &lease_ms, &owner],
                )
                .map_err(db)?
                .get(0);
            tx.execute(
                "INSERT INTO job_attempts (job_id, attempt, worker) VALUES ($1, $2, $3)",
                &[&job_id, &attempt, &owner],
            )
            .map_err(db)?;
            Ok(None)
        })?;
        let row = self.row(job_id)?;
        Ok(match taken {
            Some("done") => Claim::AlreadyDone(row),
            Some("failed") => Claim::Failed(row),
            Some(_) => Claim::Busy(row),
            None => Claim::Claimed(row),
        })
    }

    fn redo(&mut self, job_id: i64) -> Result<JobRow> {
        self.client
            .execute(
                "UPDATE jobs SET state = 'queued', finished = NULL, outputs_json = NULL, \
                 output_bytes_json = NULL, not_before = now() WHERE id = $1 AND state = 'done'",
                &[&job_id],
            )
            .map_err(self.db())?;
        self.row(job_id)
    }

    fn copies(&mut self, job_id: Option<i64>) -> Result<Vec<CopyRow>> {
        select_copies(&mut self.client, job_id).map_err(self.db())
    }

    fn copy_linked(&mut self, copy_id: i64, outputs: &Outputs) -> Result<CopyRow> {
        let (paths, bytes) = (paths_json(outputs), bytes_json(outputs));
        let sql = format!(
            "UPDATE copies SET outputs_json = $2, output_bytes_json = $3, linked = now() \
             WHERE id = $1 RETURNING {COPY_COLUMNS}"
        );
        let row = self
            .client
            .query_one(&sql, &[&copy_id, &paths, &bytes])
            .map_err(self.db())?;
        Ok(copy_row(&row))
    }

    fn claim_next(&mut self, owner: &str, lease: Duration) -> Result<Option<JobRow>> {
        let lease_ms = lease.as_secs_f64() * 1000.0;
        let shown = self.shown.clone();
        let db = |e| pg_error(&shown, e);
        let claimed: Option<i64> = self.write(|tx| {
            free_expired_leases(tx).map_err(db)?;
            let row = tx
                .query_opt(
                    concat!(
                        "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires = ",
                        after_ms!(2),
                        ", attempts = attempts + 1, started = now(), finished = NULL, \
                         frames_done = NULL, frames_total = NULL \
                         WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                         AND not_before <= now() ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                         RETURNING id, attempts"
                    ),
                    &[&owner, &lease_ms],
                )
                .map_err(db)?;
            let Some(row) = row else { return Ok(None) };
            let (id, attempt): (i64, i32) = (row.get(0), row.get(1));
            tx.execute(
                "INSERT INTO job_attempts (job_id, attempt, worker) VALUES ($1, $2, $3)",
                &[&id, &attempt, &owner],
            )
            .map_err(db)?;
            Ok(Some(id))
        })?;
        claimed.map(|id| self.row(id)).transpose()
    }

    fn heartbeat(&mut self, job_id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let lease_ms = lease.as_secs_f64() * 1000.0;
        let n = self
            .client
            .execute(
                concat!(
                    "UPDATE jobs SET lease_expires = ",
                    after_ms!(3),
                    " WHERE id = $1 AND state = 'running' AND lease_owner = $2"
                ),
                &[&job_id, &owner, &lease_ms],
            )
            .map_err(self.db())?;
        Ok(n == 1)
    }

    fn report(&mut self, job_id: i64, owner: &str, progress: Progress) -> Result<bool> {
        let (done, total) = progress.columns();
        let n = self
            .client
            .execute(
                "UPDATE jobs SET frames_done = $3, frames_total = $4 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2",
                &[&job_id, &owner, &done, &total],
            )
            .map_err(self.db())?;
        Ok(n == 1)
    }

    fn complete(
        &mut self,
        job_id: i64,
        owner: &str,
        frames: u64,
        seconds: f64,
        outputs: &Outputs,
    ) -> Result<JobRow> {
        let (paths, bytes) = (paths_json(outputs), bytes_json(outputs));
        let frames = i64::try_from(frames).unwrap_or(i64::MAX);
        let shown = self.shown.clone();
        self.end_attempt(job_id, owner, "done", None, |tx, _, _| {
            tx.execute(
                "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_expires = NULL, \
                 finished = now(), frames = $2, seconds = $3, outputs_json = $4, \
                 output_bytes_json = $5, error = NULL WHERE id = $1",
                &[&job_id, &frames, &seconds, &paths, &bytes],
            )
            .map_err(|e| pg_error(&shown, e))?;
            tx.execute(
                "UPDATE workers SET jobs_done = jobs_done + 1 WHERE id = split_part($1, '/', 1)",
                &[&owner],
            )
            .map_err(|e| pg_error(&shown, e))?;
            Ok(())
        })
    }

    fn fail(&mut self, job_id: i64, owner: &str, error: &str, backoff: Duration) -> Result<JobRow> {
        let shown = self.shown.clone();
        self.end_attempt(job_id, owner, "failed", Some(error), |tx, attempts, max| {
            let attempts_u = u32::try_from(attempts).unwrap_or(0);
            let wait_ms = backoff_after(attempts_u, backoff).as_secs_f64() * 1000.0;
            let (state, message) = if attempts >= max {
                (
                    "failed",
                    format!("{error} (gave up after {attempts} attempts)"),
                )
            } else {
                ("queued", error.to_string())
            };
            tx.execute(
                concat!(
                    "UPDATE jobs SET state = $2, lease_owner = NULL, lease_expires = NULL, \
                     finished = CASE WHEN $2 = 'failed' THEN now() END, error = $3, \
                     not_before = ",
                    after_ms!(4),
                    " WHERE id = $1"
                ),
                &[&job_id, &state, &message, &wait_ms],
            )
            .map_err(|e| pg_error(&shown, e))?;
            Ok(())
        })
    }

    fn release(&mut self, job_id: i64, owner: &str) -> Result<JobRow> {
        let shown = self.shown.clone();
        self.end_attempt(job_id, owner, "released", None, |tx, _, _| {
            // A release is not the job's fault: it gets the attempt back.
            tx.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires = NULL, \
                 attempts = attempts - 1, not_before = now() WHERE id = $1",
                &[&job_id],
            )
            .map_err(|e| pg_error(&shown, e))?;
            Ok(())
        })
    }

    fn cancel(&mut self, job_id: i64, reason: &str) -> Result<Option<JobRow>> {
        let shown = self.shown.clone();
        let db = |e| pg_error(&shown, e);
        self.write(|tx| {
            tx.execute(
                "UPDATE job_attempts SET finished = now(), outcome = 'failed', error = $2 \
                 WHERE job_id = $1 AND finished IS NULL \
                 AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND state = 'running')",
                &[&job_id, &reason],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires = NULL, \
                 finished = now(), error = $2 WHERE id = $1 AND state IN ('queued', 'running')",
                &[&job_id, &reason],
            )
            .map_err(db)?;
            Ok(())
        })?;
        self.job(job_id)
    }

    fn retry(&mut self, job_id: i64) -> Result<Option<JobRow>> {
        self.client
            .execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, not_before = now(), \
                 finished = NULL, error = NULL WHERE id = $1 AND state = 'failed'",
                &[&job_id],
            )
            .map_err(self.db())?;
        self.job(job_id)
    }

    fn delete(&mut self, job_id: i64) -> Result<Option<JobRow>> {
        let sql = format!(
            "DELETE FROM jobs WHERE id = $1 AND state <> 'running' RETURNING {JOB_COLUMNS}"
        );
        let deleted = self.client.query_opt(&sql, &[&job_id]).map_err(self.db())?;
        match deleted {
            Some(row) => Ok(Some(job_row(&row)?)),
            None => self.job(job_id),
        }
    }

    fn job(&mut self, job_id: i64) -> Result<Option<JobRow>> {
        match self.row(job_id) {
            Ok(row) => Ok(Some(row)),
            Err(Error::NoSuchJob { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn jobs(&mut self) -> Result<Vec<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id");
        let rows = self.client.query(&sql, &[]).map_err(self.db())?;
        rows.iter().map(job_row).collect()
    }

    fn unfinished(&mut self) -> Result<u64> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')",
                &[],
            )
            .map_err(self.db())?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    fn attempts(&mut self) -> Result<Vec<Attempt>> {
        let sql = concat!(
            "SELECT job_id, attempt, worker, outcome, error, ",
            ms!("started"),
            ", ",
            ms!("finished"),
            " FROM job_attempts ORDER BY job_id, id"
        );
        let rows = self.client.query(sql, &[]).map_err(self.db())?;
        Ok(rows
            .iter()
            .map(|r| Attempt {
                job_id: r.get(0),
                attempt: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                worker: r.get(2),
                outcome: r.get(3),
                error: r.get(4),
                started_ms: r.get(5),
                finished_ms: r.get(6),
            })
            .collect())
    }

    fn worker_alive(&mut self, w: &WorkerInfo) -> Result<()> {
        let pid = i32::try_from(w.pid).unwrap_or(i32::MAX);
        self.client
            .execute(
                "INSERT INTO workers (id, host, pid, devices) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET last_seen = now()",
                &[&w.id, &w.host, &pid, &w.devices],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn worker_stopped(&mut self, worker_id: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE workers SET stopped = now(), last_seen = now() WHERE id = $1",
                &[&worker_id],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn workers(&mut self) -> Result<Vec<WorkerRow>> {
        let sql = concat!(
            "SELECT w.id, w.host, w.pid, w.devices, w.jobs_done, ",
            ms!("w.started"),
            ", ",
            ms!("w.last_seen"),
            ", ",
            ms!("w.stopped"),
            ", coalesce(array_agg(j.id ORDER BY j.id) FILTER (WHERE j.id IS NOT NULL), '{}') \
             FROM workers w LEFT JOIN jobs j \
             ON j.state = 'running' AND split_part(j.lease_owner, '/', 1) = w.id \
             WHERE w.last_seen > now() - interval '1 day' \
             GROUP BY w.id ORDER BY w.started"
        );
        let rows = self.client.query(sql, &[]).map_err(self.db())?;
        Ok(rows
            .iter()
            .map(|r| WorkerRow {
                id: r.get(0),
                host: r.get(1),
                pid: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                devices: r.get(3),
                jobs_done: r.get::<_, i64>(4).max(0) as u64,
                started_ms: r.get(5),
                last_seen_ms: r.get(6),
                stopped_ms: r.get(7),
                running: r.get(8),
            })
            .collect())
    }

    fn throughput(&mut self, window: Duration) -> Result<Throughput> {
        let window_s = window.as_secs_f64();
        let row = self
            .client
            .query_one(
                "SELECT count(*), coalesce(sum(frames), 0)::bigint FROM jobs \
                 WHERE state = 'done' AND finished > now() - make_interval(secs => $1)",
                &[&window_s],
            )
            .map_err(self.db())?;
        let (jobs, frames): (i64, i64) = (row.get(0), row.get(1));
        Ok(Throughput::new(
            window,
            jobs.max(0) as u64,
            frames.max(0) as u64,
        ))
    }
}

/// Frees the jobs of workers that stopped renewing their leases: queued
/// again at once, or failed for good when that was their last attempt.
fn free_expired_leases(tx: &mut Transaction<'_>) -> std::result::Result<(), postgres::Error> {
    let expired = tx.query(
        "SELECT id, lease_owner, attempts, max_attempts FROM jobs \
         WHERE state = 'running' AND lease_expires < now() ORDER BY id FOR UPDATE SKIP LOCKED",
        &[],
    )?;
    for row in expired {
        let (id, owner, attempts, max): (i64, String, i32, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let why = format!(
            "worker {owner} stopped renewing its lease (it was killed, crashed or lost the network)"
        );
        tx.execute(
            "UPDATE job_attempts SET finished = now(), outcome = 'lost', error = $3 \
             WHERE job_id = $1 AND worker = $2 AND finished IS NULL",
            &[&id, &owner, &why],
        )?;
        if attempts >= max {
            let why = format!("{why} (gave up after {attempts} attempts)");
            tx.execute(
                "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires = NULL, \
                 finished = now(), error = $2 WHERE id = $1",
                &[&id, &why],
            )?;
        } else {
            tx.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires = NULL, \
                 not_before = now(), error = $2 WHERE id = $1",
                &[&id, &why],
            )?;
        }
    }
    Ok(())
}

fn lost_or_missing(tx: &mut Transaction<'_>, shown: &str, job_id: i64, owner: &str) -> Error {
    match tx.query_opt("SELECT 1 FROM jobs WHERE id = $1", &[&job_id]) {
        Ok(Some(_)) => Error::LeaseLost {
            store: shown.to_string(),
            id: job_id,
            owner: owner.to_string(),
        },
        Ok(None) => Error::NoSuchJob {
            store: shown.to_string(),
            id: job_id,
        },
        Err(e) => pg_error(shown, e),
    }
}

fn job_row(row: &Row) -> Result<JobRow> {
    let state: String = row.get("state");
    let state = match state.as_str() {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "done" => JobState::Done,
        _ => JobState::Failed,
    };
    let outputs = crate::store::json_map(row.get("outputs_json"));
    let count = |v: i32| u32::try_from(v).unwrap_or(0);
    Ok(JobRow {
        id: row.get("id"),
        content_id: row.get("content_id"),
        settings_id: row.get("settings_id"),
        input_path: PathBuf::from(row.get::<_, String>("input_path")),
        safe_name: row.get("safe_name"),
        settings_json: row.get("settings_json"),
        state,
        attempts: count(row.get("attempts")),
        error: row.get("error"),
        lease_owner: row.get("lease_owner"),
        lease_expires_ms: row.get("lease_expires_ms"),
        created_ms: row.get("created_ms"),
        started_ms: row.get("started_ms"),
        finished_ms: row.get("finished_ms"),
        frames: row.get::<_, Option<i64>>("frames").map(|f| f.max(0) as u64),
        seconds: row.get("seconds"),
        progress: Progress::of(row.get("frames_done"), row.get("frames_total")),
        outputs,
        output_bytes: crate::store::json_map(row.get("output_bytes_json")),
        outdir: Some(PathBuf::from(row.get::<_, String>("outdir"))),
        max_attempts: Some(count(row.get("max_attempts"))),
        not_before_ms: row.get("not_before_ms"),
    })
}

const COPY_COLUMNS: &str = concat!(
    "id, job_id, input_path, safe_name, outputs_json, output_bytes_json, ",
    ms!("created"),
    " AS created_ms, ",
    ms!("linked"),
    " AS linked_ms"
);

fn copy_row(row: &Row) -> CopyRow {
    CopyRow {
        id: row.get("id"),
        job_id: row.get("job_id"),
        input_path: PathBuf::from(row.get::<_, String>("input_path")),
        safe_name: row.get("safe_name"),
        outputs: crate::store::json_map(row.get("outputs_json")),
        output_bytes: crate::store::json_map(row.get("output_bytes_json")),
        created_ms: row.get("created_ms"),
        linked_ms: row.get("linked_ms"),
    }
}

/// The copy of job `job_id` for `input` (see the SQLite store's `copy_for`).
fn pg_copy_for(
    tx: &mut Transaction<'_>,
    shown: &str,
    job_id: i64,
    (input, input_text): (&Path, &str),
    outdir_text: &str,
    taken: impl FnOnce(&mut Transaction<'_>) -> Result<Vec<String>>,
) -> Result<CopyRow> {
    let db = |e| pg_error(shown, e);
    let copies = select_copies(tx, Some(job_id)).map_err(db)?;
    match CopyFor::pick(&copies, input_text) {
        CopyFor::Known(c) => return Ok(c),
        CopyFor::Moved(c) => {
            tx.execute(
                "UPDATE copies SET input_path = $2 WHERE id = $1",
                &[&c.id, &input_text],
            )
            .map_err(db)?;
            return Ok(c);
        }
        CopyFor::New => {}
    }
    let name = NameAllocator::new(taken(tx)?).allocate(input);
    let sql = format!(
        "INSERT INTO copies (job_id, outdir, input_path, safe_name) VALUES ($1, $2, $3, $4) \
         RETURNING {COPY_COLUMNS}"
    );
    let row = tx
        .query_one(&sql, &[&job_id, &outdir_text, &input_text, &name])
        .map_err(db)?;
    Ok(copy_row(&row))
}

/// The copies of `job_id`, or of every job, oldest first.
fn select_copies(
    client: &mut impl GenericClient,
    job_id: Option<i64>,
) -> Result<Vec<CopyRow>, postgres::Error> {
    let sql = format!(
        "SELECT {COPY_COLUMNS} FROM copies WHERE $1::bigint IS NULL OR job_id = $1 ORDER BY id"
    );
    Ok(client
        .query(&sql, &[&job_id])?
        .iter()
        .map(copy_row)
        .collect())
}

fn tls_connector(url: &PgUrl, shown: &str) -> Result<postgres_native_tls::MakeTlsConnector> {
    let tls_error = |what: String| Error::Postgres {
        queue: shown.to_string(),
        detail: what,
    };
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &url.root_cert {
        let pem = std::fs::read(path).map_err(|e| {
            tls_error(format!(
                "cannot read sslrootcert {} ({e}); check the path",
                path.display()
            ))
        })?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            tls_error(format!(
                "sslrootcert {} is not a PEM certificate ({e})",
                path.display()
            ))
        })?;
        builder.add_root_certificate(cert);
    }
    match url.tls {
        // As libpq: encrypted, but any certificate is accepted.
        TlsMode::Prefer | TlsMode::Require => {
            builder.danger_accept_invalid_certs(true);
        }
        TlsMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        TlsMode::VerifyFull | TlsMode::Disable => {}
    }
    let connector = builder
        .build()
        .map_err(|e| tls_error(format!("cannot set up TLS ({e})")))?;
    Ok(postgres_native_tls::MakeTlsConnector::new(connector))
}

fn pg_error(shown: &str, e: postgres::Error) -> Error {
    Error::Postgres {
        queue: shown.to_string(),
        detail: format!(
            "{}; check that the server is reachable and the queue's tables are intact",
            one_line(&e)
        ),
    }
}

/// The error and its causes on one line (the server's message is in the
/// source of tokio-postgres' "db error").
fn one_line(e: &postgres::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ").replace('\n', " ")
}
