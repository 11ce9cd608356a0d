//! OpenEXR sequences, written with the `exr` crate: `000000.exr`, ... in a
//! folder, half or float samples, the channels compositors expect (R, G, B
//! and A; Y for a matte), zip, piz or no compression, and optionally the
//! colour in linear light with its primaries in the header.
//!
//! ```text
//! 16-bit samples ─► [0, 1] ─► linear light (--linear) ─► premultiply ─► half/float ─► .exr
//! ```
//! Samples arrive as the 16-bit outputs of the other formats (1/65535
//! steps, finer than half's 2^-11 near 1), so an EXR holds the same
//! picture as a 16-bit PNG of the same frame. Premultiplication happens
//! here, after linearisation, because colour and alpha only multiply in
//! linear light.

use std::path::{Path, PathBuf};

use exr::meta::attribute::Chromaticities;
use exr::prelude::{
    f16, AnyChannel, AnyChannels, Blocks, Compression, Encoding, FlatSamples, Image, Layer,
    LayerAttributes, LineOrder, Vec2, WritableImage,
};
use ffmpeg_next::ffi::{AVColorPrimaries as P, AVColorTransferCharacteristic as T};

use crate::color::ColorTags;
use crate::error::MediaError;
use crate::PixelLayout;

/// How an EXR sequence is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExrOptions {
    /// 32-bit float samples instead of half.
    pub float: bool,
    pub compression: ExrCompression,
    /// Colour converted from the source's transfer function to linear light.
    pub linear: bool,
    /// Colour multiplied by alpha (rgba only).
    pub premultiply: bool,
    /// The A channel holds 1 - alpha (a holdout): colour is still
    /// multiplied by the coverage, alpha.
    pub invert_alpha: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExrCompression {
    /// Deflate over 16 scan lines: lossless, what OpenEXR calls ZIP.
    #[default]
    Zip,
    /// Wavelet, lossless: smaller on grainy footage.
    Piz,
    None,
}

pub struct ExrSequenceWriter {
    dir: PathBuf,
    size: (usize, usize),
    /// Samples per pixel: 1 (a matte), 3 or 4.
    channels: usize,
    options: ExrOptions,
    chromaticities: Chromaticities,
    /// The source's transfer function, as a function to linear light.
    to_linear: fn(f32) -> f32,
    /// Planar samples of the frame being written, reused.
    planes: Vec<Vec<f32>>,
}

impl ExrSequenceWriter {
    /// A sequence in `dir` (created with its parents) for 16-bit frames of
    /// `layout` (Gray16, Rgb48 or Rgba64).
    pub fn create(
        dir: &Path,
        (width, height): (u32, u32),
        layout: PixelLayout,
        options: ExrOptions,
        tags: ColorTags,
    ) -> Result<Self, MediaError> {
        let channels = match layout {
            PixelLayout::Gray16 => 1,
            PixelLayout::Rgb48 => 3,
            PixelLayout::Rgba64 => 4,
            _ => {
                return Err(MediaError::Invalid {
                    path: dir.to_path_buf(),
                    problem: "EXR takes 16-bit samples".into(),
                    hint: "this is a bug in the caller".into(),
                })
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| MediaError::from_io(dir, &e, true))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            size: (width as usize, height as usize),
            channels,
            options,
            chromaticities: chromaticities(tags.primaries),
            to_linear: to_linear(tags.transfer),
            planes: vec![Vec::new(); channels],
        })
    }

    /// Writes frame `index` from packed little-endian 16-bit samples.
    pub fn write(&mut self, index: u64, data: &[u8]) -> Result<PathBuf, MediaError> {
        let (w, h) = self.size;
        let n = self.channels;
        assert_eq!(data.len(), 2 * n * w * h, "frame size");
        for plane in &mut self.planes {
            plane.clear();
        }
        // Colour is linearised, alpha (the fourth sample) never is; a matte
        // alone is coverage, not colour.
        let colour = if n == 1 { 0 } else { 3 };
        let linear = self.options.linear;
        for px in data.chunks_exact(2 * n) {
            for (k, plane) in self.planes.iter_mut().enumerate() {
                let v = f32::from(u16::from_le_bytes([px[2 * k], px[2 * k + 1]])) / 65535.0;
                plane.push(if linear && k < colour {
                    (self.to_linear)(v)
                } else {
                    v
                });
            }
        }
        if n == 4 && self.options.premultiply {
            let inverted = self.options.invert_alpha;
            let (rgb, a) = self.planes.split_at_mut(3);
            for plane in rgb {
                for (c, a) in plane.iter_mut().zip(&a[0]) {
                    *c *= if inverted { 1.0 - a } else { *a };
                }
            }
        }
        let names: &[&str] = match n {
            1 => &["Y"],
            3 => &["R", "G", "B"],
            _ => &["R", "G", "B", "A"],
        };
        let channels: Vec<AnyChannel<FlatSamples>> = names
            .iter()
            .zip(&self.planes)
            .map(|(name, plane)| {
                let samples = if self.options.float {
                    FlatSamples::F32(plane.clone())
                } else {
                    FlatSamples::F16(plane.iter().map(|v| f16::from_f32(*v)).collect())
                };
                AnyChannel::new(*name, samples)
            })
            .collect();
        let encoding = Encoding {
            compression: match self.options.compression {
                ExrCompression::Zip => Compression::ZIP16,
                ExrCompression::Piz => Compression::PIZ,
                ExrCompression::None => Compression::Uncompressed,
            },
            blocks: Blocks::ScanLines,
            line_order: LineOrder::Increasing,
        };
        let layer = Layer::new(
            (w, h),
            LayerAttributes::default(),
            encoding,
            AnyChannels::sort(channels.into()),
        );
        let mut image = Image::from_layer(layer);
        image.attributes.chromaticities = Some(self.chromaticities);
        let path = self.dir.join(format!("{index:06}.exr"));
        image.write().to_file(&path).map_err(|e| match e {
            exr::error::Error::Io(io) => MediaError::from_io(&path, &io, true),
            other => MediaError::Encode {
                path: path.clone(),
                reason: other.to_string(),
            },
        })?;
        Ok(path)
    }
}

