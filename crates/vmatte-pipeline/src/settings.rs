//! What a matting run is asked to produce, as the CLI and `--json` see it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::finish::Finish;
use crate::setting::Setting;

/// One product of a run; each becomes its own file or image folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// The foreground over the background colour.
    Composite,
    /// The alpha matte, 8-bit gray.
    Alpha,
    /// The predicted straight (unpremultiplied) foreground colour.
    Foreground,
    /// The foreground with the matte as its alpha channel (straight, or
    /// premultiplied with `--premultiplied`).
    Rgba,
}

impl OutputKind {
    pub const ALL: [OutputKind; 4] = [Self::Composite, Self::Alpha, Self::Foreground, Self::Rgba];

    /// Whether any of `kinds` shows colour (all but the matte do).
    pub fn any_colour(kinds: &[OutputKind]) -> bool {
        kinds.iter().any(|k| *k != Self::Alpha)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Composite => "composite",
            Self::Alpha => "alpha",
            Self::Foreground => "foreground",
            Self::Rgba => "rgba",
        }
    }
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutputKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown output '{s}'; choose from composite, alpha, foreground, rgba")
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// H.264 (or H.265) in MP4, one file per kind; no alpha channel.
    Mp4,
    /// ProRes 4444 in MOV, with a real alpha plane for rgba.
    Prores,
    /// VP9 in WebM, with an alpha plane for rgba.
    Webm,
    /// QuickTime Animation in MOV: lossless 8-bit, alpha for rgba.
    Mov,
    /// A folder of numbered PNGs per kind (8 or 16-bit; alpha as gray).
    Png,
    /// A folder of numbered TIFFs per kind (8 or 16-bit).
    Tiff,
    /// A folder of numbered OpenEXR images per kind (half or float).
    Exr,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 7] = [
        Self::Mp4,
        Self::Prores,
        Self::Webm,
        Self::Mov,
        Self::Png,
        Self::Tiff,
        Self::Exr,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Prores => "prores",
            Self::Webm => "webm",
            Self::Mov => "mov",
            Self::Png => "png",
            Self::Tiff => "tiff",
            Self::Exr => "exr",
        }
    }

    /// Whether each kind becomes a folder of images rather than a file.
    pub fn is_sequence(self) -> bool {
        matches!(self, Self::Png | Self::Tiff | Self::Exr)
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown format '{s}'; choose mp4, prores, webm, mov, png, tiff or exr")
            })
    }
}

/// The codec of `--format mp4`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mp4Codec {
    #[default]
    H264,
    H265,
}

impl FromStr for Mp4Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "h264" | "avc" => Ok(Self::H264),
            "h265" | "hevc" => Ok(Self::H265),
            _ => Err(format!("unknown codec '{s}'; choose h264 or h265")),
        }
    }
}

/// How `--format exr` compresses its images (all lossless).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExrCompression {
    #[default]
    Zip,
    Piz,
    None,
}

impl FromStr for ExrCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zip" => Ok(Self::Zip),
            "piz" => Ok(Self::Piz),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "unknown EXR compression '{s}'; use zip, piz or none"
            )),
        }
    }
}

impl ExrCompression {
    pub fn media(self) -> vmatte_media::ExrCompression {
        match self {
            Self::Zip => vmatte_media::ExrCompression::Zip,
            Self::Piz => vmatte_media::ExrCompression::Piz,
            Self::None => vmatte_media::ExrCompression::None,
        }
    }
}

/// What composites are laid over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Background {
    Color(Rgb),
    /// An image (held) or a video (frame by frame, looped), scaled to
    /// cover the frame and centred.
    Media(PathBuf),
}

impl Default for Background {
    fn default() -> Self {
        Self::Color(Rgb::RVM_GREEN)
    }
}

impl FromStr for Background {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(c) = s.parse::<Rgb>() {
            return Ok(Self::Color(c));
        }
        let path = Path::new(s);
        if path.is_file() {
            return Ok(Self::Media(
                std::fs::canonicalize(path).unwrap_or(path.into()),
            ));
        }
        Err(format!(
            "'{s}' is neither a colour (#RRGGBB, R,G,B or a name such as white, black, \
             green, blue) nor an image or video file"
        ))
    }
}

impl Serialize for Background {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Color(c) => c.serialize(s),
            Self::Media(p) => s.serialize_str(&p.to_string_lossy()),
        }
    }
}

