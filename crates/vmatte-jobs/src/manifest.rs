//! `OUTDIR/manifest.csv`: what each input became, for people and
//! spreadsheets (the job store is the source of truth).

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::store::JobRow;

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

/// Writes the manifest: one row per output of each job, or a single row
/// with empty `kind` and `output` for a job that has none (yet). Written
/// under a `.partial` name and renamed, so a reader never sees half a file.
pub fn write_manifest(outdir: &Path, jobs: &[JobRow]) -> io::Result<()> {
    let path = outdir.join(MANIFEST_FILE);
    let partial = outdir.join(format!("{MANIFEST_FILE}.partial"));
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

fn records(job: &JobRow) -> Vec<Vec<String>> {
    let row = |kind: &str, output: &str| {
        vec![
            job.input_path.to_string_lossy().into_owned(),
            job.safe_name.clone(),
            job.state.as_str().to_string(),
            kind.to_string(),
            output.to_string(),
            job.frames.map(|f| f.to_string()).unwrap_or_default(),
            job.seconds.map(|s| format!("{s:.3}")).unwrap_or_default(),
            job.error.clone().unwrap_or_default(),
        ]
    };
    if job.outputs.is_empty() {
        return vec![row("", "")];
    }
    job.outputs
        .iter()
        .map(|(kind, path)| row(kind, &path.to_string_lossy()))
        .collect()
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
