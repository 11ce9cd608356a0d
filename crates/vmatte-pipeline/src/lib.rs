//! vmatte's streaming matting pipeline: decode, infer in temporal chunks,
//! composite and encode as overlapped stages with bounded queues.

pub mod background;
pub mod device_post;
pub mod device_pre;
pub mod finish;
pub mod frames;
pub mod gvm;
pub mod matanyone;
pub mod output;
pub mod run;
pub mod setting;
pub mod settings;

pub use finish::{DespillMode, Finish, ForegroundMode, Levels};
pub use output::{Staged, StagedOutput};
pub use run::{
    finish_source, matte_source, rvm_size_problem, FrameWarning, MatteReport, Model, Network,
    Progress, SettingsView,
};
pub use setting::{show_settings_as, Setting, SettingStyle};
pub use settings::{
    Background, Chunks, DownsampleRatio, ExrCompression, GvmOptions, MatteSettings, Mp4Codec,
    OutputFormat, OutputKind, Placement, Precision, Rgb, RunOptions,
};

/// A failed run, as one line for the user: the file, the cause, the fix.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Media(#[from] vmatte_media::MediaError),
    #[error(transparent)]
    Model(vmatte_models::Error),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Output(String),
    /// The GPU ran out of memory. Raised where candle's error comes back;
    /// the ladders inside a video catch it and step down, and when nothing
    /// is left to lower it leaves the pipeline, `message` then saying
    /// where, for the batch's own rungs (fewer videos at once, the CPU).
    #[error("{message}")]
    OutOfMemory { cause: OutOfMemory, message: String },
    /// The run was asked to stop ([`RunOptions::cancel`]).
    #[error("interrupted")]
    Cancelled,
    /// A bug: a stage's thread panicked. The job fails with this line; the
    /// process and its other jobs go on.
    #[error("internal error: {0}; please report it")]
    Internal(String),
    /// A stage stopped because its neighbour did; the neighbour's error is
    /// the one reported.
    #[error("a pipeline stage stopped early")]
    StageClosed,
}

/// Why the GPU ran out of memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutOfMemory {
    /// CUDA, cuBLAS, cuDNN or candle's allocator said so, in these words.
    Device(String),
    /// `VMATTE_FAKE_OOM` asked for it: the ladder under test on a machine
    /// without a GPU.
    Injected,
}

impl std::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(m) => f.write_str(m.lines().next().unwrap_or_default()),
            Self::Injected => f.write_str(vmatte_gpu::ladder::FAKE_OOM_MESSAGE),
        }
    }
}

impl PipelineError {
    /// An out-of-memory failure that explains itself by its cause.
    pub fn oom(cause: OutOfMemory) -> Self {
        Self::OutOfMemory {
            message: cause.to_string(),
            cause,
        }
    }
}

impl From<vmatte_models::Error> for PipelineError {
    /// The one place model failures enter the pipeline: an allocation
    /// failure becomes [`PipelineError::OutOfMemory`] here, once.
    fn from(e: vmatte_models::Error) -> Self {
        let text = e.to_string();
        if vmatte_gpu::is_out_of_memory(&text) {
            Self::oom(OutOfMemory::Device(text))
        } else {
            Self::Model(e)
        }
    }
}

impl From<candle_core::Error> for PipelineError {
    fn from(e: candle_core::Error) -> Self {
        vmatte_models::Error::from(e).into()
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// What a caught panic said (its message, if it gave one as text), for
/// the one line that reports it.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
