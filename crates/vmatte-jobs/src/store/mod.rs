//! `OUTDIR/.vmatte/jobs.db`: which inputs are queued, running, done or
//! failed, shared by every vmatte process writing to OUTDIR.
//!
//! Work is handed out through leases: `claim` gives a job to one owner
//! until a deadline, the owner's `heartbeat` pushes the deadline on, and a
//! job whose owner died (no heartbeat before the deadline) is claimed again
//! by the next process that asks. Every writer runs in one `BEGIN
//! IMMEDIATE` transaction, so two processes never both see a job as free.
//! Leases compare wall clocks, so all workers must share one machine (SQLite
//! on a network file system is unsafe anyway).

mod row;
mod schema;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

pub(crate) use row::{json_map, opt_time, time, CopyFor};
pub use row::{Claim, CopyRow, JobRow, JobState, Progress, Submitted};
pub use schema::SCHEMA_VERSION;

use crate::error::{Error, Result};
use crate::names::{names_on_disk, NameAllocator};
use crate::outputs::{bytes_json, paths_json, Outputs};
use crate::time::now_ms;

/// A failure inside a transaction: SQLite's, given the store's path on the
/// way out, or one of ours.
enum Fail {
    Db(rusqlite::Error),
    Job(Error),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Self::Job(e)
    }
}

type TxResult<T> = std::result::Result<T, Fail>;

/// How long a writer waits for another process's transaction before
/// giving up with [`Error::Locked`]; transactions here take milliseconds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `OUTDIR/.vmatte/jobs.db`.
pub fn store_path(outdir: &Path) -> PathBuf {
    outdir.join(".vmatte").join("jobs.db")
}

/// One connection to the job store. Each process (or thread that needs its
/// own transactions, such as a heartbeat thread) opens its own.
pub struct JobStore {
    conn: Connection,
    path: PathBuf,
    outdir: PathBuf,
}

impl JobStore {
    /// Opens the store of `outdir`, creating it (and `outdir`) if needed.
    ///
    /// A new store is built whole under a name of its own and then linked
    /// into place, which fails if another process got there first: so two
    /// processes starting on a fresh folder both end up in the same store,
    /// and a `jobs.db` that exists but is empty can only be damage.
    pub fn open(outdir: &Path) -> Result<Self> {
        let path = store_path(outdir);
        let dir = path.parent().expect("store path has a folder");
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if !path.exists() {
            create(&path)?;
        }
        Self::open_existing(outdir)
    }

