//! Bilinear resize with half-pixel centres ([`BilinearOp`]), a plane per
//! task: shrinking blends each output row's source rows first, growing
//! resamples each source row once and blends the kept rows; a x2 upscale
//! (the decoder's) reads whole vectors with its known taps. Its row
//! pieces serve the guided filter's output and the upsampled convolution.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};

use super::buffers::{as_uninit, contiguous, made_in_pieces, planar_frames};
use super::lanes::{dispatched, Vector};
use crate::simd::vectorized;

/// Bilinear resize with half-pixel centres (PyTorch's `align_corners=False`),
/// with candle's indices and weights but in f32, as PyTorch computes it, a
/// plane per thread, each source row's horizontal pass made once.
#[derive(Debug)]
pub struct BilinearOp {
    pub height: usize,
    pub width: usize,
    /// The scale factor the size came from, when given as one: PyTorch then
    /// maps coordinates through `1 / scale` rather than `in / out`.
    pub scale: Option<(f64, f64)>,
}

/// Source rows (or columns) and the weight of the second, per output (the
/// position worked out in f64, as candle and PyTorch do).
pub(super) fn taps(
    size_in: usize,
    size_out: usize,
    scale: Option<f64>,
) -> Vec<(usize, usize, f32)> {
    let step = match scale {
        Some(s) => 1.0 / s,
        None => size_in as f64 / size_out as f64,
    };
    (0..size_out)
        .map(|o| {
            let src = (step * (o as f64 + 0.5) - 0.5).max(0.0);
            let i0 = src.floor() as usize;
            let i1 = (i0 + 1).min(size_in - 1);
            (i0, i1, (src - i0 as f64).clamp(0.0, 1.0) as f32)
        })
        .collect()
}

impl CustomOp1 for BilinearOp {
    fn name(&self) -> &'static str {
        "vmatte-bilinear"
    }

    /// Takes each frame's planes where they lie (a channel slice of a
    /// tensor need not be copied out first).
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let frame = planar_frames(s, l, "input")?;
        let (n, c, h, w) = l.shape().dims4()?;
        let out = self.resized(&frame, (n, c, h, w), None);
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, c, self.height, self.width)),
        ))
    }
}

/// [`BilinearOp`] plus a tensor of the output's shape, added to each row
/// as it is written (a decoder's upsampled map joined to its skip): one
/// pass instead of a resize and an add.
#[derive(Debug)]
pub struct BilinearAddOp(pub BilinearOp);

impl CustomOp2 for BilinearAddOp {
    fn name(&self) -> &'static str {
        "vmatte-bilinear-add"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        a_s: &CpuStorage,
        a_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let frame = planar_frames(s, l, "input")?;
        let addend = contiguous(a_s, a_l, "addend")?;
        let (n, c, h, w) = l.shape().dims4()?;
        let shape = Shape::from((n, c, self.0.height, self.0.width));
        if a_l.shape() != &shape {
            candle_core::bail!(
                "vmatte-bilinear-add: the addend is {:?}, not {shape:?}",
                a_l.shape()
            );
        }
        let out = self.0.resized(&frame, (n, c, h, w), Some(addend));
        Ok((CpuStorage::F32(out), shape))
    }
}

