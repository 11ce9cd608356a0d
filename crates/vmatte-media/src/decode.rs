//! Streaming decode of the first video stream of a file.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use ffmpeg::codec::{self, threading};
use ffmpeg::format::stream::Disposition;
use ffmpeg::util::color::{Range, Space};
use ffmpeg::{ffi, frame, media, Packet};
use ffmpeg_next as ffmpeg;

use crate::color::{self, color_tags, Colorimetry};
use crate::error::{self, MediaError};
use crate::frame::{Frame, FrameSource, SourceWarning, VideoInfo, WarningKind, Yuv420};
use crate::input::open_input;
use crate::log;
use crate::scale::RgbConverter;
use crate::Rational;

/// Whether videos are decoded by NVDEC (libav's `<codec>_cuvid` decoders)
/// where the codec has one. Process-wide, as it follows the device the
/// process infers on; set by [`prefer_nvdec`].
static PREFER_NVDEC: AtomicBool = AtomicBool::new(false);
/// Said once per process: why NVDEC is not used.
static NVDEC_REFUSED: Once = Once::new();

/// Decode on the GPU (NVDEC) from now on where the codec allows: H.264,
/// HEVC, AV1, VP8/9, MPEG-1/2/4, VC-1, MJPEG. Frames still arrive in system
/// memory. Where NVDEC cannot open (no NVIDIA driver, a profile it lacks),
/// the software decoder runs instead and one line says so.
pub fn prefer_nvdec(on: bool) {
    PREFER_NVDEC.store(on, Ordering::Relaxed);
}

/// The NVDEC decoder for `codec_name`, opened, if asked for and possible.
fn nvdec(
    stream: &ffmpeg::format::stream::Stream,
    log_id: usize,
    codec_name: &str,
) -> Option<ffmpeg::decoder::Video> {
    if !PREFER_NVDEC.load(Ordering::Relaxed) {
        return None;
    }
    let hw = ffmpeg::decoder::find_by_name(&format!("{codec_name}_cuvid"))?;
    let opened = tagged_context(stream, log_id)
        .and_then(|context| context.decoder().open_as(hw))
        .and_then(|d| d.video());
    match opened {
        Ok(d) => Some(d),
        Err(e) => {
            NVDEC_REFUSED.call_once(|| {
                eprintln!(
                    "vmatte: info: NVDEC ({codec_name}_cuvid) did not open ({e}); decoding on the CPU"
                )
            });
            None
        }
    }
}

/// A decoding context for `stream`, as ffmpeg sets one up, tagged with
/// this decoder's `log_id` so that damage it logs is told as this video's.
fn tagged_context(
    stream: &ffmpeg::format::stream::Stream,
    log_id: usize,
) -> Result<codec::Context, ffmpeg::Error> {
    let mut context = codec::Context::from_parameters(stream.parameters())?;
    // SAFETY: plain field writes on a context we own; libav expects the
    // packet time base to be set before opening (as ffmpeg does), and
    // leaves `opaque` to its user (libav copies it to the contexts of its
    // decoding threads).
    unsafe {
        (*context.as_mut_ptr()).pkt_timebase = stream.time_base().into();
        (*context.as_mut_ptr()).opaque = log_id as *mut std::ffi::c_void;
    }
    Ok(context)
}

pub(crate) struct VideoDecoder {
    info: VideoInfo,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    stream_tags: (Space, Range),
    converter: RgbConverter,
    decoded: frame::Video,
    /// Packets of our stream handed to the decoder.
    packets: u64,
    /// Frame count the container declares (mp4 sample tables, AVI headers).
    declared_frames: Option<u64>,
    next_index: u64,
    draining: bool,
    done: bool,
    /// Hand out 4:2:0 planes instead of RGB where the frames have them.
    yuv: bool,
    warnings: Vec<SourceWarning>,
    /// The picture size last seen, to say once where it changes.
    last_size: (u32, u32),
    /// This decoder's tag on its codec contexts, under which the log keeps
    /// its error lines (see `log::take_decoder_error`).
    log_id: usize,
    /// The frame of the last damage warning.
    warnings_damage_at: Option<u64>,
    /// Damage warnings given so far (at most [`MAX_DAMAGE_WARNINGS`]).
    damage_warnings: usize,
}

/// Damage warnings listed per video: a badly broken file says where its
/// first damage is and that there is more, not one line per frame.
const MAX_DAMAGE_WARNINGS: usize = 32;

