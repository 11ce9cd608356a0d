//! Numbered PNG files, encoded in-process by libav.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg::codec::{self, Id};
use ffmpeg::{ffi, frame, Packet};
use ffmpeg_next as ffmpeg;

use crate::encode::frame_size_error;
use crate::error::MediaError;
use crate::{log, PixelLayout, Rational};

/// Writes `000000.png`, `000001.png`, ... into a folder: 8-bit RGB, or
/// 8-bit gray for [`PixelLayout::Gray8`] (an alpha matte).
pub struct PngSequenceWriter {
    dir: PathBuf,
    layout: PixelLayout,
    width: u32,
    height: u32,
    encoder: ffmpeg::encoder::Video,
    frame: frame::Video,
}

impl PngSequenceWriter {
    /// Creates `dir` (and its parents) if needed.
    pub fn create(
        dir: &Path,
        width: u32,
        height: u32,
        layout: PixelLayout,
    ) -> Result<Self, MediaError> {
        crate::init();
        log::clear();
        if width == 0 || height == 0 {
            return Err(MediaError::Invalid {
                path: dir.to_path_buf(),
                problem: format!("invalid image size {width}x{height}"),
                hint: "this is a bug in the caller".into(),
            });
        }
        fs::create_dir_all(dir).map_err(|e| MediaError::from_io(dir, &e, true))?;
        let codec = ffmpeg::encoder::find(Id::PNG).ok_or(MediaError::EncoderMissing {
            path: dir.to_path_buf(),
            encoder: "png",
        })?;
        let encode_err = |e| MediaError::encode(dir, e);
        let mut encoder = codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(encode_err)?;
        encoder.set_width(width);
        encoder.set_height(height);
        encoder.set_format(layout.pixel());
        // Meaningless for stills, but libav refuses to open without one.
        encoder.set_time_base(Rational::new(1, 25));
        let encoder = encoder.open_as(codec).map_err(encode_err)?;
        Ok(PngSequenceWriter {
            dir: dir.to_path_buf(),
            layout,
            width,
            height,
            encoder,
            frame: frame::Video::new(layout.pixel(), width, height),
        })
    }

    /// Writes `dir/{index:06}.png` and returns its path. `data` is packed
    /// rows of `width * height` pixels in the writer's layout.
    pub fn write(&mut self, index: u64, data: &[u8]) -> Result<PathBuf, MediaError> {
        log::clear();
        let path = self.dir.join(format!("{index:06}.png"));
        let row = self.width as usize * self.layout.bytes_per_pixel();
        if data.len() != row * self.height as usize {
            let size = (self.width, self.height, self.layout);
            return Err(frame_size_error(&path, data.len(), size));
        }
        let encode_err = |e| MediaError::encode(&path, e);
        // SAFETY: valid frame; copies the buffer if the encoder still
        // references it.
        let ret = unsafe { ffi::av_frame_make_writable(self.frame.as_mut_ptr()) };
        if ret < 0 {
            return Err(encode_err(ret.into()));
        }
        let stride = self.frame.stride(0);
        let plane = self.frame.data_mut(0);
        for (dst, src) in plane.chunks_mut(stride).zip(data.chunks_exact(row)) {
            dst[..row].copy_from_slice(src);
        }
        self.frame.set_pts(Some(index as i64));
        self.encoder.send_frame(&self.frame).map_err(encode_err)?;
        let mut packet = Packet::empty();
        self.encoder
            .receive_packet(&mut packet)
            .map_err(encode_err)?;
        let bytes = packet.data().unwrap_or_default();
        fs::write(&path, bytes).map_err(|e| MediaError::from_io(&path, &e, true))?;
        Ok(path)
    }
}
