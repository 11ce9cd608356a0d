//! CPU convolution kernels on contiguous NCHW f32, called from candle as
//! custom ops.
//!
//! candle's generic CPU convolution gathers patches element by element and
//! runs grouped convolutions one group at a time; RVM is almost nothing but
//! 1x1, 3x3 and depthwise convolutions, so these shapes get kernels of their
//! own:
//! - 1x1: gemm over cache-sized blocks of pixels, a task each;
//! - 3x3 with padding 1 (the decoder's bulk): Winograd's minimal filtering,
//!   matrix products over transformed tiles (see `winograd.rs`), made by
//!   vmatte's own micro-kernel (`matmul.rs`): these products are too small
//!   for a general gemm's packing and set-up to pay;
//! - other stride-1 k x k: one gemm per tap over a zero-padded copy of the
//!   input;
//! - both read a U-Net skip's pieces directly, never concatenated first;
//! - a 3x3 convolution of a x2 bilinear upsample and full-resolution
//!   inputs (RVM's decode0) runs at half resolution, the upsample folded
//!   into its weights (`upsampled.rs`);
//! - strided (ResNet-50's stem and strided layers): a blocked patch matrix
//!   in one reused buffer; with a few taps only (MobileNetV3's stem), the
//!   depthwise layers' sweep over every output plane;
//! - depthwise: a plane per task, its zero-padded stride phases swept as
//!   one run of vectors.
//!
//! Every output is biased and activated by the task that made it, while it
//! is still in cache. The bilinear resize, the decoder's halving pool
//! (`pool.rs`) and both halves of the deep guided filter (`guided_filter.rs`
//! fuses its low-resolution half) live here too; their loops are compiled
//! for the widest vector unit the CPU has (see `simd.rs` and `lanes.rs`).

mod activation;
mod elementwise;
mod guided_filter;
mod lanes;
mod matmul;
mod pool;
#[cfg(test)]
pub(crate) mod test_util;
mod upsampled;
mod winograd;

pub use elementwise::{cat_frames, BinaryOp, ChannelMeanOp, GruUpdateOp, ScaleChannelsOp};
pub use guided_filter::{Dense, GuidedCoefficientsOp};
pub use pool::HalvingPoolOp;
pub(crate) use upsampled::UpsampledConv;
pub(crate) use winograd::Tile;

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::conv_spec::{Activation, ConvSpec};
use crate::simd::vectorized;
use lanes::{copy, dispatched, fill, Vector};
use matmul::{matmul, Product};

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

/// `act(x (N, C, H, W) * weight (O, C/groups, K, K) + bias)`.
#[derive(Clone, Debug)]
pub struct ConvOp {
    pub spec: ConvSpec,
    pub bias: Option<Vec<f32>>,
    pub act: Activation,
    /// Stride-1 k x k weights as one `O x C` matrix per tap, `[tap][o][c]`.
    pub(crate) tap_major: Option<Vec<f32>>,
    /// Padded, undilated 3x3 weights in Winograd's domain for the
    /// algorithm given (see [`winograd`]), which those convolutions use
    /// instead of `tap_major`.
    pub(crate) winograd: Option<(Tile, Vec<f32>)>,
}

impl ConvOp {
    /// `weight`: the `(O, C/groups, K, K)` weights, contiguous; `tile`: the
    /// Winograd algorithm for a padded 3x3 convolution.
    pub fn new(spec: ConvSpec, bias: Option<Vec<f32>>, weight: &[f32], tile: Tile) -> Self {
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
        let winograd =
            (tap_major.is_some() && spec.kernel == 3 && spec.dilation == 1 && spec.padding == 1)
                .then(|| (tile, tile.filters(weight, o, c)));
        Self {
            spec,
            bias,
            act: Activation::Identity,
            tap_major,
            winograd,
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

    /// Every output plane starts as its channel's bias, written once.
    fn start(&self, n: usize, plane: usize) -> Vec<f32> {
        let o = self.spec.out_channels;
        match &self.bias {
            Some(b) => {
                let mut out = Vec::with_capacity(n * o * plane);
                for i in 0..n * o {
                    out.extend(std::iter::repeat_n(b[i % o], plane));
                }
                out
            }
            None => vec![0.0; n * o * plane],
        }
    }
}

/// A `(T, C, h, w)` tensor whose frames are each `C` contiguous planes,
/// however far apart (a narrow along channels of a contiguous tensor is
/// one): frame `f`'s planes, by `f`.
fn planar_frames<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<impl Fn(usize) -> &'a [f32] + Sync> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{what}: the CPU kernels take f32")
    };
    if !frames_planar(l) {
        candle_core::bail!("{what}: the CPU kernels take each frame's planes contiguous");
    }
    let (_, c, h, w) = l.shape().dims4()?;
    let (start, step, len) = (l.start_offset(), l.stride()[0], c * h * w);
    Ok(move |f: usize| &data[start + f * step..][..len])
}

