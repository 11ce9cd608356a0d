//! Carries the sound of a source into the matted output.
//!
//! Only the picture is decoded and re-encoded; audio needs none of that. A
//! second demuxer on the source reads just its audio streams and hands their
//! packets to the muxer in step with the video, so the output keeps its sound
//! in sync and memory stays flat however long the file is. Streams the output
//! container can hold are copied untouched (sample-exact); the others are
//! re-encoded, to AAC for mp4/mov/matroska and to Opus for webm.

use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};

use ffmpeg::codec::{self, Id};
use ffmpeg::format::context::{Input, Output};
use ffmpeg::format::stream::{Stream, StreamMut};
use ffmpeg::{ffi, frame, media, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use crate::error::MediaError;
use crate::input::open_input;
use crate::log;

/// Copies or re-encodes every audio stream of a source into an output that
/// a video encoder is writing.
///
/// Call order: [`add_to`](Self::add_to) before the output header is written,
/// [`header_written`](Self::header_written) right after it,
/// [`pump`](Self::pump) whenever a video packet is written, and
/// [`finish`](Self::finish) before the trailer.
pub(crate) struct AudioCarrier {
    source: PathBuf,
    path: PathBuf,
    input: Input,
    tracks: Vec<Track>,
    /// The first packet past the last `until`, read but not yet due.
    lookahead: Option<Packet>,
    input_done: bool,
    finished: bool,
}

impl AudioCarrier {
    /// Opens `input`'s audio streams and adds one output stream per audio
    /// stream to `output` (call before the header is written). `container`
    /// is the output muxer name ("mp4", "mov", "webm", "matroska").
    /// Returns Ok(None) when the input has no audio stream, or is nothing
    /// libav opens as a container (an image folder, say).
    pub(crate) fn add_to(
        input: &Path,
        output: &mut Output,
        container: &str,
        out_path: &Path,
    ) -> Result<Option<Self>, MediaError> {
        crate::init();
        let demuxer = open_source(input);
        // A source that is not a container is no error here; its log line
        // must not explain some later, unrelated failure.
        log::clear();
        let Some(mut demuxer) = demuxer else {
            return Ok(None);
        };
        if !demuxer.streams().any(|s| is_audio(&s)) {
            return Ok(None);
        }
        skip_other_streams(&mut demuxer);

        let destination = Destination {
            container,
            source: input,
            path: out_path,
            global_header: output
                .format()
                .flags()
                .contains(ffmpeg::format::Flags::GLOBAL_HEADER),
        };
        let tracks = demuxer
            .streams()
            .filter(is_audio)
            .map(|stream| Track::open(&stream, output, &destination))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(AudioCarrier {
            source: input.to_path_buf(),
            path: out_path.to_path_buf(),
            input: demuxer,
            tracks,
            lookahead: None,
            input_done: false,
            finished: false,
        }))
    }

    /// Call once after `write_header`: the muxer may have changed the output
    /// streams' time bases (mp4 uses the sample rate, Matroska 1/1000).
    pub(crate) fn header_written(&mut self, output: &Output) {
        for track in &mut self.tracks {
            if let Some(stream) = output.stream(track.output_index) {
                track.output_time_base = stream.time_base();
            }
        }
    }

    /// Writes every audio packet that starts before `until`, in seconds on
    /// the source's own timeline (the clock of the video frames' pts).
    pub(crate) fn pump(&mut self, output: &mut Output, until: f64) -> Result<(), MediaError> {
        log::clear();
        while let Some(packet) = self.next_packet()? {
            let Some(track) = self
                .tracks
                .iter_mut()
                .find(|t| t.input_index == packet.stream())
            else {
                continue;
            };
            if track.seconds(&packet).is_some_and(|t| t >= until) {
                self.lookahead = Some(packet);
                return Ok(());
            }
            track.carry(packet, output, &self.path)?;
        }
        Ok(())
    }

    /// Writes the rest of the audio and flushes the re-encoders. Call before
    /// `write_trailer`.
    /// Writes the packets that start before `until` (seconds; infinity for
    /// all that is left) and flushes the re-encoders.
    pub(crate) fn finish(&mut self, output: &mut Output, until: f64) -> Result<(), MediaError> {
        if self.finished {
            return Ok(());
        }
        self.pump(output, until)?;
        // Encoders accept their end-of-stream signal only once.
        self.finished = true;
        for track in &mut self.tracks {
            track.finish(output, &self.path)?;
        }
        Ok(())
    }

    /// The next packet of an audio stream we carry, in file order.
    fn next_packet(&mut self) -> Result<Option<Packet>, MediaError> {
        if let Some(packet) = self.lookahead.take() {
            return Ok(Some(packet));
        }
        while !self.input_done {
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if self.tracks.iter().any(|t| t.input_index == packet.stream()) => {
                    return Ok(Some(packet))
                }
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {}
                Err(ffmpeg::Error::Eof) => self.input_done = true,
                Err(e) => {
                    self.input_done = true;
                    return Err(MediaError::Corrupt {
                        path: self.source.clone(),
                        reason: format!("reading its audio failed: {}", crate::error::reason(e)),
                    });
                }
            }
        }
        Ok(None)
    }
}

