//! Video writing: H.264 and H.265 in MP4, ProRes 4444 and QuickTime
//! Animation in MOV, VP9 in WebM, each with the pixel format that keeps what
//! the matte needs (a real alpha plane, full-range mattes, 10-bit depth).

use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use ffmpeg::codec::{self, threading};
use ffmpeg::format::Pixel;
use ffmpeg::util::color::Range;
use ffmpeg::{ffi, frame, Dictionary, Packet};
use ffmpeg_next as ffmpeg;

use crate::audio::AudioCarrier;
use crate::color::ColorTags;
use crate::error::MediaError;
use crate::scale::{Geometry, Scaler, YuvSide};
use crate::{libav_url, log, PixelLayout, Rational};

/// Whether H.264 and H.265 are encoded by NVENC (libav's `h264_nvenc` and
/// `hevc_nvenc`) where it opens. Process-wide, as it follows the device the
/// process infers on; set by [`prefer_nvenc`].
static PREFER_NVENC: AtomicBool = AtomicBool::new(false);
/// Said once per process: why NVENC is not used.
static NVENC_REFUSED: Once = Once::new();

/// Encode H.264 and H.265 with NVIDIA's hardware encoder from now on.
/// Where it cannot open (no NVIDIA driver, a card without NVENC such as the
/// H100, a pixel format it lacks) the CPU encoder runs instead and one line
/// says so.
pub fn prefer_nvenc(on: bool) {
    PREFER_NVENC.store(on, Ordering::Relaxed);
}

fn nvenc_refused(why: &str) {
    NVENC_REFUSED.call_once(|| eprintln!("vmatte: info: {why}; encoding on the CPU"));
}

/// The codec of a video output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    /// libx264; the container is usually mp4.
    H264,
    /// libx265, tagged `hvc1` so Apple's players take it.
    H265,
    /// Apple ProRes 4444 (prores_ks), with the alpha as a real plane.
    /// `xq` picks 4444 XQ, the profile with room for 12-bit detail.
    ProRes { xq: bool },
    /// VP9 (libvpx) for WebM, with an alpha plane for RGBA frames.
    Vp9,
    /// QuickTime Animation (RLE): lossless 8-bit RGB, ARGB or gray in MOV.
    QtRle,
}

impl VideoCodec {
    fn encoder_name(self) -> &'static str {
        match self {
            Self::H264 => "libx264",
            Self::H265 => "libx265",
            Self::ProRes { .. } => "prores_ks",
            Self::Vp9 => "libvpx-vp9",
            Self::QtRle => "qtrle",
        }
    }

    /// NVIDIA's hardware encoder for this codec, if it has one.
    fn nvenc_name(self) -> Option<&'static str> {
        match self {
            Self::H264 => Some("h264_nvenc"),
            Self::H265 => Some("hevc_nvenc"),
            _ => None,
        }
    }

    /// What frames of `layout` are encoded as.
    fn target(self, layout: PixelLayout, width: u32, height: u32) -> Result<Target, String> {
        let even = (width | height) & 1 == 0;
        let deep = layout.is_deep();
        if layout.has_alpha() && matches!(self, Self::H264 | Self::H265) {
            return Err(format!(
                "{self:?} has no alpha channel; use prores, webm, mov, png or tiff for rgba"
            ));
        }
        // A matte goes into the luma untouched, full range: limited range
        // would merge neighbouring 8-bit levels.
        let luma = |format| Target {
            format,
            full_range: true,
            gray_into_luma: true,
        };
        let yuv = |format| Target {
            format,
            full_range: false,
            gray_into_luma: false,
        };
        // 4:2:0 H.264 can only crop by 2 pixels, so odd sizes would gain a
        // row or column; they are encoded as 4:4:4 at the exact size. VP9
        // takes odd sizes in 4:2:0.
        let subsampled = even || self == Self::Vp9;
        let planar = |deep: bool| match (deep, subsampled) {
            (true, true) => Pixel::YUV420P10LE,
            (true, false) => Pixel::YUV444P10LE,
            (false, true) => Pixel::YUV420P,
            (false, false) => Pixel::YUV444P,
        };
        Ok(match self {
            Self::H264 | Self::H265 | Self::Vp9 if layout.is_gray() => {
                luma(planar(deep && self != Self::Vp9))
            }
            Self::Vp9 if layout.has_alpha() => yuv(Pixel::YUVA420P),
            Self::H264 | Self::H265 | Self::Vp9 => yuv(planar(deep)),
            Self::ProRes { .. } if layout.has_alpha() => yuv(Pixel::YUVA444P10LE),
            Self::ProRes { .. } => yuv(Pixel::YUV444P10LE),
            Self::QtRle if layout.has_alpha() => yuv(Pixel::ARGB),
            Self::QtRle if layout.is_gray() => yuv(Pixel::GRAY8),
            Self::QtRle => yuv(Pixel::RGB24),
        })
    }
}

