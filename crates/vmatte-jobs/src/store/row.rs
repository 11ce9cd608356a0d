//! One job as read from the store, and what a claim on it found.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::Row;
use serde::{Serialize, Serializer};

use crate::outputs::Outputs;
use crate::time::rfc3339_ms;

/// How far a running job is, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub frames_done: u64,
    pub frames_total: Option<u64>,
}

impl Progress {
    /// From the store's columns (none until the first report).
    pub(crate) fn of(done: Option<i64>, total: Option<i64>) -> Option<Self> {
        done.map(|d| Self {
            frames_done: d.max(0) as u64,
            frames_total: total.map(|t| t.max(0) as u64),
        })
    }

    /// As the store's columns.
    pub(crate) fn columns(self) -> (i64, Option<i64>) {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (int(self.frames_done), self.frames_total.map(int))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    /// Every state, in a job's order.
    pub const ALL: [Self; 4] = [Self::Queued, Self::Running, Self::Done, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// The state named `s` (as [`Self::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// How many of `jobs` are in each state, every state named (0 when
    /// none is).
    pub fn counts(jobs: &[JobRow]) -> BTreeMap<&'static str, u64> {
        let mut counts: BTreeMap<&'static str, u64> =
            Self::ALL.into_iter().map(|s| (s.as_str(), 0)).collect();
        for j in jobs {
            *counts.entry(j.state.as_str()).or_default() += 1;
        }
        counts
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `jobs`. As JSON (`vmatte status --json`) times are RFC 3339
/// strings without the `_ms` suffix and the settings are inlined as JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub content_id: String,
    pub settings_id: String,
    /// Where the content was last seen; informational, the content is the
    /// identity.
    pub input_path: PathBuf,
    pub safe_name: String,
    #[serde(rename = "settings", serialize_with = "inline_json")]
    pub settings_json: String,
    pub state: JobState,
    /// How many times the job was claimed.
    pub attempts: u32,
    pub error: Option<String>,
    pub lease_owner: Option<String>,
    #[serde(rename = "lease_expires", serialize_with = "opt_time")]
    pub lease_expires_ms: Option<i64>,
    #[serde(rename = "created", serialize_with = "time")]
    pub created_ms: i64,
    #[serde(rename = "started", serialize_with = "opt_time")]
    pub started_ms: Option<i64>,
    #[serde(rename = "finished", serialize_with = "opt_time")]
    pub finished_ms: Option<i64>,
    pub frames: Option<u64>,
    /// A running job's progress as its holder last reported it (with its
    /// lease renewals), so that processes other than the one running it
    /// can show it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub seconds: Option<f64>,
    /// Output kind (`alpha`, `composite`, ...) to path.
    pub outputs: BTreeMap<String, PathBuf>,
    /// Output kind to its size when the job finished (empty for jobs done
    /// before sizes were kept).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output_bytes: BTreeMap<String, u64>,
    /// Where the outputs go. A SQLite store serves the folder it lives in;
    /// a PostgreSQL queue keeps it per job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outdir: Option<PathBuf>,
    /// After this many attempts a failure is final (PostgreSQL queues; a
    /// SQLite store retries only on `--retry-failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// A job waiting out its retry backoff is not claimed before this.
    #[serde(
        rename = "not_before",
        serialize_with = "opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before_ms: Option<i64>,
}

impl JobRow {
    /// Its outputs, with their recorded sizes.
    pub fn outputs(&self) -> Outputs {
        Outputs {
            paths: self.outputs.clone(),
            bytes: self.output_bytes.clone(),
        }
    }

    pub(crate) const COLUMNS: &'static str = "id, content_id, settings_id, input_path, safe_name, \
        settings_json, state, attempts, error, lease_owner, lease_expires_ms, created_ms, \
        started_ms, finished_ms, frames, seconds, outputs_json, output_bytes_json, frames_done, \
        frames_total";

    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let state: String = row.get("state")?;
        let state = JobState::parse(&state).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(
                6,
                format!("state '{state}'"),
                rusqlite::types::Type::Text,
            )
        })?;
        let outputs: Option<String> = row.get("outputs_json")?;
        let outputs = match outputs {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(16, rusqlite::types::Type::Text, e.into())
            })?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            id: row.get("id")?,
            content_id: row.get("content_id")?,
            settings_id: row.get("settings_id")?,
            input_path: PathBuf::from(row.get::<_, String>("input_path")?),
            safe_name: row.get("safe_name")?,
            settings_json: row.get("settings_json")?,
            state,
            attempts: row.get("attempts")?,
            error: row.get("error")?,
            lease_owner: row.get("lease_owner")?,
            lease_expires_ms: row.get("lease_expires_ms")?,
            created_ms: row.get("created_ms")?,
            started_ms: row.get("started_ms")?,
            finished_ms: row.get("finished_ms")?,
            frames: row
                .get::<_, Option<i64>>("frames")?
                .map(|f| f.max(0) as u64),
            seconds: row.get("seconds")?,
            progress: Progress::of(row.get("frames_done")?, row.get("frames_total")?),
            outputs,
            output_bytes: json_map(row.get("output_bytes_json")?),
            outdir: None,
            max_attempts: None,
            not_before_ms: None,
        })
    }

    /// Whether a running job's holder is still within its lease at `now_ms`;
    /// a running job whose lease ran out is up for grabs.
    pub fn lease_live(&self, now_ms: i64) -> bool {
        self.state == JobState::Running && self.lease_expires_ms.is_some_and(|t| t > now_ms)
    }
}

