//! What a source hands out: its facts ([`VideoInfo`]), its pictures
//! ([`Frame`], as RGB or as [`Yuv420`] planes) and what went wrong with
//! them ([`SourceWarning`]), behind one trait ([`FrameSource`]) for video
//! files and image folders alike.

use std::fmt;
use std::path::PathBuf;

use crate::color::ColorTags;
use crate::error::MediaError;
use crate::Rational;

/// What is known about a source before decoding it.
#[derive(Clone, Debug)]
pub struct VideoInfo {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Exact, e.g. 30000/1001.
    pub frame_rate: Rational,
    /// Unit of [`Frame::pts`].
    pub time_base: Rational,
    /// Declared by the container, else estimated from the duration.
    pub frame_count: Option<u64>,
    pub duration_s: Option<f64>,
    pub container: String,
    pub codec: String,
    pub pixel_format: String,
    /// Matrix used for YUV->RGB, e.g. "bt709", or "bt601 (assumed)" when the
    /// source does not say.
    pub color_matrix: String,
    /// "limited" or "full".
    pub color_range: String,
    /// Clockwise degrees a player rotates the picture by (display matrix);
    /// frames are returned unrotated.
    pub rotation: i32,
    /// What outputs are tagged with: the source's primaries and transfer
    /// (BT.709 when it says nothing) and the matrix it was decoded with.
    pub color_tags: ColorTags,
    /// Bits per sample of the source pictures (8, 10, 12 ...).
    pub bit_depth: u8,
    /// The libav decoder that runs: the codec's own, or its NVDEC version
    /// (`h264_cuvid`) when hardware decoding was asked for and works.
    pub decoder: String,
}

/// One decoded picture.
#[derive(Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Packed RGB24, row-major, exactly `width * height * 3` bytes; or,
    /// when `deep`, RGB48 as little-endian `u16` samples (6 bytes a pixel).
    pub rgb: Vec<u8>,
    /// Whether `rgb` holds 16-bit samples ([`FrameSource::set_deep`]).
    pub deep: bool,
    /// The decoded 8-bit 4:2:0 planes instead of `rgb` (which is then
    /// empty), when asked for with [`FrameSource::set_yuv`] and the source
    /// has them: the colour conversion is left to the model's device.
    pub yuv: Option<Yuv420>,
    /// Presentation time in [`VideoInfo::time_base`].
    pub pts: Option<i64>,
    /// 0-based position in decode output order.
    pub index: u64,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("rgb_len", &self.rgb.len())
            .field("pts", &self.pts)
            .field("index", &self.index)
            .finish()
    }
}

/// A stream of frames: a video file or an image sequence.
pub trait FrameSource: Send {
    fn info(&self) -> &VideoInfo;
    /// The next frame, `Ok(None)` at the end. After an error or the end,
    /// further calls return `Ok(None)`.
    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError>;
    /// Deliver 16-bit RGB from now on, so sources deeper than 8 bits
    /// (10-bit video, 16-bit PNG) keep their gradations.
    fn set_deep(&mut self, deep: bool);
    /// Deliver 8-bit 4:2:0 frames as their planes ([`Frame::yuv`]) rather
    /// than RGB, for a GPU to convert. Sources without such frames ignore it.
    fn set_yuv(&mut self, _yuv: bool) {}
    /// What went wrong, but not badly enough to stop, since the last call.
    fn take_warnings(&mut self) -> Vec<SourceWarning> {
        Vec::new()
    }
}

/// A frame that was delivered, but not as it was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceWarning {
    /// The frame (0-based, in decode order).
    pub frame: u64,
    pub kind: WarningKind,
    /// What happened, for people: libav's words where it gave any.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// The data was damaged and the decoder filled the gap (concealment):
    /// the picture has blocks guessed from its neighbours.
    Damaged,
    /// The picture size changed mid-stream; this frame and those after are
    /// scaled to the first frame's size.
    Resized,
}

/// An 8-bit 4:2:0 picture as decoded, and how to turn it into RGB.
#[derive(Clone)]
pub struct Yuv420 {
    /// `width * height` luma samples.
    pub y: Vec<u8>,
    /// `ceil(width / 2) * ceil(height / 2)` samples each.
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    /// Luma weights of red and blue of the matrix (BT.601 0.299/0.114,
    /// BT.709 0.2126/0.0722, BT.2020 0.2627/0.0593).
    pub kr: f32,
    pub kb: f32,
    /// Full-range (JPEG) samples rather than limited (16-235/240).
    pub full_range: bool,
}
