//! In-process video and image-sequence I/O for vmatte, on libav (ffmpeg).
//!
//! Everything runs inside the process through the libav libraries; no
//! `ffmpeg` executable is spawned. Decoded frames are always packed RGB24;
//! the colour matrix and range of the source are honoured on the way there,
//! so a matte lines up with what a player shows.

mod audio;
mod color;
mod decode;
mod encode;
mod error;
mod formats;
mod frame;
mod images;
mod input;
mod log;
mod openexr;
mod png;
mod scale;

use std::ffi::CString;
use std::fmt;
use std::path::Path;
use std::sync::Once;

use ffmpeg_next as ffmpeg;

pub use color::ColorTags;
pub use decode::prefer_nvdec;
pub use encode::prefer_nvenc;
pub use encode::{EncoderSettings, VideoCodec, VideoEncoder};
pub use error::MediaError;
pub use frame::{Frame, FrameSource, SourceWarning, VideoInfo, WarningKind, Yuv420};
pub use openexr::{ExrCompression, ExrOptions, ExrSequenceWriter};
pub use png::{ImageFormat, ImageSequenceWriter, PngSequenceWriter};
pub use scale::CoverScaler;

/// Initialises libav once per process. Every entry point of this crate calls
/// it, so calling it yourself is optional.
///
/// libav's own log output is captured instead of printed: error lines end up
/// in the [`MediaError`] they explain, and nothing reaches stderr.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // With ffmpeg >= 5 this only registers error strings; it cannot fail.
        let _ = ffmpeg::init();
        log::install();
    });
}

/// An exact rational number, as libav uses for frame rates and time bases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rational {
    pub num: i32,
    pub den: i32,
}

impl Rational {
    pub const fn new(num: i32, den: i32) -> Self {
        Self { num, den }
    }

    pub fn as_f64(&self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            f64::from(self.num) / f64::from(self.den)
        }
    }

    /// Both parts positive: a usable frame rate or time base.
    pub(crate) fn is_positive(&self) -> bool {
        self.num > 0 && self.den > 0
    }

    pub(crate) fn inverse(self) -> Self {
        Self::new(self.den, self.num)
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl From<ffmpeg::Rational> for Rational {
    fn from(r: ffmpeg::Rational) -> Self {
        Self::new(r.numerator(), r.denominator())
    }
}

impl From<Rational> for ffmpeg::Rational {
    fn from(r: Rational) -> Self {
        ffmpeg::Rational::new(r.num, r.den)
    }
}

/// Memory layout of the frames handed to the writers. The 16-bit layouts
/// hold native (little-endian) `u16` samples as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    /// Packed RGB, 3 bytes per pixel.
    Rgb24,
    /// Packed RGBA, 4 bytes per pixel (straight or premultiplied: the
    /// writer does not care).
    Rgba,
    /// One byte per pixel (an alpha matte).
    Gray8,
    /// Packed RGB, 16 bits per sample.
    Rgb48,
    /// Packed RGBA, 16 bits per sample.
    Rgba64,
    /// One 16-bit sample per pixel.
    Gray16,
}

impl PixelLayout {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelLayout::Gray8 => 1,
            PixelLayout::Gray16 => 2,
            PixelLayout::Rgb24 => 3,
            PixelLayout::Rgba => 4,
            PixelLayout::Rgb48 => 6,
            PixelLayout::Rgba64 => 8,
        }
    }

    pub fn has_alpha(self) -> bool {
        matches!(self, PixelLayout::Rgba | PixelLayout::Rgba64)
    }

    pub fn is_gray(self) -> bool {
        matches!(self, PixelLayout::Gray8 | PixelLayout::Gray16)
    }

    pub fn is_deep(self) -> bool {
        matches!(
            self,
            PixelLayout::Rgb48 | PixelLayout::Rgba64 | PixelLayout::Gray16
        )
    }

    pub(crate) fn pixel(self) -> ffmpeg::format::Pixel {
        use ffmpeg::format::Pixel;
        match self {
            PixelLayout::Rgb24 => Pixel::RGB24,
            PixelLayout::Rgba => Pixel::RGBA,
            PixelLayout::Gray8 => Pixel::GRAY8,
            PixelLayout::Rgb48 => Pixel::RGB48LE,
            PixelLayout::Rgba64 => Pixel::RGBA64LE,
            PixelLayout::Gray16 => Pixel::GRAY16LE,
        }
    }
}

/// Opens a video file, or a folder of images as a sequence.
///
/// `image_fps` is the frame rate given to an image sequence (25/1 when
/// `None`); it is ignored for video files, which carry their own.
pub fn open_source(
    path: &Path,
    image_fps: Option<Rational>,
) -> Result<Box<dyn FrameSource>, MediaError> {
    init();
    let meta = std::fs::metadata(path).map_err(|e| MediaError::from_io(path, &e, false))?;
    if !meta.is_dir() && !meta.is_file() {
        // Opening a FIFO waits for a writer: refuse it rather than hang.
        return Err(MediaError::Invalid {
            path: path.to_path_buf(),
            problem: "not a regular file (a FIFO, socket or device)".into(),
            hint: "give a video file or a folder of images".into(),
        });
    }
    if meta.is_dir() {
        let fps = image_fps.unwrap_or(Rational::new(25, 1));
        Ok(Box::new(images::ImageSequence::open(path, fps)?))
    } else {
        Ok(Box::new(decode::VideoDecoder::open(path)?))
    }
}

/// The URL handed to libav for a local path.
///
/// The `file:` prefix stops libav from reading a protocol into names such as
/// `concat:a.mp4` or `C:\clip.mp4`, and bytes are passed as-is so non-UTF-8
/// names work on Unix.
pub(crate) fn libav_url(path: &Path) -> Result<CString, MediaError> {
    let mut bytes = b"file:".to_vec();
    #[cfg(unix)]
    bytes.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()));
    #[cfg(not(unix))]
    bytes.extend_from_slice(path.to_string_lossy().as_bytes());
    CString::new(bytes).map_err(|_| MediaError::Invalid {
        path: path.to_path_buf(),
        problem: "the path contains a NUL byte".into(),
        hint: "rename the file".into(),
    })
}