/// Whether a 4-D layout's frames are each their planes one after another
/// (see [`planar_frames`]).
pub(crate) fn frames_planar(l: &Layout) -> bool {
    l.shape()
        .dims4()
        .is_ok_and(|(_, _, h, w)| l.stride()[1..] == [h * w, w, 1])
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

impl ConvOp {
    /// The convolution of the channel concatenation of `inputs`, each
    /// `(N, C_i, H, W)`, contiguous, when this is a stride-1 k x k
    /// convolution: its kernel copies its input into a padded buffer anyway,
    /// so the concatenation is never made. `None` for other convolutions.
    pub fn forward_concat(
        &self,
        inputs: &[&[f32]],
        (n, h, w): (usize, usize, usize),
    ) -> Option<(Vec<f32>, Shape)> {
        let taps = self.tap_major.as_ref()?;
        let s = &self.spec;
        let (ho, wo) = self.out_size(h, w);
        let per_frame = s.out_channels * ho * wo;
        // Every output is written once by the kernel: no zeroing first.
        let mut out = Vec::<f32>::with_capacity(n * per_frame);
        let frame_len = |t: &[f32]| t.len() / n;
        for b in 0..n {
            let frame: Vec<&[f32]> = inputs
                .iter()
                .map(|t| &t[b * frame_len(t)..(b + 1) * frame_len(t)])
                .collect();
            // SAFETY: frame b's outputs lie inside the capacity.
            let dst = SendPtr(unsafe { out.as_mut_ptr().add(b * per_frame) });
            match &self.winograd {
                Some((tile, filters)) => winograd::conv3x3(
                    *tile,
                    &frame,
                    (s.in_channels, h, w),
                    0,
                    s.out_channels,
                    filters,
                    self.bias.as_deref(),
                    self.act,
                    dst,
                ),
                None => conv_shifted(self, &frame, (s.in_channels, h, w), (ho, wo), taps, dst),
            }
        }
        // SAFETY: conv_shifted wrote all `per_frame` outputs of every frame.
        unsafe { out.set_len(n * per_frame) };
        Some((out, Shape::from((n, s.out_channels, ho, wo))))
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
        if let Some((out, shape)) = self.forward_concat(&[x], (n, h, wd)) {
            return Ok((CpuStorage::F32(out), shape));
        }
        let shape = Shape::from((n, s.out_channels, ho, wo));
        let plane_out = ho * wo;
        let pointwise = s.kernel == 1 && s.stride == 1 && s.padding == 0;
        if s.groups == 1 && !pointwise && c * s.kernel * s.kernel <= NARROW_TAPS {
            let mut out = Vec::<f32>::with_capacity(n * s.out_channels * plane_out);
            for b in 0..n {
                let image = &x[b * c * h * wd..(b + 1) * c * h * wd];
                conv_narrow(self, image, (c, h, wd), (ho, wo), w, &mut out);
            }
            return Ok((CpuStorage::F32(out), shape));
        }
        if s.groups == 1 && !pointwise {
            let mut out = self.start(n, plane_out);
            for (b, dst) in out.chunks_mut(s.out_channels * plane_out).enumerate() {
                let image = &x[b * c * h * wd..(b + 1) * c * h * wd];
                conv_patches(self, image, (c, h, wd), (ho, wo), w, dst);
                dst.par_chunks_mut(plane_out)
                    .for_each(|plane| self.act.apply_in_place(plane));
            }
            return Ok((CpuStorage::F32(out), shape));
        }
        let depthwise = s.groups == c && s.groups == s.out_channels;
        if s.groups != 1 && !depthwise {
            candle_core::bail!("vmatte-conv2d: grouped convolutions other than depthwise");
        }
        // Each output is started at its bias, computed and activated by the
        // task that owns it, while in cache: no zeroing pass first.
        let len = n * s.out_channels * plane_out;
        let mut out = Vec::<f32>::with_capacity(len);
        let base = SendPtr(out.as_mut_ptr());
        if depthwise {
            // Where each tap reads in a padded plane's phases, the same for
            // all planes.
            let layout = Polyphase::new((s.stride, s.padding), (h, wd), (ho, wo));
            let offsets = layout.offsets(s);
            let kk = s.kernel * s.kernel;
            (0..n * c).into_par_iter().for_each(|bc| {
                let ch = bc % c;
                // SAFETY: plane `bc` lies inside the capacity and belongs to
                // this task alone; depthwise_plane writes every float of it.
                let dst = unsafe { fresh_row(base, bc * plane_out, plane_out) };
                let plane = &x[bc * h * wd..(bc + 1) * h * wd];
                let taps = (&w[ch * kk..(ch + 1) * kk], offsets.as_slice());
                let bias = self.bias.as_ref().map_or(0.0, |b| b[ch]);
                DEPTHWISE_SCRATCH.with(|scratch| {
                    let (padded, wide) = &mut *scratch.borrow_mut();
                    depthwise_plane(&layout, plane, taps, (bias, self.act), padded, wide, dst);
                });
            });
        } else {
            for b in 0..n {
                let image = &x[b * c * h * wd..(b + 1) * c * h * wd];
                // SAFETY: frame b's outputs lie inside the capacity.
                let dst = SendPtr(unsafe { base.get().add(b * s.out_channels * plane_out) });
                conv_pointwise(self, image, c, plane_out, w, dst);
            }
        }
        // SAFETY: every output was written above.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), shape))
    }
}

/// Rounds of blocks a layer is cut into at the least (see `balanced_blocks`).
const BLOCKS_PER_THREAD: usize = 4;

/// Floats of input and output a pointwise block keeps in a core's L2.
const POINTWISE_L2: usize = 1 << 18;

/// The first `len` floats of a reused scratch buffer, which only ever
/// grows: shrinking and growing it again between layers of different sizes
/// would zero the difference every time. Callers write before they read.
fn grown(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// A new vector of `len` floats made in pieces of `piece`, a task each:
/// `f(index, range, floats)` must write every float of piece `index`
/// (they are not zeroed first, which would be a pass of its own).
fn made_in_pieces(
    len: usize,
    piece: usize,
    f: impl Fn(usize, std::ops::Range<usize>, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    (0..len.div_ceil(piece)).into_par_iter().for_each(|i| {
        let at = i * piece..(i * piece + piece).min(len);
        // SAFETY: piece i is this task's alone.
        let o = unsafe { fresh_row(dst, at.start, at.len()) };
        f(i, at, o)
    });
    // SAFETY: the pieces cover the vector, and f wrote each in full.
    unsafe { out.set_len(len) };
    out
}

/// `x`, to be overwritten.
///
/// # Safety
/// Only initialised floats may be written through the result (the kernels
/// that take `MaybeUninit` outputs write nothing else).
unsafe fn as_uninit(x: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    &mut *(x as *mut [f32] as *mut [MaybeUninit<f32>])
}

/// Asks for `data` to be brought into the L1 cache, a line at a time.
fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch never faults, and the address is inside data.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// The `len` floats at `base + at`, borrowed to be written. They are not
/// zeroed first: the kernels that take them write every one, and a zeroing
/// pass per row cost as much as a resize's arithmetic.
///
/// # Safety
/// They must lie inside `base`'s allocation and belong to the caller alone
/// while the borrow lives.
unsafe fn fresh_row<'a>(base: SendPtr, at: usize, len: usize) -> &'a mut [MaybeUninit<f32>] {
    std::slice::from_raw_parts_mut(base.get().add(at).cast(), len)
}

/// Output channels up to which a 1x1 layer's product is vmatte's own
/// micro-kernel rather than gemm's: RVM's last layer (16 to 4 channels at
/// the decoder's full size) ran at a fifth of the machine's multiply-add
/// rate in gemm, whose kernels are shaped for more rows.
const FEW_OUTPUTS: usize = 8;

/// A 1x1 convolution of one image in blocks of pixels, a block per task:
/// each block's outputs are written by gemm (or, with few, by
/// [`matmul`]), then biased and activated in
/// one pass while they are in cache, and the tasks need no gemm-internal
/// synchronisation. Writes all `O x plane` outputs at `dst`.
fn conv_pointwise(
    op: &ConvOp,
    image: &[f32],
    c: usize,
    plane: usize,
    weight: &[f32],
    dst: SendPtr,
) {
    let o = op.spec.out_channels;
    let widest = (POINTWISE_L2 / (c + o)).clamp(64, 4096);
    let (starts, cols_per_block) = balanced_blocks(plane, widest);
    starts.par_iter().for_each(|&x0| {
        let cols = cols_per_block.min(plane - x0);
        // SAFETY: this task owns columns x0..x0+cols of every output plane;
        // the product writes them without reading them, and they are
        // borrowed after.
        unsafe {
            if o <= FEW_OUTPUTS {
                matmul(&Product {
                    m: o,
                    n: cols,
                    k: c,
                    a: weight.as_ptr(),
                    lda: c,
                    b: image[x0..].as_ptr(),
                    ldb: plane,
                    dst: dst.get().add(x0),
                    ldd: plane,
                    accumulate: false,
                });
            } else {
                gemm_into(
                    (o, cols, c),
                    dst.get().add(x0),
                    plane,
                    weight.as_ptr(),
                    image[x0..].as_ptr(),
                    plane,
                    Parallelism::None,
                    false,
                );
            }
            let bias = op.bias.as_deref();
            op.act
                .apply_biased_rows_in_place(bias, dst.get().add(x0), plane, o, cols);
        }
    });
}

/// `dst (m x n) += lhs (m x k) * rhs (k x n)`, every matrix row-major with
/// unit column stride: `lhs` packed, `dst` and `rhs` with the row strides
/// given. The one product shape all the convolution kernels need. With
/// `accumulate` false, `dst = lhs * rhs`, written without being read (it
/// may be uninitialised).
///
/// # Safety
/// The three matrices must lie in valid memory with those strides, and no
/// other thread may touch `dst`'s elements meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    rhs: *const f32,
    rhs_rs: usize,
    parallelism: Parallelism,
    accumulate: bool,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        1,
        k as isize,
        rhs,
        1,
        rhs_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    )
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
        gemm_into(
            (m, cols, k),
            dst.as_mut_ptr(),
            dst_rs,
            lhs.as_ptr(),
            rhs.as_ptr(),
            cols,
            parallelism,
            true,
        )
    }
}

