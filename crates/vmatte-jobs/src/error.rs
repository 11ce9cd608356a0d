//! Job store failures, each one line that names the database and the fix.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{path}: the job store stayed locked by another vmatte process; \
         wait for it to finish (or stop it) and run again"
    )]
    Locked { path: PathBuf },

    #[error(
        "{path}: the job store is damaged ({detail}); move it aside and run again \
         (finished inputs will then be matted again)"
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "{path}: written by a newer vmatte (job store schema {found}, this vmatte knows \
         up to {known}); upgrade vmatte or use another output folder"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("{path}: no job store here; run `vmatte batch INPUT... -o OUTDIR` first")]
    Missing { path: PathBuf },

    #[error(
        "{path}: the disk holding the job store is full; free some space and run again \
         (what was finished is kept)"
    )]
    Full { path: PathBuf },

    #[error("{path}: {source}; check that the output folder exists and is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{store}: there is no job {id}")]
    NoSuchJob { store: String, id: i64 },

    #[error(
        "{store}: job {id} is no longer held by {owner} (its lease ran out and another \
         worker took it over); this worker must stop working on it"
    )]
    LeaseLost {
        store: String,
        id: i64,
        owner: String,
    },

    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// A `--queue` value that names no queue vmatte can open.
    #[error("{given}: {why}")]
    QueueUrl { given: String, why: String },

    /// A PostgreSQL failure; `queue` is the URL with its password hidden.
    #[error("{queue}: {detail}")]
    Postgres { queue: String, detail: String },

    #[error(
        "{path}: a SQLite queue holds the jobs of its own output folder only ({outdir}), \
         not of {asked}; use -o {outdir}, or a PostgreSQL queue for many folders"
    )]
    OtherOutdir {
        path: PathBuf,
        outdir: PathBuf,
        asked: PathBuf,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The job is no longer this holder's: another took its lease, or it
    /// was cancelled, or deleted.
    pub fn job_gone(&self) -> bool {
        matches!(self, Self::LeaseLost { .. } | Self::NoSuchJob { .. })
    }

    /// A file-system error at `path`; a full disk is told as such.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        if source.kind() == io::ErrorKind::StorageFull {
            Self::Full { path }
        } else {
            Self::Io { path, source }
        }
    }

    /// Sorts SQLite's error codes into the few cases a user can act on.
    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Self::Locked { path },
            Some(ErrorCode::DiskFull) => Self::Full { path },
            // A full disk can also surface as an I/O error, or as a file
            // that looks damaged because its journal could not be made:
            // never advise moving a store aside when space is the cause.
            Some(
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase | ErrorCode::SystemIoFailure,
            ) if disk_full_at(&path) => Self::Full { path },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Self::Corrupt {
                path,
                detail: source.to_string(),
            },
            _ => Self::Sqlite { path, source },
        }
    }
}

/// Whether the file system holding `path` cannot take the 64 KiB a store
/// needs to work (its write-ahead log and shared-memory index), tried by
/// writing that much beside it.
fn disk_full_at(path: &Path) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    let probe = dir.join(format!(".space-probe-{}", std::process::id()));
    let wrote = std::fs::write(&probe, vec![0u8; 64 << 10]);
    let _ = std::fs::remove_file(&probe);
    matches!(wrote, Err(e) if e.kind() == io::ErrorKind::StorageFull)
}
