//! Carries the sound of a source into the matted output.
//!
//! Only the picture is decoded and re-encoded; audio needs none of that. A
//! second demuxer on the source reads just its audio streams and hands their
//! packets to the muxer in step with the video, so the output keeps its sound
//! in sync and memory stays flat however long the file is. Streams the output
//! container can hold are copied untouched (sample-exact); the others are
//! re-encoded, to AAC for mp4/mov/matroska and to Opus for webm.
//!
//! ```text
//! source ── demuxer (its audio streams only)
//!   └─ Track (carrier.rs) ─┬─ copy ────────────────────────────┬─ Sink (sink.rs) ── output muxer
//!                          └─ Reencoder (reencode.rs): decode, │
//!                             Converter (ffi.rs: resample into │
//!                             a FIFO), encode ─────────────────┘
//! ```
//!
//! `encode.rs` drives it: [`AudioCarrier::pump`] as each video packet is
//! written, up to that packet's time, and [`AudioCarrier::finish`] before
//! the trailer.

mod carrier;
mod ffi;
mod reencode;
mod sink;

pub(crate) use carrier::AudioCarrier;
