//! [`Reencoder`]: a track the output cannot copy, decoded, resampled and
//! encoded to the container's [`Target`] codec (AAC, or Opus for WebM),
//! with timestamps counted in samples from the source's first.

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::ptr;

use ffmpeg::codec;
use ffmpeg::format::context::Output;
use ffmpeg::format::stream::Stream;
use ffmpeg::{ffi, frame, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::ffi::{check, rescale, AudioFormat, Converter, Layout};
use super::sink::{copy_tags, Destination, Sink};
use crate::error::MediaError;
use crate::log;

/// The codec a container gets when it cannot take the source's.
struct Target {
    encoder: &'static str,
    bit_rate_per_channel: usize,
    /// libopus works at 48 kHz internally; anything else is resampled twice.
    fixed_rate: Option<c_int>,
}

const AAC: Target = Target {
    encoder: "aac",
    bit_rate_per_channel: 96_000,
    fixed_rate: None,
};

const OPUS: Target = Target {
    encoder: "libopus",
    bit_rate_per_channel: 64_000,
    fixed_rate: Some(48_000),
};

impl Target {
    fn for_container(container: &str) -> &'static Target {
        if container == "webm" {
            &OPUS
        } else {
            &AAC
        }
    }

    /// The source's rate when the encoder takes it, else 48 kHz.
    ///
    /// # Safety
    /// `codec` must point at a registered codec.
    unsafe fn rate(&self, codec: *const ffi::AVCodec, source: c_int) -> c_int {
        if let Some(rate) = self.fixed_rate {
            return rate;
        }
        // SAFETY: `codec` points at a registered codec (the caller's
        // contract), whose `supported_samplerates`, when set, is a static list
        // ending in 0.
        unsafe {
            let list = (*codec).supported_samplerates;
            if list.is_null() {
                return source;
            }
            let mut i = 0;
            while *list.add(i) != 0 {
                if *list.add(i) == source {
                    return source;
                }
                i += 1;
            }
            48_000
        }
    }
}

/// Decoder, resampler and encoder for a stream the output cannot copy.
pub(super) struct Reencoder {
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    converter: Converter,
    decoded: frame::Audio,
    input_time_base: Rational,
    encoder_time_base: Rational,
    /// Samples per frame the encoder requires (all but the last frame).
    frame_size: c_int,
    /// In `encoder_time_base`; set by the first decoded frame.
    next_pts: Option<i64>,
}

impl Reencoder {
    pub(super) fn open(
        stream: &Stream,
        output: &mut Output,
        destination: &Destination,
    ) -> Result<(Self, usize), MediaError> {
        let decoder = open_decoder(stream, destination.source)?;
        // SAFETY: reads fields of an opened decoder.
        let (source_rate, source_layout) = unsafe {
            let ctx = decoder.as_ptr();
            ((*ctx).sample_rate, Layout::usable(&(*ctx).ch_layout))
        };
        let Some(source_layout) = source_layout.filter(|_| source_rate > 0) else {
            return Err(MediaError::Corrupt {
                path: destination.source.to_path_buf(),
                reason: format!(
                    "audio stream {} declares no sample rate or channels",
                    stream.index()
                ),
            });
        };
        let target = Target::for_container(destination.container);
        let path = destination.path;
        let (encoder, codec, format) = open_encoder(
            target,
            source_rate,
            &source_layout,
            destination.global_header,
            path,
        )?;
        let encoder_time_base = Rational::new(1, format.rate);
        // Encoders with a variable frame size report 0; any chunk will do.
        let frame_size = match encoder.frame_size() {
            0 => 1024,
            n => n as c_int,
        };

        let mut out = output
            .add_stream(codec)
            .map_err(|e| MediaError::encode(path, e))?;
        out.set_parameters(&encoder);
        out.set_time_base(encoder_time_base);
        copy_tags(stream, &mut out);
        let index = out.index();

        let converter =
            Converter::new(format, frame_size).map_err(|e| MediaError::encode(path, e))?;
        let reencoder = Reencoder {
            decoder,
            encoder,
            converter,
            decoded: frame::Audio::empty(),
            input_time_base: stream.time_base(),
            encoder_time_base,
            frame_size,
            next_pts: None,
        };
        Ok((reencoder, index))
    }

