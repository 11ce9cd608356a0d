//! `OUTDIR/manifest.csv`: what each input became, for people and
//! spreadsheets (the job store is the source of truth).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{CopyRow, JobRow, JobState};

pub const MANIFEST_FILE: &str = "manifest.csv";

const HEADER: [&str; 8] = [
    "input",
    "safe_name",
    "status",
    "kind",
    "output",
    "frames",
    "seconds",
    "error",
];

/// Writes the manifest: one row per output of each job and of each copy
/// (an input with a job's content, which gets the job's outputs under its
/// own name), or a single row with empty `kind` and `output` for one that
/// has none (yet). Written under a partial name of this writer's own and
/// renamed, so a reader never sees half a file and two processes writing
/// at once never rename each other's.
pub fn write_manifest(outdir: &Path, jobs: &[JobRow], copies: &[CopyRow]) -> io::Result<()> {
    let path = outdir.join(MANIFEST_FILE);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let partial = outdir.join(format!(
        ".{MANIFEST_FILE}.partial.{}-{n}",
        std::process::id()
    ));
    let with_path = |p: &Path| {
        let p = p.to_path_buf();
        move |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot write {}: {e}; check that the output folder is writable",
                    p.display()
                ),
            )
        }
    };
    let write = || -> io::Result<()> {
        let mut out = BufWriter::new(File::create(&partial)?);
        write_record(&mut out, &HEADER)?;
        for job in jobs {
            for record in records(job) {
                write_record(&mut out, &record)?;
            }
            for copy in copies.iter().filter(|c| c.job_id == job.id) {
                for record in copy_records(copy, job) {
                    write_record(&mut out, &record)?;
                }
            }
        }
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&partial);
        return Err(with_path(&partial)(e));
    }
    fs::rename(&partial, &path).map_err(with_path(&path))
}

/// What one input's rows say.
struct Entry<'a> {
    input: &'a Path,
    name: &'a str,
    state: JobState,
    frames: Option<u64>,
    seconds: Option<f64>,
    error: String,
    outputs: &'a BTreeMap<String, PathBuf>,
}

impl Entry<'_> {
    /// One row per output, or one with empty `kind` and `output`.
    fn rows(&self) -> Vec<Vec<String>> {
        let row = |kind: &str, output: &str| {
            vec![
                self.input.to_string_lossy().into_owned(),
                self.name.to_string(),
                self.state.as_str().to_string(),
                kind.to_string(),
                output.to_string(),
                self.frames.map(|f| f.to_string()).unwrap_or_default(),
                self.seconds.map(|s| format!("{s:.3}")).unwrap_or_default(),
                self.error.clone(),
            ]
        };
        if self.outputs.is_empty() {
            return vec![row("", "")];
        }
        self.outputs
            .iter()
            .map(|(kind, path)| row(kind, &path.to_string_lossy()))
            .collect()
    }
}

fn records(job: &JobRow) -> Vec<Vec<String>> {
    Entry {
        input: &job.input_path,
        name: &job.safe_name,
        state: job.state,
        frames: job.frames,
        seconds: job.seconds,
        error: job.error.clone().unwrap_or_default(),
        outputs: &job.outputs,
    }
    .rows()
}

/// A copy's rows: its own outputs once linked, else the job's state (a
/// copy of a failed job failed with it). Its seconds are the job's, not
/// its own: left empty.
fn copy_records(copy: &CopyRow, job: &JobRow) -> Vec<Vec<String>> {
    let linked = copy.linked_ms.is_some();
    let error = match job.state {
        JobState::Failed if !linked => format!(
            "same content as {}, which failed: {}",
            job.input_path.display(),
            job.error.as_deref().unwrap_or("")
        ),
        _ => String::new(),
    };
    Entry {
        input: &copy.input_path,
        name: &copy.safe_name,
        state: if linked { JobState::Done } else { job.state },
        frames: job.frames,
        seconds: None,
        error,
        outputs: &copy.outputs,
    }
    .rows()
}

fn write_record<S: AsRef<str>>(out: &mut impl Write, fields: &[S]) -> io::Result<()> {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(quote(field.as_ref()).as_bytes())?;
    }
    out.write_all(b"\r\n")
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its
/// quotes doubled.
fn quote(field: &str) -> Cow<'_, str> {
    if field.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}
