//! The database layout and its upgrades, versioned by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

/// Each entry upgrades the schema from version `index` to `index + 1`;
/// new versions are appended, never edited, so every old store upgrades.
const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY,
        content_id       TEXT NOT NULL,
        settings_id      TEXT NOT NULL,
        input_path       TEXT NOT NULL,
        safe_name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
        settings_json    TEXT NOT NULL,
        state            TEXT NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'running', 'done', 'failed')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        error            TEXT,
        lease_owner      TEXT,
        lease_expires_ms INTEGER,
        created_ms       INTEGER NOT NULL,
        started_ms       INTEGER,
        finished_ms      INTEGER,
        frames           INTEGER,
        seconds          REAL,
        outputs_json     TEXT,
        UNIQUE (content_id, settings_id),
        CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_ms IS NOT NULL))
    );
    CREATE INDEX jobs_by_state ON jobs (state, id);",
    // v2: output sizes, to notice a deleted or damaged output on a rerun;
    // copies, inputs whose content another job already mattes (computed
    // once, each input gets its own outputs as links).
    "ALTER TABLE jobs ADD COLUMN output_bytes_json TEXT;
    CREATE TABLE copies (
        id                INTEGER PRIMARY KEY,
        job_id            INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        input_path        TEXT NOT NULL,
        safe_name         TEXT NOT NULL UNIQUE COLLATE NOCASE,
        outputs_json      TEXT,
        output_bytes_json TEXT,
        created_ms        INTEGER NOT NULL,
        linked_ms         INTEGER,
        UNIQUE (job_id, input_path)
    );",
    // v3: a running job's progress, reported with its lease renewals.
    "ALTER TABLE jobs ADD COLUMN frames_done INTEGER;
    ALTER TABLE jobs ADD COLUMN frames_total INTEGER;",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub enum Migrated {
    Ok,
    TooNew(i64),
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, so two
/// processes opening a fresh store at once cannot both create it.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    let version = user_version(conn)?;
    if version == SCHEMA_VERSION {
        return Ok(Migrated::Ok);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated.
    let version = user_version(&tx)?;
    if version > SCHEMA_VERSION {
        return Ok(Migrated::TooNew(version));
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(Migrated::Ok)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}