/// What every track of one output shares.
struct Destination<'a> {
    container: &'a str,
    source: &'a Path,
    path: &'a Path,
    global_header: bool,
}

/// One audio stream of the source and the output stream it becomes.
struct Track {
    input_index: usize,
    input_time_base: Rational,
    output_index: usize,
    output_time_base: Rational,
    mode: Mode,
}

enum Mode {
    /// Packets pass through untouched.
    Copy,
    Reencode(Box<Reencoder>),
}

impl Track {
    fn open(
        stream: &Stream,
        output: &mut Output,
        destination: &Destination,
    ) -> Result<Self, MediaError> {
        let id = stream.parameters().id();
        let (mode, output_index) = if can_copy(output, destination.container, id) {
            (
                Mode::Copy,
                add_copy_stream(stream, output, destination.path)?,
            )
        } else {
            let (reencoder, index) = Reencoder::open(stream, output, destination)?;
            (Mode::Reencode(Box::new(reencoder)), index)
        };
        let output_time_base = output
            .stream(output_index)
            .map_or(stream.time_base(), |s| s.time_base());
        Ok(Track {
            input_index: stream.index(),
            input_time_base: stream.time_base(),
            output_index,
            output_time_base,
            mode,
        })
    }

    /// Start of `packet` in seconds; `None` when it carries no timestamp.
    fn seconds(&self, packet: &Packet) -> Option<f64> {
        let ts = packet.pts().or(packet.dts())?;
        Some(ts as f64 * f64::from(self.input_time_base))
    }

    fn carry(
        &mut self,
        mut packet: Packet,
        output: &mut Output,
        path: &Path,
    ) -> Result<(), MediaError> {
        let mut sink = self.sink(output, path);
        match &mut self.mode {
            Mode::Copy => sink.write(&mut packet, self.input_time_base),
            Mode::Reencode(reencoder) => reencoder.decode(&packet, &mut sink),
        }
    }

    fn finish(&mut self, output: &mut Output, path: &Path) -> Result<(), MediaError> {
        let mut sink = self.sink(output, path);
        match &mut self.mode {
            Mode::Copy => Ok(()),
            Mode::Reencode(reencoder) => reencoder.finish(&mut sink),
        }
    }

    fn sink<'a>(&self, output: &'a mut Output, path: &'a Path) -> Sink<'a> {
        Sink {
            output,
            index: self.output_index,
            time_base: self.output_time_base,
            path,
        }
    }
}

/// The output stream a track writes to.
struct Sink<'a> {
    output: &'a mut Output,
    index: usize,
    time_base: Rational,
    path: &'a Path,
}

impl Sink<'_> {
    /// Writes `packet`, whose timestamps are in `from`.
    fn write(&mut self, packet: &mut Packet, from: Rational) -> Result<(), MediaError> {
        // Carries no audio, and the muxer would refuse it.
        if packet.size() == 0 {
            return Ok(());
        }
        packet.rescale_ts(from, self.time_base);
        packet.set_stream(self.index);
        // A byte offset into the source means nothing in the output.
        packet.set_position(-1);
        packet
            .write_interleaved(self.output)
            .map_err(|e| MediaError::write(self.path, e))
    }
}

/// Whether the output container can take `id` as is.
fn can_copy(output: &Output, container: &str, id: Id) -> bool {
    match container {
        // WebM is Matroska restricted to what browsers play.
        "webm" => matches!(id, Id::OPUS | Id::VORBIS),
        // mov "accepts" nearly anything by tag, but only these play widely.
        "mp4" | "mov" => plays_in_mov(id) && muxer_accepts(output, id),
        // Matroska and the rest: whatever the muxer has a native mapping for.
        _ => muxer_accepts(output, id),
    }
}

