//! CPU convolution kernels on contiguous NCHW f32, called from candle as
//! custom ops.
//!
//! candle's generic CPU convolution gathers patches element by element and
//! runs grouped convolutions one group at a time; RVM is almost nothing but
//! 1x1, 3x3 and depthwise convolutions, so these three shapes get kernels of
//! their own: 1x1 straight into gemm, k x k through a blocked patch matrix
//! that lives in one reused buffer, depthwise as contiguous row sweeps. The
//! bias is the starting value of every output, so it costs no extra pass.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops::{Activation, ConvSpec};

/// Patch-matrix floats per block: big enough for gemm to run at speed,
/// small enough to stay in the last-level cache.
const PATCH_BLOCK: usize = 1 << 20;

thread_local! {
    /// The patch matrix, reused across layers and frames.
    static PATCHES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `act(x (N, C, H, W) * weight (O, C/groups, K, K) + bias)`.
#[derive(Clone, Debug)]
pub struct ConvOp {
    pub spec: ConvSpec,
    pub bias: Option<Vec<f32>>,
    pub act: Activation,
    /// Stride-1 k x k weights as one `O x C` matrix per tap, `[tap][o][c]`.
    pub(crate) tap_major: Option<Vec<f32>>,
}

impl ConvOp {
    /// `weight`: the `(O, C/groups, K, K)` weights, contiguous.
    pub fn new(spec: ConvSpec, bias: Option<Vec<f32>>, weight: &[f32]) -> Self {
        let (o, c, kk) = (
            spec.out_channels,
            spec.in_channels,
            spec.kernel * spec.kernel,
        );
        let tap_major = (spec.groups == 1 && spec.stride == 1 && spec.kernel > 1).then(|| {
            let mut t = vec![0.0; kk * o * c];
            for (i, v) in weight.iter().enumerate() {
                let (oc, tap) = (i / kk, i % kk);
                t[tap * o * c + oc] = *v;
            }
            t
        });
        Self {
            spec,
            bias,
            act: Activation::Identity,
            tap_major,
        }
    }

    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let s = &self.spec;
        let span = s.dilation * (s.kernel - 1);
        (
            (h + 2 * s.padding - span - 1) / s.stride + 1,
            (w + 2 * s.padding - span - 1) / s.stride + 1,
        )
    }

    /// Every output plane starts as its channel's bias (the shifted
    /// kernel starts its own blocks and overwrites every output).
    fn start(&self, n: usize, plane: usize) -> Vec<f32> {
        let o = self.spec.out_channels;
        let mut out = vec![0.0; n * o * plane];
        if let (Some(b), None) = (&self.bias, &self.tap_major) {
            out.par_chunks_mut(plane)
                .enumerate()
                .for_each(|(i, p)| p.fill(b[i % o]));
        }
        out
    }
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: the CPU convolution kernels take f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: the CPU convolution kernels take contiguous tensors"),
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "vmatte-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(xs, xl, "input")?;
        let w = contiguous(ws, wl, "weight")?;
        let (n, c, h, wd) = xl.shape().dims4()?;
        let (ho, wo) = self.out_size(h, wd);
        let s = &self.spec;
        let mut out = self.start(n, ho * wo);
        if s.groups == 1 {
            for b in 0..n {
                let image = &x[b * c * h * wd..(b + 1) * c * h * wd];
                let dst =
                    &mut out[b * s.out_channels * ho * wo..(b + 1) * s.out_channels * ho * wo];
                if let Some(taps) = &self.tap_major {
                    // Activates as it goes.
                    conv_shifted(self, image, (c, h, wd), (ho, wo), taps, dst);
                    continue;
                }
                if s.kernel == 1 && s.stride == 1 && s.padding == 0 {
                    // A 1x1 convolution is one matrix product as it stands.
                    matmul_add(dst, ho * wo, w, image, s.out_channels, c, ho * wo);
                } else {
                    conv_patches(self, image, (c, h, wd), (ho, wo), w, dst);
                }
                if self.act != Activation::Identity {
                    dst.par_chunks_mut(ho * wo)
                        .for_each(|plane| self.act.apply_in_place(plane));
                }
            }
        } else if s.groups == c && s.groups == s.out_channels {
            out.par_chunks_mut(ho * wo)
                .enumerate()
                .for_each(|(bc, dst)| {
                    let ch = bc % c;
                    let plane = &x[bc * h * wd..(bc + 1) * h * wd];
                    let taps = &w[ch * s.kernel * s.kernel..(ch + 1) * s.kernel * s.kernel];
                    depthwise_plane(s, plane, (h, wd), taps, (ho, wo), dst);
                    self.act.apply_in_place(dst);
                });
        } else {
            candle_core::bail!("vmatte-conv2d: grouped convolutions other than depthwise");
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, s.out_channels, ho, wo)),
        ))
    }
}