    pub(super) fn decode(&mut self, packet: &Packet, sink: &mut Sink) -> Result<(), MediaError> {
        let mut sent = self.decoder.send_packet(packet);
        if matches!(sent, Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN) {
            self.receive_frames(sink)?;
            sent = self.decoder.send_packet(packet);
        }
        // A damaged packet is dropped: a few milliseconds of sound go
        // missing, which beats failing a whole matting run over them.
        let _ = sent;
        self.receive_frames(sink)
    }

    fn receive_frames(&mut self, sink: &mut Sink) -> Result<(), MediaError> {
        // Besides "needs more input" and "drained", an error here is a
        // damaged packet, dropped as in `decode`.
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            if self.decoded.samples() == 0 {
                continue;
            }
            if self.next_pts.is_none() {
                // Later timestamps count samples from here, so the sound
                // starts where the source's does and never drifts.
                let first = self.decoded.timestamp().or(self.decoded.pts()).unwrap_or(0);
                self.next_pts = Some(rescale(first, self.input_time_base, self.encoder_time_base));
            }
            match self.converter.push(&self.decoded) {
                Ok(()) => {}
                // A frame without rate or channels is damage too.
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(e) => return Err(MediaError::encode(sink.path, e)),
            }
            self.encode_ready(sink, false)?;
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, sink: &mut Sink) -> Result<(), MediaError> {
        // Fails only if the decoder was already told, which `finish` prevents.
        if self.decoder.send_eof().is_ok() {
            self.receive_frames(sink)?;
        }
        self.converter
            .flush()
            .map_err(|e| MediaError::encode(sink.path, e))?;
        self.encode_ready(sink, true)?;
        self.encoder
            .send_eof()
            .map_err(|e| MediaError::encode(sink.path, e))?;
        self.drain(sink)
    }

    /// Encodes every full frame buffered; with `last`, also the remainder
    /// (libavcodec pads a short last frame with silence where the encoder
    /// needs it, and the packet duration keeps the true length).
    fn encode_ready(&mut self, sink: &mut Sink, last: bool) -> Result<(), MediaError> {
        loop {
            let buffered = self.converter.buffered();
            let count = if buffered >= self.frame_size {
                self.frame_size
            } else if last && buffered > 0 {
                buffered
            } else {
                return Ok(());
            };
            let mut frame = self
                .converter
                .take(count)
                .map_err(|e| MediaError::encode(sink.path, e))?;
            let pts = self.next_pts.unwrap_or(0);
            frame.set_pts(Some(pts));
            self.next_pts = Some(pts + i64::from(count));
            self.encoder
                .send_frame(&frame)
                .map_err(|e| MediaError::encode(sink.path, e))?;
            self.drain(sink)?;
        }
    }

    /// Moves every packet the encoder has ready into the file.
    fn drain(&mut self, sink: &mut Sink) -> Result<(), MediaError> {
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => sink.write(&mut packet, self.encoder_time_base)?,
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    return Ok(())
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(MediaError::encode(sink.path, e)),
            }
        }
    }
}

fn open_decoder(stream: &Stream, source: &Path) -> Result<ffmpeg::decoder::Audio, MediaError> {
    let mut context = codec::Context::from_parameters(stream.parameters())
        .map_err(|e| MediaError::corrupt(source, e))?;
    let codec_name = context.id().name().to_owned();
    // SAFETY: plain field write on a context we own; decoders expect the
    // packet time base before opening, and frame timestamps are in it.
    unsafe { (*context.as_mut_ptr()).pkt_timebase = stream.time_base().into() };
    context.decoder().audio().map_err(|e| match e {
        ffmpeg::Error::DecoderNotFound => MediaError::Invalid {
            path: source.to_path_buf(),
            problem: format!(
                "this libav build cannot decode audio stream {} ({codec_name}), so it cannot be converted for the output",
                stream.index()
            ),
            hint: "convert the audio to AAC first (ffmpeg -i IN -c:v copy -c:a aac OUT)".into(),
        },
        e => MediaError::corrupt(source, e),
    })
}

