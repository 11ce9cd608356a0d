//! Compositing and the conversion to 8-bit output pixels as tensor ops on
//! the model's device. On a GPU this keeps the per-pixel work off the CPU
//! and shrinks each download to the output bytes (one byte per sample
//! instead of four). The arithmetic is `frames.rs`'s, operation for
//! operation, so both paths give the same bytes.
//!
//! Outputs the device cannot prepare stay on the CPU path: 16-bit outputs,
//! and composites over an image or video (their plates are decoded on the
//! CPU).

use candle_core::{DType, Device, Tensor};

use crate::frames::Depth;
use crate::output::OutputWriter;
use crate::settings::{Background, MatteSettings, OutputKind, Placement};
use crate::Result;

/// The outputs prepared on the device, and how.
pub struct DevicePost {
    kinds: Vec<OutputKind>,
    /// The composite's colour in [0, 1], as `[1, 3, 1, 1]` on the device.
    background: Option<Tensor>,
    premultiplied: bool,
    invert_alpha: bool,
}

impl DevicePost {
    /// What of `writers` the device prepares: `None` when nothing, or when
    /// the settings keep postprocessing on the CPU (the default on the CPU).
    pub fn plan(
        writers: &[OutputWriter],
        settings: &MatteSettings,
        placement: Placement,
        device: &Device,
    ) -> Result<Option<Self>> {
        if !placement.on_device(!device.is_cpu()) {
            return Ok(None);
        }
        let colour = match &settings.background {
            Background::Color(rgb) => Some(rgb.0),
            Background::Media(_) => None,
        };
        let kinds: Vec<OutputKind> = writers
            .iter()
            .filter(|w| w.depth() == Depth::Eight)
            .map(OutputWriter::kind)
            .filter(|k| *k != OutputKind::Composite || colour.is_some())
            .collect();
        if kinds.is_empty() {
            return Ok(None);
        }
        let background = match colour {
            Some(rgb) => Some(
                Tensor::new(&rgb.map(|c| f32::from(c) / 255.0), device)?.reshape((1, 3, 1, 1))?,
            ),
            None => None,
        };
        Ok(Some(Self {
            kinds,
            background,
            premultiplied: settings.premultiplied,
            invert_alpha: settings.invert_alpha,
        }))
    }

    pub fn kinds(&self) -> &[OutputKind] {
        &self.kinds
    }

    /// Each prepared output of a chunk as packed 8-bit pixels `[T, H, W, C]`,
    /// still on the device.
    pub fn pixels(&self, fgr: &Tensor, pha: &Tensor) -> Result<Vec<(OutputKind, Tensor)>> {
        let fgr = fgr.to_dtype(DType::F32)?;
        let pha = pha.to_dtype(DType::F32)?;
        let one_minus = |a: &Tensor| a.affine(-1.0, 1.0);
        let alpha = || -> Result<Tensor> {
            Ok(if self.invert_alpha {
                one_minus(&pha)?
            } else {
                pha.clone()
            })
        };
        self.kinds
            .iter()
            .map(|&kind| {
                let planar = match kind {
                    OutputKind::Composite => {
                        let bg = self.background.as_ref().expect("planned with a colour");
                        (fgr.broadcast_mul(&pha)? + one_minus(&pha)?.broadcast_mul(bg)?)?
                    }
                    OutputKind::Alpha => alpha()?,
                    OutputKind::Foreground => fgr.clone(),
                    OutputKind::Rgba => {
                        let colour = if self.premultiplied {
                            fgr.broadcast_mul(&pha)?
                        } else {
                            fgr.clone()
                        };
                        Tensor::cat(&[&colour, &alpha()?], 1)?
                    }
                };
                Ok((kind, packed_u8(&planar)?))
            })
            .collect()
    }
}

/// `[T, C, H, W]` in [0, 1] to `[T, H, W, C]` bytes, rounded to nearest as
/// `frames::to_u8` does.
fn packed_u8(planar: &Tensor) -> Result<Tensor> {
    Ok(planar
        .affine(255.0, 0.0)?
        .round()?
        .clamp(0f32, 255f32)?
        .to_dtype(DType::U8)?
        .permute((0, 2, 3, 1))?
        .contiguous()?)
}