fn plays_in_mov(id: Id) -> bool {
    matches!(
        id,
        Id::AAC | Id::MP3 | Id::AC3 | Id::EAC3 | Id::ALAC | Id::OPUS | Id::FLAC
    ) || id.name().starts_with("pcm_")
}

fn muxer_accepts(output: &Output, id: Id) -> bool {
    // SAFETY: reads the static description of the output's muxer.
    unsafe {
        ffi::avformat_query_codec(
            (*output.as_ptr()).oformat,
            id.into(),
            ffi::FF_COMPLIANCE_NORMAL,
        ) == 1
    }
}

fn is_audio(stream: &Stream) -> bool {
    stream.parameters().medium() == media::Type::Audio
}

/// Tells the demuxer to drop video and subtitle packets itself: mp4 and
/// Matroska then do not even read them from disk.
fn skip_other_streams(input: &mut Input) {
    for mut stream in input.streams_mut() {
        if !is_audio(&stream) {
            // SAFETY: plain field write on a stream of a context we own.
            unsafe { (*stream.as_mut_ptr()).discard = ffi::AVDiscard::AVDISCARD_ALL };
        }
    }
}

/// The source's demuxer, or `None` when libav cannot open it as a container
/// (an image folder, or a file the video decoder will report on anyway).
fn open_source(path: &Path) -> Option<Input> {
    if path.is_dir() {
        return None;
    }
    open_input(path).ok()
}

fn add_copy_stream(stream: &Stream, output: &mut Output, path: &Path) -> Result<usize, MediaError> {
    let mut out = output
        .add_stream(None::<ffmpeg::Codec>)
        .map_err(|e| MediaError::encode(path, e))?;
    // SAFETY: both streams are live; the copy replaces the new stream's
    // empty parameters.
    let ret = unsafe {
        ffi::avcodec_parameters_copy((*out.as_mut_ptr()).codecpar, (*stream.as_ptr()).codecpar)
    };
    if ret < 0 {
        return Err(MediaError::encode(path, ret.into()));
    }
    // The source's tag belongs to its container ('mp4a' vs Matroska's none);
    // zero lets the muxer pick its own.
    // SAFETY: plain field write on parameters we own.
    unsafe { (*(*out.as_mut_ptr()).codecpar).codec_tag = 0 };
    // Only a hint: mp4 keeps it when it is 1/sample rate, so no rounding.
    out.set_time_base(stream.time_base());
    copy_tags(stream, &mut out);
    Ok(out.index())
}

/// Language and disposition (default, commentary, ...) are what players use
/// to pick a track.
fn copy_tags(from: &Stream, to: &mut StreamMut) {
    let tags = from.metadata();
    if let Some(language) = tags.get("language") {
        let mut metadata = Dictionary::new();
        metadata.set("language", language);
        to.set_metadata(metadata);
    }
    // SAFETY: plain field write on a stream of a context we own.
    unsafe { (*to.as_mut_ptr()).disposition = from.disposition().bits() };
}

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

