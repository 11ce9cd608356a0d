//! The output side of the audio tracks: where one output's tracks write
//! ([`Destination`], [`Sink`]), and the stream tags players pick a track
//! by, which copied and re-encoded tracks both keep.

use std::path::Path;

use ffmpeg::format::context::Output;
use ffmpeg::format::stream::{Stream, StreamMut};
use ffmpeg::{Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use crate::error::MediaError;

/// What every track of one output shares.
pub(super) struct Destination<'a> {
    pub(super) container: &'a str,
    pub(super) source: &'a Path,
    pub(super) path: &'a Path,
    pub(super) global_header: bool,
}

/// The output stream a track writes to.
pub(super) struct Sink<'a> {
    pub(super) output: &'a mut Output,
    pub(super) index: usize,
    pub(super) time_base: Rational,
    pub(super) path: &'a Path,
}

impl Sink<'_> {
    /// Writes `packet`, whose timestamps are in `from`.
    pub(super) fn write(&mut self, packet: &mut Packet, from: Rational) -> Result<(), MediaError> {
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

/// Language and disposition (default, commentary, ...) are what players use
/// to pick a track.
pub(super) fn copy_tags(from: &Stream, to: &mut StreamMut) {
    let tags = from.metadata();
    if let Some(language) = tags.get("language") {
        let mut metadata = Dictionary::new();
        metadata.set("language", language);
        to.set_metadata(metadata);
    }
    // SAFETY: plain field write on a stream of a context we own.
    unsafe { (*to.as_mut_ptr()).disposition = from.disposition().bits() };
}