impl<'de> Deserialize<'de> for Background {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.parse::<Rgb>() {
            Ok(c) => Self::Color(c),
            Err(_) => Self::Media(PathBuf::from(text)),
        })
    }
}

/// How much RVM shrinks each frame before the backbone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DownsampleRatio {
    /// The authors' rule: the downsampled long side at most 512 px.
    Auto,
    Fixed(f64),
    /// A ratio for 1080p, scaled with the frame's short side so every
    /// resolution sees the same detail (4K gets half, 720p 1.5x), at most 1.
    Scaled {
        at_1080p: f64,
    },
}

impl DownsampleRatio {
    pub fn resolve(self, height: u32, width: u32) -> f64 {
        match self {
            Self::Auto => {
                vmatte_models::rvm::auto_downsample_ratio(height as usize, width as usize)
            }
            Self::Fixed(r) => r,
            Self::Scaled { at_1080p } => {
                (at_1080p * 1080.0 / f64::from(height.min(width).max(1))).min(1.0)
            }
        }
    }
}

impl FromStr for DownsampleRatio {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        let r: f64 = s.parse().map_err(|_| {
            format!("'{s}' is not a number; use a ratio in (0, 1] such as 0.25, or 'auto'")
        })?;
        vmatte_models::rvm::check_ratio(r).map_err(|e| e.to_string())?;
        Ok(Self::Fixed(r))
    }
}

impl Serialize for DownsampleRatio {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(r) => s.serialize_f64(*r),
            Self::Scaled { at_1080p } => s.serialize_str(&format!("{at_1080p} at 1080p")),
        }
    }
}

/// Read back what [`Serialize`] wrote (queued jobs carry their settings as
/// JSON): a number, `auto`, or `R at 1080p`.
impl<'de> Deserialize<'de> for DownsampleRatio {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Text(String),
        }
        let bad = |e: String| serde::de::Error::custom(e);
        match Repr::deserialize(d)? {
            Repr::Number(r) => format!("{r}").parse().map_err(bad),
            Repr::Text(t) => match t.strip_suffix(" at 1080p") {
                Some(r) => r
                    .parse()
                    .map(|at_1080p| Self::Scaled { at_1080p })
                    .map_err(|_| bad(format!("'{t}' is not a ratio"))),
                None => t.parse().map_err(bad),
            },
        }
    }
}

/// An sRGB colour, parsed from `#RRGGBB` or `R,G,B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// RVM's green screen, (120, 255, 155).
    pub const RVM_GREEN: Rgb = Rgb([120, 255, 155]);
}

/// Colour names `--background` takes, besides `#RRGGBB` and `R,G,B`.
const COLOUR_NAMES: &[(&str, [u8; 3])] = &[
    ("rvm-green", [120, 255, 155]),
    ("green", [0, 255, 0]),
    ("blue", [0, 0, 255]),
    ("red", [255, 0, 0]),
    ("white", [255, 255, 255]),
    ("black", [0, 0, 0]),
    ("gray", [128, 128, 128]),
    ("grey", [128, 128, 128]),
    ("magenta", [255, 0, 255]),
    ("cyan", [0, 255, 255]),
    ("yellow", [255, 255, 0]),
];

impl FromStr for Rgb {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((_, rgb)) = COLOUR_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
        {
            return Ok(Self(*rgb));
        }
        let bad = || {
            format!("'{s}' is not a colour; use #RRGGBB, R,G,B (e.g. 120,255,155) or a name (white, black, green, blue, ...)")
        };
        if let Some(hex) = s.strip_prefix('#') {
            // ASCII first: slicing by bytes must not split a character.
            if hex.len() != 6 || !hex.is_ascii() {
                return Err(bad());
            }
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
            return Ok(Self([byte(0)?, byte(2)?, byte(4)?]));
        }
        let parts: Vec<_> = s.split(',').map(|p| p.trim().parse::<u8>()).collect();
        match parts.as_slice() {
            [Ok(r), Ok(g), Ok(b)] => Ok(Self([*r, *g, *b])),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Rgb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let [r, g, b] = self.0;
        s.serialize_str(&format!("#{r:02x}{g:02x}{b:02x}"))
    }
}

