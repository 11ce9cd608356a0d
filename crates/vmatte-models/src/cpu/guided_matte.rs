//! The full-resolution half of RVM's deep guided filter, with RVM's output
//! step, in one pass ([`GuidedMatteOp`]); `guided_filter.rs` makes the
//! low-resolution linear model it applies.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::bilinear::{fill_cached, lerp_columns, taps};
use super::buffers::{as_uninit, contiguous, fresh_row, planar_frames, SendPtr};
use crate::simd::vectorized;

/// The deep guided filter's last step and RVM's output in one pass over
/// the full-size frame: with `A` and `b` fitted at low resolution,
/// `y = up(A)·x + up(b)` for the guide `x = [r, g, b, mean(r, g, b)]`, then
/// `fgr = clamp(y[..3] + src)`, `pha = clamp(y[3])`, as `(T, 4, H, W)`.
/// Done as separate tensor ops this is a dozen passes over full-size
/// frames; here each output pixel is touched once and the upsampled rows
/// of `A` and `b` are made once per source row.
#[derive(Debug)]
pub struct GuidedMatteOp;

/// Output rows per task of [`GuidedMatteOp`].
const MATTE_BAND: usize = 16;

impl CustomOp3 for GuidedMatteOp {
    fn name(&self) -> &'static str {
        "vmatte-guided-matte"
    }

    fn cpu_fwd(
        &self,
        a_s: &CpuStorage,
        a_l: &Layout,
        b_s: &CpuStorage,
        b_l: &Layout,
        src_s: &CpuStorage,
        src_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a_frame = planar_frames(a_s, a_l, "A")?;
        let b_frame = planar_frames(b_s, b_l, "b")?;
        let src = contiguous(src_s, src_l, "source")?;
        let (n, c, hs, ws) = a_l.shape().dims4()?;
        let (n2, c2, h, w) = src_l.shape().dims4()?;
        if c != 4 || c2 != 3 || n != n2 || a_l.shape() != b_l.shape() {
            candle_core::bail!(
                "vmatte-guided-matte: wants A, b (T, 4, h, w) and source (T, 3, H, W)"
            );
        }
        let rows = taps(hs, h, None);
        let cols = &taps(ws, w, None);
        let len = n * 4 * h * w;
        let mut out = Vec::<f32>::with_capacity(len);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let bands: Vec<(usize, usize)> = (0..n)
            .flat_map(|f| (0..h).step_by(MATTE_BAND).map(move |y| (f, y)))
            .collect();
        bands.par_iter().for_each(|&(f, y0)| {
            let (a, b) = (a_frame(f), b_frame(f));
            let image = &src[f * 3 * h * w..(f + 1) * 3 * h * w];
            // Horizontally upsampled A and b (4 channels each) of the two
            // source rows last used, by source row.
            let mut cache = [
                (usize::MAX, vec![0f32; 8 * w]),
                (usize::MAX, vec![0f32; 8 * w]),
            ];
            for y in y0..(y0 + MATTE_BAND).min(h) {
                let (r0, r1, wy) = rows[y];
                let up =
                    |r: usize| move |row: &mut [f32]| upsample_row(a, b, (hs, ws), r, cols, row);
                let slot0 = fill_cached(&mut cache, r0, r1, up(r0));
                let slot1 = fill_cached(&mut cache, r1, r0, up(r1));
                let (top, bottom) = (&cache[slot0].1, &cache[slot1].1);
                let plane = |ch: usize| &image[(ch * h + y) * w..(ch * h + y + 1) * w];
                // SAFETY: every band writes only its own rows of each plane,
                // and matte_row all of each.
                let dst = |ch: usize| unsafe { fresh_row(out_ptr, ((f * 4 + ch) * h + y) * w, w) };
                matte_row(
                    top,
                    bottom,
                    wy,
                    [plane(0), plane(1), plane(2)],
                    [dst(0), dst(1), dst(2), dst(3)],
                );
            }
        });
        // SAFETY: the bands cover every row of every plane.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), Shape::from((n, 4, h, w))))
    }
}

