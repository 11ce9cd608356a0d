//! Winograd's F(2x2, 3x3) for the stride-1, padding-1 3x3 convolutions of
//! RVM's decoder, which hold most of its arithmetic.
//!
//! A 3x3 convolution spends 36 multiplications per input channel on a 2x2
//! block of outputs; F(2x2, 3x3) spends 16. Each 4x4 input tile `d` and each
//! filter `g` go to a transformed domain (`V = Bᵀ d B`, `U = G g Gᵀ`), where
//! the convolution is a product per element summed over input channels, so
//! the 16 elements are 16 matrix products `M[ξ] = U[ξ] (O x C) · V[ξ] (C x
//! tiles)`; `Y = Aᵀ M A` turns each 4x4 `M` back into a 2x2 block.
//! The transforms use only ±1 and ½, so the result stays within float
//! rounding of the direct sum (the unit tests hold it to 1e-5).
//!
//! Rows of tiles go in blocks whose transformed inputs and products stay in
//! a core's L2 cache, a block per task. Tiles lie along the vector lanes, so
//! every transform is plain vector arithmetic, and a tile row's four input
//! rows are zero-padded in L1, never as a whole padded copy of the input.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

use super::{balanced_blocks, SendPtr};
use crate::ops::Activation;
use crate::simd::vectorized;

/// The 16 transformed filters, `[ξ][o][c]` with `ξ = 4i + j`.
pub(crate) fn transform_filters(weight: &[f32], o: usize, c: usize) -> Vec<f32> {
    // G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
    let g_rows = |v: [f32; 3]| {
        [
            v[0],
            0.5 * (v[0] + v[1] + v[2]),
            0.5 * (v[0] - v[1] + v[2]),
            v[2],
        ]
    };
    let mut u = vec![0.0; 16 * o * c];
    for (oc, g) in weight.chunks_exact(9).enumerate() {
        // G g: each column of g through G.
        let cols: [[f32; 4]; 3] = std::array::from_fn(|x| g_rows([g[x], g[3 + x], g[6 + x]]));
        for i in 0..4 {
            // (G g) Gᵀ: each row of G g through G.
            let row = g_rows([cols[0][i], cols[1][i], cols[2][i]]);
            for (j, v) in row.into_iter().enumerate() {
                u[(4 * i + j) * o * c + oc] = v;
            }
        }
    }
    u
}

/// Transformed-domain floats (inputs and products) a block of tiles keeps
/// in a core's L2 cache.
const BLOCK_FLOATS: usize = 1 << 18;

thread_local! {
    /// A block's transformed inputs `V` and products `M`, two output rows
    /// and four zero-padded input rows, reused.
    #[allow(clippy::type_complexity)]
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new(), Vec::new())) };
}

/// Tiles a transform loop handles at once: one AVX-512 register of floats.
const LANES: usize = 16;

/// The shape of one convolution: `c` input planes of `h x w`, `o` outputs
/// of the same size, in tiles of 2x2 outputs.
#[derive(Clone, Copy)]
struct Tiling {
    h: usize,
    /// Tile rows.
    th: usize,
    /// Tiles stored per tile row: the tile columns rounded up to whole
    /// vectors, so the transforms have no scalar tails (the spare tiles see
    /// zeros and are never written out).
    tw: usize,
}

impl Tiling {
    fn new(h: usize, w: usize) -> Self {
        Self {
            h,
            th: h.div_ceil(2),
            tw: w.div_ceil(2).next_multiple_of(LANES),
        }
    }
    /// A zero-padded input row: one zero before the picture, enough after
    /// it for every tile.
    fn row(&self) -> usize {
        2 * self.tw + 2
    }
}