impl<'de> Deserialize<'de> for Rgb {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Everything that shapes the outputs of one run: what a job *is*. Its JSON
/// is hashed into the job's identity, so a field added here must be left
/// out at its default (`skip_serializing_if`), or every job changes
/// identity. How a run executes is [`RunOptions`], never part of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatteSettings {
    /// An installed model's name, or the path of a weights file or folder.
    pub model: String,
    /// A sampled digest of the weights when `model` is a path, so that new
    /// weights under an old name are a new job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_digest: Option<String>,
    pub downsample_ratio: DownsampleRatio,
    pub outputs: Vec<OutputKind>,
    pub format: OutputFormat,
    pub background: Background,
    /// Quality of lossy video outputs (lower is better).
    pub crf: u8,
    #[serde(default, skip_serializing_if = "is_default")]
    pub codec: Mp4Codec,
    /// Average bits per second instead of `crf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
    /// Bits per sample: 8 or 16 for png/tiff, 10 or 12 for prores
    /// [default: 16 for png/tiff when the source is deeper than 8 bits,
    /// else 8; 10 for prores].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u8>,
    /// rgba outputs carry colour multiplied by alpha.
    #[serde(default, skip_serializing_if = "is_default")]
    pub premultiplied: bool,
    /// Write 1 - alpha in alpha and rgba outputs (a holdout matte).
    #[serde(default, skip_serializing_if = "is_default")]
    pub invert_alpha: bool,
    /// Leave the input's audio out of video outputs.
    #[serde(default, skip_serializing_if = "is_default")]
    pub no_audio: bool,
    /// Stop after this many frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frames: Option<u64>,
    /// GVM's settings, when the model is GVM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gvm: Option<GvmOptions>,
    /// MatAnyone's settings, when the model is MatAnyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matanyone: Option<crate::matanyone::MatAnyoneOptions>,
    /// `--format exr`'s compression.
    #[serde(default, skip_serializing_if = "is_default")]
    pub exr_compression: ExrCompression,
    /// EXR colour in linear light (from the source's transfer function).
    #[serde(default, skip_serializing_if = "is_default")]
    pub linear: bool,
    /// Edge controls and the foreground colour's source.
    #[serde(default, skip_serializing_if = "is_default")]
    pub finish: Finish,
}

/// The precision the model computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    F32,
    F16,
    /// CUDA only: candle's CPU matmul has no bf16 kernel.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    pub fn dtype(self) -> candle_core::DType {
        match self {
            Self::F32 => candle_core::DType::F32,
            Self::F16 => candle_core::DType::F16,
            Self::Bf16 => candle_core::DType::BF16,
        }
    }

    /// Bytes a value takes on the device.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Self::F32, Self::F16, Self::Bf16]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision '{s}'; use f32, f16 or bf16"))
    }
}

impl Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where a conversion step runs: beside the model on its device, on the
/// CPU, or whichever suits the device (`Auto`). The bytes are the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    #[default]
    Auto,
    Device,
    Cpu,
}

impl Placement {
    /// Whether the step runs on the model's device, given the default.
    pub fn on_device(self, default: bool) -> bool {
        match self {
            Self::Auto => default,
            Self::Device => true,
            Self::Cpu => false,
        }
    }
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "device" => Ok(Self::Device),
            "cpu" => Ok(Self::Cpu),
            _ => Err(format!("unknown placement '{s}'; use auto, device or cpu")),
        }
    }
}

/// Frames per inference call. The ConvGRU steps frame by frame whatever
/// the chunk, so outputs do not depend on it: it is how a run executes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunks {
    /// Frames per call.
    pub seq_chunk: usize,
    /// Frames per call for videos larger than 1080p, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_chunk_large: Option<usize>,
    /// Frames per call in place of both when the model runs on the CPU,
    /// set where the user gave no chunk size (see [`Chunks::CPU_DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seq_chunk: Option<usize>,
}

impl Default for Chunks {
    fn default() -> Self {
        Self {
            seq_chunk: 4,
            seq_chunk_large: None,
            cpu_seq_chunk: None,
        }
    }
}

impl Chunks {
    /// Frames per inference call on the CPU unless told otherwise. Each
    /// frame in flight holds its full-size input and outputs and the
    /// decoder's maps; at 720p, chunks of 2 rather than 4 keep a fifth less
    /// memory, and the kernel's zeroing of those pages on first touch cost
    /// more than the larger calls saved (docs/benchmarks.md). GPUs plan
    /// their chunk from the card's free memory.
    pub const CPU_DEFAULT: usize = 2;