struct Target {
    format: Pixel,
    full_range: bool,
    /// Gray frames are copied into the luma plane with neutral chroma
    /// instead of going through swscale's range conversion.
    gray_into_luma: bool,
}

#[derive(Clone, Debug)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub frame_rate: Rational,
    /// Unit of the `pts` passed to [`VideoEncoder::write`].
    pub time_base: Rational,
    pub layout: PixelLayout,
    pub codec: VideoCodec,
    /// Constant quality (x264/x265/VP9), 0 (lossless) to 51 (63 for VP9).
    pub crf: u8,
    /// Average bits per second instead of `crf`.
    pub bitrate: Option<u64>,
    pub color: ColorTags,
    /// Clockwise degrees players rotate the picture by (display matrix).
    pub rotation: i32,
    /// A file whose audio streams are carried into the output, kept in sync
    /// with the video timestamps (which must be that file's).
    pub audio_from: Option<PathBuf>,
    /// End the carried audio with the last video frame (the video was cut
    /// short, e.g. by `--max-frames`) instead of carrying all of it.
    pub audio_until_video_end: bool,
}

impl EncoderSettings {
    pub const DEFAULT_CRF: u8 = 18;

    /// H.264, [`Self::DEFAULT_CRF`], BT.709, no rotation, no audio.
    pub fn new(
        width: u32,
        height: u32,
        frame_rate: Rational,
        time_base: Rational,
        layout: PixelLayout,
    ) -> Self {
        EncoderSettings {
            width,
            height,
            frame_rate,
            time_base,
            layout,
            codec: VideoCodec::H264,
            crf: Self::DEFAULT_CRF,
            bitrate: None,
            color: ColorTags::bt709(),
            rotation: 0,
            audio_from: None,
            audio_until_video_end: false,
        }
    }
}

/// Writes one video stream (plus the audio of [`EncoderSettings::audio_from`]).
///
/// Timestamps are kept exactly in mp4/mov, whose track timescale follows the
/// time base (30000/1001 and variable frame rates survive); Matroska and
/// WebM round them to milliseconds.
pub struct VideoEncoder {
    path: PathBuf,
    output: ffmpeg::format::context::Output,
    encoder: ffmpeg::encoder::Video,
    stream_index: usize,
    settings: EncoderSettings,
    encoder_time_base: ffmpeg::Rational,
    stream_time_base: ffmpeg::Rational,
    /// Length of one frame in the encoder time base, for packet durations.
    frame_ticks: i64,
    scaler: Option<Scaler>,
    input: frame::Video,
    yuv: frame::Video,
    audio: Option<AudioCarrier>,
    frames: u64,
    last_pts: Option<i64>,
    /// Where the last video packet written ends, in seconds.
    video_end: f64,
}

impl VideoEncoder {
    /// `container` is a libav muxer name ("mp4", "mov", "webm"); it is
    /// explicit because `path` may be a temporary name like `out.mp4.partial`.
    pub fn create(
        path: &Path,
        container: &str,
        settings: &EncoderSettings,
    ) -> Result<Self, MediaError> {
        crate::init();
        log::clear();
        validate(path, settings)?;
        let encode_err = |e| MediaError::encode(path, e);
        let invalid = |problem: String| MediaError::Invalid {
            path: path.to_path_buf(),
            problem,
            hint: "choose another format or output kind".into(),
        };

        let (width, height) = (settings.width, settings.height);
        let target = settings
            .codec
            .target(settings.layout, width, height)
            .map_err(invalid)?;
        let mut output = open_output(path, container)?;
        let global_header = output
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);

