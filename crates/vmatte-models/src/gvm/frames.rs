//! GVM's frame geometry and the arithmetic around the model, in the
//! reference's float32 order: torchvision's `Resize(size, max_size)` with
//! antialiased bilinear resampling, centred zero padding to multiples of
//! 32, and the way back (crop, bilinear without antialias, thresholds).
//! Resampling is a matrix product per axis, so it runs on the model's
//! device; the weights are computed on the host exactly as PyTorch does.

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// Where the model sees a frame: the resized size and the padding around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    pub source: (usize, usize),
    pub resized: (usize, usize),
    pub padded: (usize, usize),
    /// top, left, bottom, right
    pub pad: (usize, usize, usize, usize),
}

impl Geometry {
    /// torchvision's rule: the shorter side to `size`, unless the longer side
    /// would pass `max_size`, then the longer side to `max_size` (Python
    /// float division, truncation toward zero). A tie counts as the width
    /// being the shorter side.
    pub fn new(source: (usize, usize), size: usize, max_size: usize) -> Result<Self> {
        if max_size <= size {
            return Err(Error::Invalid(format!(
                "the largest side allowed, {max_size} px, must be larger than the shorter side's size, {size} px"
            )));
        }
        let (h, w) = source;
        let (short, long) = if w <= h { (w, h) } else { (h, w) };
        let mut new_short = size;
        let mut new_long = (size as f64 * long as f64 / short as f64) as usize;
        if new_long > max_size {
            new_short = (max_size as f64 * new_short as f64 / new_long as f64) as usize;
            new_long = max_size;
        }
        let resized = if w <= h {
            (new_long, new_short)
        } else {
            (new_short, new_long)
        };
        let resized = if (short, long) == (new_short, new_long) {
            (h, w)
        } else {
            resized
        };
        if resized.0 == 0 || resized.1 == 0 {
            return Err(Error::Invalid(format!(
                "{w}x{h} frames shrink to nothing at size {size} px; use a larger size"
            )));
        }
        let up32 = |v: usize| v.div_ceil(32) * 32;
        let padded = (up32(resized.0), up32(resized.1));
        let top = (padded.0 - resized.0) / 2;
        let left = (padded.1 - resized.1) / 2;
        Ok(Self {
            source,
            resized,
            padded,
            pad: (
                top,
                left,
                padded.0 - resized.0 - top,
                padded.1 - resized.1 - left,
            ),
        })
    }

    /// The latent's spatial size.
    pub fn latent(&self) -> (usize, usize) {
        (self.padded.0 / 8, self.padded.1 / 8)
    }
}

/// A resampling matrix `[out, in]` for one axis, in f32.
fn antialias_weights(input: usize, output: usize) -> Vec<f32> {
    let scale = input as f32 / output as f32;
    let support = if scale >= 1.0 { scale } else { 1.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let mut m = vec![0f32; output * input];
    for i in 0..output {
        let centre = scale * (i as f32 + 0.5);
        let lo = ((centre - support + 0.5) as i64).max(0) as usize;
        let hi = ((centre + support + 0.5) as i64).min(input as i64) as usize;
        let row = &mut m[i * input..(i + 1) * input];
        let mut total = 0f32;
        for (j, v) in row.iter_mut().enumerate().take(hi).skip(lo) {
            let x = (j as f32 - centre + 0.5) * inv;
            *v = (1.0 - x.abs()).max(0.0);
            total += *v;
        }
        if total > 0.0 {
            row.iter_mut().for_each(|v| *v /= total);
        }
    }
    m
}

/// Bilinear, align_corners false, no antialias: two taps per output.
fn bilinear_weights(input: usize, output: usize) -> Vec<f32> {
    let scale = input as f32 / output as f32;
    let mut m = vec![0f32; output * input];
    for i in 0..output {
        let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
        let j0 = (src.floor() as usize).min(input - 1);
        let j1 = (j0 + 1).min(input - 1);
        let l1 = src - j0 as f32;
        let l0 = 1.0 - l1;
        m[i * input + j0] += l0;
        m[i * input + j1] += l1;
    }
    m
}

/// `x` `[N, C, H, W]` resampled to `(h, w)` by the per-axis matrices.
fn resample(
    x: &Tensor,
    h: usize,
    w: usize,
    weights: fn(usize, usize) -> Vec<f32>,
) -> Result<Tensor> {
    let (n, c, ih, iw) = x.dims4()?;
    if (ih, iw) == (h, w) {
        return Ok(x.clone());
    }
    let dev = x.device();
    let x = x.to_dtype(DType::F32)?;
    let mw = Tensor::from_vec(weights(iw, w), (w, iw), dev)?;
    let mh = Tensor::from_vec(weights(ih, h), (h, ih), dev)?;
    // Width first: rows of every plane times Mw^T; then the columns, as
    // rows of the transposed planes times Mh^T. Two plain matrix products.
    let x = x.reshape((n * c * ih, iw))?.matmul(&mw.t()?)?;
    let cols = x
        .reshape((n * c, ih, w))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n * c * w, ih))?;
    let y = cols.matmul(&mh.t()?)?.reshape((n * c, w, h))?;
    Ok(y.transpose(1, 2)?.contiguous()?.reshape((n, c, h, w))?)
}