/// Opens the target's encoder on the source's rate and layout, or the
/// nearest it takes. Returns the encoder, its codec and its input format.
fn open_encoder(
    target: &Target,
    source_rate: c_int,
    source_layout: &Layout,
    global_header: bool,
    path: &Path,
) -> Result<(ffmpeg::encoder::Audio, ffmpeg::Codec, AudioFormat), MediaError> {
    let codec = ffmpeg::encoder::find_by_name(target.encoder).ok_or_else(|| {
        MediaError::EncoderMissing {
            path: path.to_path_buf(),
            encoder: target.encoder,
        }
    })?;
    // SAFETY: `codec` is a registered codec; its description is static.
    let (sample, rate) = unsafe {
        let raw = codec.as_ptr();
        (first_sample_format(raw), target.rate(raw, source_rate))
    };
    let mut first_error = None;
    for layout in layout_candidates(source_layout) {
        let format = AudioFormat {
            sample,
            rate,
            layout,
        };
        match try_open(codec, &format, target, global_header) {
            Ok(encoder) => {
                // Refusals of earlier layouts are no longer news.
                log::clear();
                return Ok((encoder, codec, format));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| MediaError::encode(path, e));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| MediaError::encode(path, ffmpeg::Error::Bug)))
}

fn try_open(
    codec: ffmpeg::Codec,
    format: &AudioFormat,
    target: &Target,
    global_header: bool,
) -> Result<ffmpeg::encoder::Audio, ffmpeg::Error> {
    let mut encoder = codec::Context::new_with_codec(codec).encoder().audio()?;
    // SAFETY: plain field writes on a context we own, before opening.
    unsafe {
        let ctx = encoder.as_mut_ptr();
        (*ctx).sample_fmt = format.sample;
        (*ctx).sample_rate = format.rate;
        // One tick per sample: timestamps are sample counts.
        (*ctx).time_base = ffi::AVRational {
            num: 1,
            den: format.rate,
        };
        check(ffi::av_channel_layout_copy(
            &mut (*ctx).ch_layout,
            format.layout.as_ptr(),
        ))?;
    }
    encoder.set_bit_rate(target.bit_rate_per_channel * format.layout.channels() as usize);
    if global_header {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    encoder.open_as(codec)
}

/// The format an encoder lists first is the one it works in natively.
///
/// # Safety
/// `codec` must point at a registered codec.
unsafe fn first_sample_format(codec: *const ffi::AVCodec) -> ffi::AVSampleFormat {
    // SAFETY: `codec` points at a registered codec (the caller's
    // contract), whose `sample_fmts`, when set, is a static list ending in
    // `AV_SAMPLE_FMT_NONE`.
    unsafe {
        let list = (*codec).sample_fmts;
        if list.is_null() || *list == ffi::AVSampleFormat::AV_SAMPLE_FMT_NONE {
            ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP
        } else {
            *list
        }
    }
}

/// Layouts to offer an encoder, best first: the source's own; then libav's
/// standard layouts with as many channels (libopus takes only Vorbis channel
/// orders, so 5.1(side) has to become 5.1); stereo last.
fn layout_candidates(source: &Layout) -> Vec<Layout> {
    let mut candidates: Vec<Layout> = source.try_clone().into_iter().collect();
    let mut opaque: *mut c_void = ptr::null_mut();
    loop {
        // SAFETY: iterates libav's static table; `opaque` is its cursor.
        let standard = unsafe { ffi::av_channel_layout_standard(&mut opaque) };
        if standard.is_null() {
            break;
        }
        // SAFETY: non-null entries of the table are valid layouts.
        let layout = unsafe { Layout::usable(standard) };
        if let Some(layout) = layout {
            if layout.channels() == source.channels() && !candidates.contains(&layout) {
                candidates.push(layout);
            }
        }
    }
    let stereo = Layout::stereo();
    if !candidates.contains(&stereo) {
        candidates.push(stereo);
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_named(name: &str) -> Layout {
        let name = std::ffi::CString::new(name).unwrap();
        let mut layout = Layout::unset();
        // SAFETY: parses into a value we own.
        let ret = unsafe { ffi::av_channel_layout_from_string(&mut layout.0, name.as_ptr()) };
        assert_eq!(ret, 0);
        layout
    }

    #[test]
    fn layouts_offered_source_first_then_same_count_then_stereo() {
        let side = layout_named("5.1(side)");
        let candidates = layout_candidates(&side);
        assert!(candidates[0] == side);
        assert!(candidates.contains(&layout_named("5.1")));
        assert!(candidates[..candidates.len() - 1]
            .iter()
            .all(|l| l.channels() == 6));
        assert!(candidates[candidates.len() - 1] == Layout::stereo());

        let stereo = layout_candidates(&Layout::stereo());
        assert_eq!(stereo.iter().filter(|l| **l == Layout::stereo()).count(), 1);
    }
}
