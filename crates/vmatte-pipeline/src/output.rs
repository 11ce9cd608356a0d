//! Output files that appear under their final name only when complete: each
//! is written under a hidden `.partial` name and renamed at the end, so an
//! interrupted or failed run never leaves a truncated file that looks done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vmatte_media::{
    EncoderSettings, ExrOptions, ExrSequenceWriter, ImageFormat, ImageSequenceWriter, PixelLayout,
    VideoCodec, VideoEncoder, VideoInfo,
};

use crate::frames::{rotate, Depth};
use crate::settings::{MatteSettings, Mp4Codec, OutputFormat, OutputKind};
use crate::{PipelineError, Result};

enum Sink {
    Video(Box<VideoEncoder>),
    Images(ImageSequenceWriter),
    Exr(ExrSequenceWriter),
}

pub struct OutputWriter {
    kind: OutputKind,
    depth: Depth,
    /// The sink multiplies colour by alpha itself (EXR does it in linear
    /// light), so it is handed straight colour.
    premultiplies: bool,
    sink: Option<Sink>,
    partial: PathBuf,
    path: PathBuf,
    /// Image sequences carry no rotation tag, so the pixels are turned.
    rotate: Option<Turn>,
}

/// Turning each picture of an image sequence as players would.
struct Turn {
    clockwise: i32,
    size: (usize, usize),
    bytes_per_pixel: usize,
    scratch: Vec<u8>,
}

/// `DIR/<stem>.<kind>.<ext>`, or the folder `DIR/<stem>.<kind>/` for image
/// sequences.
pub fn output_path(dir: &Path, stem: &str, kind: OutputKind, format: OutputFormat) -> PathBuf {
    match format {
        OutputFormat::Mp4 => dir.join(format!("{stem}.{kind}.mp4")),
        OutputFormat::Prores | OutputFormat::Mov => dir.join(format!("{stem}.{kind}.mov")),
        OutputFormat::Webm => dir.join(format!("{stem}.{kind}.webm")),
        OutputFormat::Png | OutputFormat::Tiff | OutputFormat::Exr => {
            dir.join(format!("{stem}.{kind}"))
        }
    }
}

/// Whether outputs of this format carry 16-bit samples to the writer: for
/// sequences as asked (or when the source is deeper than 8 bits), ProRes
/// always (it is a 10-bit codec), other video when the source is deep and
/// the codec can keep it.
pub fn deep_output(settings: &MatteSettings, kind: OutputKind, source_bits: u8) -> bool {
    match settings.format {
        OutputFormat::Png | OutputFormat::Tiff => match settings.depth {
            Some(d) => d > 8,
            None => source_bits > 8,
        },
        // EXR takes 16-bit samples and makes half or float of them.
        OutputFormat::Prores | OutputFormat::Exr => true,
        // VP9's alpha plane is 8-bit only.
        OutputFormat::Webm if kind == OutputKind::Rgba => false,
        OutputFormat::Mp4 | OutputFormat::Webm => source_bits > 8,
        OutputFormat::Mov => false,
    }
}

