//! How a job ended for the run that met it: one type for batch summaries,
//! `--json`, worker lines and (later) the HTTP service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vmatte_gpu::GpuSummary;
use vmatte_jobs::{CopyRow, JobRow};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Done,
    Failed,
    /// Not run by this run: done earlier, failed earlier (not retried), or
    /// held by another process.
    Skipped,
    /// Another process took the job over (this one stalled past its lease);
    /// its result is theirs.
    Lost,
    /// The run was stopped (SIGINT, SIGTERM); the job is queued again.
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Lost => "lost",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A warning about a job that still finished (a damaged frame the decoder
/// concealed, frames of another size scaled).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Warning {
    pub frame: Option<u64>,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The input as this run was given it (the store may have seen the same
    /// content elsewhere).
    pub input: PathBuf,
    pub status: Status,
    pub error: Option<String>,
    /// Why a job was skipped, or how a copy got its outputs.
    pub note: Option<String>,
    pub job: Option<i64>,
    pub name: Option<String>,
    pub frames: Option<u64>,
    pub seconds: Option<f64>,
    pub fps: Option<f64>,
    pub outputs: BTreeMap<String, PathBuf>,
    pub log: Option<PathBuf>,
    /// Where the video was matted (the CPU after the out-of-memory ladder).
    pub device: Option<String>,
    /// Out-of-memory steps taken within the video.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ladder: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// GPU telemetry over the job, per GPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpu: Vec<GpuSummary>,
    /// The job whose work a copy shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<i64>,
}

impl Outcome {
    pub fn new(input: &Path, status: Status) -> Self {
        Self {
            input: input.to_path_buf(),
            status,
            error: None,
            note: None,
            job: None,
            name: None,
            frames: None,
            seconds: None,
            fps: None,
            outputs: BTreeMap::new(),
            log: None,
            device: None,
            ladder: Vec::new(),
            warnings: Vec::new(),
            gpu: Vec::new(),
            copy_of: None,
        }
    }

    /// What the store says of `row`, for `input`.
    pub fn of_row(input: &Path, row: &JobRow, status: Status) -> Self {
        let mut o = Self::new(input, status);
        o.job = Some(row.id);
        o.name = Some(row.safe_name.clone());
        o.error = row.error.clone();
        o.frames = row.frames;
        o.seconds = row.seconds;
        o.fps = row
            .frames
            .zip(row.seconds)
            .map(|(f, s)| f as f64 / s.max(1e-9));
        o.outputs = row.outputs.clone();
        o
    }

    /// A copy's outcome: its own name and outputs, the job's frames.
    pub fn of_copy(input: &Path, copy: &CopyRow, job: &JobRow, status: Status) -> Self {
        let mut o = Self::of_row(input, job, status);
        o.name = Some(copy.safe_name.clone());
        o.outputs = copy.outputs.clone();
        o.copy_of = Some(job.id);
        o.seconds = None;
        o.fps = None;
        o
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// One line for people: `name: done, 40 frames in 1.2s (33.3 fps)`.
    pub fn line(&self) -> String {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| self.input.display().to_string());
        let name = one_line(&name);
        match self.status {
            Status::Done if self.copy_of.is_some() => format!(
                "{name}: done, {}",
                self.note.as_deref().unwrap_or("outputs linked")
            ),
            Status::Done => format!(
                "{name}: done, {} frames in {} ({} fps){}",
                self.frames.unwrap_or(0),
                seconds(self.seconds.unwrap_or(0.0)),
                rate(self.fps.unwrap_or(0.0)),
                self.note
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default()
            ),
            status => {
                let why = self.error.as_deref().or(self.note.as_deref());
                format!(
                    "{name}: {}{}",
                    status.as_str(),
                    why.map(|w| format!(" ({})", one_line(w)))
                        .unwrap_or_default()
                )
            }
        }
    }
}

/// Seconds for people: one decimal, never `-0.0s`.
pub fn seconds(s: f64) -> String {
    format!("{:.1}s", s.max(0.0))
}

/// A rate for people: one decimal.
pub fn rate(per_second: f64) -> String {
    format!("{:.1}", per_second.max(0.0))
}

/// Text that stays on its line: newlines and other control characters in
/// file names or libav's messages shown as escapes.
pub fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stay_one_line() {
        assert_eq!(one_line("a\nb.mp4"), "a\\nb.mp4");
        assert_eq!(seconds(-0.0001), "0.0s");
        assert_eq!(rate(7.0576), "7.1");
        let mut o = Outcome::new(Path::new("/in/x\ny.mp4"), Status::Failed);
        o.error = Some("bad\nthing".into());
        assert_eq!(o.line().lines().count(), 1, "{}", o.line());
    }
}