/// `act(conv3x3(x) + bias)` of one image whose channels are the planes of
/// `inputs` in order (a U-Net skip's pieces are never concatenated); writes
/// all `o x h x w` outputs at `dst`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv3x3(
    inputs: &[&[f32]],
    (c, h, w): (usize, usize, usize),
    o: usize,
    filters: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    dst: SendPtr,
) {
    let t = Tiling::new(h, w);
    let planes: Vec<&[f32]> = inputs.iter().flat_map(|x| x.chunks(h * w)).collect();
    debug_assert_eq!(planes.len(), c);
    let rows_per_block = BLOCK_FLOATS / (16 * (c + o) * t.tw);
    let (blocks, rows_per_block) = balanced_blocks(t.th, rows_per_block.max(1));
    blocks.par_iter().for_each(|&ty0| {
        let rows = rows_per_block.min(t.th - ty0);
        let tiles = rows * t.tw;
        SCRATCH.with(|scratch| {
            let (v, m, wide, staged) = &mut *scratch.borrow_mut();
            staged.resize(4 * t.row(), 0.0);
            v.resize(16 * c * tiles, 0.0);
            m.resize(16 * o * tiles, 0.0);
            wide.resize(4 * t.tw, 0.0);
            for (ci, plane) in planes.iter().enumerate() {
                for r in 0..rows {
                    // The tile row's four input rows, zero-padded, in L1.
                    let y0 = 2 * (ty0 + r);
                    for (k, line) in staged.chunks_exact_mut(t.row()).enumerate() {
                        match (y0 + k).checked_sub(1).filter(|&y| y < h) {
                            Some(y) => {
                                line[0] = 0.0;
                                line[1..=w].copy_from_slice(&plane[y * w..(y + 1) * w]);
                                line[w + 1..].fill(0.0);
                            }
                            None => line.fill(0.0),
                        }
                    }
                    input_transform(staged, t.tw, v, ci * tiles + r * t.tw, c * tiles);
                }
            }
            for xi in 0..16 {
                // SAFETY: U[ξ] is o x c, V[ξ] c x tiles and M[ξ] o x tiles,
                // all packed, inside their buffers; M is this task's.
                unsafe {
                    gemm::gemm(
                        o,
                        tiles,
                        c,
                        m.as_mut_ptr().add(xi * o * tiles),
                        1,
                        tiles as isize,
                        false,
                        filters.as_ptr().add(xi * o * c),
                        1,
                        c as isize,
                        v.as_ptr().add(xi * c * tiles),
                        1,
                        tiles as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    )
                }
            }
            let (top, bottom) = wide.split_at_mut(2 * t.tw);
            for oc in 0..o {
                let value = bias.map_or(0.0, |b| b[oc]);
                for r in 0..rows {
                    output_transform(m, o * tiles, oc * tiles + r * t.tw, top, bottom);
                    let y = 2 * (ty0 + r);
                    for (dy, line) in [&*top, &*bottom].into_iter().enumerate() {
                        if y + dy >= t.h {
                            break;
                        }
                        // SAFETY: output row y + dy of plane oc belongs to
                        // this block alone; it is borrowed once written.
                        let row = unsafe {
                            let at = dst.get().add(oc * h * w + (y + dy) * w);
                            std::slice::from_raw_parts_mut(at, w)
                        };
                        biased(&line[..w], value, row);
                        act.apply_in_place(row);
                    }
                }
            }
        });
    });
}

/// The few vector operations the transforms need, so that one generic body
/// compiles to AVX-512, AVX2 or scalar code (see [`dispatch!`]). Tiles lie
/// along the lanes.
trait Vector: Copy {
    const LANES: usize;
    /// # Safety
    /// `LANES` floats at `p` must be readable.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `LANES` floats at `p` must be writable.
    unsafe fn store(self, p: *mut f32);
    /// The even and the odd floats of the `2 * LANES` at `p`.
    ///
    /// # Safety
    /// `2 * LANES` floats at `p` must be readable.
    unsafe fn load_split(p: *const f32) -> (Self, Self);
    /// `[a0, b0, a1, b1, ...]` at `p`: the left and right outputs of
    /// consecutive tiles.
    ///
    /// # Safety
    /// `2 * LANES` floats at `p` must be writable.
    unsafe fn store_pairs(a: Self, b: Self, p: *mut f32);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
}