        let color = settings.color;
        let (codec, encoder) = match nvenc(settings, &target, global_header) {
            Some(opened) => opened,
            None => {
                let name = settings.codec.encoder_name();
                let codec =
                    ffmpeg::encoder::find_by_name(name).ok_or(MediaError::EncoderMissing {
                        path: path.to_path_buf(),
                        encoder: name,
                    })?;
                let encoder = configured(codec, settings, &target, global_header)
                    .and_then(|e| e.open_as_with(codec, codec_options(settings)))
                    .map_err(encode_err)?;
                (codec, encoder)
            }
        };

        let mut stream = output.add_stream(codec).map_err(encode_err)?;
        let stream_index = stream.index();
        stream.set_parameters(&encoder);
        stream.set_time_base(settings.time_base);
        stream.set_avg_frame_rate(settings.frame_rate);
        stream.set_rate(settings.frame_rate);
        // SAFETY: the stream belongs to `output`; side data is copied in.
        unsafe {
            let st = stream.as_mut_ptr();
            if settings.codec == VideoCodec::H265 && container != "matroska" {
                (*(*st).codecpar).codec_tag = u32::from_le_bytes(*b"hvc1");
            }
            if settings.rotation.rem_euclid(360) != 0 {
                set_rotation(st, settings.rotation);
            }
        }
        let audio = match &settings.audio_from {
            Some(input) => AudioCarrier::add_to(input, &mut output, container, path)?,
            None => None,
        };

        let mut header_options = Dictionary::new();
        if is_mov_family(&output) {
            // Index first, so players can start before the whole file loads.
            header_options.set("movflags", "+faststart");
        }
        if audio.is_some() && matches!(container, "webm" | "matroska") {
            // Opus starts before zero (its encoder delay); left alone, the
            // muxer would push every stream, video included, later.
            header_options.set("avoid_negative_ts", "disabled");
        }
        output
            .write_header_with(header_options)
            .map_err(|e| MediaError::write(path, e))?;
        let mut audio = audio;
        if let Some(audio) = audio.as_mut() {
            audio.header_written(&output);
        }
        // The muxer may pick its own time base (mp4: 1/timescale).
        let stream_time_base = output
            .stream(stream_index)
            .expect("stream was just added")
            .time_base();

        let input_format = settings.layout.pixel();
        let mut yuv = frame::Video::new(target.format, width, height);
        let scaler = if target.gray_into_luma {
            fill_neutral_chroma(&mut yuv);
            None
        } else {
            let yuv_side = (!settings.layout.is_gray()
                && !matches!(target.format, Pixel::ARGB | Pixel::RGB24 | Pixel::GRAY8))
            .then_some(YuvSide {
                sws_matrix: ffi::AVColorSpace::from(color.sws_matrix()) as std::ffi::c_int,
                full_range: target.full_range,
            });
            let scaler = Scaler::new(
                Geometry {
                    format: input_format,
                    width,
                    height,
                },
                Geometry {
                    format: target.format,
                    width,
                    height,
                },
                // Use every input chroma sample instead of every other one.
                ffi::SWS_FULL_CHR_H_INP,
                yuv_side,
            )
            .map_err(|reason| MediaError::Encode {
                path: path.to_path_buf(),
                reason,
            })?;
            Some(scaler)
        };

