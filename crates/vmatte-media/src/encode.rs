//! H.264 (libx264) writing.

use std::path::{Path, PathBuf};
use std::ptr;

use ffmpeg::codec::{self, threading};
use ffmpeg::format::Pixel;
use ffmpeg::util::color::{Range, Space};
use ffmpeg::{ffi, frame, Dictionary, Packet};
use ffmpeg_next as ffmpeg;

use crate::error::MediaError;
use crate::scale::{Geometry, Scaler, YuvSide};
use crate::{libav_url, log, PixelLayout, Rational};

#[derive(Clone, Debug)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub frame_rate: Rational,
    /// Unit of the `pts` passed to [`VideoEncoder::write`].
    pub time_base: Rational,
    pub layout: PixelLayout,
    /// x264 constant rate factor, 0 (lossless) to 51.
    pub crf: u8,
}

impl EncoderSettings {
    pub const DEFAULT_CRF: u8 = 18;

    /// Settings with [`Self::DEFAULT_CRF`].
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
            crf: Self::DEFAULT_CRF,
        }
    }
}

/// Writes H.264 video, tagged BT.709 limited range.
///
/// Even sizes are encoded as yuv420p, which every player handles. Odd sizes
/// cannot be: 4:2:0 H.264 can only crop by 2 pixels, so the picture would
/// gain a row or column. They are encoded as yuv444p at the exact size
/// instead, which ffmpeg, VLC and mpv play but browsers and QuickTime may not.
///
/// Timestamps are kept exactly in mp4/mov, whose track timescale follows the
/// time base (30000/1001 and variable frame rates survive); Matroska rounds
/// them to milliseconds.
///
/// [`PixelLayout::Gray8`] input becomes the luma of the video with neutral
/// chroma, so decoding it gives back the gray values (to within the
/// quantisation of limited range and of the codec).
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
    scaler: Scaler,
    input: frame::Video,
    yuv: frame::Video,
    frames: u64,
    last_pts: Option<i64>,
}

impl VideoEncoder {
    /// `container` is a libav muxer name ("mp4", "mov", "matroska"); it is
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

        let codec = ffmpeg::encoder::find_by_name("libx264").ok_or(MediaError::EncoderMissing {
            path: path.to_path_buf(),
            encoder: "libx264",
        })?;
        let mut output = open_output(path, container)?;
        let global_header = output
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);

        let even = (settings.width | settings.height) & 1 == 0;
        let yuv_format = if even { Pixel::YUV420P } else { Pixel::YUV444P };
        let mut context = codec::Context::new_with_codec(codec);
        // x264 runs single-threaded unless asked; 0 = as many as useful.
        context.set_threading(threading::Config {
            kind: threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let mut encoder = context.encoder().video().map_err(encode_err)?;
        encoder.set_width(settings.width);
        encoder.set_height(settings.height);
        encoder.set_format(yuv_format);
        encoder.set_time_base(settings.time_base);
        encoder.set_frame_rate(Some(settings.frame_rate));
        encoder.set_colorspace(Space::BT709);
        encoder.set_color_range(Range::MPEG);
        // SAFETY: plain field writes on a context we own, before opening.
        unsafe {
            let ctx = encoder.as_mut_ptr();
            (*ctx).color_primaries = ffi::AVColorPrimaries::AVCOL_PRI_BT709;
            (*ctx).color_trc = ffi::AVColorTransferCharacteristic::AVCOL_TRC_BT709;
        }
        if global_header {
            encoder.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut options = Dictionary::new();
        options.set("crf", &settings.crf.to_string());
        let encoder = encoder.open_as_with(codec, options).map_err(encode_err)?;

        let mut stream = output.add_stream(codec).map_err(encode_err)?;
        let stream_index = stream.index();
        stream.set_parameters(&encoder);
        stream.set_time_base(settings.time_base);
        stream.set_avg_frame_rate(settings.frame_rate);
        stream.set_rate(settings.frame_rate);

        let mut header_options = Dictionary::new();
        if is_mov_family(&output) {
            // Index first, so players can start before the whole file loads.
            header_options.set("movflags", "+faststart");
        }
        output
            .write_header_with(header_options)
            .map_err(|e| MediaError::write(path, e))?;
        // The muxer may pick its own time base (mp4: 1/timescale).
        let stream_time_base = output
            .stream(stream_index)
            .expect("stream was just added")
            .time_base();

        let (width, height) = (settings.width, settings.height);
        let input_format = settings.layout.pixel();
        let scaler = Scaler::new(
            Geometry {
                format: input_format,
                width,
                height,
            },
            Geometry {
                format: yuv_format,
                width,
                height,
            },
            // Use every input chroma sample instead of every other one.
            ffi::SWS_FULL_CHR_H_INP,
            // Gray->YUV is a range conversion swscale does by default.
            (settings.layout == PixelLayout::Rgb24).then_some(YuvSide {
                sws_matrix: ffi::SWS_CS_ITU709,
                full_range: false,
            }),
        )
        .map_err(|reason| MediaError::Encode {
            path: path.to_path_buf(),
            reason,
        })?;

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
            yuv: frame::Video::new(yuv_format, width, height),
            frames: 0,
            last_pts: None,
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
        let stride = self.input.stride(0);
        let plane = self.input.data_mut(0);
        for (dst, src) in plane.chunks_mut(stride).zip(data.chunks_exact(row)) {
            dst[..row].copy_from_slice(src);
        }
        // The encoder may still hold a reference to the previous picture;
        // writing into a shared buffer would change it behind its back.
        // SAFETY: valid frame; av_frame_make_writable copies if shared.
        let ret = unsafe { ffi::av_frame_make_writable(self.yuv.as_mut_ptr()) };
        if ret < 0 {
            return Err(MediaError::encode(&self.path, ret.into()));
        }
        self.scaler.run(&self.input, &mut self.yuv);
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
    if s.crf > 51 {
        return Err(invalid(format!("crf {} is outside 0..=51", s.crf)));
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
