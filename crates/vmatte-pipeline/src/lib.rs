//! vmatte's streaming matting pipeline: decode, infer in temporal chunks,
//! composite and encode as overlapped stages with bounded queues.

pub mod background;
pub mod device_post;
pub mod device_pre;
pub mod frames;
pub mod gvm;
pub mod output;
pub mod run;
pub mod settings;

pub use run::{matte_source, MatteReport, Model, Progress};
pub use settings::{
    Background, DownsampleRatio, GvmOptions, MatteSettings, Mp4Codec, OutputFormat, OutputKind, Rgb,
};

/// A failed run, as one line for the user: the file, the cause, the fix.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Media(#[from] vmatte_media::MediaError),
    #[error(transparent)]
    Model(#[from] vmatte_models::Error),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Output(String),
    /// The GPU ran out of memory even with one-frame chunks; the batch's
    /// ladder takes it from here (fewer videos at once, then the CPU).
    #[error("{0}")]
    OutOfMemory(String),
    /// A stage stopped because its neighbour did; the neighbour's error is
    /// the one reported.
    #[error("a pipeline stage stopped early")]
    StageClosed,
}

impl From<candle_core::Error> for PipelineError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(e.into())
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