/// CIE xy of the primaries and white point the source is tagged with;
/// BT.709's (sRGB's) where it says nothing or names none of these.
fn chromaticities(primaries: P) -> Chromaticities {
    let xy = |x: f32, y: f32| Vec2(x, y);
    let d65 = xy(0.3127, 0.3290);
    let (r, g, b) = match primaries {
        P::AVCOL_PRI_BT2020 => (xy(0.708, 0.292), xy(0.170, 0.797), xy(0.131, 0.046)),
        P::AVCOL_PRI_SMPTE432 => (xy(0.680, 0.320), xy(0.265, 0.690), xy(0.150, 0.060)),
        P::AVCOL_PRI_SMPTE170M | P::AVCOL_PRI_SMPTE240M => {
            (xy(0.630, 0.340), xy(0.310, 0.595), xy(0.155, 0.070))
        }
        P::AVCOL_PRI_BT470BG => (xy(0.64, 0.33), xy(0.29, 0.60), xy(0.15, 0.06)),
        _ => (xy(0.64, 0.33), xy(0.30, 0.60), xy(0.15, 0.06)),
    };
    Chromaticities {
        red: r,
        green: g,
        blue: b,
        white: d65,
    }
}

/// The function from the source's encoded values to linear light, by its
/// transfer tag; BT.709's where it says nothing.
pub fn to_linear(transfer: T) -> fn(f32) -> f32 {
    match transfer {
        T::AVCOL_TRC_IEC61966_2_1 => srgb,
        T::AVCOL_TRC_SMPTE2084 => pq,
        T::AVCOL_TRC_ARIB_STD_B67 => hlg,
        T::AVCOL_TRC_LINEAR => |v| v,
        T::AVCOL_TRC_GAMMA22 => |v| v.powf(2.2),
        T::AVCOL_TRC_GAMMA28 => |v| v.powf(2.8),
        // BT.709, BT.601 (SMPTE 170M) and BT.2020 share one curve.
        _ => bt709,
    }
}

/// sRGB's decoding (IEC 61966-2-1).
fn srgb(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// The inverse of BT.709's camera curve (its OETF): scene light, as
/// compositors linearise Rec. 709 video.
fn bt709(v: f32) -> f32 {
    if v < 0.081 {
        v / 4.5
    } else {
        ((v + 0.099) / 1.099).powf(1.0 / 0.45)
    }
}

/// SMPTE ST 2084 (PQ) to light, scaled so that 100 cd/m² (SDR's reference
/// white) is 1.0: 10000 cd/m² is 100.
fn pq(v: f32) -> f32 {
    const M1: f32 = 2610.0 / 16384.0;
    const M2: f32 = 2523.0 / 4096.0 * 128.0;
    const C1: f32 = 3424.0 / 4096.0;
    const C2: f32 = 2413.0 / 4096.0 * 32.0;
    const C3: f32 = 2392.0 / 4096.0 * 32.0;
    let p = v.max(0.0).powf(1.0 / M2);
    ((p - C1).max(0.0) / (C2 - C3 * p)).powf(1.0 / M1) * 100.0
}

/// The inverse of HLG's OETF (ARIB STD-B67, BT.2100): scene light in [0, 1].
fn hlg(v: f32) -> f32 {
    const A: f32 = 0.178_832_77;
    const B: f32 = 0.284_668_92;
    const C: f32 = 0.559_910_7;
    if v <= 0.5 {
        v * v / 3.0
    } else {
        (((v - C) / A).exp() + B) / 12.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_curves_meet_their_published_points() {
        // sRGB: 0.5 encodes 21.4% light; its two pieces meet at 0.04045.
        assert!((srgb(0.5) - 0.214_041).abs() < 1e-5);
        assert!((srgb(0.04045) - 0.04045 / 12.92).abs() < 1e-7);
        // BT.709: 0.081 is 0.018 light (the linear segment's end), 1 is 1.
        assert!((bt709(0.081) - 0.018).abs() < 1e-4);
        assert!((bt709(1.0) - 1.0).abs() < 1e-6);
        // PQ: code 1.0 is 10000 cd/m² (100 here); 0.508 is about 100 cd/m².
        assert!((pq(1.0) - 100.0).abs() < 1e-2);
        assert!((pq(0.508_078) - 1.0).abs() < 1e-2);
        // HLG: 0.5 is 1/12 of scene light, 1.0 is all of it.
        assert!((hlg(0.5) - 1.0 / 12.0).abs() < 1e-6);
        assert!((hlg(1.0) - 1.0).abs() < 1e-4);
    }
}