    /// Opens an existing store (for `vmatte status`), never creating one.
    pub fn open_existing(outdir: &Path) -> Result<Self> {
        let path = store_path(outdir);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                return Err(Error::Corrupt {
                    path,
                    detail: "the file is empty".into(),
                })
            }
            Ok(meta) if meta.is_file() => {}
            _ => return Err(Error::Missing { path }),
        }
        let flags = OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE;
        // A process creating or upgrading the store holds it for a moment,
        // and switching to WAL does not wait on SQLite's busy handler.
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match Self::connect(outdir, path.clone(), flags) {
                Err(Error::Locked { .. }) if started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn connect(outdir: &Path, path: PathBuf, flags: OpenFlags) -> Result<Self> {
        let db = |e| Error::sqlite(&path, e);
        let mut conn = Connection::open_with_flags(&path, flags).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // WAL lets `status` read while workers write, and a killed writer
        // leaves only an uncommitted tail that the next open discards.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Corrupt {
                path: path.clone(),
                detail: format!("cannot switch to WAL (journal mode stays '{mode}')"),
            });
        }
        // In WAL mode NORMAL survives any process crash; only a power cut
        // can lose the last commits, never corrupt the file.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        match schema::migrate(&mut conn).map_err(db)? {
            schema::Migrated::Ok => {}
            schema::Migrated::TooNew(found) => {
                return Err(Error::TooNew {
                    path,
                    found,
                    known: SCHEMA_VERSION,
                })
            }
        }
        // Absolute, so that the outputs it records name the same files
        // from any working folder (the folder exists: the store is in it).
        let outdir = fs::canonicalize(outdir).unwrap_or_else(|_| outdir.to_path_buf());
        Ok(Self { conn, path, outdir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn outdir(&self) -> &Path {
        &self.outdir
    }

    /// Replaces [`BUSY_TIMEOUT`] for this connection.
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.conn
            .busy_timeout(timeout)
            .map_err(|e| Error::sqlite(&self.path, e))
    }

    /// The job for this content under these settings: the existing one (its
    /// `input_path` updated if the content moved), or a new queued job with
    /// a freshly allocated output name.
    ///
    /// Enqueue a batch's inputs in a fixed order (sorted absolute paths) so
    /// that colliding names are numbered the same way on every machine.
    pub fn enqueue(
        &mut self,
        input: &Path,
        content_id: &str,
        settings_id: &str,
        settings_json: &str,
    ) -> Result<JobRow> {
        self.find_or_insert(input, content_id, settings_id, settings_json)
            .map(|(row, _, _)| row)
    }

    /// [`JobStore::enqueue`], also saying what it found: a new job, the
    /// job already there, or (another input with the job's content that
    /// is still where it was) a copy of the job with a name of its own.
    pub(crate) fn find_or_insert(
        &mut self,
        input: &Path,
        content_id: &str,
        settings_id: &str,
        settings_json: &str,
    ) -> Result<(JobRow, Submitted, Option<CopyRow>)> {
        let input = fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf());
        let input_text = input.to_string_lossy().into_owned();
        // Outside the transaction: the folder is not transactional anyway,
        // and listing it should not hold the write lock.
        let on_disk = names_on_disk(&self.outdir).map_err(|source| Error::Io {
            path: self.outdir.clone(),
            source,
        })?;
        self.write(|tx| {
            let existing: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, input_path FROM jobs WHERE content_id = ?1 AND settings_id = ?2",
                    params![content_id, settings_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let taken = |tx: &Transaction<'_>| -> rusqlite::Result<Vec<String>> {
                let mut names: Vec<String> = tx
                    .prepare("SELECT safe_name FROM jobs UNION ALL SELECT safe_name FROM copies")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                names.extend(on_disk.iter().cloned());
                Ok(names)
            };
            if let Some((id, seen_at)) = existing {
                if seen_at == input_text {
                    return Ok((id, Submitted::Known, None));
                }
                // Follow a file that moved; a second copy of content that is
                // still where it was does not take the job over.
                if !Path::new(&seen_at).exists() {
                    tx.execute(
                        "UPDATE jobs SET input_path = ?2 WHERE id = ?1",
                        params![id, input_text],
                    )?;
                    return Ok((id, Submitted::Known, None));
                }
                let copy = copy_for(tx, id, &input, &input_text, taken)?;
                return Ok((id, Submitted::Copy, Some(copy)));
            }
            let name = NameAllocator::new(taken(tx)?).allocate(&input);
            tx.execute(
                "INSERT INTO jobs (content_id, settings_id, input_path, safe_name, settings_json, \
                 state, attempts, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6)",
                params![
                    content_id,
                    settings_id,
                    input_text,
                    name,
                    settings_json,
                    now_ms()
                ],
            )?;
            Ok((tx.last_insert_rowid(), Submitted::Queued, None))
        })
        .and_then(|(id, how, copy)| Ok((self.require(id)?, how, copy)))
    }

    /// Tries to take job `job_id` for `owner` until `lease` from now.
    ///
    /// A queued job, a running one whose lease ran out (its holder died) or,
    /// with `retry_failed`, a failed one is claimed and its `attempts`
    /// counted; `owner`'s own running job just gets a fresh lease.
    pub fn claim(
        &mut self,
        job_id: i64,
        owner: &str,
        lease: Duration,
        retry_failed: bool,
    ) -> Result<Claim> {
        let path = self.path.clone();
        self.write(|tx| claim_in(tx, &path, job_id, owner, lease, retry_failed))
    }

    /// Claims the oldest job that is free to take (see [`JobStore::claim`]),
    /// or `None` when every job is done, failed or held by a live lease.
    pub fn claim_next(
        &mut self,
        owner: &str,
        lease: Duration,
        retry_failed: bool,
    ) -> Result<Option<JobRow>> {
        let path = self.path.clone();
        self.write(|tx| {
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM jobs WHERE state = 'queued' \
                     OR (state = 'running' AND lease_expires_ms <= ?1) \
                     OR (?2 AND state = 'failed') ORDER BY id LIMIT 1",
                    params![now_ms(), retry_failed],
                    |r| r.get(0),
                )
                .optional()?;
            match id {
                Some(id) => match claim_in(tx, &path, id, owner, lease, retry_failed)? {
                    Claim::Claimed(row) => Ok(Some(row)),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        })
    }

    /// Extends `owner`'s lease on `job_id` to `lease` from now. `false`
    /// means another owner has taken the job over (or it is no longer
    /// running): stop working on it and discard the result.
    ///
    /// A lease that ran out but that nobody took over is still the owner's,
    /// so a worker that was merely slow carries on.
    pub fn heartbeat(&mut self, job_id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let until = deadline(lease);
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE jobs SET lease_expires_ms = ?3 \
                 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![job_id, owner, until],
            )?;
            Ok(changed == 1)
        })
    }

    /// Records how far `owner`'s running job is; `false` when it is no
    /// longer theirs.
    pub fn report(&mut self, job_id: i64, owner: &str, progress: Progress) -> Result<bool> {
        let (done, total) = progress.columns();
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE jobs SET frames_done = ?3, frames_total = ?4 \
                 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![job_id, owner, done, total],
            )?;
            Ok(changed == 1)
        })
    }

    /// Marks the job done, with what it produced; only its lease holder may.
    pub fn complete(
        &mut self,
        job_id: i64,
        owner: &str,
        frames: u64,
        seconds: f64,
        outputs: &Outputs,
    ) -> Result<JobRow> {
        let (paths, bytes) = (paths_json(outputs), bytes_json(outputs));
        let frames = i64::try_from(frames).unwrap_or(i64::MAX);
        self.finish(job_id, owner, |tx| {
            tx.execute(
                "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_expires_ms = NULL, \
                 finished_ms = ?3, frames = ?4, seconds = ?5, outputs_json = ?6, \
                 output_bytes_json = ?7, error = NULL \
                 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![job_id, owner, now_ms(), frames, seconds, paths, bytes],
            )
        })
    }

    /// Queues a done job again because its outputs are gone or damaged; a
    /// job in any other state is left as it is.
    pub fn redo(&mut self, job_id: i64) -> Result<JobRow> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET state = 'queued', finished_ms = NULL, outputs_json = NULL, \
                 output_bytes_json = NULL WHERE id = ?1 AND state = 'done'",
                params![job_id],
            )?;
            Ok(())
        })?;
        self.require(job_id)
    }

    /// The copies of `job_id`, or of every job, oldest first.
    pub fn copies(&self, job_id: Option<i64>) -> Result<Vec<CopyRow>> {
        select_copies(&self.conn, job_id).map_err(|e| Error::sqlite(&self.path, e))
    }

    /// Records the outputs a copy was given.
    pub fn copy_linked(&mut self, copy_id: i64, outputs: &Outputs) -> Result<CopyRow> {
        let (paths, bytes) = (paths_json(outputs), bytes_json(outputs));
        self.write(|tx| {
            tx.execute(
                "UPDATE copies SET outputs_json = ?2, output_bytes_json = ?3, linked_ms = ?4 \
                 WHERE id = ?1",
                params![copy_id, paths, bytes, now_ms()],
            )?;
            Ok(())
        })?;
        select_copy(&self.conn, copy_id).map_err(|e| Error::sqlite(&self.path, e))
    }

    /// Marks the job failed with `error`; only its lease holder may.
    pub fn fail(&mut self, job_id: i64, owner: &str, error: &str) -> Result<JobRow> {
        self.finish(job_id, owner, |tx| {
            tx.execute(
                "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires_ms = NULL, \
                 finished_ms = ?3, error = ?4 \
                 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![job_id, owner, now_ms(), error],
            )
        })
    }

    /// Queues a failed job again (`--retry-failed` on a SQLite queue); a job
    /// in any other state is left as it is.
    pub fn requeue_failed(&mut self, job_id: i64) -> Result<JobRow> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET state = 'queued', finished_ms = NULL, error = NULL \
                 WHERE id = ?1 AND state = 'failed'",
                params![job_id],
            )?;
            Ok(())
        })?;
        self.require(job_id)
    }

    /// Puts the job back in the queue without counting it as failed (the
    /// user interrupted the run); only its lease holder may.
    pub fn release(&mut self, job_id: i64, owner: &str) -> Result<JobRow> {
        self.finish(job_id, owner, |tx| {
            tx.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_ms = NULL \
                 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![job_id, owner],
            )
        })
    }

    /// Fails a queued or running job with `reason` and ends its lease; a
    /// job in another state is left as it is.
    pub fn cancel(&mut self, job_id: i64, reason: &str) -> Result<Option<JobRow>> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires_ms = NULL, \
                 finished_ms = ?2, error = ?3 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![job_id, now_ms(), reason],
            )?;
            Ok(())
        })?;
        self.job(job_id)
    }

    /// Forgets a job that is not running (and its copies): the row as it
    /// was deleted (read in the same transaction), or as it is when it runs.
    pub fn delete(&mut self, job_id: i64) -> Result<Option<JobRow>> {
        let row = self.write(|tx| {
            let row = select_row(tx, job_id)?;
            if row.as_ref().is_some_and(|r| r.state != JobState::Running) {
                tx.execute("DELETE FROM copies WHERE job_id = ?1", params![job_id])?;
                tx.execute("DELETE FROM jobs WHERE id = ?1", params![job_id])?;
            }
            Ok(row)
        })?;
        Ok(row)
    }

    pub fn job(&self, job_id: i64) -> Result<Option<JobRow>> {
        select_row(&self.conn, job_id).map_err(|e| Error::sqlite(&self.path, e))
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        let db = |e| Error::sqlite(&self.path, e);
        let sql = format!("SELECT {} FROM jobs ORDER BY id", JobRow::COLUMNS);
        let mut stmt = self.conn.prepare(&sql).map_err(db)?;
        let rows = stmt.query_map([], JobRow::from_row).map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// `PRAGMA integrity_check`, as [`Error::Corrupt`] unless it says ok.
    pub fn check_integrity(&self) -> Result<()> {
        let db = |e| Error::sqlite(&self.path, e);
        let mut stmt = self.conn.prepare("PRAGMA integrity_check").map_err(db)?;
        let report: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?;
        if report == ["ok"] {
            Ok(())
        } else {
            Err(Error::Corrupt {
                path: self.path.clone(),
                detail: report.join("; "),
            })
        }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: the write lock is
    /// taken up front, so a read-then-write can never be overtaken by
    /// another process between the two.
    fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> TxResult<T>) -> Result<T> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(&path, e))?;
        // Dropping `tx` on an error rolls it back.
        let out = f(&tx).map_err(|fail| match fail {
            Fail::Db(e) => Error::sqlite(&path, e),
            Fail::Job(e) => e,
        })?;
        tx.commit().map_err(|e| Error::sqlite(&path, e))?;
        Ok(out)
    }

    /// A holder-only state change: `update` touches one row, or the caller
    /// does not hold the job.
    fn finish(
        &mut self,
        job_id: i64,
        owner: &str,
        update: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<usize>,
    ) -> Result<JobRow> {
        let path = self.path.clone();
        self.write(|tx| {
            if update(tx)? == 1 {
                return Ok(());
            }
            Err(match select_row(tx, job_id)? {
                None => Error::NoSuchJob {
                    store: path.display().to_string(),
                    id: job_id,
                },
                Some(_) => Error::LeaseLost {
                    store: path.display().to_string(),
                    id: job_id,
                    owner: owner.to_string(),
                },
            }
            .into())
        })?;
        self.require(job_id)
    }

    fn require(&self, job_id: i64) -> Result<JobRow> {
        self.job(job_id)?.ok_or_else(|| Error::NoSuchJob {
            store: self.path.display().to_string(),
            id: job_id,
        })
    }
}