/// A strided convolution of one image (ResNet-50's stem and its strided
/// 3x3 and 1x1 layers; stride-1 ones go through [`conv_shifted`] and
/// [`conv_pointwise`], ones with few taps through [`conv_narrow`]): blocks
/// of output rows, each turned into a patch matrix (row `(ci, ky, kx)`
/// holds that tap for every output pixel of the block) and multiplied by
/// the weights in one gemm.
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
            &buffer[..patch * cols],
            s.out_channels,
            patch,
            cols,
        );
    }
    patches().push(buffer);
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
/// Writes all `O x ho x wo` outputs at `dst`, activated.
fn conv_shifted(
    op: &ConvOp,
    inputs: &[&[f32]],
    (c, h, w): (usize, usize, usize),
    (ho, wo): (usize, usize),
    taps: &[f32],
    dst_ptr: SendPtr,
) {
    let s = &op.spec;
    let (k, d, o) = (s.kernel, s.dilation, s.out_channels);
    // Stride 1: the one phase is the zero-padded plane.
    let layout = Polyphase::new((1, s.padding), (h, w), (ho, wo));
    let (wp, plane) = (layout.ws, layout.len());
    let planes: Vec<&[f32]> = inputs.iter().flat_map(|t| t.chunks(h * w)).collect();
    debug_assert_eq!(planes.len(), c);
    let padded = polyphase_planes(&layout, &planes);
    // The small decoder stages are only a block or two big.
    let (blocks, rows_per_block) = balanced_blocks(ho, SHIFTED_BLOCK / wp);
    let plane_out = ho * wo;
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
                        gemm_into(
                            (o, cols, c),
                            wide.as_mut_ptr(),
                            cols,
                            taps[(ky * k + kx) * o * c..].as_ptr(),
                            padded[start..].as_ptr(),
                            plane,
                            Parallelism::None,
                            true,
                        )
                    }
                }
            }
            for (oc, line) in wide.chunks(cols).enumerate() {
                for r in 0..rows {
                    // SAFETY: each block writes only its own rows of each
                    // output plane, which no other block touches; the row
                    // is borrowed once it has been written.
                    let row = unsafe {
                        let at = dst_ptr.get().add(oc * plane_out + (r0 + r) * wo);
                        std::ptr::copy_nonoverlapping(line[r * wp..][..wo].as_ptr(), at, wo);
                        std::slice::from_raw_parts_mut(at, wo)
                    };
                    op.act.apply_in_place(row);
                }
            }
        });
    });
}

