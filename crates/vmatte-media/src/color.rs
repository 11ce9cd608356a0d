//! Which YUV->RGB matrix and range a frame is decoded with, and the colour
//! tags an output carries from its source.
//!
//! swscale alone assumes BT.601 limited range unless told otherwise, which
//! shifts the colours of every HD video; so the tags of the frame (or, when
//! it has none, of the stream) are resolved here and handed to swscale.

use std::ffi::{c_int, CStr};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::util::color::{Range, Space};

/// How a source pixel format relates to colour matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Yuv,
    Gray,
    /// RGB, palette, Bayer, XYZ: no matrix involved.
    Rgb,
}

pub(crate) fn family(format: Pixel) -> Family {
    // SAFETY: av_pix_fmt_desc_get accepts any value and returns NULL or a
    // pointer to a static descriptor.
    let desc = unsafe { ffi::av_pix_fmt_desc_get(format.into()).as_ref() };
    let Some(desc) = desc else {
        return Family::Rgb;
    };
    let flags = desc.flags as c_int;
    let rgb_like = ffi::AV_PIX_FMT_FLAG_RGB | ffi::AV_PIX_FMT_FLAG_PAL | ffi::AV_PIX_FMT_FLAG_BAYER;
    if flags & rgb_like != 0 || format == Pixel::XYZ12LE || format == Pixel::XYZ12BE {
        Family::Rgb
    } else if desc.nb_components <= 2 {
        Family::Gray
    } else {
        Family::Yuv
    }
}

/// The libav pixel format name, e.g. "yuv420p".
pub(crate) fn pixel_name(format: Pixel) -> String {
    // SAFETY: returns NULL or a static NUL-terminated string.
    unsafe {
        let name = ffi::av_get_pix_fmt_name(format.into());
        if name.is_null() {
            "unknown".into()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// The colour interpretation used to convert one source format to RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Colorimetry {
    /// A matrix swscale implements: the tag, or the guess for untagged video.
    pub matrix: Space,
    pub matrix_tagged: bool,
    pub full_range: bool,
    pub family: Family,
}

impl Colorimetry {
    /// `space` and `range` are the tags of the frame, falling back to those
    /// of the stream, already merged by the caller.
    pub fn resolve(format: Pixel, space: Space, range: Range, height: u32) -> Self {
        let family = family(format);
        let matrix_tagged = swscale_knows(space);
        // Untagged video: what players do, SD is BT.601 and HD is BT.709.
        let matrix = if matrix_tagged {
            space
        } else if height >= 720 {
            Space::BT709
        } else {
            Space::SMPTE170M
        };
        let full_range = match family {
            // JPEG-style yuvj formats are full range whatever the tag says.
            Family::Yuv => is_yuvj(format) || range == Range::JPEG,
            // Gray images (PNG) are full range unless a video tagged them.
            Family::Gray => range != Range::MPEG,
            Family::Rgb => true,
        };
        Colorimetry {
            matrix,
            matrix_tagged,
            full_range,
            family,
        }
    }

    /// The `SWS_CS_*` value for swscale: swscale numbers its matrices like
    /// `AVColorSpace` does.
    pub fn sws_matrix(&self) -> c_int {
        ffi::AVColorSpace::from(self.matrix) as c_int
    }

    /// Name of the matrix in libav terms, e.g. "bt709"; untagged sources say
    /// which matrix was assumed.
    pub fn matrix_name(&self) -> String {
        match self.family {
            Family::Rgb => "rgb".into(),
            Family::Gray => "gray".into(),
            Family::Yuv if self.matrix_tagged => self.matrix.name().unwrap_or("unknown").into(),
            Family::Yuv if self.matrix == Space::BT709 => "bt709 (assumed)".into(),
            Family::Yuv => "bt601 (assumed)".into(),
        }
    }

    pub fn range_name(&self) -> &'static str {
        if self.full_range {
            "full"
        } else {
            "limited"
        }
    }
}

/// Whether swscale has coefficients for this tag (it has none for YCgCo,
/// ICtCp and friends, which are rare enough to treat as untagged).
pub(crate) fn swscale_knows(space: Space) -> bool {
    matches!(
        space,
        Space::BT709
            | Space::FCC
            | Space::BT470BG
            | Space::SMPTE170M
            | Space::SMPTE240M
            | Space::BT2020NCL
            | Space::BT2020CL
    )
}

fn is_yuvj(format: Pixel) -> bool {
    matches!(
        format,
        Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P
    )
}

/// Stream tags fill in what a frame leaves unspecified.
pub(crate) fn merge(frame: (Space, Range), stream: (Space, Range)) -> (Space, Range) {
    let space = if frame.0 == Space::Unspecified {
        stream.0
    } else {
        frame.0
    };
    let range = if frame.1 == Range::Unspecified {
        stream.1
    } else {
        frame.1
    };
    (space, range)
}

/// Bits per sample of a pixel format (8 when libav does not say).
pub(crate) fn bit_depth(format: Pixel) -> u8 {
    // SAFETY: libav's static descriptor table; NULL for unknown formats.
    unsafe {
        let desc = ffi::av_pix_fmt_desc_get(format.into());
        if desc.is_null() {
            8
        } else {
            u8::try_from((*desc).comp[0].depth).unwrap_or(8)
        }
    }
}

/// Colour tags carried from the input: the pictures keep their primaries
/// and transfer, and RGB is turned back into YUV with the input's matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColorTags {
    pub primaries: ffi::AVColorPrimaries,
    pub transfer: ffi::AVColorTransferCharacteristic,
    pub matrix: Space,
}