/// Frames a decoder's threads run ahead: damage they log shows in a frame
/// up to this many later.
const DAMAGE_SPAN: u64 = 16;

impl VideoDecoder {
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        crate::init();
        log::clear();
        let input = open_input(path)?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            // Cover art of audio files poses as a one-frame video stream.
            .filter(|s| !s.disposition().contains(Disposition::ATTACHED_PIC))
            .ok_or_else(|| MediaError::NoVideoStream {
                path: path.to_path_buf(),
            })?;
        let stream_index = stream.index();
        let time_base = stream.time_base();

        let codec_name = stream.parameters().id().name().to_owned();
        static NEXT_LOG_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let log_id = NEXT_LOG_ID.fetch_add(1, Ordering::Relaxed);
        let software = || {
            let mut context = tagged_context(&stream, log_id)?;
            // Frame threads use every core; count 0 lets libav pick the number.
            context.set_threading(threading::Config {
                kind: threading::Type::Frame,
                count: 0,
                ..Default::default()
            });
            context.decoder().video()
        };
        let decoder = match nvdec(&stream, log_id, &codec_name) {
            Some(d) => d,
            None => software().map_err(|e| match e {
                ffmpeg::Error::DecoderNotFound => MediaError::UnsupportedCodec {
                    path: path.to_path_buf(),
                    codec: codec_name.clone(),
                },
                e => MediaError::corrupt(path, e),
            })?,
        };
        let decoder_name = decoder
            .codec()
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| codec_name.clone());

        let (width, height) = (decoder.width(), decoder.height());
        if width == 0 || height == 0 {
            return Err(MediaError::Corrupt {
                path: path.to_path_buf(),
                reason: "the video stream has no picture size".into(),
            });
        }
        let stream_tags = (decoder.color_space(), decoder.color_range());
        let colour = Colorimetry::resolve(decoder.format(), stream_tags.0, stream_tags.1, height);

        let frame_rate = [stream.avg_frame_rate(), stream.rate()]
            .into_iter()
            .map(Rational::from)
            .find(Rational::is_positive)
            // Only still images lack both; 25 is libav's own default.
            .unwrap_or(Rational::new(25, 1));
        let duration_s = if stream.duration() > 0 {
            Some(stream.duration() as f64 * f64::from(time_base))
        } else if input.duration() > 0 {
            Some(input.duration() as f64 / f64::from(ffi::AV_TIME_BASE))
        } else {
            None
        };
        let declared_frames = u64::try_from(stream.frames()).ok().filter(|&n| n > 0);
        let frame_count = declared_frames
            .or_else(|| duration_s.map(|d| (d * frame_rate.as_f64()).round() as u64));

        let info = VideoInfo {
            path: path.to_path_buf(),
            width,
            height,
            frame_rate,
            time_base: time_base.into(),
            frame_count,
            duration_s,
            container: input.format().name().to_owned(),
            codec: codec_name,
            pixel_format: color::pixel_name(decoder.format()),
            color_matrix: colour.matrix_name(),
            color_range: colour.range_name().to_owned(),
            rotation: rotation(&stream),
            color_tags: color_tags(&decoder, colour.matrix),
            bit_depth: color::bit_depth(decoder.format()),
            decoder: decoder_name,
        };
        Ok(VideoDecoder {
            info,
            input,
            decoder,
            stream_index,
            stream_tags,
            converter: RgbConverter::new(width, height),
            decoded: frame::Video::empty(),
            packets: 0,
            declared_frames,
            next_index: 0,
            draining: false,
            done: false,
            yuv: false,
            warnings: Vec::new(),
            last_size: (width, height),
            log_id,
            warnings_damage_at: None,
            damage_warnings: 0,
        })
    }

    fn path(&self) -> &Path {
        &self.info.path
    }

    /// Feeds the decoder the next packet of our stream, or the end-of-stream
    /// signal once the demuxer has no more.
    fn feed(&mut self) -> Result<(), MediaError> {
        loop {
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() != self.stream_index => continue,
                Ok(()) => {
                    self.packets += 1;
                    return match self.decoder.send_packet(&packet) {
                        Ok(()) => Ok(()),
                        // A stream cut mid-GOP (recordings, .ts) starts with
                        // packets that reference missing frames; only once a
                        // frame came out do decode errors mean damage.
                        Err(_) if self.next_index == 0 => Ok(()),
                        Err(e) => Err(self.damaged("decoding", e)),
                    };
                }
                Err(ffmpeg::Error::Eof) => {
                    self.draining = true;
                    // Only fails if already draining, which cannot happen.
                    let _ = self.decoder.send_eof();
                    return Ok(());
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => continue,
                // Typically "partial file": the index points past the data.
                Err(e) => return Err(self.damaged("reading", e)),
            }
        }
    }

    /// Where the damage is helps tell a cut-off file from a glitch.
    fn damaged(&self, what: &str, err: ffmpeg::Error) -> MediaError {
        MediaError::Corrupt {
            path: self.path().to_path_buf(),
            reason: format!(
                "{what} failed after {} frames: {}",
                self.next_index,
                error::reason(err)
            ),
        }
    }

    /// A clean end of stream can still hide a truncated file: mp4 and AVI
    /// declare how many frames they hold, and libav sometimes just stops.
    fn check_complete(&self) -> Result<(), MediaError> {
        if self.next_index == 0 {
            return Err(MediaError::Corrupt {
                path: self.path().to_path_buf(),
                reason: log::take_last_error()
                    .unwrap_or_else(|| "no frame could be decoded".into()),
            });
        }
        if let Some(declared) = self.declared_frames {
            // Containers round or count oddly at the edges (edit lists,
            // dropped-frame markers): allow 2%, at least 2 frames.
            let slack = (declared / 50).max(2);
            if self.packets + slack < declared {
                return Err(MediaError::Corrupt {
                    path: self.path().to_path_buf(),
                    reason: format!(
                        "the container declares {declared} frames but only {} are present",
                        self.packets
                    ),
                });
            }
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<Frame>, MediaError> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => return self.convert().map(Some),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    if self.draining {
                        // Not expected after send_eof; treat like the end.
                        self.check_complete()?;
                        return Ok(None);
                    }
                    self.feed()?;
                }
                Err(ffmpeg::Error::Eof) => {
                    self.check_complete()?;
                    return Ok(None);
                }
                Err(_) if self.next_index == 0 && !self.draining => self.feed()?,
                Err(e) => return Err(self.damaged("decoding", e)),
            }
        }
    }

    /// Notes what is wrong with the frame just decoded: damage the decoder
    /// concealed, or a new picture size (scaled back to the stream's).
    fn inspect(&mut self) {
        let frame = self.next_index;
        // SAFETY: reads two plain fields of the frame libav just filled.
        let (errors, flags) = unsafe {
            let f = self.decoded.as_ptr();
            ((*f).decode_error_flags, (*f).flags)
        };
        // With frame threading, libav's threads log a damaged packet a few
        // frames before its picture comes out, and may flag the picture
        // after handing it over; a warning goes with the frame where either
        // is first seen.
        let logged = log::take_decoder_error(self.log_id);
        let flagged = errors != 0 || flags & ffi::AV_FRAME_FLAG_CORRUPT != 0;
        // Errors or a flag a few frames after a warning are the same
        // damage (its threads log several lines for one broken packet).
        let same_damage = self
            .warnings_damage_at
            .is_some_and(|at| frame <= at + DAMAGE_SPAN);
        if (logged.is_some() || flagged) && !same_damage {
            self.warnings_damage_at = Some(frame);
            self.damage_warnings += 1;
            let message = if self.damage_warnings > MAX_DAMAGE_WARNINGS {
                None
            } else if self.damage_warnings == MAX_DAMAGE_WARNINGS {
                Some(
                    "damaged data near this frame, concealed by the decoder; further damage in \
                     this video is not listed"
                        .to_string(),
                )
            } else if let Some(first) = logged {
                Some(format!(
                    "damaged data near this frame, concealed by the decoder ({first})"
                ))
            } else {
                Some("damaged data, concealed by the decoder".into())
            };
            if let Some(message) = message {
                self.warnings.push(SourceWarning {
                    frame,
                    kind: WarningKind::Damaged,
                    message,
                });
            }
        }
        let size = (self.decoded.width(), self.decoded.height());
        if size != self.last_size {
            self.warnings.push(SourceWarning {
                frame,
                kind: WarningKind::Resized,
                message: format!(
                    "the picture changes from {}x{} to {}x{}; scaled to {}x{} from here",
                    self.last_size.0,
                    self.last_size.1,
                    size.0,
                    size.1,
                    self.info.width,
                    self.info.height
                ),
            });
            self.last_size = size;
        }
    }

    fn convert(&mut self) -> Result<Frame, MediaError> {
        self.inspect();
        let same_size =
            self.decoded.width() == self.info.width && self.decoded.height() == self.info.height;
        // Planes of another size go through swscale, which scales them.
        if self.yuv && !self.converter.is_deep() && same_size {
            if let Some(yuv) = yuv420_planes(&self.decoded, self.stream_tags) {
                let frame = Frame {
                    width: self.info.width,
                    height: self.info.height,
                    rgb: Vec::new(),
                    deep: false,
                    yuv: Some(yuv),
                    pts: self.decoded.timestamp(),
                    index: self.next_index,
                };
                self.next_index += 1;
                return Ok(frame);
            }
        }
        let rgb = self
            .converter
            .convert(&self.decoded, self.stream_tags)
            .map_err(|problem| MediaError::Unsupported {
                path: self.info.path.clone(),
                problem,
            })?;
        let frame = Frame {
            width: self.info.width,
            height: self.info.height,
            rgb,
            deep: self.converter.is_deep(),
            yuv: None,
            pts: self.decoded.timestamp(),
            index: self.next_index,
        };
        self.next_index += 1;
        Ok(frame)
    }
}