/// The starts of `total` items cut into equal blocks of at most about
/// `widest`, in whole rounds of the pool's threads so that none idles at
/// the end, and the block length. At least `BLOCKS_PER_THREAD` rounds where
/// there are items enough: end to end, the encoders take turns on the
/// cores, and a worker they pre-empt holding one of only two halves left
/// the other waiting for it.
fn balanced_blocks(total: usize, widest: usize) -> (Vec<usize>, usize) {
    let threads = rayon::current_num_threads();
    let blocks = total
        .div_ceil(widest.max(1))
        .max(BLOCKS_PER_THREAD * threads)
        .next_multiple_of(threads)
        .min(total);
    let len = total.div_ceil(blocks);
    ((0..total).step_by(len).collect(), len)
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
        for (o, v) in row[cols].iter_mut().enumerate() {
            *v = src[x0 + o * st];
        }
    }
}

thread_local! {
    /// A padded input plane and a wide output plane, reused (the narrow
    /// dense layers use the second too).
    static DEPTHWISE_SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A depthwise layer's input plane, zero-padded and cut into its stride's
/// `s x s` phases: phase `(φy, φx)` holds padded pixel `(s i + φy, s j +
/// φx)` at `(i, j)`, each phase `hs x ws`, one after another. Every tap
/// then reads one phase at unit stride, one long run of floats for the
/// whole plane from a single offset (stride 1 is the one phase, the
/// padded plane itself).
struct Polyphase {
    s: usize,
    p: usize,
    h: usize,
    w: usize,
    hs: usize,
    ws: usize,
    ho: usize,
    wo: usize,
}

impl Polyphase {
    /// The layout of an `h x w` plane padded by `p` for stride `s`, whose
    /// convolution makes `ho x wo` outputs.
    fn new((s, p): (usize, usize), (h, w): (usize, usize), (ho, wo): (usize, usize)) -> Self {
        Self {
            s,
            p,
            h,
            w,
            hs: (h + 2 * p).div_ceil(s),
            ws: (w + 2 * p).div_ceil(s),
            ho,
            wo,
        }
    }

    fn len(&self) -> usize {
        self.s * self.s * self.hs * self.ws
    }

    /// Outputs swept at once: rows `ws` apart, the last `wo` long. An
    /// output's tap reads `ox + (kx d) / s < ws` in its phase, so the extra
    /// columns of each row are the only waste.
    fn wide_len(&self) -> usize {
        (self.ho - 1) * self.ws + self.wo
    }

    /// Where each tap `(ky, kx)` reads, from an output's position in the
    /// wide sweep.
    fn offsets(&self, spec: &ConvSpec) -> Vec<usize> {
        let (k, d, s) = (spec.kernel, spec.dilation, self.s);
        (0..k * k)
            .map(|t| {
                let (dy, dx) = (t / k * d, t % k * d);
                let phase = (dy % s) * s + dx % s;
                phase * self.hs * self.ws + dy / s * self.ws + dx / s
            })
            .collect()
    }
}

/// `planes`, each `h x w`, in `layout` one after another, a task a plane.
fn polyphase_planes(layout: &Polyphase, planes: &[&[f32]]) -> Vec<f32> {
    let len = planes.len() * layout.len();
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(layout.len())
        .zip(planes)
        .for_each(|(to, plane)| write_polyphase(layout, plane, to));
    // SAFETY: write_polyphase set every float of each plane's layout.
    unsafe { out.set_len(len) };
    out
}

dispatched!(write_polyphase => write_polyphase_in[](layout: &Polyphase, plane: &[f32], to: &mut [MaybeUninit<f32>]));

/// Writes `plane` in `layout` to `to`, each float once. (One call a plane:
/// the deep layers' planes are small enough that a dispatch per row
/// showed.)
#[inline(always)]
fn write_polyphase_in<V: Vector>(layout: &Polyphase, plane: &[f32], to: &mut [MaybeUninit<f32>]) {
    let (s, p, w) = (layout.s, layout.p, layout.w);
    assert!(plane.len() == layout.h * w && to.len() == layout.len());
    let phases = to.chunks_exact_mut(layout.hs * layout.ws);
    for (phase, rows) in phases.enumerate() {
        let (fy, fx) = (phase / s, phase % s);
        // Phase columns j whose picture column s j + fx - p is inside.
        let lo = p.saturating_sub(fx).div_ceil(s).min(layout.ws);
        let hi = (w + p).saturating_sub(fx).div_ceil(s).clamp(lo, layout.ws);
        for (i, row) in rows.chunks_exact_mut(layout.ws).enumerate() {
            let y = (s * i + fy) as isize - p as isize;
            let Some(src) = plane_row(plane, (layout.h, w), y) else {
                fill::<V>(row, 0.0);
                continue;
            };
            fill::<V>(&mut row[..lo], 0.0);
            fill::<V>(&mut row[hi..], 0.0);
            // (A plane narrower than the stride may have no column here.)
            if lo < hi {
                every_nth::<V>(&src[s * lo + fx - p..], s, &mut row[lo..hi]);
            }
        }
    }
}

/// `out[j] = src[s j]`: one phase of a row.
#[inline(always)]
fn every_nth<V: Vector>(src: &[f32], s: usize, out: &mut [MaybeUninit<f32>]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    assert!(src.len() > s * (n - 1));
    let mut j = 0;
    match s {
        1 => {
            copy::<V>(&src[..n], out);
            j = n;
        }
        // The even lanes of two vectors, a vector of outputs at a time.
        2 => {
            let l = V::LANES;
            while j + l <= n && 2 * (j + l) <= src.len() {
                // SAFETY: 2 l floats from 2 j lie inside src, l from j
                // inside out (checked above).
                unsafe {
                    let at = src.as_ptr().add(2 * j);
                    let (even, _) = V::split(V::load(at), V::load(at.add(l)));
                    even.store(out.as_mut_ptr().add(j).cast());
                }
                j += l;
            }
        }
        _ => {}
    }
    for (o, v) in out[j..].iter_mut().zip(src[s * j..].iter().step_by(s)) {
        o.write(*v);
    }
}

/// One channel of a depthwise convolution over the whole plane at once,
/// biased and activated. With the input laid out by [`Polyphase`] and the
/// outputs as wide as its rows, every tap reads a single long run of
/// floats (the trick of [`conv_shifted`]), so the whole plane is one run of
/// vectors, each summing its taps in a register; the extra columns are
/// dropped on the way out. The deep MobileNetV3 layers have planes only 30
/// pixels wide, where row-by-row loops spent most of their time in scalar
/// tails; the strided ones, read a row and a tap at a time, ran at a third
/// of the stride-1 ones' speed.
fn depthwise_plane(
    layout: &Polyphase,
    plane: &[f32],
    (taps, offsets): (&[f32], &[usize]),
    (bias, act): (f32, Activation),
    padded: &mut Vec<f32>,
    wide: &mut Vec<f32>,
    dst: &mut [MaybeUninit<f32>],
) {
    padded.clear();
    padded.reserve(layout.len());
    write_polyphase(
        layout,
        plane,
        &mut padded.spare_capacity_mut()[..layout.len()],
    );
    // SAFETY: write set every float of the layout.
    unsafe { padded.set_len(layout.len()) };
    let wide = grown(wide, layout.wide_len());
    tap_sums(padded, taps, offsets, wide);
    // SAFETY: every float of dst is written before it is read.
    let dst = unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) };
    act.apply_biased_rows(wide, layout.ws, bias, dst, layout.wo);
}