/// Builds a new store at `path`: made whole (schema, WAL) under a name of
/// this process's own, then hard-linked into place. Linking never replaces
/// an existing file, so of two processes creating it one wins and the
/// other opens the winner's.
fn create(path: &Path) -> Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let fresh = path.with_file_name(format!(".jobs.db.{}-{n}.new", std::process::id()));
    // Errors name the store the user knows, not the name it is built under.
    let db = |e| Error::sqlite(path, e);
    let made = (|| -> Result<()> {
        let mut conn = Connection::open(&fresh).map_err(db)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(db)?;
        schema::migrate(&mut conn).map_err(db)?;
        // Closing checkpoints the WAL into the file, which is then whole.
        conn.close().map_err(|(_, e)| db(e))?;
        match fs::hard_link(&fresh, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A file system without hard links: move it instead, unless
            // another process has made the store meanwhile.
            Err(_) if !path.exists() => fs::rename(&fresh, path).map_err(|e| Error::io(path, e)),
            Err(e) => Err(Error::io(path, e)),
        }
    })();
    for leftover in ["", "-wal", "-shm"] {
        let mut name = fresh.clone().into_os_string();
        name.push(leftover);
        let _ = fs::remove_file(name);
    }
    made
}

fn claim_in(
    tx: &Transaction<'_>,
    path: &Path,
    job_id: i64,
    owner: &str,
    lease: Duration,
    retry_failed: bool,
) -> TxResult<Claim> {
    let now = now_ms();
    let row = select_row(tx, job_id)?.ok_or_else(|| Error::NoSuchJob {
        store: path.display().to_string(),
        id: job_id,
    })?;
    match row.state {
        JobState::Done => return Ok(Claim::AlreadyDone(row)),
        JobState::Failed if !retry_failed => return Ok(Claim::Failed(row)),
        JobState::Running if row.lease_owner.as_deref() == Some(owner) => {
            tx.execute(
                "UPDATE jobs SET lease_expires_ms = ?2 WHERE id = ?1",
                params![job_id, deadline(lease)],
            )?;
        }
        JobState::Running
            if row.lease_live(now)
                && !row
                    .lease_owner
                    .as_deref()
                    .is_some_and(crate::owner::holder_is_dead) =>
        {
            return Ok(Claim::Busy(row))
        }
        _ => {
            tx.execute(
                "UPDATE jobs SET state = 'running', lease_owner = ?2, lease_expires_ms = ?3, \
                 attempts = attempts + 1, started_ms = ?4, finished_ms = NULL, error = NULL, \
                 frames_done = NULL, frames_total = NULL WHERE id = ?1",
                params![job_id, owner, deadline(lease), now],
            )?;
        }
    }
    let row = select_row(tx, job_id)?.ok_or_else(|| Error::NoSuchJob {
        store: path.display().to_string(),
        id: job_id,
    })?;
    Ok(Claim::Claimed(row))
}