        let encoder_time_base: ffmpeg::Rational = settings.time_base.into();
        Ok(VideoEncoder {
            path: path.to_path_buf(),
            output,
            encoder,
            stream_index,
            settings: settings.clone(),
            encoder_time_base,
            stream_time_base,
            frame_ticks: rescale(1, settings.frame_rate.inverse(), settings.time_base).max(1),
            scaler,
            input: frame::Video::new(input_format, width, height),
            yuv,
            audio,
            frames: 0,
            last_pts: None,
            video_end: 0.0,
        })
    }

    /// Encodes one frame. `pts` is in `settings.time_base`; `None` stands for
    /// the frame's index times the frame duration (constant frame rate).
    /// Timestamps must increase; one that does not is moved one tick past
    /// the previous frame.
    pub fn write(&mut self, data: &[u8], pts: Option<i64>) -> Result<(), MediaError> {
        log::clear();
        let (width, height) = (self.settings.width as usize, self.settings.height as usize);
        let row = width * self.settings.layout.bytes_per_pixel();
        if data.len() != row * height {
            let s = &self.settings;
            return Err(frame_size_error(
                &self.path,
                data.len(),
                (s.width, s.height, s.layout),
            ));
        }
        // The encoder may still hold a reference to the previous picture;
        // writing into a shared buffer would change it behind its back.
        // SAFETY: valid frame; av_frame_make_writable copies if shared.
        let ret = unsafe { ffi::av_frame_make_writable(self.yuv.as_mut_ptr()) };
        if ret < 0 {
            return Err(MediaError::encode(&self.path, ret.into()));
        }
        match self.scaler.as_mut() {
            Some(scaler) => {
                let stride = self.input.stride(0);
                let plane = self.input.data_mut(0);
                for (dst, src) in plane.chunks_mut(stride).zip(data.chunks_exact(row)) {
                    dst[..row].copy_from_slice(src);
                }
                scaler.run(&self.input, &mut self.yuv);
            }
            None => gray_into_luma(data, self.settings.layout, width, &mut self.yuv),
        }
        let pts = pts.unwrap_or_else(|| {
            rescale(
                self.frames as i64,
                self.settings.frame_rate.inverse(),
                self.settings.time_base,
            )
        });
        // Sources with glitched timestamps repeat or reorder a pts; the muxer
        // would reject the file, so such a frame moves one tick later.
        let pts = match self.last_pts {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        self.last_pts = Some(pts);
        self.yuv.set_pts(Some(pts));
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| MediaError::encode(&self.path, e))?;
        self.frames += 1;
        self.drain()
    }

    /// Flushes the encoder and completes the file.
    pub fn finish(mut self) -> Result<(), MediaError> {
        log::clear();
        self.encoder
            .send_eof()
            .map_err(|e| MediaError::encode(&self.path, e))?;
        self.drain()?;
        let until = if self.settings.audio_until_video_end {
            self.video_end
        } else {
            f64::INFINITY
        };
        if let Some(audio) = self.audio.as_mut() {
            audio.finish(&mut self.output, until)?;
        }
        self.output
            .write_trailer()
            .map_err(|e| MediaError::write(&self.path, e))
    }

    /// Moves every packet the encoder has ready into the file.
    fn drain(&mut self) -> Result<(), MediaError> {
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    if packet.duration() == 0 {
                        // Without it mp4 gives the last frame no duration.
                        packet.set_duration(self.frame_ticks);
                    }
                    if let Some(pts) = packet.pts() {
                        let tb = self.encoder_time_base;
                        let seconds = |t: i64| {
                            t as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator())
                        };
                        self.video_end = self.video_end.max(seconds(pts + packet.duration()));
                        if let Some(audio) = self.audio.as_mut() {
                            audio.pump(&mut self.output, seconds(pts))?;
                        }
                    }
                    packet.set_stream(self.stream_index);
                    packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
                    packet
                        .write_interleaved(&mut self.output)
                        .map_err(|e| MediaError::write(&self.path, e))?;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    return Ok(())
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(MediaError::encode(&self.path, e)),
            }
        }
    }
}

fn validate(path: &Path, s: &EncoderSettings) -> Result<(), MediaError> {
    let invalid = |problem: String| MediaError::Invalid {
        path: path.to_path_buf(),
        problem,
        hint: "this is a bug in the caller".into(),
    };
    if s.width == 0 || s.height == 0 || s.width > 16384 || s.height > 16384 {
        return Err(invalid(format!(
            "invalid video size {}x{}",
            s.width, s.height
        )));
    }
    if !s.frame_rate.is_positive() {
        return Err(invalid(format!("invalid frame rate {}", s.frame_rate)));
    }
    if !s.time_base.is_positive() {
        return Err(invalid(format!("invalid time base {}", s.time_base)));
    }
    let max_crf = if s.codec == VideoCodec::Vp9 { 63 } else { 51 };
    if s.crf > max_crf {
        return Err(invalid(format!("crf {} is outside 0..={max_crf}", s.crf)));
    }
    Ok(())
}

pub(crate) fn frame_size_error(
    path: &Path,
    got: usize,
    (width, height, layout): (u32, u32, PixelLayout),
) -> MediaError {
    let expected = width as usize * height as usize * layout.bytes_per_pixel();
    MediaError::Invalid {
        path: path.to_path_buf(),
        problem: format!(
            "frame data is {got} bytes, expected {expected} for {width}x{height} {layout:?}"
        ),
        hint: "this is a bug in the caller".into(),
    }
}