impl BilinearOp {
    /// The resized planes, plus `addend` (of the output's shape) if given.
    fn resized<'a>(
        &self,
        frame: &(dyn Fn(usize) -> &'a [f32] + Sync),
        (n, c, h, w): (usize, usize, usize, usize),
        addend: Option<&[f32]>,
    ) -> Vec<f32> {
        let (ho, wo) = (self.height, self.width);
        let rows = taps(h, ho, self.scale.map(|s| s.0));
        let cols = &taps(w, wo, self.scale.map(|s| s.1));
        let doubling = self.scale == Some((2.0, 2.0));
        // A task per output plane, each row of it written by lerp_rows or
        // lerp_columns.
        made_in_pieces(n * c * ho * wo, (ho * wo).max(1), |p, _, plane| {
            let src = &frame(p / c)[(p % c) * h * w..][..h * w];
            let rows_out = plane.chunks_exact_mut(wo);
            if ho <= h && !doubling {
                // Shrinking: output rows seldom share a source row, so each
                // output row's pair is blended first, whole vectors at
                // full width, and only the blend is resampled across (one
                // gathering pass per output row instead of up to two).
                let mut between = vec![0.0; w];
                for (oy, (row, &(y0, y1, wy))) in rows_out.zip(&rows).enumerate() {
                    let line = |y: usize| &src[y * w..(y + 1) * w];
                    // SAFETY: lerp_rows writes only initialised floats.
                    lerp_rows(line(y0), line(y1), wy, unsafe { as_uninit(&mut between) });
                    lerp_columns(&between, cols, row);
                    if let Some(a) = addend {
                        add_into(&a[(p * ho + oy) * wo..][..wo], row);
                    }
                }
                return;
            }
            // Upscaling reads each source row for several output rows:
            // its horizontal pass is made once and kept.
            let mut cache = [(usize::MAX, vec![0.0; wo]), (usize::MAX, vec![0.0; wo])];
            for (oy, (row, &(y0, y1, wy))) in rows_out.zip(&rows).enumerate() {
                let pass = |y: usize| {
                    move |out: &mut [f32]| {
                        let line = &src[y * w..(y + 1) * w];
                        if doubling {
                            double_columns(line, cols, out)
                        } else {
                            // SAFETY: lerp_columns writes only initialised
                            // floats.
                            lerp_columns(line, cols, unsafe { as_uninit(out) })
                        }
                    }
                };
                let top = fill_cached(&mut cache, y0, y1, pass(y0));
                let bottom = fill_cached(&mut cache, y1, y0, pass(y1));
                lerp_rows(&cache[top].1, &cache[bottom].1, wy, row);
                if let Some(a) = addend {
                    add_into(&a[(p * ho + oy) * wo..][..wo], row);
                }
            }
        })
    }
}

vectorized! {
    /// `out += addend`, every float of `out` written already.
    fn add_into(addend: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!(addend.len() == out.len());
        for (o, a) in out.iter_mut().zip(addend) {
            // SAFETY: the caller wrote every float of `out` first.
            let v = unsafe { o.assume_init_read() };
            o.write(v + a);
        }
    }
}

vectorized! {
    /// One row resampled to the output width (all of `out`).
    pub(super) fn lerp_columns(line: &[f32], cols: &[(usize, usize, f32)], out: &mut [MaybeUninit<f32>]) {
        // Taps only move right: checking the last once lets the loop go
        // without a bounds check per element, and so vectorise.
        assert!(cols.len() == out.len());
        assert!(cols.last().is_none_or(|&(a, b, _)| a.max(b) < line.len()));
        for (v, &(x0, x1, wx)) in out.iter_mut().zip(cols) {
            // SAFETY: x0 <= x1 <= the last tap's, checked above.
            let (a, b) = unsafe { (*line.get_unchecked(x0), *line.get_unchecked(x1)) };
            v.write(a * (1.0 - wx) + b * wx);
        }
    }
}

/// [`lerp_columns`] for a x2 upscale (the decoder's), whose taps are
/// known: output `2k` is `¼ line[k-1] + ¾ line[k]` and `2k + 1` is
/// `¾ line[k] + ¼ line[k+1]`, so whole vectors of the row are read in
/// place of one gathered float per output. The edges take the general
/// taps.
fn double_columns(line: &[f32], cols: &[(usize, usize, f32)], out: &mut [f32]) {
    let done = (2 + doubled_interior(line, out)).min(out.len());
    let head = out.len().min(2);
    // SAFETY: lerp_columns writes only initialised floats.
    let out = unsafe { as_uninit(out) };
    lerp_columns(line, &cols[..head], &mut out[..head]);
    lerp_columns(line, &cols[done..], &mut out[done..]);
}

dispatched!(doubled_interior => doubled_interior_in[](line: &[f32], out: &mut [f32]) -> usize);

/// Outputs `2..2 + 2n` of [`double_columns`] in whole vectors; returns `2n`.
#[inline(always)]
fn doubled_interior_in<V: Vector>(line: &[f32], out: &mut [f32]) -> usize {
    let l = V::LANES;
    let mut k = 1;
    // Reads line[k - 1 .. k + l + 1], writes out[2k .. 2k + 2l].
    while k + l < line.len() && 2 * (k + l) <= out.len() {
        // SAFETY: both ranges are inside their slices (the loop's bound).
        unsafe {
            let p = line.as_ptr().add(k);
            let (before, here, after) = (V::load(p.sub(1)), V::load(p), V::load(p.add(1)));
            let even = here.mul_add(0.75, before.mul_add(0.25, V::zero()));
            let odd = here.mul_add(0.75, after.mul_add(0.25, V::zero()));
            let (lo, hi) = V::interleave(even, odd);
            lo.store(out.as_mut_ptr().add(2 * k));
            hi.store(out.as_mut_ptr().add(2 * k + l));
        }
        k += l;
    }
    2 * (k - 1)
}