/// `dst (m x cols, row stride dst_rs) += lhs (m x k) * rhs (k x cols)`.
fn matmul_add(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    k: usize,
    cols: usize,
) {
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 && m * k * cols > 1 << 16 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the three matrices lie inside their slices with the strides
    // given: lhs is m x k, rhs k x cols, dst m rows of dst_rs >= cols.
    unsafe {
        gemm::gemm(
            m,
            cols,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            cols as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// A k x k convolution of one image: blocks of output rows, each turned
/// into a patch matrix (row `(ci, ky, kx)` holds that tap for every output
/// pixel of the block) and multiplied by the weights in one gemm.
fn conv_patches(
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
    PATCHES.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
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
                &buffer[..patch * cols],
                s.out_channels,
                patch,
                cols,
            );
        }
    });
}

/// Output pixels per block of the shifted convolution: the block's outputs
/// and inputs stay in a core's L2 cache across the taps.
const SHIFTED_BLOCK: usize = 4096;

thread_local! {
    /// One block of outputs, rows as wide as the padded input.
    static WIDE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A stride-1 k x k convolution without a patch matrix. With the input
/// zero-padded, the input pixel tap `(ky, kx)` sees for output `(y, x)` sits
/// at a fixed offset from `(y, x)` in every channel, if the output rows are
/// as wide as the padded ones. So each tap is one product `W_tap (O x C) *
/// X (C x pixels)` read straight from the padded input at that offset, added
/// into a block of outputs that stays in cache; the extra columns at the end
/// of each wide row are dropped when the block is copied out.
fn conv_shifted(
    op: &ConvOp,
    image: &[f32],
    (c, h, w): (usize, usize, usize),
    (ho, wo): (usize, usize),
    taps: &[f32],
    dst: &mut [f32],
) {
    let s = &op.spec;
    let (k, d, p, o) = (s.kernel, s.dilation, s.padding, s.out_channels);
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    let plane = hp * wp;
    let mut padded = vec![0f32; c * plane];
    padded
        .par_chunks_mut(plane)
        .zip(image.par_chunks(h * w))
        .for_each(|(to, from)| {
            for (y, row) in from.chunks(w).enumerate() {
                to[(y + p) * wp + p..][..w].copy_from_slice(row);
            }
        });
    let rows_per_block = (SHIFTED_BLOCK / wp).clamp(1, ho);
    let blocks: Vec<usize> = (0..ho).step_by(rows_per_block).collect();
    let plane_out = ho * wo;
    let dst_ptr = SendPtr(dst.as_mut_ptr());
    blocks.par_iter().for_each(|&r0| {
        let rows = rows_per_block.min(ho - r0);
        // The last wide row needs only its first `wo` columns.
        let cols = rows * wp - (wp - wo);
        WIDE.with(|wide| {
            let mut wide = wide.borrow_mut();
            wide.resize(o * cols, 0.0);
            for (oc, line) in wide.chunks_mut(cols).enumerate() {
                line.fill(op.bias.as_ref().map_or(0.0, |b| b[oc]));
            }
            for ky in 0..k {
                for kx in 0..k {
                    let start = (r0 + ky * d) * wp + kx * d;
                    // SAFETY: lhs is o x c, rhs c rows of `cols` floats at
                    // row stride `plane` from `start`; the last read is
                    // (c-1)*plane + start + cols - 1 < c*plane.
                    unsafe {
                        gemm::gemm(
                            o,
                            cols,
                            c,
                            wide.as_mut_ptr(),
                            1,
                            cols as isize,
                            true,
                            taps[(ky * k + kx) * o * c..].as_ptr(),
                            1,
                            c as isize,
                            padded[start..].as_ptr(),
                            1,
                            plane as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        )
                    }
                }
            }
            for (oc, line) in wide.chunks(cols).enumerate() {
                for r in 0..rows {
                    // SAFETY: each block writes only its own rows of each
                    // output plane, which no other block touches.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(
                            dst_ptr.get().add(oc * plane_out + (r0 + r) * wo),
                            wo,
                        )
                    };
                    row.copy_from_slice(&line[r * wp..r * wp + wo]);
                    op.act.apply_in_place(row);
                }
            }
        });
    });
}