impl ColorTags {
    /// sRGB: BT.709's primaries with sRGB's transfer, what image files
    /// (PNG, TIFF, JPEG) are encoded with unless they say otherwise.
    pub fn srgb() -> Self {
        Self {
            transfer: ffi::AVColorTransferCharacteristic::AVCOL_TRC_IEC61966_2_1,
            ..Self::bt709()
        }
    }

    /// BT.709 throughout, for sources that say nothing.
    pub fn bt709() -> Self {
        Self {
            primaries: ffi::AVColorPrimaries::AVCOL_PRI_BT709,
            transfer: ffi::AVColorTransferCharacteristic::AVCOL_TRC_BT709,
            matrix: Space::BT709,
        }
    }

    /// A matrix swscale has coefficients for (BT.709 otherwise).
    pub(crate) fn sws_matrix(self) -> Space {
        if swscale_knows(self.matrix) {
            self.matrix
        } else {
            Space::BT709
        }
    }
}

impl Default for ColorTags {
    fn default() -> Self {
        Self::bt709()
    }
}

/// The source's colour tags, with BT.709 standing in for what it leaves
/// unspecified.
pub(crate) fn color_tags(decoder: &ffmpeg::decoder::Video, matrix: Space) -> ColorTags {
    let default = ColorTags::bt709();
    // SAFETY: reads two fields of an open decoder context.
    let (primaries, transfer) = unsafe {
        let ctx = decoder.as_ptr();
        ((*ctx).color_primaries, (*ctx).color_trc)
    };
    ColorTags {
        primaries: match primaries {
            ffi::AVColorPrimaries::AVCOL_PRI_UNSPECIFIED
            | ffi::AVColorPrimaries::AVCOL_PRI_RESERVED
            | ffi::AVColorPrimaries::AVCOL_PRI_RESERVED0 => default.primaries,
            p => p,
        },
        transfer: match transfer {
            ffi::AVColorTransferCharacteristic::AVCOL_TRC_UNSPECIFIED
            | ffi::AVColorTransferCharacteristic::AVCOL_TRC_RESERVED
            | ffi::AVColorTransferCharacteristic::AVCOL_TRC_RESERVED0 => default.transfer,
            t => t,
        },
        matrix: match matrix {
            Space::Unspecified | Space::RGB | Space::Reserved => Space::BT709,
            m => m,
        },
    }
}
