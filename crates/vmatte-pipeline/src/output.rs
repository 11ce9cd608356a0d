//! Output files that appear under their final name only when complete: each
//! is written under a hidden `.partial` name and renamed at the end, so an
//! interrupted or failed run never leaves a truncated file that looks done.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vmatte_media::{EncoderSettings, PixelLayout, PngSequenceWriter, VideoEncoder, VideoInfo};

use crate::settings::{OutputFormat, OutputKind};
use crate::{PipelineError, Result};

enum Sink {
    Video(VideoEncoder),
    Png(PngSequenceWriter),
}

pub struct OutputWriter {
    kind: OutputKind,
    sink: Option<Sink>,
    partial: PathBuf,
    path: PathBuf,
}

/// `DIR/<stem>.<kind>.mp4`, or the folder `DIR/<stem>.<kind>/` for PNGs.
pub fn output_path(dir: &Path, stem: &str, kind: OutputKind, format: OutputFormat) -> PathBuf {
    match format {
        OutputFormat::Mp4 => dir.join(format!("{stem}.{kind}.mp4")),
        OutputFormat::Png => dir.join(format!("{stem}.{kind}")),
    }
}

/// `.<name>.<pid>-<n>.partial`: a name of this writer's own, so that a
/// worker which lost its job while stalled and the one that took it over
/// never write into one file.
fn partial_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(
        ".{}.{}-{n}.partial",
        file_name(path),
        std::process::id()
    ))
}

/// Earlier partial outputs of `path`: from a run that was killed, or from a
/// stalled writer that has lost the job (its final rename then fails).
fn stale_partials(path: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.", file_name(path));
    let Some(Ok(entries)) = path.parent().map(std::fs::read_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".partial")
        })
        .map(|e| e.path())
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("output has a file name")
        .to_string_lossy()
        .into_owned()
}

fn io_error(path: &Path, action: &str, e: std::io::Error) -> PipelineError {
    PipelineError::Output(format!(
        "{}: cannot {action} ({e}); check that the output folder is writable and has space",
        path.display()
    ))
}

impl OutputWriter {
    pub fn create(
        dir: &Path,
        stem: &str,
        kind: OutputKind,
        format: OutputFormat,
        info: &VideoInfo,
        crf: u8,
    ) -> Result<Self> {
        let path = output_path(dir, stem, kind, format);
        for stale in stale_partials(&path) {
            remove_any(&stale).map_err(|e| io_error(&stale, "remove a stale partial output", e))?;
        }
        let partial = partial_path(&path);
        let layout = match kind {
            OutputKind::Alpha => PixelLayout::Gray8,
            OutputKind::Composite | OutputKind::Foreground => PixelLayout::Rgb24,
        };
        let sink = match format {
            OutputFormat::Mp4 => {
                let mut settings = EncoderSettings::new(
                    info.width,
                    info.height,
                    info.frame_rate,
                    info.time_base,
                    layout,
                );
                settings.crf = crf;
                Sink::Video(VideoEncoder::create(&partial, "mp4", &settings)?)
            }
            OutputFormat::Png => Sink::Png(PngSequenceWriter::create(
                &partial,
                info.width,
                info.height,
                layout,
            )?),
        };
        Ok(Self {
            kind,
            sink: Some(sink),
            partial,
            path,
        })
    }

    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    pub fn write(&mut self, index: u64, pts: Option<i64>, data: &[u8]) -> Result<()> {
        match self.sink.as_mut().expect("writer used after finish") {
            Sink::Video(v) => v.write(data, pts)?,
            Sink::Png(p) => {
                p.write(index, data)?;
            }
        }
        Ok(())
    }

    /// Flushes and moves the output to its final name, replacing an older
    /// result of the same name only now that the new one is complete.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(Sink::Video(v)) = self.sink.take() {
            v.finish()?;
        }
        remove_any(&self.path)
            .map_err(|e| io_error(&self.path, "replace the previous output", e))?;
        std::fs::rename(&self.partial, &self.path)
            .map_err(|e| io_error(&self.path, "rename the finished output", e))?;
        Ok(self.path.clone())
    }
}

impl Drop for OutputWriter {
    /// An unfinished output is deleted, never left behind.
    fn drop(&mut self) {
        if self.partial.exists() {
            self.sink = None;
            let _ = remove_any(&self.partial);
        }
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