/// Decoder, resampler and encoder for a stream the output cannot copy.
struct Reencoder {
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
    fn open(
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

    fn decode(&mut self, packet: &Packet, sink: &mut Sink) -> Result<(), MediaError> {
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

    fn finish(&mut self, sink: &mut Sink) -> Result<(), MediaError> {
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
    let list = (*codec).sample_fmts;
    if list.is_null() || *list == ffi::AVSampleFormat::AV_SAMPLE_FMT_NONE {
        ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP
    } else {
        *list
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

/// An owned `AVChannelLayout` (custom orders allocate a channel map).
struct Layout(ffi::AVChannelLayout);

// SAFETY: plain data, plus for custom orders a map only this value owns.
unsafe impl Send for Layout {}

impl Layout {
    fn unset() -> Self {
        // SAFETY: all zeroes is libav's "no layout": order UNSPEC, 0 channels.
        Layout(unsafe { std::mem::zeroed() })
    }

    /// A copy of `src` a resampler can work with: a bare channel count gets
    /// libav's default layout for that many channels. `None` without
    /// channels.
    ///
    /// # Safety
    /// `src` must point at a valid layout.
    unsafe fn usable(src: *const ffi::AVChannelLayout) -> Option<Self> {
        let channels = (*src).nb_channels;
        if channels <= 0 {
            return None;
        }
        let mut layout = Layout::unset();
        if (*src).order == ffi::AVChannelOrder::AV_CHANNEL_ORDER_UNSPEC {
            ffi::av_channel_layout_default(&mut layout.0, channels);
        } else if ffi::av_channel_layout_copy(&mut layout.0, src) < 0 {
            return None;
        }
        Some(layout)
    }

    fn stereo() -> Self {
        let mut layout = Layout::unset();
        // SAFETY: writes a native layout into a value we own.
        unsafe { ffi::av_channel_layout_default(&mut layout.0, 2) };
        layout
    }

    fn try_clone(&self) -> Option<Self> {
        // SAFETY: `self` holds a valid layout.
        unsafe { Layout::usable(&self.0) }
    }

    fn channels(&self) -> c_int {
        self.0.nb_channels
    }

    fn as_ptr(&self) -> *const ffi::AVChannelLayout {
        &self.0
    }
}

impl PartialEq for Layout {
    fn eq(&self, other: &Self) -> bool {
        // SAFETY: both hold valid layouts.
        unsafe { ffi::av_channel_layout_compare(&self.0, &other.0) == 0 }
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: frees the custom map, if any; the value is not used again.
        unsafe { ffi::av_channel_layout_uninit(&mut self.0) };
    }
}

/// Shape of raw audio: sample format, rate and channel layout.
#[derive(PartialEq)]
struct AudioFormat {
    sample: ffi::AVSampleFormat,
    rate: c_int,
    layout: Layout,
}

impl AudioFormat {
    fn of_frame(frame: &frame::Audio) -> Option<Self> {
        // SAFETY: reads fields of a decoded frame.
        let (rate, layout) = unsafe {
            let raw = frame.as_ptr();
            ((*raw).sample_rate, Layout::usable(&(*raw).ch_layout)?)
        };
        (rate > 0).then(|| AudioFormat {
            sample: frame.format().into(),
            rate,
            layout,
        })
    }
}

/// Turns decoded audio of any shape into encoder-ready samples, buffered
/// until a whole encoder frame is there.
struct Converter {
    target: AudioFormat,
    /// Built for the shape of the frames coming in; rebuilt if that changes.
    resampler: Option<Resampler>,
    fifo: Fifo,
    /// Resampler output, copied into the FIFO right away.
    scratch: frame::Audio,
    scratch_room: c_int,
}

impl Converter {
    fn new(target: AudioFormat, frame_size: c_int) -> Result<Self, ffmpeg::Error> {
        let fifo = Fifo::new(&target, frame_size)?;
        Ok(Converter {
            target,
            resampler: None,
            fifo,
            scratch: frame::Audio::empty(),
            scratch_room: 0,
        })
    }

    /// Fails with `InvalidData` for a frame without rate or channels.
    fn push(&mut self, frame: &frame::Audio) -> Result<(), ffmpeg::Error> {
        let shape = AudioFormat::of_frame(frame).ok_or(ffmpeg::Error::InvalidData)?;
        if self.resampler.as_ref().map(|r| &r.input) != Some(&shape) {
            // A stream may change rate or layout midway (broadcast AAC
            // does); the old resampler's buffered tail goes out first.
            self.flush()?;
            self.resampler = Some(Resampler::new(shape, &self.target)?);
        }
        // SAFETY: a decoded frame's planes hold `samples()` samples each.
        let input = unsafe { (*frame.as_ptr()).extended_data as *const *const u8 };
        self.convert(input, frame.samples() as c_int)?;
        Ok(())
    }

    /// Moves what the resampler still holds (its filter delay) into the FIFO.
    fn flush(&mut self) -> Result<(), ffmpeg::Error> {
        while self.convert(ptr::null(), 0)? > 0 {}
        Ok(())
    }

    /// Resamples `count` samples from `input` (null to drain) into the FIFO;
    /// returns how many samples came out.
    fn convert(&mut self, input: *const *const u8, count: c_int) -> Result<c_int, ffmpeg::Error> {
        let Some(resampler) = &self.resampler else {
            return Ok(0);
        };
        let ctx = resampler.ctx.as_ptr();
        // SAFETY: valid context; an upper bound for the next conversion.
        let room = check(unsafe { ffi::swr_get_out_samples(ctx, count) })?;
        if room == 0 && count == 0 {
            return Ok(0);
        }
        self.reserve(room.max(1))?;
        // SAFETY: the scratch frame has `scratch_room` >= `room` samples per
        // plane in the target format; `input` has `count` in the resampler's.
        let produced = unsafe {
            let out = (*self.scratch.as_mut_ptr()).extended_data;
            let produced = check(ffi::swr_convert(
                ctx,
                out,
                room,
                input as *mut *const u8,
                count,
            ))?;
            check(ffi::av_audio_fifo_write(
                self.fifo.0.as_ptr(),
                out as *mut *mut c_void,
                produced,
            ))?
        };
        Ok(produced)
    }

    fn reserve(&mut self, samples: c_int) -> Result<(), ffmpeg::Error> {
        if samples > self.scratch_room {
            self.scratch = alloc_frame(&self.target, samples)?;
            self.scratch_room = samples;
        }
        Ok(())
    }

    fn buffered(&self) -> c_int {
        // SAFETY: valid FIFO.
        unsafe { ffi::av_audio_fifo_size(self.fifo.0.as_ptr()) }
    }

    /// A new frame with the next `count` buffered samples. New each time:
    /// the encoder may keep a reference to the frames it was sent.
    fn take(&mut self, count: c_int) -> Result<frame::Audio, ffmpeg::Error> {
        let mut frame = alloc_frame(&self.target, count)?;
        // SAFETY: the frame has room for `count` samples per plane in the
        // FIFO's format.
        let read = check(unsafe {
            ffi::av_audio_fifo_read(
                self.fifo.0.as_ptr(),
                (*frame.as_mut_ptr()).extended_data as *mut *mut c_void,
                count,
            )
        })?;
        frame.set_samples(read as usize);
        Ok(frame)
    }
}

/// A frame of `samples` samples in `format`, with its own buffers.
fn alloc_frame(format: &AudioFormat, samples: c_int) -> Result<frame::Audio, ffmpeg::Error> {
    let mut frame = frame::Audio::empty();
    // SAFETY: field writes on a fresh frame, then libav's own allocation.
    unsafe {
        let raw = frame.as_mut_ptr();
        if raw.is_null() {
            return Err(ffmpeg::Error::Other {
                errno: ffmpeg::error::ENOMEM,
            });
        }
        (*raw).format = format.sample as c_int;
        (*raw).sample_rate = format.rate;
        (*raw).nb_samples = samples;
        check(ffi::av_channel_layout_copy(
            &mut (*raw).ch_layout,
            format.layout.as_ptr(),
        ))?;
        check(ffi::av_frame_get_buffer(raw, 0))?;
    }
    Ok(frame)
}

struct Resampler {
    ctx: NonNull<ffi::SwrContext>,
    /// The shape of the frames it was built for.
    input: AudioFormat,
}

// SAFETY: an SwrContext has no thread affinity; it only must not be used by
// two threads at once, which `&mut self` on every use guarantees.
unsafe impl Send for Resampler {}

impl Resampler {
    fn new(input: AudioFormat, output: &AudioFormat) -> Result<Self, ffmpeg::Error> {
        let mut raw = ptr::null_mut();
        // SAFETY: allocates a context from valid layouts; on failure libav
        // frees it and leaves `raw` null.
        let ret = unsafe {
            ffi::swr_alloc_set_opts2(
                &mut raw,
                output.layout.as_ptr() as *mut _,
                output.sample,
                output.rate,
                input.layout.as_ptr() as *mut _,
                input.sample,
                input.rate,
                0,
                ptr::null_mut(),
            )
        };
        let ctx = NonNull::new(raw).ok_or(ffmpeg::Error::from(ret.min(-1)))?;
        // From here `Drop` frees the context whatever happens.
        let resampler = Resampler { ctx, input };
        check(ret)?;
        // SAFETY: a configured, not yet initialised context.
        check(unsafe { ffi::swr_init(ctx.as_ptr()) })?;
        Ok(resampler)
    }
}

impl Drop for Resampler {
    fn drop(&mut self) {
        let mut raw = self.ctx.as_ptr();
        // SAFETY: we own the context; it is not used again.
        unsafe { ffi::swr_free(&mut raw) };
    }
}

/// Samples waiting for a whole encoder frame.
struct Fifo(NonNull<ffi::AVAudioFifo>);

// SAFETY: a plain buffer without thread affinity, used through `&mut self`.
unsafe impl Send for Fifo {}

impl Fifo {
    fn new(format: &AudioFormat, initial: c_int) -> Result<Self, ffmpeg::Error> {
        // SAFETY: plain allocation; it grows on demand.
        let raw = unsafe {
            ffi::av_audio_fifo_alloc(format.sample, format.layout.channels(), initial.max(1))
        };
        NonNull::new(raw).map(Fifo).ok_or(ffmpeg::Error::Other {
            errno: ffmpeg::error::ENOMEM,
        })
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        // SAFETY: we own the FIFO; it is not used again.
        unsafe { ffi::av_audio_fifo_free(self.0.as_ptr()) };
    }
}

fn check(ret: c_int) -> Result<c_int, ffmpeg::Error> {
    if ret < 0 {
        Err(ffmpeg::Error::from(ret))
    } else {
        Ok(ret)
    }
}

fn rescale(value: i64, from: Rational, to: Rational) -> i64 {
    // SAFETY: pure arithmetic.
    unsafe { ffi::av_rescale_q(value, from.into(), to.into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A muxer context without a file, enough to ask what it accepts.
    fn muxer(name: &str) -> Output {
        crate::init();
        let name = std::ffi::CString::new(name).unwrap();
        let mut ctx = ptr::null_mut();
        // SAFETY: allocation only; `Output` frees it (its null I/O context
        // is fine to close).
        unsafe {
            let ret = ffi::avformat_alloc_output_context2(
                &mut ctx,
                ptr::null(),
                name.as_ptr(),
                ptr::null(),
            );
            assert!(ret >= 0 && !ctx.is_null());
            Output::wrap(ctx)
        }
    }

    fn layout_named(name: &str) -> Layout {
        let name = std::ffi::CString::new(name).unwrap();
        let mut layout = Layout::unset();
        // SAFETY: parses into a value we own.
        let ret = unsafe { ffi::av_channel_layout_from_string(&mut layout.0, name.as_ptr()) };
        assert_eq!(ret, 0);
        layout
    }

    #[test]
    fn webm_copies_only_opus_and_vorbis() {
        let webm = muxer("webm");
        assert!(can_copy(&webm, "webm", Id::OPUS));
        assert!(can_copy(&webm, "webm", Id::VORBIS));
        assert!(!can_copy(&webm, "webm", Id::AAC));
        assert!(!can_copy(&webm, "webm", Id::FLAC));
    }

    #[test]
    fn mp4_copies_aac_but_not_pcm() {
        let mp4 = muxer("mp4");
        assert!(can_copy(&mp4, "mp4", Id::AAC));
        assert!(can_copy(&mp4, "mp4", Id::MP3));
        assert!(!can_copy(&mp4, "mp4", Id::PCM_S16LE));
        assert!(!can_copy(&mp4, "mp4", Id::VORBIS));
    }

    #[test]
    fn mov_and_matroska_copy_pcm() {
        assert!(can_copy(&muxer("mov"), "mov", Id::PCM_S16LE));
        let mkv = muxer("matroska");
        assert!(can_copy(&mkv, "matroska", Id::PCM_S16LE));
        assert!(can_copy(&mkv, "matroska", Id::AAC));
        assert!(can_copy(&mkv, "matroska", Id::FLAC));
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

    #[test]
    fn bare_channel_count_gets_default_layout() {
        let mut bare = Layout::unset();
        bare.0.nb_channels = 2;
        // SAFETY: a valid (unspecified-order) layout.
        let usable = unsafe { Layout::usable(bare.as_ptr()) }.unwrap();
        assert!(usable == Layout::stereo());
        // SAFETY: a valid, empty layout.
        assert!(unsafe { Layout::usable(Layout::unset().as_ptr()) }.is_none());
    }

    #[test]
    fn folder_and_non_media_give_no_audio() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = muxer("mp4");
        let out_path = dir.path().join("out.mp4");
        let carrier = AudioCarrier::add_to(dir.path(), &mut out, "mp4", &out_path).unwrap();
        assert!(carrier.is_none());

        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, "not a video").unwrap();
        let carrier = AudioCarrier::add_to(&text, &mut out, "mp4", &out_path).unwrap();
        assert!(carrier.is_none());

        let missing = dir.path().join("missing.mp4");
        let carrier = AudioCarrier::add_to(&missing, &mut out, "mp4", &out_path).unwrap();
        assert!(carrier.is_none());
    }

    #[test]
    fn carrier_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<AudioCarrier>();
    }
}