/// Taps (input channels times kernel positions) up to which a dense layer
/// sweeps every output plane over its padded input phases ([`conv_narrow`])
/// rather than making a patch matrix for gemm.
const NARROW_TAPS: usize = 32;

/// Output rows per task of [`conv_narrow`].
const NARROW_BAND: usize = 8;

/// A dense convolution of one image with few input channels (MobileNetV3's
/// stem: 3 channels, 27 taps an output) as the depthwise layers run: the
/// input planes' padded phases ([`Polyphase`]) one after another, and each
/// output plane a wide sweep summing all the taps of all the channels from
/// their offsets. A task makes a band of rows of every output plane, so the
/// band's input stays in cache across them. (The patch matrix and gemm it
/// replaces ran the stem at a sixth of the machine's multiply-add rate: a
/// 27-deep product is mostly loads and stores.) Appends the image's
/// outputs to `out`.
fn conv_narrow(
    op: &ConvOp,
    image: &[f32],
    (c, h, w): (usize, usize, usize),
    (ho, wo): (usize, usize),
    weight: &[f32],
    out: &mut Vec<f32>,
) {
    let s = &op.spec;
    let (o, kk) = (s.out_channels, s.kernel * s.kernel);
    let layout = Polyphase::new((s.stride, s.padding), (h, w), (ho, wo));
    let (one, plane_len) = (layout.offsets(s), layout.len());
    let offsets: Vec<usize> = (0..c)
        .flat_map(|ch| one.iter().map(move |t| ch * plane_len + t))
        .collect();
    let planes: Vec<&[f32]> = image.chunks(h * w).collect();
    let padded = polyphase_planes(&layout, &planes);
    let start = out.len();
    out.reserve(o * ho * wo);
    // SAFETY: the image's outputs lie inside the capacity.
    let base = SendPtr(unsafe { out.as_mut_ptr().add(start) });
    let ws = layout.ws;
    (0..ho.div_ceil(NARROW_BAND))
        .into_par_iter()
        .for_each(|band| {
            let (r0, r1) = (band * NARROW_BAND, ((band + 1) * NARROW_BAND).min(ho));
            let len = (r1 - r0 - 1) * ws + wo;
            DEPTHWISE_SCRATCH.with(|scratch| {
                let (_, wide) = &mut *scratch.borrow_mut();
                let wide = grown(wide, len);
                for oc in 0..o {
                    let taps = &weight[oc * c * kk..(oc + 1) * c * kk];
                    tap_sums(&padded[r0 * ws..], taps, &offsets, wide);
                    // SAFETY: rows r0..r1 of plane oc belong to this task
                    // alone; apply_biased_rows writes every float of them.
                    let dst = unsafe {
                        let at = base.get().add(oc * ho * wo + r0 * wo);
                        std::slice::from_raw_parts_mut(at, (r1 - r0) * wo)
                    };
                    let bias = op.bias.as_ref().map_or(0.0, |b| b[oc]);
                    op.act.apply_biased_rows(wide, ws, bias, dst, wo);
                }
            });
        });
    // SAFETY: the bands wrote every row of every output plane.
    unsafe { out.set_len(start + o * ho * wo) };
}