/// A raw pointer that rayon tasks writing disjoint parts may share.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
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

/// Row `y` of a plane `w` pixels wide and `h` high; `None` in the padding
/// above or below it.
fn plane_row(plane: &[f32], (h, w): (usize, usize), y: isize) -> Option<&[f32]> {
    (0..h as isize)
        .contains(&y)
        .then(|| &plane[y as usize * w..(y as usize + 1) * w])
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
        if st == 1 {
            row[cols.clone()].copy_from_slice(&src[x0..x0 + cols.len()]);
        } else {
            for (o, v) in row[cols].iter_mut().enumerate() {
                *v = src[x0 + o * st];
            }
        }
    }
}

/// One channel of a depthwise convolution, accumulated tap by tap over
/// whole rows so the inner loop is a contiguous multiply-add.
fn depthwise_plane(
    s: &ConvSpec,
    plane: &[f32],
    (h, w): (usize, usize),
    taps: &[f32],
    (ho, wo): (usize, usize),
    dst: &mut [f32],
) {
    let (k, st, d, p) = (s.kernel, s.stride, s.dilation, s.padding as isize);
    for ky in 0..k {
        for kx in 0..k {
            let t = taps[ky * k + kx];
            let Some((cols, x0)) = inside_columns((kx * d) as isize - p, st, w, wo) else {
                continue;
            };
            for (oy, row) in dst.chunks_mut(wo).enumerate().take(ho) {
                let Some(src) = plane_row(plane, (h, w), (oy * st + ky * d) as isize - p) else {
                    continue;
                };
                if st == 1 {
                    for (o, v) in row[cols.clone()].iter_mut().zip(&src[x0..x0 + cols.len()]) {
                        *o += t * v;
                    }
                } else {
                    for (i, o) in row[cols.clone()].iter_mut().enumerate() {
                        *o += t * src[x0 + i * st];
                    }
                }
            }
        }
    }
}

/// Bilinear resize with half-pixel centres (PyTorch's `align_corners=False`),
/// computed exactly as candle's own kernel (in f64, same indices and
/// weights) but a plane per thread and with the per-pixel work hoisted.
#[derive(Debug)]
pub struct BilinearOp {
    pub height: usize,
    pub width: usize,
    /// The scale factor the size came from, when given as one: PyTorch then
    /// maps coordinates through `1 / scale` rather than `in / out`.
    pub scale: Option<(f64, f64)>,
}

/// Source rows (or columns) and the weight of the second, per output.
fn taps(size_in: usize, size_out: usize, scale: Option<f64>) -> Vec<(usize, usize, f64)> {
    let step = match scale {
        Some(s) => 1.0 / s,
        None => size_in as f64 / size_out as f64,
    };
    (0..size_out)
        .map(|o| {
            let src = (step * (o as f64 + 0.5) - 0.5).max(0.0);
            let i0 = src.floor() as usize;
            let i1 = (i0 + 1).min(size_in - 1);
            (i0, i1, (src - i0 as f64).clamp(0.0, 1.0))
        })
        .collect()
}