    /// The chunk for a video of this size, on the CPU or not.
    pub fn for_video(&self, height: u32, width: u32, on_cpu: bool) -> usize {
        let large = height.min(width) > 1080;
        match (self.cpu_seq_chunk, self.seq_chunk_large) {
            (Some(n), _) if on_cpu => n,
            (_, Some(n)) if large => n,
            _ => self.seq_chunk,
        }
        .max(1)
    }

    /// One chunk size for every video (a GPU's plan, or the user's).
    pub fn fixed(n: usize) -> Self {
        Self {
            seq_chunk: n,
            seq_chunk_large: None,
            cpu_seq_chunk: None,
        }
    }
}

/// How one run executes a job: the same job run with other options gives
/// the same outputs (within the precision's rounding), so none of this is
/// part of a job's identity. What travels with a queued job (its chunks and
/// precision) is serialised; the rest is the worker's own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunOptions {
    #[serde(flatten)]
    pub chunks: Chunks,
    #[serde(rename = "dtype", default)]
    pub precision: Precision,
    /// 8-bit 4:2:0 to RGB beside the model (`device_pre.rs`) or swscale
    /// [default: beside the model].
    #[serde(skip)]
    pub preprocess: Placement,
    /// Composite and convert 8-bit outputs beside the model
    /// (`device_post.rs`) [default: on a GPU].
    #[serde(skip)]
    pub postprocess: Placement,
    /// Injected out-of-memory failures (`VMATTE_FAKE_OOM`), for testing the
    /// ladder without a GPU.
    #[serde(skip)]
    pub fake_oom: Option<vmatte_gpu::FakeOom>,
    /// An injected bug (`VMATTE_FAKE_PANIC=FILE_NAME`): the decode stage of
    /// the input of that file name panics, to test that a panic fails only
    /// its own job.
    #[serde(skip)]
    pub fake_panic: Option<String>,
    /// Damaged frames that the decoder concealed fail the run instead of
    /// being reported as warnings.
    #[serde(default, skip_serializing_if = "is_default")]
    pub strict: bool,
    /// Flags set from other threads (an interrupt, a run that stops): the
    /// run stops at the next chunk once any is set, leaving nothing behind.
    #[serde(skip)]
    pub cancel: Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RunOptions {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel
            .iter()
            .any(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// How GVM windows a video (see `gvm.rs` in this crate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GvmOptions {
    /// Key frames the UNet sees at once.
    pub frames_per_batch: usize,
    /// Key frames each window shares with the previous one; their latents
    /// are blended linearly, so windows join without seams.
    pub overlap_frames: usize,
    /// Run the model on every k-th frame and interpolate the mattes
    /// between (1 = every frame).
    pub interp_frames: usize,
    /// UNet passes per window (1 to 3).
    pub denoise_steps: usize,
    /// Frames the VAE decodes together.
    pub decode_chunk: usize,
    /// The shorter side the model sees...
    pub size: usize,
    /// ...unless the longer side would pass this.
    pub max_resolution: usize,
    /// Reproduce the reference's ensemble of this many identical copies
    /// (its maximum over copies whose decode slices straddle); 1 computes
    /// each frame once.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub ensemble: usize,
    /// The LoRA: `auto` (merge the one beside the UNet), `off`, or a folder.
    #[serde(default = "auto", skip_serializing_if = "is_auto")]
    pub lora: String,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn auto() -> String {
    "auto".into()
}

fn is_auto(v: &String) -> bool {
    v == "auto"
}

impl Default for GvmOptions {
    /// The reference demo's defaults: 8 frames, decode chunk 8, 720/1024.
    fn default() -> Self {
        Self {
            frames_per_batch: 8,
            overlap_frames: 0,
            interp_frames: 1,
            denoise_steps: 1,
            decode_chunk: 8,
            size: 720,
            max_resolution: 1024,
            ensemble: 1,
            lora: auto(),
        }
    }
}

impl GvmOptions {
    pub fn validate(&self) -> Result<(), String> {
        if self.frames_per_batch == 0 || self.decode_chunk == 0 || self.interp_frames == 0 {
            return Err(format!(
                "{}, {} and {} must be at least 1",
                Setting::FramesPerBatch,
                Setting::DecodeChunk,
                Setting::InterpFrames
            ));
        }
        if self.overlap_frames >= self.frames_per_batch {
            return Err(format!(
                "{} must be smaller than {}",
                Setting::OverlapFrames.with(self.overlap_frames),
                Setting::FramesPerBatch.with(self.frames_per_batch)
            ));
        }
        if !(1..=3).contains(&self.denoise_steps) {
            return Err(format!(
                "{} is outside 1..3 (GVM is trained for one step; 2-3 refine)",
                Setting::DenoiseSteps.with(self.denoise_steps)
            ));
        }
        if self.max_resolution <= self.size {
            return Err(format!(
                "{} must be larger than {}",
                Setting::MaxResolution.with(self.max_resolution),
                Setting::Size.with(self.size)
            ));
        }
        if self.size < 32 {
            return Err(format!(
                "{} is below 32 px; use e.g. 512 or 720",
                Setting::Size.with(self.size)
            ));
        }
        Ok(())
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl MatteSettings {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            weights_digest: None,
            downsample_ratio: DownsampleRatio::Auto,
            outputs: vec![OutputKind::Composite, OutputKind::Alpha],
            format: OutputFormat::Mp4,
            background: Background::default(),
            crf: 18,
            codec: Mp4Codec::H264,
            bitrate: None,
            depth: None,
            premultiplied: false,
            invert_alpha: false,
            no_audio: false,
            max_frames: None,
            gvm: None,
            matanyone: None,
            exr_compression: ExrCompression::Zip,
            linear: false,
            finish: Finish::default(),
        }
    }
}

impl MatteSettings {
    /// Combinations that cannot be written, as one line saying what to use.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(g) = &self.gvm {
            g.validate()?;
        }
        if let Some(m) = &self.matanyone {
            m.validate()?;
        }
        if self.max_frames == Some(0) {
            return Err(format!("{} must be at least 1", Setting::MaxFrames));
        }
        self.finish
            .validate(OutputKind::any_colour(&self.outputs))?;
        let f = self.format;
        if self.outputs.contains(&OutputKind::Rgba) && f == OutputFormat::Mp4 {
            return Err(format!(
                "rgba needs an alpha channel, which mp4 lacks; use {} prores, webm, mov, \
                     png, tiff or exr",
                Setting::Format
            ));
        }
        if f == OutputFormat::Mp4 && self.crf > 51 {
            return Err(format!(
                "{} is beyond mp4's range 0 to 51 (webm goes to 63); use 0-51",
                Setting::Crf.with(self.crf)
            ));
        }
        if self.codec != Mp4Codec::H264 && f != OutputFormat::Mp4 {
            return Err(format!(
                "{} applies to {}, not {}",
                Setting::Codec,
                Setting::Format.with("mp4"),
                f.name()
            ));
        }
        if f != OutputFormat::Exr && (self.linear || self.exr_compression != ExrCompression::Zip) {
            let setting = if self.linear {
                Setting::Linear
            } else {
                Setting::ExrCompression
            };
            return Err(format!(
                "{setting} applies to {}, not {}; add {} or leave out {setting}",
                Setting::Format.with("exr"),
                f.name(),
                Setting::Format.with("exr")
            ));
        }
        match (f, self.depth) {
            (_, None) | (OutputFormat::Png | OutputFormat::Tiff, Some(8 | 16)) => {}
            (OutputFormat::Exr, Some(16 | 32)) => {}
            (OutputFormat::Exr, Some(d)) => {
                return Err(format!(
                    "{} is not offered for exr; use 16 (half) or 32 (float)",
                    Setting::Depth.with(d)
                ))
            }
            (OutputFormat::Prores, Some(10 | 12)) => {}
            (OutputFormat::Png | OutputFormat::Tiff, Some(d)) => {
                return Err(format!(
                    "{} is not offered for {}; use 8 or 16",
                    Setting::Depth.with(d),
                    f.name()
                ))
            }
            (OutputFormat::Prores, Some(d)) => {
                return Err(format!(
                    "{} is not offered for prores; use 10 or 12",
                    Setting::Depth.with(d)
                ))
            }
            (_, Some(_)) => {
                return Err(format!(
                    "{} applies to png, tiff, exr and prores; {} follows the source (10-bit \
                     sources give 10-bit video)",
                    Setting::Depth,
                    f.name()
                ))
            }
        }
        if self.bitrate.is_some() && !matches!(f, OutputFormat::Mp4 | OutputFormat::Webm) {
            return Err(format!(
                "{} applies to mp4 and webm; {} is lossless or fixed-quality",
                Setting::Bitrate,
                f.name()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_chunk_applies_on_the_cpu_only_and_stays_out_of_the_identity() {
        let mut c = Chunks {
            seq_chunk_large: Some(3),
            ..Chunks::default()
        };
        assert_eq!(c.for_video(720, 1280, true), 4);
        assert_eq!(c.for_video(2160, 3840, false), 3);
        c.cpu_seq_chunk = Some(Chunks::CPU_DEFAULT);
        assert_eq!(c.for_video(720, 1280, true), Chunks::CPU_DEFAULT);
        assert_eq!(c.for_video(2160, 3840, true), Chunks::CPU_DEFAULT);
        assert_eq!(c.for_video(720, 1280, false), 4);
        assert_eq!(c.for_video(2160, 3840, false), 3);
        let json = serde_json::to_string(&MatteSettings::new("rvm-mobilenetv3")).unwrap();
        for how in ["chunk", "dtype", "device"] {
            assert!(!json.contains(how), "{json}");
        }
        let run = RunOptions {
            chunks: c,
            precision: Precision::F16,
            ..RunOptions::default()
        };
        let json = serde_json::to_string(&run).unwrap();
        let back: RunOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back.chunks, run.chunks);
        assert_eq!(back.precision, Precision::F16);
    }

    #[test]
    fn typed_choices_parse_once() {
        assert_eq!("f16".parse(), Ok(Precision::F16));
        assert!("f64"
            .parse::<Precision>()
            .unwrap_err()
            .contains("f32, f16 or bf16"));
        assert_eq!("device".parse(), Ok(Placement::Device));
        assert!(Placement::Auto.on_device(true) && !Placement::Cpu.on_device(true));
        assert!("gpu".parse::<Placement>().is_err());
    }

    #[test]
    fn settings_survive_json() {
        let mut s = MatteSettings::new("rvm-resnet50");
        for ratio in [
            DownsampleRatio::Auto,
            DownsampleRatio::Fixed(0.375),
            DownsampleRatio::Scaled { at_1080p: 0.25 },
        ] {
            s.downsample_ratio = ratio;
            s.background = Background::Color(Rgb([1, 2, 3]));
            s.outputs = vec![OutputKind::Foreground];
            let json = serde_json::to_string(&s).unwrap();
            let back: MatteSettings = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
            assert_eq!(back.downsample_ratio, ratio);
        }
    }

    #[test]
    fn parses_colours() {
        assert_eq!("#78ff9b".parse::<Rgb>().unwrap(), Rgb::RVM_GREEN);
        assert_eq!("120, 255, 155".parse::<Rgb>().unwrap(), Rgb::RVM_GREEN);
        assert!("#78ff9".parse::<Rgb>().is_err());
        assert!("300,0,0".parse::<Rgb>().is_err());
    }

    #[test]
    fn parses_ratios() {
        assert_eq!(
            "auto".parse::<DownsampleRatio>().unwrap(),
            DownsampleRatio::Auto
        );
        assert_eq!(
            "0.25".parse::<DownsampleRatio>().unwrap(),
            DownsampleRatio::Fixed(0.25)
        );
        for bad in ["0", "1.5", "-0.2", "nan", "abc"] {
            assert!(bad.parse::<DownsampleRatio>().is_err(), "{bad}");
        }
        assert_eq!(DownsampleRatio::Auto.resolve(1080, 1920), 512.0 / 1920.0);
        assert_eq!(DownsampleRatio::Auto.resolve(144, 256), 1.0);
        let standard = DownsampleRatio::Scaled { at_1080p: 0.25 };
        assert_eq!(standard.resolve(1080, 1920), 0.25);
        assert_eq!(standard.resolve(2160, 3840), 0.125);
        assert_eq!(standard.resolve(720, 1280), 0.375);
        assert_eq!(
            DownsampleRatio::Scaled { at_1080p: 1.0 }.resolve(720, 1280),
            1.0
        );
    }
}