fn layout(kind: OutputKind, deep: bool) -> PixelLayout {
    match (kind, deep) {
        (OutputKind::Alpha, false) => PixelLayout::Gray8,
        (OutputKind::Alpha, true) => PixelLayout::Gray16,
        (OutputKind::Rgba, false) => PixelLayout::Rgba,
        (OutputKind::Rgba, true) => PixelLayout::Rgba64,
        (_, false) => PixelLayout::Rgb24,
        (_, true) => PixelLayout::Rgb48,
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
        settings: &MatteSettings,
        info: &VideoInfo,
    ) -> Result<Self> {
        let format = settings.format;
        let path = output_path(dir, stem, kind, format);
        for stale in stale_partials(&path) {
            remove_any(&stale).map_err(|e| io_error(&stale, "remove a stale partial output", e))?;
        }
        let partial = partial_path(&path);
        let deep = deep_output(settings, kind, info.bit_depth);
        let layout = layout(kind, deep);
        let depth = if deep { Depth::Sixteen } else { Depth::Eight };
        let (sink, rotate) = if format.is_sequence() {
            let turned = info.rotation.rem_euclid(360) / 90 % 2 == 1;
            let (w, h) = if turned {
                (info.height, info.width)
            } else {
                (info.width, info.height)
            };
            let writer = match format {
                OutputFormat::Exr => Sink::Exr(ExrSequenceWriter::create(
                    &partial,
                    (w, h),
                    layout,
                    ExrOptions {
                        float: settings.depth == Some(32),
                        compression: settings.exr_compression.media(),
                        linear: settings.linear,
                        premultiply: settings.premultiplied && kind == OutputKind::Rgba,
                        invert_alpha: settings.invert_alpha,
                    },
                    // An image folder's pictures are sRGB (its tags say
                    // BT.709 for the video outputs made from it).
                    if info.path.is_dir() {
                        vmatte_media::ColorTags::srgb()
                    } else {
                        info.color_tags
                    },
                )?),
                OutputFormat::Tiff => Sink::Images(ImageSequenceWriter::create_as(
                    &partial,
                    w,
                    h,
                    layout,
                    ImageFormat::Tiff,
                )?),
                _ => Sink::Images(ImageSequenceWriter::create_as(
                    &partial,
                    w,
                    h,
                    layout,
                    ImageFormat::Png,
                )?),
            };
            let rotate = (info.rotation.rem_euclid(360) != 0).then(|| Turn {
                clockwise: info.rotation,
                size: (info.width as usize, info.height as usize),
                bytes_per_pixel: layout.bytes_per_pixel(),
                scratch: Vec::new(),
            });
            (writer, rotate)
        } else {
            let mut enc = EncoderSettings::new(
                info.width,
                info.height,
                info.frame_rate,
                info.time_base,
                layout,
            );
            enc.codec = match format {
                OutputFormat::Mp4 if settings.codec == Mp4Codec::H265 => VideoCodec::H265,
                OutputFormat::Prores => VideoCodec::ProRes {
                    xq: settings.depth == Some(12),
                },
                OutputFormat::Webm => VideoCodec::Vp9,
                OutputFormat::Mov => VideoCodec::QtRle,
                _ => VideoCodec::H264,
            };
            enc.crf = settings.crf;
            enc.bitrate = settings.bitrate;
            enc.color = info.color_tags;
            enc.rotation = info.rotation;
            // The sound belongs with pictures; a matte is a compositing tool.
            let with_audio = !settings.no_audio && kind != OutputKind::Alpha && info.path.is_file();
            enc.audio_from = with_audio.then(|| info.path.clone());
            enc.audio_until_video_end = settings.max_frames.is_some();
            let container = match format {
                OutputFormat::Mp4 => "mp4",
                OutputFormat::Webm => "webm",
                _ => "mov",
            };
            (
                Sink::Video(Box::new(VideoEncoder::create(&partial, container, &enc)?)),
                None,
            )
        };
        Ok(Self {
            kind,
            depth,
            premultiplies: format == OutputFormat::Exr,
            sink: Some(sink),
            partial,
            path,
            rotate,
        })
    }

    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    /// Whether `write` takes straight colour for rgba whatever the
    /// settings say (the sink premultiplies).
    pub fn premultiplies(&self) -> bool {
        self.premultiplies
    }

    /// The sample depth `write` expects.
    pub fn depth(&self) -> Depth {
        self.depth
    }

    pub fn write(&mut self, index: u64, pts: Option<i64>, data: &[u8]) -> Result<()> {
        // Only sequences turn their pixels (videos carry a rotation tag).
        let data = match self.rotate.as_mut() {
            Some(t) => {
                rotate(data, t.size, t.bytes_per_pixel, t.clockwise, &mut t.scratch);
                &t.scratch[..]
            }
            None => data,
        };
        match self.sink.as_mut().expect("writer used after finish") {
            Sink::Video(v) => v.write(data, pts)?,
            Sink::Images(p) => {
                p.write(index, data)?;
            }
            Sink::Exr(e) => {
                e.write(index, data)?;
            }
        }
        Ok(())
    }

    /// Flushes the encoder (the frames its lookahead still holds) and
    /// writes the file's trailer, still under the temporary name.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(Sink::Video(v)) = self.sink.take() {
            v.finish()?;
        }
        Ok(())
    }

    /// Flushes it and hands it over complete, still under its partial
    /// name: it takes its final name when the run's result is recorded
    /// ([`Staged::publish`]).
    pub fn finish(mut self) -> Result<StagedOutput> {
        self.flush()?;
        let staged = StagedOutput {
            kind: self.kind,
            partial: std::mem::take(&mut self.partial),
            path: std::mem::take(&mut self.path),
        };
        Ok(staged)
    }
}

impl Drop for OutputWriter {
    /// An unfinished output is deleted, never left behind.
    fn drop(&mut self) {
        self.sink = None;
        if !self.partial.as_os_str().is_empty() && self.partial.exists() {
            let _ = remove_any(&self.partial);
        }
    }
}

/// A complete output under its partial name. Dropped unpublished (the run
/// was interrupted, its result could not be recorded, or another worker
/// took the job over), it is deleted.
pub struct StagedOutput {
    kind: OutputKind,
    partial: PathBuf,
    path: PathBuf,
}

impl StagedOutput {
    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    /// Where it is now.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// Where it goes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedOutput {
    fn drop(&mut self) {
        if !self.partial.as_os_str().is_empty() {
            let _ = remove_any(&self.partial);
        }
    }
}

/// Every output of a finished run, complete but not yet under its final
/// name. A job store records the result first and publishes after, so a
/// file under a final name always belongs to a job recorded done; a crash
/// in between leaves a done job with missing outputs, which the next run
/// notices and redoes.
#[derive(Default)]
pub struct Staged {
    outputs: Vec<StagedOutput>,
}

impl Staged {
    pub fn outputs(&self) -> &[StagedOutput] {
        &self.outputs
    }

    /// Final paths by kind.
    pub fn paths(&self) -> BTreeMap<OutputKind, PathBuf> {
        self.outputs
            .iter()
            .map(|o| (o.kind, o.path.clone()))
            .collect()
    }

    /// Moves every output to its final name, replacing an older result of
    /// the same name only now that the new one is complete.
    pub fn publish(mut self) -> Result<BTreeMap<OutputKind, PathBuf>> {
        let mut done = BTreeMap::new();
        for mut o in self.outputs.drain(..) {
            // A file replaces a file in the rename; a folder must go first.
            if o.path.is_dir() {
                remove_any(&o.path)
                    .map_err(|e| io_error(&o.path, "replace the previous output", e))?;
            }
            std::fs::rename(&o.partial, &o.path)
                .map_err(|e| io_error(&o.path, "rename the finished output", e))?;
            o.partial = PathBuf::new();
            done.insert(o.kind, std::mem::take(&mut o.path));
        }
        Ok(done)
    }
}

impl FromIterator<StagedOutput> for Staged {
    fn from_iter<I: IntoIterator<Item = StagedOutput>>(iter: I) -> Self {
        Self {
            outputs: iter.into_iter().collect(),
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
