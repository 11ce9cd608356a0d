//! The settings a user gives, named in messages the way the front end in
//! use shows them: `--max-resolution` on the command line, `max_resolution`
//! in JSON (config files, an HTTP API). Library code names a setting
//! through [`Setting`], never as a flag; the front end picks the style once
//! at start ([`show_settings_as`]).

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Background,
    Bitrate,
    Codec,
    Crf,
    DecodeChunk,
    DenoiseSteps,
    Depth,
    Despeckle,
    Despill,
    Device,
    DownsampleRatio,
    Dtype,
    ExrCompression,
    Foreground,
    Format,
    FramesPerBatch,
    InterpFrames,
    Linear,
    Mask,
    MaskAt,
    MaskDilate,
    MaskDir,
    MaskErode,
    Matte,
    MatteFeather,
    MatteGrow,
    MatteLevels,
    MatteShrink,
    MaxFrames,
    MaxMemFrames,
    MaxResolution,
    MaxSize,
    MemEvery,
    Outputs,
    OverlapFrames,
    Premultiplied,
    RetryFailed,
    Size,
    TemporalSmooth,
    TopK,
    Warmup,
}

/// How settings are named in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingStyle {
    /// `max_resolution` (JSON fields, config keys): the default.
    Field,
    /// `--max-resolution` (the command line).
    Flag,
}

static STYLE: AtomicU8 = AtomicU8::new(0);

/// Names settings in this style from now on, process-wide.
pub fn show_settings_as(style: SettingStyle) {
    STYLE.store(style as u8, Ordering::Relaxed);
}

fn style() -> SettingStyle {
    match STYLE.load(Ordering::Relaxed) {
        1 => SettingStyle::Flag,
        _ => SettingStyle::Field,
    }
}

impl Setting {
    /// The field name: what JSON and config files call it.
    pub fn key(self) -> &'static str {
        match self {
            Self::Background => "background",
            Self::Bitrate => "bitrate",
            Self::Codec => "codec",
            Self::Crf => "crf",
            Self::DecodeChunk => "decode_chunk",
            Self::DenoiseSteps => "denoise_steps",
            Self::Depth => "depth",
            Self::Despeckle => "despeckle",
            Self::Despill => "despill",
            Self::Device => "device",
            Self::DownsampleRatio => "downsample_ratio",
            Self::Dtype => "dtype",
            Self::ExrCompression => "exr_compression",
            Self::Foreground => "foreground",
            Self::Format => "format",
            Self::FramesPerBatch => "frames_per_batch",
            Self::InterpFrames => "interp_frames",
            Self::Linear => "linear",
            Self::Mask => "mask",
            Self::MaskAt => "mask_at",
            Self::MaskDilate => "mask_dilate",
            Self::MaskDir => "mask_dir",
            Self::MaskErode => "mask_erode",
            Self::Matte => "matte",
            Self::MatteFeather => "matte_feather",
            Self::MatteGrow => "matte_grow",
            Self::MatteLevels => "matte_levels",
            Self::MatteShrink => "matte_shrink",
            Self::MaxFrames => "max_frames",
            Self::MaxMemFrames => "max_mem_frames",
            Self::MaxResolution => "max_resolution",
            Self::MaxSize => "max_size",
            Self::MemEvery => "mem_every",
            Self::Outputs => "outputs",
            Self::OverlapFrames => "overlap_frames",
            Self::Premultiplied => "premultiplied",
            Self::RetryFailed => "retry_failed",
            Self::Size => "size",
            Self::TemporalSmooth => "temporal_smooth",
            Self::TopK => "top_k",
            Self::Warmup => "warmup",
        }
    }

    /// The setting with a value: `--device cpu`, or `device=cpu`.
    pub fn with(self, value: impl fmt::Display) -> String {
        match style() {
            SettingStyle::Flag => format!("{self} {value}"),
            SettingStyle::Field => format!("{self}={value}"),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match style() {
            SettingStyle::Flag => write!(f, "--{}", self.key().replace('_', "-")),
            SettingStyle::Field => f.write_str(self.key()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_in_the_front_ends_style() {
        // One test changes the process-wide style, so both run here.
        assert_eq!(Setting::MaxResolution.to_string(), "max_resolution");
        assert_eq!(Setting::Device.with("cpu"), "device=cpu");
        show_settings_as(SettingStyle::Flag);
        assert_eq!(Setting::MaxResolution.to_string(), "--max-resolution");
        assert_eq!(Setting::Device.with("cpu"), "--device cpu");
        show_settings_as(SettingStyle::Field);
    }
}