impl FrameSource for VideoDecoder {
    fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        if self.done {
            return Ok(None);
        }
        log::clear();
        let result = self.next();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn set_deep(&mut self, deep: bool) {
        self.converter.set_deep(deep);
    }

    fn set_yuv(&mut self, yuv: bool) {
        self.yuv = yuv;
    }

    fn take_warnings(&mut self) -> Vec<SourceWarning> {
        std::mem::take(&mut self.warnings)
    }
}

/// The planes of an 8-bit 4:2:0 frame (yuv420p, yuvj420p or nv12, the
/// formats decoders and NVDEC give for nearly all video), with its matrix;
/// `None` for any other format.
fn yuv420_planes(frame: &frame::Video, stream_tags: (Space, Range)) -> Option<Yuv420> {
    use ffmpeg::format::Pixel;
    let format = frame.format();
    if !matches!(format, Pixel::YUV420P | Pixel::YUVJ420P | Pixel::NV12) {
        return None;
    }
    let (space, range) = color::merge((frame.color_space(), frame.color_range()), stream_tags);
    let colour = Colorimetry::resolve(format, space, range, frame.height());
    let (kr, kb) = match colour.matrix {
        Space::BT709 => (0.2126, 0.0722),
        Space::BT2020NCL | Space::BT2020CL => (0.2627, 0.0593),
        Space::SMPTE240M => (0.212, 0.087),
        Space::FCC => (0.30, 0.11),
        // BT.601 (470BG, SMPTE 170M) and whatever else swscale treats so.
        _ => (0.299, 0.114),
    };
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let plane = |index: usize, row: usize, rows: usize| {
        let (data, stride) = (frame.data(index), frame.stride(index));
        let mut out = Vec::with_capacity(row * rows);
        for r in 0..rows {
            out.extend_from_slice(&data[r * stride..r * stride + row]);
        }
        out
    };
    let y = plane(0, w, h);
    let (u, v) = if format == Pixel::NV12 {
        let uv = plane(1, 2 * cw, ch);
        (
            uv.iter().step_by(2).copied().collect(),
            uv.iter().skip(1).step_by(2).copied().collect(),
        )
    } else {
        (plane(1, cw, ch), plane(2, cw, ch))
    };
    Some(Yuv420 {
        y,
        u,
        v,
        kr,
        kb,
        full_range: colour.full_range,
    })
}

/// Clockwise rotation from the stream's display matrix, in [0, 360).
fn rotation(stream: &ffmpeg::format::stream::Stream) -> i32 {
    use ffmpeg::codec::packet::side_data::Type;
    for side in stream.side_data() {
        let data = side.data();
        if side.kind() == Type::DisplayMatrix && data.len() >= 9 * 4 {
            let mut matrix = [0i32; 9];
            for (m, bytes) in matrix.iter_mut().zip(data.chunks_exact(4)) {
                *m = i32::from_ne_bytes(bytes.try_into().expect("4-byte chunk"));
            }
            // SAFETY: reads the 9 values of the matrix.
            let ccw = unsafe { ffi::av_display_rotation_get(matrix.as_ptr()) };
            if ccw.is_nan() {
                return 0;
            }
            return (-ccw.round() as i32).rem_euclid(360);
        }
    }
    0
}

impl Drop for VideoDecoder {
    /// What libav logged about the last frames, never asked for, goes too.
    fn drop(&mut self) {
        log::take_decoder_error(self.log_id);
    }
}
