//! The out-of-memory ladder. When a forward pass runs out of GPU memory,
//! vmatte steps down instead of failing: halve the chunk (the video goes on
//! from the same frame, with the same recurrent state), then halve the
//! number of videos running at once, then run that video on the CPU. The
//! batch goes on either way; every step is logged.
//!
//! Out-of-memory can be injected (`VMATTE_FAKE_OOM`), so the ladder is
//! tested on machines without a GPU, with the real pipeline and batch.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Whether an error message is an out-of-memory from CUDA, cuBLAS, cuDNN
/// or candle's allocator.
pub fn is_out_of_memory(message: &str) -> bool {
    const MARKERS: [&str; 5] = [
        "CUDA_ERROR_OUT_OF_MEMORY",
        "CUBLAS_STATUS_ALLOC_FAILED",
        "CUDNN_STATUS_ALLOC_FAILED",
        "out of memory",
        "OutOfMemory",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

/// `VMATTE_FAKE_OOM`: make forward passes fail as if the GPU ran out of
/// memory. `frames>N` fails every chunk longer than N frames; `always` fails
/// every chunk. Only the first device a job runs on is affected: the CPU
/// fallback at the bottom of the ladder never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeOom {
    ChunksOver(usize),
    Always,
}

/// The message an injected failure carries; [`is_out_of_memory`] knows it.
pub const FAKE_OOM_MESSAGE: &str = "CUDA_ERROR_OUT_OF_MEMORY (injected by VMATTE_FAKE_OOM)";

impl FakeOom {
    pub const ENV: &'static str = "VMATTE_FAKE_OOM";

    /// The injection asked for in the environment, if any. A value that
    /// does not parse is an error rather than silently no injection.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// Whether a forward pass over `frames` frames fails.
    pub fn fails(self, frames: usize) -> bool {
        match self {
            Self::ChunksOver(n) => frames > n,
            Self::Always => true,
        }
    }
}

impl FromStr for FakeOom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "always" {
            return Ok(Self::Always);
        }
        s.strip_prefix("frames>")
            .and_then(|n| n.parse().ok())
            .map(Self::ChunksOver)
            .ok_or_else(|| {
                format!(
                    "{}='{s}' is not understood; use frames>N or always",
                    Self::ENV
                )
            })
    }
}

/// One step down the ladder, as logs and summaries report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Chunks of `from` frames did not fit; the video goes on with `to`.
    HalveChunk { from: usize, to: usize, frame: u64 },
    /// Fewer videos at once on the device.
    HalveStreams { from: usize, to: usize },
    /// The video is redone on the CPU.
    Cpu,
    /// A GVM setting lowered (frames per batch, then decode chunk, then
    /// resolution); the video goes on from the window that failed.
    Lower {
        setting: String,
        from: String,
        to: String,
        frame: u64,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HalveChunk { from, to, frame } => write!(
                f,
                "out of GPU memory at frame {frame}: chunk {from} -> {to} frames"
            ),
            Self::HalveStreams { from, to } => write!(
                f,
                "out of GPU memory with one-frame chunks: videos at once {from} -> {to}"
            ),
            Self::Cpu => write!(
                f,
                "out of GPU memory with one video at once: redoing it on the CPU"
            ),
            Self::Lower {
                setting,
                from,
                to,
                frame,
            } => write!(
                f,
                "out of GPU memory at frame {frame}: {setting} {from} -> {to}"
            ),
        }
    }
}

/// What the batch does with a job that ran out of memory even with
/// one-frame chunks, given how many videos run at once on its device.
pub fn next_for_job(streams: usize) -> Step {
    if streams > 1 {
        Step::HalveStreams {
            from: streams,
            to: streams / 2,
        }
    } else {
        Step::Cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_what_cuda_and_candle_say() {
        for msg in [
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            "cublas error: CUBLAS_STATUS_ALLOC_FAILED",
            "cudnn: CUDNN_STATUS_ALLOC_FAILED",
            FAKE_OOM_MESSAGE,
        ] {
            assert!(is_out_of_memory(msg), "{msg}");
        }
        assert!(!is_out_of_memory("shape mismatch in conv2d"));
        assert!(!is_out_of_memory("No space left on device"));
    }

    #[test]
    fn injection_parses_and_fails_long_chunks() {
        assert_eq!("frames>2".parse(), Ok(FakeOom::ChunksOver(2)));
        assert_eq!("always".parse(), Ok(FakeOom::Always));
        let e = "sometimes".parse::<FakeOom>().unwrap_err();
        assert!(
            e.contains("VMATTE_FAKE_OOM") && e.contains("frames>N"),
            "{e}"
        );
        let f = FakeOom::ChunksOver(2);
        assert!(f.fails(4) && f.fails(3) && !f.fails(2) && !f.fails(1));
        assert!(FakeOom::Always.fails(1));
    }

    #[test]
    fn jobs_step_down_streams_then_to_the_cpu() {
        assert_eq!(next_for_job(4), Step::HalveStreams { from: 4, to: 2 });
        assert_eq!(next_for_job(3), Step::HalveStreams { from: 3, to: 1 });
        assert_eq!(next_for_job(1), Step::Cpu);
        let logged = serde_json::to_value(Step::HalveChunk {
            from: 8,
            to: 4,
            frame: 96,
        })
        .unwrap();
        assert_eq!(
            logged,
            serde_json::json!({"step": "halve_chunk", "from": 8, "to": 4, "frame": 96})
        );
        assert_eq!(
            Step::HalveChunk {
                from: 8,
                to: 4,
                frame: 96
            }
            .to_string(),
            "out of GPU memory at frame 96: chunk 8 -> 4 frames"
        );
    }
}
