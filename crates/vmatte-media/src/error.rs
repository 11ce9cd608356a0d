use std::io;
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;

use crate::log;

/// Everything that can go wrong reading or writing media.
///
/// Each message is one line: the file, what is wrong with it, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{}: file not found; check the path", .path.display())]
    NotFound { path: PathBuf },

    #[error("{}: permission denied; check the permissions of the file and its folder", .path.display())]
    PermissionDenied { path: PathBuf },

    #[error("{}: cannot read ({reason}); check that the file is accessible", .path.display())]
    Read { path: PathBuf, reason: String },

    #[error(
        "{}: not a video or image libav can read ({reason}); pass a video file or a folder of images",
        .path.display()
    )]
    Unreadable { path: PathBuf, reason: String },

    #[error("{}: truncated or corrupt ({reason}); re-export or re-download it", .path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("{}: no video stream; pass a file that contains video", .path.display())]
    NoVideoStream { path: PathBuf },

    #[error(
        "{}: this libav build cannot decode {codec} video; convert it to H.264 or install an ffmpeg with a {codec} decoder",
        .path.display()
    )]
    UnsupportedCodec { path: PathBuf, codec: String },

    #[error("{}: {problem}; convert it to a common format such as H.264 yuv420p or 8-bit PNG", .path.display())]
    Unsupported { path: PathBuf, problem: String },

    #[error(
        "{}: no images ({}) in this folder; pass a folder of numbered images or a video file",
        .path.display(),
        crate::formats::IMAGE_EXTENSIONS.join(", ")
    )]
    NoImages { path: PathBuf },

    #[error(
        "{}: image is {width}x{height} but {} is {first_width}x{first_height}; all images in a folder must share one size",
        .path.display(),
        .first.display()
    )]
    ImageSizeMismatch {
        path: PathBuf,
        width: u32,
        height: u32,
        first: PathBuf,
        first_width: u32,
        first_height: u32,
    },

    #[error("{}: cannot write ({reason}); check that the folder exists, is writable and has free space", .path.display())]
    Write { path: PathBuf, reason: String },

    #[error("{}: libav has no {encoder} encoder; install an ffmpeg built with {encoder}", .path.display())]
    EncoderMissing {
        path: PathBuf,
        encoder: &'static str,
    },

    #[error("{}: encoding failed ({reason}); check the output settings", .path.display())]
    Encode { path: PathBuf, reason: String },

    #[error("{}: {problem}; {hint}", .path.display())]
    Invalid {
        path: PathBuf,
        problem: String,
        hint: String,
    },
}

impl MediaError {
    /// The file or folder the error is about.
    pub fn path(&self) -> &Path {
        match self {
            MediaError::NotFound { path }
            | MediaError::PermissionDenied { path }
            | MediaError::Read { path, .. }
            | MediaError::Unreadable { path, .. }
            | MediaError::Corrupt { path, .. }
            | MediaError::NoVideoStream { path }
            | MediaError::UnsupportedCodec { path, .. }
            | MediaError::Unsupported { path, .. }
            | MediaError::NoImages { path }
            | MediaError::ImageSizeMismatch { path, .. }
            | MediaError::Write { path, .. }
            | MediaError::EncoderMissing { path, .. }
            | MediaError::Encode { path, .. }
            | MediaError::Invalid { path, .. } => path,
        }
    }

    pub(crate) fn from_io(path: &Path, err: &io::Error, writing: bool) -> Self {
        let path = path.to_path_buf();
        match err.kind() {
            io::ErrorKind::NotFound if !writing => MediaError::NotFound { path },
            io::ErrorKind::PermissionDenied => MediaError::PermissionDenied { path },
            _ if writing => MediaError::Write {
                path,
                reason: err.to_string(),
            },
            _ => MediaError::Read {
                path,
                reason: err.to_string(),
            },
        }
    }

    /// A libav failure while decoding data that opened fine: the data itself
    /// is damaged.
    pub(crate) fn corrupt(path: &Path, err: ffmpeg::Error) -> Self {
        MediaError::Corrupt {
            path: path.to_path_buf(),
            reason: reason(err),
        }
    }

    pub(crate) fn write(path: &Path, err: ffmpeg::Error) -> Self {
        // The muxer explains its refusals only in the log.
        if let Some(reason) = log::take_last_error() {
            return MediaError::Write {
                path: path.to_path_buf(),
                reason,
            };
        }
        match err {
            ffmpeg::Error::Other { errno } => {
                Self::from_io(path, &io::Error::from_raw_os_error(errno), true)
            }
            _ => MediaError::Write {
                path: path.to_path_buf(),
                reason: reason(err),
            },
        }
    }

    pub(crate) fn encode(path: &Path, err: ffmpeg::Error) -> Self {
        MediaError::Encode {
            path: path.to_path_buf(),
            reason: reason(err),
        }
    }
}

/// The most specific explanation available for a libav failure: the last
/// error libav logged on this thread (e.g. "moov atom not found"), else the
/// generic text of the error code.
pub(crate) fn reason(err: ffmpeg::Error) -> String {
    log::take_last_error().unwrap_or_else(|| err.to_string())
}