impl Vector for f32 {
    const LANES: usize = 1;
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    unsafe fn store(self, p: *mut f32) {
        *p = self
    }
    unsafe fn load_split(p: *const f32) -> (Self, Self) {
        (*p, *p.add(1))
    }
    unsafe fn store_pairs(a: Self, b: Self, p: *mut f32) {
        *p = a;
        *p.add(1) = b;
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn sub(self, o: Self) -> Self {
        self - o
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Eight lanes; only ever called from code compiled for AVX2.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256);

    impl super::Vector for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Self(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn load_split(p: *const f32) -> (Self, Self) {
            // Within each 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6]; then
            // the 64-bit pairs reordered.
            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            let order = |x: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(x), 0b11_01_10_00))
            };
            (
                Self(order(_mm256_shuffle_ps(a, b, 0b10_00_10_00))),
                Self(order(_mm256_shuffle_ps(a, b, 0b11_01_11_01))),
            )
        }
        #[inline(always)]
        unsafe fn store_pairs(a: Self, b: Self, p: *mut f32) {
            // Within each 128-bit half: [a0 b0 a1 b1 | a4 b4 a5 b5] and
            // [a2 b2 a3 b3 | a6 b6 a7 b7]; then the halves in order.
            let (lo, hi) = (_mm256_unpacklo_ps(a.0, b.0), _mm256_unpackhi_ps(a.0, b.0));
            _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(p.add(8), _mm256_permute2f128_ps(lo, hi, 0x31));
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: only reached from AVX2 code (see the type's doc).
            Self(unsafe { _mm256_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_sub_ps(self.0, o.0) })
        }
    }

    /// Sixteen lanes; only ever called from code compiled for AVX-512.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512(__m512);

    impl super::Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Self(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn load_split(p: *const f32) -> (Self, Self) {
            let (a, b) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                Self(_mm512_permutex2var_ps(a, even, b)),
                Self(_mm512_permutex2var_ps(a, odd, b)),
            )
        }
        #[inline(always)]
        unsafe fn store_pairs(a: Self, b: Self, p: *mut f32) {
            // Lane indices: 0..16 pick from a, 16..32 from b.
            let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            _mm512_storeu_ps(p, _mm512_permutex2var_ps(a.0, lo, b.0));
            _mm512_storeu_ps(p.add(16), _mm512_permutex2var_ps(a.0, hi, b.0));
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: only reached from AVX-512 code (see the type's doc).
            Self(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
    }
}

/// `dispatched!(name => kernel(arg: Type, ...))`: `name` calls
/// `kernel::<V>` compiled for the widest vector unit this CPU has.
macro_rules! dispatched {
    ($name:ident => $kernel:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $kernel::<x86::Avx512>($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $kernel::<x86::Avx2>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, the only feature used.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above, for AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel::<f32>($($arg),*)
        }
    };
}

dispatched!(input_transform => input_tiles(rows: &[f32], tw: usize, v: &mut [f32], at: usize, stride: usize));
dispatched!(output_transform => output_tiles(m: &[f32], stride: usize, at: usize, top: &mut [f32], bottom: &mut [f32]));

/// `V = Bᵀ d B` for every tile of one channel's tile row, whose four
/// zero-padded input rows are `rows`, with `Bᵀ = [[1, 0, -1, 0], [0, 1, 1,
/// 0], [0, -1, 1, 0], [0, 1, 0, -1]]`: element ξ of tile `tx` goes to
/// `v[ξ * stride + at + tx]`.
#[inline(always)]
fn input_tiles<V: Vector>(rows: &[f32], tw: usize, v: &mut [f32], at: usize, stride: usize) {
    let row = 2 * tw + 2;
    assert!(rows.len() == 4 * row && at + 15 * stride + tw <= v.len());
    let (src, dst) = (rows.as_ptr(), v.as_mut_ptr());
    for x0 in (0..tw).step_by(V::LANES) {
        // SAFETY: the reads end at 2 * x0 + 2 + 2 * LANES <= row floats into
        // each row; the 16 outputs lie inside v (asserted above).
        unsafe {
            // Each row times B: its tiles' columns (d0, d1, d2, d3) are the
            // even and odd columns from 2 * x0 and from 2 * x0 + 2.
            let h: [[V; 4]; 4] = std::array::from_fn(|k| {
                let at = src.add(k * row + 2 * x0);
                let ((d0, d1), (d2, d3)) = (V::load_split(at), V::load_split(at.add(2)));
                [d0.sub(d2), d1.add(d2), d2.sub(d1), d1.sub(d3)]
            });
            // Bᵀ times the rows, a column j at a time.
            let [h0, h1, h2, h3] = h;
            for (j, (((a, b), c), d)) in h0.into_iter().zip(h1).zip(h2).zip(h3).enumerate() {
                let out = dst.add(at + x0 + j * stride);
                a.sub(c).store(out);
                b.add(c).store(out.add(4 * stride));
                c.sub(b).store(out.add(8 * stride));
                b.sub(d).store(out.add(12 * stride));
            }
        }
    }
}

/// `Y = Aᵀ M A` for one tile row of one output channel, with
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`: the top and bottom output rows
/// of every tile, `2 * tw` wide.
#[inline(always)]
fn output_tiles<V: Vector>(
    m: &[f32],
    stride: usize,
    at: usize,
    top: &mut [f32],
    bottom: &mut [f32],
) {
    let tw = top.len() / 2;
    assert!(at + 15 * stride + tw <= m.len() && bottom.len() == top.len());
    for x0 in (0..tw).step_by(V::LANES) {
        // SAFETY: the 16 reads lie inside m (asserted above), and the
        // 2 * LANES outputs at 2 * x0 inside each row.
        unsafe {
            let mm: [V; 16] =
                std::array::from_fn(|xi| V::load(m.as_ptr().add(xi * stride + at + x0)));
            // Aᵀ M: two rows of four.
            let r0: [V; 4] = std::array::from_fn(|j| mm[j].add(mm[4 + j]).add(mm[8 + j]));
            let r1: [V; 4] = std::array::from_fn(|j| mm[4 + j].sub(mm[8 + j]).sub(mm[12 + j]));
            // (Aᵀ M) A: each tile's left and right outputs.
            for (r, line) in [(r0, top.as_mut_ptr()), (r1, bottom.as_mut_ptr())] {
                let left = r[0].add(r[1]).add(r[2]);
                let right = r[1].sub(r[2]).sub(r[3]);
                V::store_pairs(left, right, line.add(2 * x0));
            }
        }
    }
}

vectorized! {
    /// `out = xs + bias`.
    fn biased(xs: &[f32], bias: f32, out: &mut [f32]) {
        for (o, x) in out.iter_mut().zip(xs) {
            *o = x + bias;
        }
    }
}