dispatched!(tap_sums => tap_sums_in[](padded: &[f32], taps: &[f32], offsets: &[usize], out: &mut [f32]));

/// `out[i] = Σ taps[t] · padded[i + offsets[t]]`, a vector of outputs at a
/// time with its sum in a register: one load and one multiply-add per tap,
/// rather than a pass over the whole run per tap that loads and stores the
/// running sums each time.
#[inline(always)]
fn tap_sums_in<V: Vector>(padded: &[f32], taps: &[f32], offsets: &[usize], out: &mut [f32]) {
    let furthest = offsets.iter().max().copied().unwrap_or(0);
    assert!(taps.len() == offsets.len() && out.len() + furthest <= padded.len());
    let l = V::LANES;
    // Four vectors at once: a multiply-add waits for the one before it on
    // the same sum, so one sum at a time would run at its latency.
    const SUMS: usize = 4;
    let mut i = 0;
    while i + SUMS * l <= out.len() {
        let mut sums = [V::zero(); SUMS];
        for (&t, &at) in taps.iter().zip(offsets) {
            for (k, sum) in sums.iter_mut().enumerate() {
                // SAFETY: i + k l + at + l <= out.len() + furthest <= padded.len().
                *sum = unsafe { V::load(padded.as_ptr().add(i + k * l + at)) }.mul_add(t, *sum);
            }
        }
        for (k, sum) in sums.into_iter().enumerate() {
            // SAFETY: i + k l + l <= out.len().
            unsafe { sum.store(out.as_mut_ptr().add(i + k * l)) };
        }
        i += SUMS * l;
    }
    while i + l <= out.len() {
        let mut sum = V::zero();
        for (&t, &at) in taps.iter().zip(offsets) {
            // SAFETY: i + at + l <= out.len() + furthest <= padded.len().
            sum = unsafe { V::load(padded.as_ptr().add(i + at)) }.mul_add(t, sum);
        }
        // SAFETY: i + l <= out.len().
        unsafe { sum.store(out.as_mut_ptr().add(i)) };
        i += l;
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        *o = taps.iter().zip(offsets).fold(0.0, |sum, (&t, &at)| {
            Vector::mul_add(padded[j + at], t, sum)
        });
    }
}

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
fn taps(size_in: usize, size_out: usize, scale: Option<f64>) -> Vec<(usize, usize, f32)> {
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
        let (ho, wo) = (self.height, self.width);
        let rows = taps(h, ho, self.scale.map(|s| s.0));
        let cols = &taps(w, wo, self.scale.map(|s| s.1));
        let doubling = self.scale == Some((2.0, 2.0));
        // A task per output plane, each row of it written by lerp_rows or
        // lerp_columns.
        let out = made_in_pieces(n * c * ho * wo, (ho * wo).max(1), |p, _, plane| {
            let src = &frame(p / c)[(p % c) * h * w..][..h * w];
            let rows_out = plane.chunks_exact_mut(wo);
            if ho <= h && !doubling {
                // Shrinking: output rows seldom share a source row, so each
                // output row's pair is blended first, whole vectors at
                // full width, and only the blend is resampled across (one
                // gathering pass per output row instead of up to two).
                let mut between = vec![0.0; w];
                for (row, &(y0, y1, wy)) in rows_out.zip(&rows) {
                    let line = |y: usize| &src[y * w..(y + 1) * w];
                    // SAFETY: lerp_rows writes only initialised floats.
                    lerp_rows(line(y0), line(y1), wy, unsafe { as_uninit(&mut between) });
                    lerp_columns(&between, cols, row);
                }
                return;
            }
            // Upscaling reads each source row for several output rows:
            // its horizontal pass is made once and kept.
            let mut cache = [(usize::MAX, vec![0.0; wo]), (usize::MAX, vec![0.0; wo])];
            for (row, &(y0, y1, wy)) in rows_out.zip(&rows) {
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
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

vectorized! {
    /// One row resampled to the output width (all of `out`).
    fn lerp_columns(line: &[f32], cols: &[(usize, usize, f32)], out: &mut [MaybeUninit<f32>]) {
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

/// The deep guided filter's last step and RVM's output in one pass over
/// the full-size frame: with `A` and `b` fitted at low resolution,
/// `y = up(A)·x + up(b)` for the guide `x = [r, g, b, mean(r, g, b)]`, then
/// `fgr = clamp(y[..3] + src)`, `pha = clamp(y[3])`, as `(T, 4, H, W)`.
/// Done as separate tensor ops this is a dozen passes over full-size
/// frames (a fifth of CPU inference time at 720p); here each output pixel
/// is touched once and the upsampled rows of `A` and `b` are made once per
/// source row.
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

/// The cache slot holding source row `y`, made with `fill` if neither
/// does, in the slot not holding `keep` (the other row in use).
fn fill_cached(
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
    use candle_core::{Device, Tensor};

    use super::test_util::{max_diff, random};
    use super::*;

    const ACTIVATIONS: [Activation; 6] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Hardswish,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Hardsigmoid,
    ];

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

    #[test]
    fn convolutions_match_candle() {
        let specs = [
            // 1x1 with few outputs (vmatte's product) and more (gemm's).
            ConvSpec::new(8, 6, 1),
            ConvSpec::new(8, 12, 1),
            ConvSpec::new(8, 6, 3),
            // Winograd with more than one vector of tiles and channels.
            ConvSpec::new(35, 16, 3),
            ConvSpec::new(8, 6, 3).stride(2),
            ConvSpec::new(8, 6, 3).dilation(2),
            ConvSpec::new(5, 4, 5).stride(2).padding(1),
            // Few taps: swept like the depthwise layers (the stem's shape,
            // and a stride of 3).
            ConvSpec::new(3, 16, 3).stride(2),
            ConvSpec::new(1, 3, 5).stride(3),
            ConvSpec::new(8, 8, 3).depthwise(),
            ConvSpec::new(8, 8, 5).depthwise(),
            ConvSpec::new(8, 8, 5).depthwise().stride(2),
            // Odd padding swaps the stride phases; stride 3 takes the
            // scalar gather.
            ConvSpec::new(8, 8, 3).depthwise().stride(2),
            ConvSpec::new(8, 8, 3).depthwise().stride(3),
            ConvSpec::new(8, 8, 3).depthwise().dilation(3),
        ];
        // The larger sizes span several blocks of the shifted kernel; the
        // wide one splits Winograd tile rows into runs, the last one short.
        // Planes a pixel wide or high reach the stride phases that hold no
        // picture column at all.
        let sizes = specs
            .iter()
            .flat_map(|s| {
                [
                    (*s, 13, 11),
                    (*s, 70, 90),
                    (*s, 9, 301),
                    (*s, 5, 1),
                    (*s, 1, 2),
                ]
            })
            .filter(|(s, h, w)| {
                let reach = s.dilation * (s.kernel - 1) + 1;
                h + 2 * s.padding >= reach && w + 2 * s.padding >= reach
            });
        // Both Winograd algorithms (the other kernels ignore the choice).
        let cases = sizes.flat_map(|c| [(c, Tile::F2), (c, Tile::F4)]);
        for (i, ((spec, h, wd), tile)) in cases.enumerate() {
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
            // Relative to the largest sum (before the activation, which may
            // squash it): Winograd's transforms round at that scale.
            let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
            let want = act.apply(&want).unwrap();
            let weights = w.flatten_all().unwrap().to_vec1().unwrap();
            let op = ConvOp {
                act,
                ..ConvOp::new(spec, Some(bias), &weights, tile)
            };
            let got = x.apply_op2_no_bwd(&w, &op).unwrap();
            let d = max_diff(&got, &want) / scale;
            assert!(d < 1e-5, "{spec:?} {tile:?} {act:?} {h}x{wd} {d}");
        }
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

    #[test]
    fn element_wise_glue_matches_candle() {
        use crate::ops;
        // Odd sizes, more floats than one task's piece, and views with an
        // offset (a ConvGRU's gates are narrows of one tensor).
        for (n, c, h, w) in [(2, 5, 3, 7), (1, 6, 70, 90)] {
            let gates = random(&[n, 2 * c, h, w], 1);
            let (r, z) = (
                gates.narrow(1, 0, c).unwrap(),
                gates.narrow(1, c, c).unwrap(),
            );
            let x = random(&[n, c, h, w], 2);
            let s = random(&[n, c, 1, 1], 3);
            let close = |got: Tensor, want: Tensor, what: &str| {
                let d = max_diff(&got, &want);
                assert!(d < 1e-5, "{what} {n}x{c}x{h}x{w}: {d}");
            };
            close(ops::add(&r, &x).unwrap(), (&r + &x).unwrap(), "add");
            close(ops::mul(&r, &x).unwrap(), (&r * &x).unwrap(), "mul");
            let want = ((z.affine(-1.0, 1.0).unwrap() * &x).unwrap() + (&z * &r).unwrap()).unwrap();
            close(ops::gru_update(&z, &x, &r).unwrap(), want, "gru update");
            close(
                ops::scale_channels(&x, &s).unwrap(),
                x.broadcast_mul(&s).unwrap(),
                "scale channels",
            );
            let mean = x.mean_keepdim(3).unwrap().mean_keepdim(2).unwrap();
            close(ops::global_avg_pool(&x).unwrap(), mean, "mean");
            close(
                ops::cat_channels(&[&z, &x, &r]).unwrap(),
                Tensor::cat(&[&z, &x, &r], 1).unwrap(),
                "cat",
            );
            let frames = [x.clone(), z.contiguous().unwrap(), x.clone()];
            close(
                ops::cat_frames(&frames).unwrap(),
                Tensor::cat(&frames, 0).unwrap(),
                "cat frames",
            );
        }
    }

    #[test]
    fn guided_coefficients_are_the_tensor_ops_fused() {
        let hidden = 16;
        let dense = |o: usize, c: usize, act, seed| {
            let w = random(&[o, c, 1, 1], seed).affine(0.3, 0.0).unwrap();
            let b = random(&[o], seed + 1);
            let op = Dense {
                weight: w.flatten_all().unwrap().to_vec1().unwrap(),
                bias: b.to_vec1().unwrap(),
                act,
            };
            let layer = move |x: &Tensor| {
                let y = x
                    .conv2d(&w, 0, 1, 1, 1)
                    .unwrap()
                    .broadcast_add(&b.reshape((1, o, 1, 1)).unwrap())
                    .unwrap();
                act.apply(&y).unwrap()
            };
            (op, layer)
        };
        let (l1, conv1) = dense(hidden, 8 + hidden, Activation::Relu, 10);
        let (l2, conv2) = dense(hidden, hidden, Activation::Relu, 20);
        let (l3, conv3) = dense(4, hidden, Activation::Identity, 30);
        let taps = random(&[4, 1, 3, 3], 40).affine(0.1, 0.1).unwrap();
        let box_bias = [0.01f32, -0.02, 0.03, 0.0];
        let op = GuidedCoefficientsOp {
            box_taps: taps.flatten_all().unwrap().to_vec1().unwrap(),
            box_bias,
            layers: [l1, l2, l3],
        };
        let bias = Tensor::new(&box_bias, &Device::Cpu)
            .unwrap()
            .reshape((1, 4, 1, 1))
            .unwrap();
        let boxed = |t: &Tensor| {
            t.conv2d(&taps, 1, 1, 1, 4)
                .unwrap()
                .broadcast_add(&bias)
                .unwrap()
        };
        // Widths below, at and past the vector widths, and a single column.
        for (h, w) in [(7, 19), (12, 33), (5, 1)] {
            let src = random(&[2, 3, h, w], 1).affine(0.5, 0.5).unwrap();
            let out = random(&[2, 4, h, w], 2);
            let hid = random(&[2, hidden, h, w], 3);
            let x = Tensor::cat(&[&src, &src.mean_keepdim(1).unwrap()], 1).unwrap();
            let (mean_x, mean_y) = (boxed(&x), boxed(&out));
            let cov = (boxed(&(&x * &out).unwrap()) - (&mean_x * &mean_y).unwrap()).unwrap();
            let var = (boxed(&(&x * &x).unwrap()) - (&mean_x * &mean_x).unwrap()).unwrap();
            let a = conv3(&conv2(&conv1(
                &Tensor::cat(&[&cov, &var, &hid], 1).unwrap(),
            )));
            let b = (mean_y - (&a * &mean_x).unwrap()).unwrap();
            let want = Tensor::cat(&[&a, &b], 1).unwrap();
            let got = src.apply_op3_no_bwd(&out, &hid, &op).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 1e-5, "{h}x{w}: {d}");
        }
    }
}