/// Frames `[N, 3, H, W]` in [0, 1] -> the model's input `[N, 3, Hp, Wp]` in
/// [-1, 1]: antialiased resize, zero padding (0 before the mapping, as the
/// reference pads), `2x - 1`.
pub fn to_model_input(frames: &Tensor, g: &Geometry) -> Result<Tensor> {
    let x = resample(frames, g.resized.0, g.resized.1, antialias_weights)?;
    let (top, left, bottom, right) = g.pad;
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    Ok(((x * 2.0)? - 1.0)?)
}

/// The decoded padded alpha `[N, 1, Hp, Wp]` -> `[N, 1, H, W]` at the source
/// size, before thresholds.
pub fn to_source_size(alpha: &Tensor, g: &Geometry) -> Result<Tensor> {
    let (top, left, _, _) = g.pad;
    let a = alpha
        .narrow(2, top, g.resized.0)?
        .narrow(3, left, g.resized.1)?;
    resample(&a, g.source.0, g.source.1, bilinear_weights)
}

/// The reference's clean-up: values at or above 240/255 become 1, then
/// values at or below 25/255 become 0, compared in f32.
pub fn threshold(alpha: &Tensor) -> Result<Tensor> {
    let a = alpha.to_dtype(DType::F32)?;
    let ones = a.ones_like()?;
    let a = a.ge(240f32 / 255.0)?.where_cond(&ones, &a)?;
    let zeros = a.zeros_like()?;
    Ok(a.le(25f32 / 255.0)?.where_cond(&zeros, &a)?)
}

/// Decoded RGB `[N, 3, H, W]` -> its mean over channels `[N, 1, H, W]` in
/// f32; alpha is `clamp(0.5·mean + 0.5, 0, 1)` of it.
pub fn mean_rgb(decoded: &Tensor) -> Result<Tensor> {
    Ok(decoded.to_dtype(DType::F32)?.mean_keepdim(1)?)
}

/// A helper for tests and tools: `[N, 3, H, W]` f32 frames from u8 HWC.
pub fn frames_from_hwc(
    u8s: &[u8],
    n: usize,
    h: usize,
    w: usize,
    device: &Device,
) -> Result<Tensor> {
    let v: Vec<f32> = u8s.iter().map(|&b| b as f32 / 255.0).collect();
    Ok(Tensor::from_vec(v, (n, h, w, 3), device)?
        .permute((0, 3, 1, 2))?
        .contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_size_rule() {
        // The fixture's example: 90x150 at size 64, max 96 -> 57x96, not 58.
        let g = Geometry::new((90, 150), 64, 96).unwrap();
        assert_eq!(g.resized, (57, 96));
        assert_eq!(g.padded, (64, 96));
        assert_eq!(g.pad, (3, 0, 4, 0));
        // 1080p at the defaults -> 1024x576; at max 960 -> 960x540.
        assert_eq!(
            Geometry::new((1080, 1920), 720, 1024).unwrap().resized,
            (576, 1024)
        );
        assert_eq!(
            Geometry::new((1080, 1920), 720, 960).unwrap().resized,
            (540, 960)
        );
        assert_eq!(
            Geometry::new((1920, 1080), 720, 1024).unwrap().resized,
            (1024, 576)
        );
        assert!(Geometry::new((90, 150), 96, 96).is_err());
    }

    #[test]
    fn resampling_rows_sum_to_one() {
        for (i, o) in [(150, 96), (96, 150), (57, 90), (7, 7)] {
            for m in [antialias_weights(i, o), bilinear_weights(i, o)] {
                for row in m.chunks(i) {
                    let s: f32 = row.iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{i}->{o}: {s}");
                }
            }
        }
    }
}
