//! [`AudioCarrier`]: a second demuxer on the source that reads only its
//! audio streams, and one [`Track`] per stream that copies its packets
//! into the output or hands them to a [`Reencoder`], in step with the
//! video.

use std::path::{Path, PathBuf};

use ffmpeg::codec::Id;
use ffmpeg::format::context::{Input, Output};
use ffmpeg::format::stream::Stream;
use ffmpeg::{ffi, media, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::reencode::Reencoder;
use super::sink::{copy_tags, Destination, Sink};
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

#[cfg(test)]
mod tests {
    use std::ptr;

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
