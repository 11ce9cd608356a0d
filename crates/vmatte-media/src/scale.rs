//! swscale, driven directly: the safe wrapper in ffmpeg-next can neither set
//! colour matrices nor be sent between threads.

use std::ffi::c_int;
use std::ptr::{self, NonNull};

use ffmpeg_next::ffi;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;
use ffmpeg_next::util::color::{Range, Space};

use crate::color::{self, Colorimetry, Family};

/// Accurate rather than fast: full horizontal chroma resolution, exact
/// rounding. The matte is only as good as the RGB the model sees.
const FLAGS: c_int = ffi::SWS_BILINEAR | ffi::SWS_ACCURATE_RND | ffi::SWS_FULL_CHR_H_INT;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub format: Pixel,
    pub width: u32,
    pub height: u32,
}

/// Matrix and range of the YUV side of a conversion (RGB is always full
/// range, so only one side needs describing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct YuvSide {
    pub sws_matrix: c_int,
    pub full_range: bool,
}

pub(crate) struct Scaler {
    ctx: NonNull<ffi::SwsContext>,
    src: Geometry,
    dst: Geometry,
}

// SAFETY: an SwsContext has no thread affinity; it only must not be used by
// two threads at once, which `&mut self` on every use guarantees.
unsafe impl Send for Scaler {}