fn rescale(value: i64, from: Rational, to: Rational) -> i64 {
    // SAFETY: pure arithmetic.
    unsafe {
        ffi::av_rescale_q(
            value,
            ffmpeg::Rational::from(from).into(),
            ffmpeg::Rational::from(to).into(),
        )
    }
}

fn is_mov_family(output: &ffmpeg::format::context::Output) -> bool {
    matches!(
        output.format().name(),
        "mp4" | "mov" | "ipod" | "3gp" | "3g2" | "ismv" | "f4v"
    )
}

fn open_output(
    path: &Path,
    container: &str,
) -> Result<ffmpeg::format::context::Output, MediaError> {
    let url = libav_url(path)?;
    let format = std::ffi::CString::new(container).map_err(|_| MediaError::Invalid {
        path: path.to_path_buf(),
        problem: format!("invalid container name {container:?}"),
        hint: "this is a bug in the caller".into(),
    })?;
    let mut ctx = ptr::null_mut();
    // SAFETY: standard allocation; on success the context is owned by
    // `Output`, which closes the file and frees the context on drop.
    unsafe {
        let ret = ffi::avformat_alloc_output_context2(
            &mut ctx,
            ptr::null(),
            format.as_ptr(),
            url.as_ptr(),
        );
        if ret < 0 || ctx.is_null() {
            return Err(MediaError::Invalid {
                path: path.to_path_buf(),
                problem: format!("libav has no {container:?} container"),
                hint: "use a muxer name such as mp4, mov or matroska".into(),
            });
        }
        let ret = ffi::avio_open(&mut (*ctx).pb, url.as_ptr(), ffi::AVIO_FLAG_WRITE);
        if ret < 0 {
            ffi::avformat_free_context(ctx);
            return Err(MediaError::write(path, ffmpeg::Error::from(ret)));
        }
        Ok(ffmpeg::format::context::Output::wrap(ctx))
    }
}

/// Encoder options for the codec's quality and speed.
/// An encoder context for `codec` set up for `settings` and `target`, not
/// yet opened.
fn configured(
    codec: ffmpeg::Codec,
    settings: &EncoderSettings,
    target: &Target,
    global_header: bool,
) -> Result<ffmpeg::encoder::video::Video, ffmpeg::Error> {
    let mut context = codec::Context::new_with_codec(codec);
    // Encoders run single-threaded unless asked; 0 = as many as useful.
    context.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    let mut encoder = context.encoder().video()?;
    encoder.set_width(settings.width);
    encoder.set_height(settings.height);
    encoder.set_format(target.format);
    encoder.set_time_base(settings.time_base);
    encoder.set_frame_rate(Some(settings.frame_rate));
    let color = settings.color;
    encoder.set_colorspace(color.sws_matrix());
    encoder.set_color_range(if target.full_range {
        Range::JPEG
    } else {
        Range::MPEG
    });
    // SAFETY: plain field writes on a context we own, before opening.
    unsafe {
        let ctx = encoder.as_mut_ptr();
        (*ctx).color_primaries = color.primaries;
        (*ctx).color_trc = color.transfer;
    }
    if global_header {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    if let Some(bitrate) = settings.bitrate {
        encoder.set_bit_rate(bitrate as usize);
    }
    Ok(encoder)
}

/// NVENC opened for `settings`, when asked for ([`prefer_nvenc`]) and
/// possible; else `None`, said once per process.
fn nvenc(
    settings: &EncoderSettings,
    target: &Target,
    global_header: bool,
) -> Option<(ffmpeg::Codec, ffmpeg::encoder::Video)> {
    if !PREFER_NVENC.load(Ordering::Relaxed) {
        return None;
    }
    let name = settings.codec.nvenc_name()?;
    // 8-bit 4:2:0 and 4:4:4 planes as they are; its 10-bit formats are not
    // the ones the CPU encoders take, so deep outputs stay on the CPU.
    if !matches!(target.format, Pixel::YUV420P | Pixel::YUV444P) {
        nvenc_refused(&format!(
            "NVENC ({name}) takes 8-bit video here, not {:?}",
            target.format
        ));
        return None;
    }
    let Some(codec) = ffmpeg::encoder::find_by_name(name) else {
        nvenc_refused(&format!("this libav has no {name}"));
        return None;
    };
    let mut o = Dictionary::new();
    o.set("preset", "p5");
    o.set("tune", "hq");
    o.set("rc", "vbr");
    if settings.bitrate.is_none() {
        // Constant quality on the CPU encoders' scale.
        o.set("cq", &settings.crf.to_string());
    }
    match configured(codec, settings, target, global_header).and_then(|e| e.open_as_with(codec, o))
    {
        Ok(encoder) => Some((codec, encoder)),
        Err(e) => {
            nvenc_refused(&format!("NVENC ({name}) did not open ({e})"));
            None
        }
    }
}

fn codec_options(s: &EncoderSettings) -> Dictionary<'static> {
    let mut o = Dictionary::new();
    match s.codec {
        VideoCodec::H264 => {
            if s.bitrate.is_none() {
                o.set("crf", &s.crf.to_string());
            }
        }
        VideoCodec::H265 => {
            if s.bitrate.is_none() {
                o.set("crf", &s.crf.to_string());
            }
            o.set("x265-params", "log-level=error");
        }
        VideoCodec::Vp9 => {
            if s.bitrate.is_none() {
                // Constant quality needs the bitrate cap off.
                o.set("crf", &s.crf.to_string());
                o.set("b", "0");
            }
            o.set("deadline", "good");
            o.set("cpu-used", "4");
            o.set("row-mt", "1");
        }
        VideoCodec::ProRes { xq } => {
            o.set("profile", if xq { "5" } else { "4" });
            o.set("vendor", "apl0");
            // 16-bit alpha: the matte's full precision.
            o.set("alpha_bits", "16");
        }
        VideoCodec::QtRle => {}
    }
    o
}