impl CustomOp1 for BilinearOp {
    fn name(&self) -> &'static str {
        "vmatte-bilinear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "input")?;
        let (n, c, h, w) = l.shape().dims4()?;
        let (ho, wo) = (self.height, self.width);
        let rows = taps(h, ho, self.scale.map(|s| s.0));
        let cols = taps(w, wo, self.scale.map(|s| s.1));
        let mut out = vec![0f32; n * c * ho * wo];
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, src)| {
                // Upscaling reads each source row for several output rows:
                // its horizontal pass is done once and kept (the arithmetic,
                // and so every result, is the same as per pixel).
                let mut cache: [(usize, Vec<f64>); 2] =
                    [(usize::MAX, vec![0.0; wo]), (usize::MAX, vec![0.0; wo])];
                let lerp_row = |y: usize, out: &mut Vec<f64>| {
                    let line = &src[y * w..(y + 1) * w];
                    for (v, &(x0, x1, wx)) in out.iter_mut().zip(&cols) {
                        *v = f64::from(line[x0]) * (1.0 - wx) + f64::from(line[x1]) * wx;
                    }
                };
                for (row, &(y0, y1, wy)) in dst.chunks_mut(wo).zip(&rows) {
                    for (slot, y) in [(0, y0), (1, y1)] {
                        if cache[slot].0 != y {
                            let other = 1 - slot;
                            if cache[other].0 == y {
                                let copy = cache[other].1.clone();
                                cache[slot] = (y, copy);
                            } else {
                                lerp_row(y, &mut cache[slot].1);
                                cache[slot].0 = y;
                            }
                        }
                    }
                    let (top, bottom) = (&cache[0].1, &cache[1].1);
                    for ((v, t), b) in row.iter_mut().zip(top).zip(bottom) {
                        *v = (t * (1.0 - wy) + b * wy) as f32;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        // A small LCG: deterministic values in [-1, 1) without a rand crate.
        let mut state = seed;
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    const ACTIVATIONS: [Activation; 6] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Hardswish,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Hardsigmoid,
    ];

    #[test]
    fn convolutions_match_candle() {
        let specs = [
            ConvSpec::new(8, 6, 1),
            ConvSpec::new(8, 6, 3),
            ConvSpec::new(8, 6, 3).stride(2),
            ConvSpec::new(8, 6, 3).dilation(2),
            ConvSpec::new(5, 4, 5).stride(2).padding(1),
            ConvSpec::new(8, 8, 3).depthwise(),
            ConvSpec::new(8, 8, 5).depthwise().stride(2),
            ConvSpec::new(8, 8, 3).depthwise().dilation(3),
        ];
        // The larger size spans several blocks of the shifted kernel.
        let sizes = specs.iter().flat_map(|s| [(*s, 13, 11), (*s, 70, 90)]);
        for (i, (spec, h, wd)) in sizes.enumerate() {
            let x = random(&[2, spec.in_channels, h, wd], i as u64);
            let w = random(
                &[
                    spec.out_channels,
                    spec.in_channels / spec.groups,
                    spec.kernel,
                    spec.kernel,
                ],
                100 + i as u64,
            );
            let bias: Vec<f32> = (0..spec.out_channels).map(|c| c as f32 * 0.1).collect();
            let act = ACTIVATIONS[i % ACTIVATIONS.len()];
            let want = x
                .conv2d(&w, spec.padding, spec.stride, spec.dilation, spec.groups)
                .unwrap()
                .broadcast_add(
                    &Tensor::new(bias.as_slice(), &Device::Cpu)
                        .unwrap()
                        .reshape((1, spec.out_channels, 1, 1))
                        .unwrap(),
                )
                .unwrap();
            let want = act.apply(&want).unwrap();
            let weights = w.flatten_all().unwrap().to_vec1().unwrap();
            let op = ConvOp {
                act,
                ..ConvOp::new(spec, Some(bias), &weights)
            };
            let got = x.apply_op2_no_bwd(&w, &op).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 1e-5, "{spec:?} {act:?} {h}x{wd} {d}");
        }
    }

    #[test]
    fn bilinear_is_candles_to_the_bit() {
        let x = random(&[1, 3, 7, 10], 7);
        for (h, w) in [(14, 20), (21, 29), (4, 5), (7, 33)] {
            let op = BilinearOp {
                height: h,
                width: w,
                scale: None,
            };
            let got = x.apply_op1_no_bwd(&op).unwrap();
            assert_eq!(
                max_diff(&got, &x.upsample_bilinear2d(h, w, false).unwrap()),
                0.0
            );
        }
        for scale in [2.0, 0.5, 4.0, 1.0 / 0.375] {
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
            assert_eq!(max_diff(&got, &want), 0.0, "scale {scale}");
        }
    }
}