vectorized! {
    /// One output row of [`GuidedMatteOp`] from the horizontally upsampled
    /// A and b of the source rows above and below it (`[A0..A3, b0..b3]`,
    /// each `w` wide), blended `wy` of the way down as each pixel is made:
    /// a blended row of all 8 would outgrow L1 before it was read back.
    fn matte_row(
        top: &[f32],
        bottom: &[f32],
        wy: f32,
        rgb: [&[f32]; 3],
        dst: [&mut [MaybeUninit<f32>]; 4],
    ) {
        let w = rgb[0].len();
        assert!(top.len() == 8 * w && bottom.len() == 8 * w);
        assert!(dst.iter().all(|d| d.len() == w) && rgb.iter().all(|c| c.len() == w));
        let (up, down) = (1.0 - wy, wy);
        fn piece(row: &[f32], k: usize, w: usize) -> &[f32] {
            &row[k * w..(k + 1) * w]
        }
        let [d0, d1, d2, d3] = dst;
        for (ch, d) in [d0, d1, d2].into_iter().enumerate() {
            let a = piece(top, ch, w).iter().zip(piece(bottom, ch, w));
            let b = piece(top, 4 + ch, w).iter().zip(piece(bottom, 4 + ch, w));
            for (((d, (at, ab)), (bt, bb)), x) in d.iter_mut().zip(a).zip(b).zip(rgb[ch]) {
                let (a, b) = (at * up + ab * down, bt * up + bb * down);
                d.write((a * x + b + x).clamp(0.0, 1.0));
            }
        }
        let a = piece(top, 3, w).iter().zip(piece(bottom, 3, w));
        let b = piece(top, 7, w).iter().zip(piece(bottom, 7, w));
        let [red, green, blue] = rgb;
        let mean = red.iter().zip(green).zip(blue).map(|((r, g), b)| (r + g + b) / 3.0);
        for (((d, (at, ab)), (bt, bb)), mean) in d3.iter_mut().zip(a).zip(b).zip(mean) {
            let (a, b) = (at * up + ab * down, bt * up + bb * down);
            d.write((a * mean + b).clamp(0.0, 1.0));
        }
    }
}

/// Source row `y` of the 4 channels of A then of b, each upsampled to the
/// output width.
fn upsample_row(
    a: &[f32],
    b: &[f32],
    (hs, ws): (usize, usize),
    y: usize,
    cols: &[(usize, usize, f32)],
    out: &mut [f32],
) {
    // SAFETY: lerp_columns writes only initialised floats.
    let out = unsafe { as_uninit(out) };
    for (i, row) in out.chunks_mut(cols.len()).enumerate() {
        let (t, ch) = if i < 4 { (a, i) } else { (b, i - 4) };
        lerp_columns(&t[(ch * hs + y) * ws..(ch * hs + y + 1) * ws], cols, row);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use super::*;
    use crate::cpu::test_util::{max_diff, random};

    #[test]
    fn guided_matte_is_the_tensor_ops_fused() {
        for (hs, ws, h, w) in [(7, 9, 20, 30), (12, 16, 48, 64), (9, 5, 9, 5)] {
            let a = random(&[2, 4, hs, ws], 1);
            let b = random(&[2, 4, hs, ws], 2);
            let src = random(&[2, 3, h, w], 3).affine(0.5, 0.5).unwrap();
            let up = |t: &Tensor| t.upsample_bilinear2d(h, w, false).unwrap();
            let guide = Tensor::cat(&[&src, &src.mean_keepdim(1).unwrap()], 1).unwrap();
            let y = ((up(&a) * guide).unwrap() + up(&b)).unwrap();
            let fgr = (y.narrow(1, 0, 3).unwrap() + &src).unwrap();
            let want = Tensor::cat(&[&fgr, &y.narrow(1, 3, 1).unwrap()], 1)
                .unwrap()
                .clamp(0f32, 1f32)
                .unwrap();
            let got = a.apply_op3_no_bwd(&b, &src, &GuidedMatteOp).unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "{hs}x{ws} -> {h}x{w}");
            // A and b as views of one tensor, read where they lie.
            let ab = Tensor::cat(&[&a, &b], 1).unwrap();
            let (a, b) = (ab.narrow(1, 0, 4).unwrap(), ab.narrow(1, 4, 4).unwrap());
            let got = a.apply_op3_no_bwd(&b, &src, &GuidedMatteOp).unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "views, {hs}x{ws} -> {h}x{w}");
        }
    }
}
