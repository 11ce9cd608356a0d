//! Opening a container with libav, telling apart a missing file, a file
//! that is no media at all, and media that is damaged. The video decoder
//! and the audio carrier both open their source here.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::ptr;

use ffmpeg::ffi;
use ffmpeg_next as ffmpeg;

use crate::error::MediaError;
use crate::{libav_url, log};

/// Opens a container, telling apart a missing file, a file that is no media
/// at all, and media that is damaged.
pub(crate) fn open_input(path: &Path) -> Result<ffmpeg::format::context::Input, MediaError> {
    let url = libav_url(path)?;
    let mut ctx = ptr::null_mut();
    // SAFETY: standard open/probe/close sequence; on success ownership of
    // the context passes to `Input`, which closes it on drop.
    unsafe {
        let ret = ffi::avformat_open_input(&mut ctx, url.as_ptr(), ptr::null(), ptr::null_mut());
        if ret < 0 {
            return Err(classify_open_error(path, ffmpeg::Error::from(ret)));
        }
        let ret = ffi::avformat_find_stream_info(ctx, ptr::null_mut());
        if ret < 0 {
            ffi::avformat_close_input(&mut ctx);
            return Err(MediaError::corrupt(path, ffmpeg::Error::from(ret)));
        }
        Ok(ffmpeg::format::context::Input::wrap(ctx))
    }
}

fn classify_open_error(path: &Path, err: ffmpeg::Error) -> MediaError {
    if let ffmpeg::Error::Other { errno } = err {
        return MediaError::from_io(path, &std::io::Error::from_raw_os_error(errno), false);
    }
    match probe(path) {
        Probe::Empty => MediaError::Corrupt {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        },
        Probe::Media(format) => MediaError::Corrupt {
            path: path.to_path_buf(),
            reason: log::take_last_error()
                .unwrap_or_else(|| format!("{format} data that cannot be parsed: {err}")),
        },
        Probe::Unknown => MediaError::Unreadable {
            path: path.to_path_buf(),
            reason: err.to_string(),
        },
    }
}

enum Probe {
    Empty,
    /// A container libav recognises with confidence, by name.
    Media(String),
    Unknown,
}

/// Looks at the first bytes the way libav's probe does, but only trusts
/// content matches: a text file named .mp4 must not count as a damaged mp4.
fn probe(path: &Path) -> Probe {
    const PROBE_BYTES: usize = 4096;
    let mut buf = Vec::with_capacity(PROBE_BYTES + ffi::AVPROBE_PADDING_SIZE as usize);
    let read = File::open(path).and_then(|f| f.take(PROBE_BYTES as u64).read_to_end(&mut buf));
    match read {
        Ok(0) => return Probe::Empty,
        Ok(_) => {}
        Err(_) => return Probe::Unknown,
    }
    let size = buf.len();
    // libav's probes may read this far past the end.
    buf.resize(size + ffi::AVPROBE_PADDING_SIZE as usize, 0);
    let mut score = 0;
    // SAFETY: the probe data points at our padded buffer for the duration
    // of the call; the returned format is static.
    let format = unsafe {
        let data = ffi::AVProbeData {
            filename: c"".as_ptr(),
            buf: buf.as_mut_ptr(),
            buf_size: size as _,
            mime_type: ptr::null(),
        };
        ffi::av_probe_input_format3(&data, 1, &mut score).as_ref()
    };
    match format {
        Some(format) if score > ffi::AVPROBE_SCORE_EXTENSION => {
            // SAFETY: static NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(format.name) };
            Probe::Media(name.to_string_lossy().into_owned())
        }
        _ => Probe::Unknown,
    }
}