impl Scaler {
    /// `yuv` describes the YUV (or gray) side when one side is RGB. When both
    /// sides are YUV/gray it must be `None`: swscale then keeps its defaults
    /// (gray is full range, yuvj full, other YUV limited), and its colour API
    /// refuses YUV->YUV anyway.
    pub fn new(
        src: Geometry,
        dst: Geometry,
        extra_flags: c_int,
        yuv: Option<YuvSide>,
    ) -> Result<Self, String> {
        // SAFETY: plain constructor; NULL on failure.
        let raw = unsafe {
            ffi::sws_getContext(
                src.width as c_int,
                src.height as c_int,
                src.format.into(),
                dst.width as c_int,
                dst.height as c_int,
                dst.format.into(),
                FLAGS | extra_flags,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        let ctx = NonNull::new(raw).ok_or_else(|| {
            format!(
                "swscale cannot convert {} to {}",
                color::pixel_name(src.format),
                color::pixel_name(dst.format)
            )
        })?;
        let scaler = Scaler { ctx, src, dst };
        if let Some(yuv) = yuv {
            let src_is_rgb = color::family(src.format) == Family::Rgb;
            // RGB is full range; the flag for the RGB side is ignored.
            let (src_range, dst_range) = if src_is_rgb {
                (1, c_int::from(yuv.full_range))
            } else {
                (c_int::from(yuv.full_range), 1)
            };
            // SAFETY: ctx is valid; the coefficient tables are static.
            let ret = unsafe {
                let table = ffi::sws_getCoefficients(yuv.sws_matrix);
                ffi::sws_setColorspaceDetails(
                    scaler.ctx.as_ptr(),
                    table,
                    src_range,
                    table,
                    dst_range,
                    0,
                    1 << 16,
                    1 << 16,
                )
            };
            if ret < 0 {
                return Err(format!(
                    "swscale cannot apply colour details converting {} to {}",
                    color::pixel_name(src.format),
                    color::pixel_name(dst.format)
                ));
            }
        }
        Ok(scaler)
    }

    pub fn src(&self) -> Geometry {
        self.src
    }

    /// Converts `src` into `dst`, which must already be allocated with the
    /// destination geometry.
    pub fn run(&mut self, src: &frame::Video, dst: &mut frame::Video) {
        debug_assert_eq!(
            (src.format(), src.width(), src.height()),
            (self.src.format, self.src.width, self.src.height)
        );
        debug_assert_eq!(
            (dst.format(), dst.width(), dst.height()),
            (self.dst.format, self.dst.width, self.dst.height)
        );
        // SAFETY: both frames hold buffers of the geometry the context was
        // built for (checked by the callers), and the context is ours.
        unsafe {
            let s = src.as_ptr();
            let d = dst.as_mut_ptr();
            ffi::sws_scale(
                self.ctx.as_ptr(),
                (*s).data.as_ptr() as *const *const u8,
                (*s).linesize.as_ptr(),
                0,
                self.src.height as c_int,
                (*d).data.as_ptr(),
                (*d).linesize.as_ptr(),
            );
        }
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        // SAFETY: created by sws_getContext, freed once.
        unsafe { ffi::sws_freeContext(self.ctx.as_ptr()) }
    }
}

/// Turns decoded frames of any format into packed RGB24 (or, for sources
/// deeper than 8 bits, RGB48) of one fixed size, rebuilding the swscale
/// context when the input format or tags change.
pub(crate) struct RgbConverter {
    width: u32,
    height: u32,
    scaler: Option<(Colorimetry, Scaler)>,
    rgb: frame::Video,
}

impl RgbConverter {
    pub fn new(width: u32, height: u32) -> Self {
        RgbConverter {
            width,
            height,
            scaler: None,
            rgb: frame::Video::new(Pixel::RGB24, width, height),
        }
    }

    /// 16 bits per sample (little-endian) instead of 8.
    pub fn set_deep(&mut self, deep: bool) {
        let format = if deep { Pixel::RGB48LE } else { Pixel::RGB24 };
        if self.rgb.format() != format {
            self.rgb = frame::Video::new(format, self.width, self.height);
            self.scaler = None;
        }
    }

    pub fn is_deep(&self) -> bool {
        self.rgb.format() == Pixel::RGB48LE
    }

    /// `stream_tags` are used where the frame leaves matrix or range
    /// unspecified.
    pub fn convert(
        &mut self,
        frame: &frame::Video,
        stream_tags: (Space, Range),
    ) -> Result<Vec<u8>, String> {
        let (space, range) = color::merge((frame.color_space(), frame.color_range()), stream_tags);
        let colour = Colorimetry::resolve(frame.format(), space, range, frame.height());
        let geometry = Geometry {
            format: frame.format(),
            width: frame.width(),
            height: frame.height(),
        };
        let reusable = matches!(&self.scaler, Some((c, s)) if *c == colour && s.src() == geometry);
        if !reusable {
            let dst = Geometry {
                format: self.rgb.format(),
                width: self.width,
                height: self.height,
            };
            let yuv = YuvSide {
                sws_matrix: colour.sws_matrix(),
                full_range: colour.full_range,
            };
            self.scaler = Some((colour, Scaler::new(geometry, dst, 0, Some(yuv))?));
        }
        let (_, scaler) = self.scaler.as_mut().expect("scaler was just built");
        scaler.run(frame, &mut self.rgb);

        let row = self.width as usize * if self.is_deep() { 6 } else { 3 };
        let stride = self.rgb.stride(0);
        let data = self.rgb.data(0);
        let mut out = Vec::with_capacity(row * self.height as usize);
        for y in 0..self.height as usize {
            out.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(out)
    }
}

/// Scales frames to cover a fixed size (the smaller scale that leaves no
/// border) and crops the overflow evenly from both sides, as editors place
/// a background plate. Output is packed RGB24.
pub struct CoverScaler {
    width: u32,
    height: u32,
    scaler: Option<(Geometry, Scaler, frame::Video, frame::Video)>,
}

impl CoverScaler {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            scaler: None,
        }
    }

    pub fn apply(&mut self, frame: &crate::Frame) -> Result<Vec<u8>, String> {
        let src = Geometry {
            format: if frame.deep {
                Pixel::RGB48LE
            } else {
                Pixel::RGB24
            },
            width: frame.width,
            height: frame.height,
        };
        if !matches!(&self.scaler, Some((g, ..)) if *g == src) {
            let scale = f64::max(
                f64::from(self.width) / f64::from(frame.width),
                f64::from(self.height) / f64::from(frame.height),
            );
            let covered =
                |side: u32, at_least: u32| ((f64::from(side) * scale).round() as u32).max(at_least);
            let dst = Geometry {
                format: Pixel::RGB24,
                width: covered(frame.width, self.width),
                height: covered(frame.height, self.height),
            };
            let scaler = Scaler::new(src, dst, 0, None)?;
            let input = frame::Video::new(src.format, src.width, src.height);
            let output = frame::Video::new(dst.format, dst.width, dst.height);
            self.scaler = Some((src, scaler, input, output));
        }
        let (_, scaler, input, output) = self.scaler.as_mut().expect("built above");
        let row = frame.width as usize * if frame.deep { 6 } else { 3 };
        let stride = input.stride(0);
        for (dst, src) in input
            .data_mut(0)
            .chunks_mut(stride)
            .zip(frame.rgb.chunks_exact(row))
        {
            dst[..row].copy_from_slice(src);
        }
        scaler.run(input, output);
        let (x0, y0) = (
            (output.width() - self.width) as usize / 2,
            (output.height() - self.height) as usize / 2,
        );
        let (w, stride) = (self.width as usize * 3, output.stride(0));
        let data = output.data(0);
        let mut out = Vec::with_capacity(w * self.height as usize);
        for y in y0..y0 + self.height as usize {
            let start = y * stride + x0 * 3;
            out.extend_from_slice(&data[start..start + w]);
        }
        Ok(out)
    }
}