vectorized! {
    /// The row `wy` of the way from `top` to `bottom`.
    fn lerp_rows(top: &[f32], bottom: &[f32], wy: f32, out: &mut [MaybeUninit<f32>]) {
        assert!(top.len() >= out.len() && bottom.len() >= out.len());
        for ((v, t), b) in out.iter_mut().zip(top).zip(bottom) {
            v.write(t * (1.0 - wy) + b * wy);
        }
    }
}

/// The cache slot holding source row `y`, made with `fill` if neither
/// does, in the slot not holding `keep` (the other row in use).
pub(super) fn fill_cached(
    cache: &mut [(usize, Vec<f32>); 2],
    y: usize,
    keep: usize,
    fill: impl FnOnce(&mut [f32]),
) -> usize {
    if let Some(slot) = cache.iter().position(|(row, _)| *row == y) {
        return slot;
    }
    let slot = usize::from(cache[0].0 == keep);
    fill(&mut cache[slot].1);
    cache[slot].0 = y;
    slot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{max_diff, random};

    #[test]
    fn bilinear_add_matches_candle() {
        use crate::ops;
        let x = random(&[2, 3, 7, 10], 9);
        let skip = random(&[2, 3, 14, 20], 10);
        let want = (x.upsample_bilinear2d_with_scale(2.0, 2.0, false).unwrap() + &skip).unwrap();
        let d = max_diff(&ops::up2_add(&x, &skip).unwrap(), &want);
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn bilinear_matches_candle() {
        let x = random(&[1, 3, 7, 10], 7);
        // Growing, shrinking (each output row blended first), and mixed.
        for (h, w) in [(14, 20), (21, 29), (4, 5), (7, 33), (3, 16), (2, 3)] {
            let op = BilinearOp {
                height: h,
                width: w,
                scale: None,
            };
            let got = x.apply_op1_no_bwd(&op).unwrap();
            let want = x.upsample_bilinear2d(h, w, false).unwrap();
            assert!(max_diff(&got, &want) < 1e-6, "{h}x{w}");
        }
        for scale in [2.0, 0.5, 0.375, 4.0, 1.0 / 0.375] {
            let want = x
                .upsample_bilinear2d_with_scale(scale, scale, false)
                .unwrap();
            let (_, _, h, w) = want.dims4().unwrap();
            let op = BilinearOp {
                height: h,
                width: w,
                scale: Some((scale, scale)),
            };
            let got = x.apply_op1_no_bwd(&op).unwrap();
            assert!(max_diff(&got, &want) < 1e-6, "scale {scale}");
        }
        // The decoder's x2 upscale (vector rows, edges by the general
        // taps), cropped to an odd size as it is after odd halvings.
        for (h, w) in [(3, 1), (5, 2), (9, 17), (17, 30), (34, 61)] {
            let x = random(&[2, 3, h, w], 11);
            let full = x.upsample_bilinear2d_with_scale(2.0, 2.0, false).unwrap();
            for (ho, wo) in [(2 * h, 2 * w), (2 * h - 1, 2 * w - 1)] {
                let want = full.narrow(2, 0, ho).unwrap().narrow(3, 0, wo).unwrap();
                let op = BilinearOp {
                    height: ho,
                    width: wo,
                    scale: Some((2.0, 2.0)),
                };
                let got = x.apply_op1_no_bwd(&op).unwrap();
                assert!(max_diff(&got, &want) < 1e-6, "x2 {h}x{w} to {ho}x{wo}");
            }
        }
        // A channel slice is read where it lies, frame by frame.
        let x = random(&[3, 5, 9, 17], 13);
        let slice = x.narrow(1, 2, 2).unwrap();
        let op = BilinearOp {
            height: 18,
            width: 34,
            scale: Some((2.0, 2.0)),
        };
        let got = slice.apply_op1_no_bwd(&op).unwrap();
        let want = slice.contiguous().unwrap().apply_op1_no_bwd(&op).unwrap();
        assert_eq!(max_diff(&got, &want), 0.0, "channel slice");
    }
}