/// Tags the stream so players rotate the picture `clockwise` degrees.
///
/// # Safety
/// `stream` must be a live stream of an output context, before its header
/// is written.
unsafe fn set_rotation(stream: *mut ffi::AVStream, clockwise: i32) {
    // SAFETY: `stream` is a live stream of an output context whose header
    // is not written yet (the caller's contract); the side data, when
    // allocated, has room for the display matrix's 9 values.
    unsafe {
        let size = 9 * std::mem::size_of::<i32>();
        let data = ffi::av_stream_new_side_data(
            stream,
            ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
            size,
        );
        if !data.is_null() {
            // libav 5.1 reads this angle clockwise (and reports counterclockwise).
            ffi::av_display_rotation_set(data as *mut i32, f64::from(clockwise));
        }
    }
}

/// Neutral chroma (and opaque nothing else) for a luma-only picture.
fn fill_neutral_chroma(yuv: &mut frame::Video) {
    let deep = matches!(yuv.format(), Pixel::YUV420P10LE | Pixel::YUV444P10LE);
    for plane in 1..yuv.planes().min(3) {
        let data = yuv.data_mut(plane);
        if deep {
            for px in data.chunks_exact_mut(2) {
                px.copy_from_slice(&512u16.to_le_bytes());
            }
        } else {
            data.fill(128);
        }
    }
}

/// Copies a gray frame into the luma plane unchanged (8-bit), or rounded to
/// 10 bits from 16.
fn gray_into_luma(data: &[u8], layout: PixelLayout, width: usize, yuv: &mut frame::Video) {
    let deep_out = matches!(yuv.format(), Pixel::YUV420P10LE | Pixel::YUV444P10LE);
    let row_in = width * layout.bytes_per_pixel();
    let stride = yuv.stride(0);
    let luma = yuv.data_mut(0);
    for (dst, src) in luma.chunks_mut(stride).zip(data.chunks_exact(row_in)) {
        match (layout, deep_out) {
            (PixelLayout::Gray8, false) => dst[..width].copy_from_slice(src),
            (PixelLayout::Gray16, true) => {
                for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
                    let v = u32::from(u16::from_le_bytes([s[0], s[1]]));
                    let ten = ((v * 1023 + 32767) / 65535) as u16;
                    d.copy_from_slice(&ten.to_le_bytes());
                }
            }
            (PixelLayout::Gray16, false) => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    let v = u32::from(u16::from_le_bytes([s[0], s[1]]));
                    *d = ((v * 255 + 32767) / 65535) as u8;
                }
            }
            _ => {
                for (d, s) in dst.chunks_exact_mut(2).zip(src.iter()) {
                    let ten = ((u32::from(*s) * 1023 + 127) / 255) as u16;
                    d.copy_from_slice(&ten.to_le_bytes());
                }
            }
        }
    }
}
