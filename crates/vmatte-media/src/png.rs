//! Numbered PNG or TIFF files, encoded in-process by libav.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg::codec::{self, Id};
use ffmpeg::format::Pixel;
use ffmpeg::{ffi, frame, Dictionary, Packet};
use ffmpeg_next as ffmpeg;

use crate::encode::frame_size_error;
use crate::error::MediaError;
use crate::scale::{Geometry, Scaler};
use crate::{log, PixelLayout, Rational};

/// The image format of a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    /// Deflate-compressed TIFF.
    Tiff,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Tiff => "tiff",
        }
    }

    /// The file's pixel format for frames of `layout`: the same samples,
    /// in the byte order the format stores (PNG is big-endian).
    fn pixel(self, layout: PixelLayout) -> Pixel {
        match (self, layout) {
            (Self::Png, PixelLayout::Rgb48) => Pixel::RGB48BE,
            (Self::Png, PixelLayout::Rgba64) => Pixel::RGBA64BE,
            (Self::Png, PixelLayout::Gray16) => Pixel::GRAY16BE,
            _ => layout.pixel(),
        }
    }
}

/// Writes `000000.png`, `000001.png`, ... (or `.tiff`) into a folder: RGB,
/// RGBA or gray (an alpha matte), 8 or 16 bits per sample as the layout says.
pub struct ImageSequenceWriter {
    dir: PathBuf,
    format: ImageFormat,
    layout: PixelLayout,
    width: u32,
    height: u32,
    encoder: ffmpeg::encoder::Video,
    input: frame::Video,
    /// Byte-order conversion, for 16-bit PNG.
    swap: Option<(Scaler, frame::Video)>,
}

/// The PNG writer under its first name.
pub type PngSequenceWriter = ImageSequenceWriter;

impl ImageSequenceWriter {
    /// A PNG sequence in `dir`, created (with its parents) if needed.
    pub fn create(
        dir: &Path,
        width: u32,
        height: u32,
        layout: PixelLayout,
    ) -> Result<Self, MediaError> {
        Self::create_as(dir, width, height, layout, ImageFormat::Png)
    }

    pub fn create_as(
        dir: &Path,
        width: u32,
        height: u32,
        layout: PixelLayout,
        format: ImageFormat,
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
        let (id, name) = match format {
            ImageFormat::Png => (Id::PNG, "png"),
            ImageFormat::Tiff => (Id::TIFF, "tiff"),
        };
        let codec = ffmpeg::encoder::find(id).ok_or(MediaError::EncoderMissing {
            path: dir.to_path_buf(),
            encoder: name,
        })?;
        let file_pixel = format.pixel(layout);
        let encode_err = |e| MediaError::encode(dir, e);
        let mut encoder = codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(encode_err)?;
        encoder.set_width(width);
        encoder.set_height(height);
        encoder.set_format(file_pixel);
        // Meaningless for stills, but libav refuses to open without one.
        encoder.set_time_base(Rational::new(1, 25));
        let mut options = Dictionary::new();
        if format == ImageFormat::Tiff {
            options.set("compression_algo", "deflate");
        }
        let encoder = encoder.open_as_with(codec, options).map_err(encode_err)?;
        let swap = if file_pixel == layout.pixel() {
            None
        } else {
            let geometry = |format| Geometry {
                format,
                width,
                height,
            };
            let scaler = Scaler::new(geometry(layout.pixel()), geometry(file_pixel), 0, None)
                .map_err(|reason| MediaError::Encode {
                    path: dir.to_path_buf(),
                    reason,
                })?;
            Some((scaler, frame::Video::new(file_pixel, width, height)))
        };
        Ok(ImageSequenceWriter {
            dir: dir.to_path_buf(),
            format,
            layout,
            width,
            height,
            encoder,
            input: frame::Video::new(layout.pixel(), width, height),
            swap,
        })
    }

    /// Writes `dir/{index:06}.png` (or `.tiff`) and returns its path.
    /// `data` is packed rows of `width * height` pixels in the writer's
    /// layout.
    pub fn write(&mut self, index: u64, data: &[u8]) -> Result<PathBuf, MediaError> {
        log::clear();
        let path = self
            .dir
            .join(format!("{index:06}.{}", self.format.extension()));
        let row = self.width as usize * self.layout.bytes_per_pixel();
        if data.len() != row * self.height as usize {
            let size = (self.width, self.height, self.layout);
            return Err(frame_size_error(&path, data.len(), size));
        }
        let encode_err = |e| MediaError::encode(&path, e);
        // SAFETY: valid frame; copies the buffer if the encoder still
        // references it.
        let ret = unsafe { ffi::av_frame_make_writable(self.input.as_mut_ptr()) };
        if ret < 0 {
            return Err(encode_err(ret.into()));
        }
        let stride = self.input.stride(0);
        let plane = self.input.data_mut(0);
        for (dst, src) in plane.chunks_mut(stride).zip(data.chunks_exact(row)) {
            dst[..row].copy_from_slice(src);
        }
        let frame = match self.swap.as_mut() {
            Some((scaler, swapped)) => {
                // SAFETY: as above.
                let ret = unsafe { ffi::av_frame_make_writable(swapped.as_mut_ptr()) };
                if ret < 0 {
                    return Err(encode_err(ret.into()));
                }
                scaler.run(&self.input, swapped);
                &mut *swapped
            }
            None => &mut self.input,
        };
        frame.set_pts(Some(index as i64));
        self.encoder.send_frame(frame).map_err(encode_err)?;
        let mut packet = Packet::empty();
        self.encoder
            .receive_packet(&mut packet)
            .map_err(encode_err)?;
        let bytes = packet.data().unwrap_or_default();
        fs::write(&path, bytes).map_err(|e| MediaError::from_io(&path, &e, true))?;
        Ok(path)
    }
}