/// The copy of job `job_id` for `input`: the one already there (moved
/// here if its input went away), or a new one named from `input`.
fn copy_for(
    tx: &Transaction<'_>,
    job_id: i64,
    input: &Path,
    input_text: &str,
    taken: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<Vec<String>>,
) -> TxResult<CopyRow> {
    let copies = select_copies(tx, Some(job_id))?;
    match CopyFor::pick(&copies, input_text) {
        CopyFor::Known(c) => return Ok(c),
        CopyFor::Moved(c) => {
            tx.execute(
                "UPDATE copies SET input_path = ?2 WHERE id = ?1",
                params![c.id, input_text],
            )?;
            return Ok(c);
        }
        CopyFor::New => {}
    }
    let name = NameAllocator::new(taken(tx)?).allocate(input);
    tx.execute(
        "INSERT INTO copies (job_id, input_path, safe_name, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![job_id, input_text, name, now_ms()],
    )?;
    Ok(select_copy(tx, tx.last_insert_rowid())?)
}

/// The copies of `job_id`, or of every job, oldest first.
fn select_copies(conn: &Connection, job_id: Option<i64>) -> rusqlite::Result<Vec<CopyRow>> {
    let sql = format!(
        "SELECT {} FROM copies WHERE ?1 IS NULL OR job_id = ?1 ORDER BY id",
        CopyRow::COLUMNS
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([job_id], CopyRow::from_row)?;
    rows.collect()
}

fn select_copy(conn: &Connection, copy_id: i64) -> rusqlite::Result<CopyRow> {
    let sql = format!("SELECT {} FROM copies WHERE id = ?1", CopyRow::COLUMNS);
    conn.query_row(&sql, [copy_id], CopyRow::from_row)
}

fn select_row(conn: &Connection, job_id: i64) -> rusqlite::Result<Option<JobRow>> {
    let sql = format!("SELECT {} FROM jobs WHERE id = ?1", JobRow::COLUMNS);
    conn.query_row(&sql, [job_id], JobRow::from_row).optional()
}

fn deadline(lease: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}
