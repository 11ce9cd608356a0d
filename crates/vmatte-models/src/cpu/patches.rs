//! Strided dense convolutions with many taps (ResNet-50's stem and its
//! strided 3x3 and 1x1 layers): a block of output rows at a time, its
//! patch matrix (a row per tap, a column per output pixel) filled in
//! parallel into one reused buffer, then one gemm with the weights.

use std::sync::Mutex;

use rayon::prelude::*;

use super::buffers::plane_row;
use super::conv::ConvOp;
use super::gemm::matmul_add;
use super::lanes::{dispatched, Vector};
use crate::conv_spec::ConvSpec;

/// Patch-matrix floats per block: big enough for gemm to run at speed,
/// small enough to stay in the last-level cache.
const PATCH_BLOCK: usize = 1 << 20;

/// Patch matrices, reused across layers and frames: one per convolution
/// in flight (one per stream), whichever thread runs it. Not a thread-local
/// like the other scratch buffers here: those are used only inside tasks
/// that start no parallel work, while a patch matrix is held across its
/// parallel fill, and the worker waiting on that may run another stream's
/// convolution meanwhile. A thread-local per worker would also keep a
/// matrix on every worker the model's pass ever ran on.
static PATCHES: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A strided convolution of one image (ResNet-50's stem and its strided
/// 3x3 and 1x1 layers; stride-1 ones go through `shifted.rs` and
/// `pointwise.rs`, ones with few taps through `narrow.rs`): blocks
/// of output rows, each turned into a patch matrix (row `(ci, ky, kx)`
/// holds that tap for every output pixel of the block) and multiplied by
/// the weights in one gemm.
pub(super) fn conv_patches(
    op: &ConvOp,
    image: &[f32],
    (c, h, w): (usize, usize, usize),
    (ho, wo): (usize, usize),
    weight: &[f32],
    dst: &mut [f32],
) {
    let s = &op.spec;
    let k = s.kernel;
    let patch = c * k * k;
    let rows_per_block = (PATCH_BLOCK / (patch * wo)).clamp(1, ho);
    let patches = || PATCHES.lock().unwrap_or_else(|e| e.into_inner());
    let mut buffer = patches().pop().unwrap_or_default();
    for r0 in (0..ho).step_by(rows_per_block) {
        let rows = rows_per_block.min(ho - r0);
        let cols = rows * wo;
        buffer.resize(patch * cols, 0.0);
        buffer[..patch * cols]
            .par_chunks_mut(cols)
            .enumerate()
            .for_each(|(row, out)| {
                let (ci, tap) = (row / (k * k), row % (k * k));
                let (ky, kx) = (tap / k, tap % k);
                let plane = &image[ci * h * w..(ci + 1) * h * w];
                fill_tap(s, plane, (h, w), (ky, kx), (r0, rows, wo), out);
            });
        matmul_add(
            &mut dst[r0 * wo..],
            ho * wo,
            weight,
            op.panels.as_deref(),
            &buffer[..patch * cols],
            s.out_channels,
            patch,
            cols,
        );
    }
    patches().push(buffer);
}

/// Output columns whose input column `ox * stride + dx` lies inside a row of
/// `w` pixels, with the input column of the first; `None` when none does
/// (the tap sees only padding).
fn inside_columns(
    dx: isize,
    stride: usize,
    w: usize,
    wo: usize,
) -> Option<(std::ops::Range<usize>, usize)> {
    let first = if dx >= 0 {
        0
    } else {
        ((-dx) as usize).div_ceil(stride)
    };
    // The last column satisfies ox * stride + dx <= w - 1.
    let room = w as isize - 1 - dx;
    if room < 0 {
        return None;
    }
    let last = ((room as usize) / stride + 1).min(wo);
    (first < last).then(|| (first..last, ((first * stride) as isize + dx) as usize))
}

/// The input pixel each output pixel of rows `r0..r0+rows` sees through
/// tap `(ky, kx)`, zero outside the image.
fn fill_tap(
    s: &ConvSpec,
    plane: &[f32],
    (h, w): (usize, usize),
    (ky, kx): (usize, usize),
    (r0, rows, wo): (usize, usize, usize),
    out: &mut [f32],
) {
    let (st, d, p) = (s.stride, s.dilation, s.padding as isize);
    let inside = inside_columns((kx * d) as isize - p, st, w, wo);
    for (r, row) in out.chunks_mut(wo).enumerate().take(rows) {
        let iy = ((r0 + r) * st + ky * d) as isize - p;
        let (Some(src), Some((cols, x0))) = (plane_row(plane, (h, w), iy), inside.clone()) else {
            row.fill(0.0);
            continue;
        };
        row[..cols.start].fill(0.0);
        row[cols.end..].fill(0.0);
        strided_copy(&src[x0..], st, &mut row[cols]);
    }
}

dispatched!(strided_copy => strided_copy_in[](src: &[f32], step: usize, out: &mut [f32]));

/// `out[o] = src[o * step]`: with stride 2 (every strided layer of ResNet)
/// a vector of outputs is the even lanes of two loads.
#[inline(always)]
fn strided_copy_in<V: Vector>(src: &[f32], step: usize, out: &mut [f32]) {
    let (n, l) = (out.len(), V::LANES);
    assert!(n == 0 || (n - 1) * step < src.len());
    let mut o = 0;
    if step == 2 {
        // The two loads read src[2o .. 2o + 2l].
        while o + l <= n && 2 * (o + l) <= src.len() {
            // SAFETY: both loads lie inside src (the loop's condition), the
            // store inside out (o + l <= n).
            unsafe {
                let at = src.as_ptr().add(2 * o);
                let (even, _) = V::split(V::load(at), V::load(at.add(l)));
                even.store(out.as_mut_ptr().add(o));
            }
            o += l;
        }
    }
    for (o, v) in out.iter_mut().enumerate().skip(o) {
        *v = src[o * step];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{max_diff, random};
    use crate::cpu::winograd::Tile;

    /// Every length around one and two vectors of every width, and source
    /// rows that end just after the last element read or further on.
    #[test]
    fn strided_copies_pick_every_step_th() {
        let src: Vec<f32> = (0..200).map(|i| i as f32).collect();
        for step in 1..=3 {
            for n in 0..=40 {
                for spare in [0, 1, 7] {
                    let len = if n == 0 {
                        spare
                    } else {
                        (n - 1) * step + 1 + spare
                    };
                    let mut out = vec![-1.0; n];
                    super::strided_copy(&src[..len], step, &mut out);
                    let want: Vec<f32> = (0..n).map(|o| (o * step) as f32).collect();
                    assert_eq!(out, want, "step {step}, {n} outputs, {spare} spare");
                }
            }
        }
    }

    /// Several streams' passes in one pool, as `--streams N` on the CPU
    /// runs them: a worker waiting inside one convolution may run another
    /// stream's meanwhile, on the same thread. Each result must still be
    /// the one a pass alone gives.
    #[test]
    fn streams_share_the_pool_safely() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // A strided convolution: the patch-matrix kernel.
        let spec = ConvSpec::new(8, 16, 3).stride(2);
        let x = random(&[1, 8, 96, 80], 1);
        let w = random(&[16, 8, 3, 3], 2);
        let weights = w.flatten_all().unwrap().to_vec1().unwrap();
        let op = ConvOp::new(spec, None, &weights, Tile::F4);
        let alone = x.apply_op2_no_bwd(&w, &op).unwrap();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..40 {
                        let got = pool.install(|| x.apply_op2_no_bwd(&w, &op).unwrap());
                        assert_eq!(max_diff(&got, &alone), 0.0);
                    }
                });
            }
        });
    }
}