/// An input whose content a job of the same folder and settings already
/// mattes: the work is done once, and the copy gets the job's outputs under
/// its own name (see [`crate::outputs::link_as`]) once the job is done.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CopyRow {
    pub id: i64,
    /// The job whose outputs it takes.
    pub job_id: i64,
    pub input_path: PathBuf,
    pub safe_name: String,
    /// Empty until linked.
    pub outputs: BTreeMap<String, PathBuf>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output_bytes: BTreeMap<String, u64>,
    #[serde(rename = "created", serialize_with = "time")]
    pub created_ms: i64,
    #[serde(rename = "linked", serialize_with = "opt_time")]
    pub linked_ms: Option<i64>,
}

impl CopyRow {
    pub(crate) const COLUMNS: &'static str = "id, job_id, input_path, safe_name, outputs_json, \
        output_bytes_json, created_ms, linked_ms";

    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            job_id: row.get("job_id")?,
            input_path: PathBuf::from(row.get::<_, String>("input_path")?),
            safe_name: row.get("safe_name")?,
            outputs: json_map(row.get("outputs_json")?),
            output_bytes: json_map(row.get("output_bytes_json")?),
            created_ms: row.get("created_ms")?,
            linked_ms: row.get("linked_ms")?,
        })
    }

    pub fn outputs(&self) -> Outputs {
        Outputs {
            paths: self.outputs.clone(),
            bytes: self.output_bytes.clone(),
        }
    }
}

/// What a job's existing copies mean for a new input of its content.
pub(crate) enum CopyFor {
    /// This input's copy is already there.
    Known(CopyRow),
    /// A copy whose input went away now follows this input (it moved).
    Moved(CopyRow),
    /// A new copy is needed.
    New,
}

impl CopyFor {
    /// The same rule for every store: a copy is matched by its input's
    /// path, and one whose input no longer exists is taken over.
    pub(crate) fn pick(copies: &[CopyRow], input_text: &str) -> Self {
        if let Some(c) = copies
            .iter()
            .find(|c| c.input_path == Path::new(input_text))
        {
            return Self::Known(c.clone());
        }
        match copies.iter().find(|c| !c.input_path.exists()) {
            Some(c) => Self::Moved(CopyRow {
                input_path: PathBuf::from(input_text),
                ..c.clone()
            }),
            None => Self::New,
        }
    }
}

/// `outputs_json` or `output_bytes_json` as read back; text that does not
/// parse reads as none, so the outputs are checked and remade rather than
/// the store refused.
pub(crate) fn json_map<T: serde::de::DeserializeOwned>(
    json: Option<String>,
) -> BTreeMap<String, T> {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

/// What [`crate::queue::JobQueue::submit`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Submitted {
    /// A new job.
    Queued,
    /// An earlier failure queued again (`retry_failed`).
    Requeued,
    /// The same content under the same settings is already known.
    Known,
    /// The content is another input's job, whose outputs this input gets
    /// under its own name once that job is done.
    Copy,
}

/// What [`JobStore::claim`](super::JobStore::claim) found.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The caller now holds the job's lease and must do it.
    Claimed(JobRow),
    AlreadyDone(JobRow),
    /// Failed before, and the caller did not ask to retry failures.
    Failed(JobRow),
    /// Another owner holds a live lease on it.
    Busy(JobRow),
}

impl Claim {
    pub fn row(&self) -> &JobRow {
        match self {
            Self::Claimed(r) | Self::AlreadyDone(r) | Self::Failed(r) | Self::Busy(r) => r,
        }
    }

    pub fn into_row(self) -> JobRow {
        match self {
            Self::Claimed(r) | Self::AlreadyDone(r) | Self::Failed(r) | Self::Busy(r) => r,
        }
    }
}

pub(crate) fn inline_json<S: Serializer>(json: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => value.serialize(s),
        Err(_) => s.serialize_str(json),
    }
}

pub(crate) fn time<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_ms(*ms))
}

pub(crate) fn opt_time<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_some(&rfc3339_ms(*ms)),
        None => s.serialize_none(),
    }
}
