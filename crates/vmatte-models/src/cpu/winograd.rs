//! Winograd's minimal filtering for the stride-1, padding-1 3x3
//! convolutions, which hold most of RVM's decoder arithmetic (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! A 3x3 convolution spends 9 multiplications per output and input channel.
//! F(m x m, 3x3) cuts the picture into tiles of m x m outputs; each
//! (m+2) x (m+2) input tile `d` and each filter `g` go to a transformed
//! domain (`V = Bᵀ d B`, `U = G g Gᵀ`), where the convolution is a product
//! per element summed over input channels: (m+2)² matrix products
//! `M[ξ] = U[ξ] (O x C) · V[ξ] (C x tiles)`, and `Y = Aᵀ M A` turns each `M`
//! back into a tile of outputs.
//! - [`Tile::F2`], F(2x2, 3x3): 4 multiplications per output; the
//!   transforms use only ±1 and ½, so the result stays within float rounding
//!   of the direct sum. The default, and what GVM's 1e-4 parity asks for.
//! - [`Tile::F4`], F(4x4, 3x3): 2.25 per output; the transforms scale by up
//!   to 8 (points 0, ±1, ±2), so it rounds at a few millionths of the
//!   largest sum. RVM asks for it: its parity tolerance is 1e-3 and its
//!   output 8-bit.
//!
//! Rows of tiles go in blocks whose transformed inputs and products stay in
//! a core's L2 cache, a block per task. Tiles lie along the vector lanes, so
//! every transform is plain vector arithmetic, and a block's input rows are
//! zero-padded in L1, never as a whole padded copy of the input.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

use super::{balanced_blocks, SendPtr};
use crate::ops::Activation;
use crate::simd::vectorized;

/// Which Winograd algorithm a convolution uses (see the module's doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tile {
    #[default]
    F2,
    F4,
}

impl Tile {
    /// Outputs per tile side.
    fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// `G`, in f64 so that F4's thirds and sixths round once.
    fn g(self) -> &'static [[f64; 3]] {
        match self {
            Tile::F2 => &[
                [1.0, 0.0, 0.0],
                [0.5, 0.5, 0.5],
                [0.5, -0.5, 0.5],
                [0.0, 0.0, 1.0],
            ],
            Tile::F4 => &[
                [1.0 / 4.0, 0.0, 0.0],
                [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
                [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
                [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
                [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
                [0.0, 0.0, 1.0],
            ],
        }
    }

    /// The transformed filters, `[ξ][o][c]` with `ξ = (m + 2) i + j`.
    pub(crate) fn filters(self, weight: &[f32], o: usize, c: usize) -> Vec<f32> {
        let g = self.g();
        let t = g.len();
        let mut u = vec![0.0; t * t * o * c];
        for (oc, w) in weight.chunks_exact(9).enumerate() {
            // G g, then (G g) Gᵀ.
            let gw: Vec<[f64; 3]> = g
                .iter()
                .map(|gi| {
                    std::array::from_fn(|x| (0..3).map(|k| gi[k] * w[3 * k + x] as f64).sum())
                })
                .collect();
            for (i, gwi) in gw.iter().enumerate() {
                for (j, gj) in g.iter().enumerate() {
                    let v: f64 = (0..3).map(|k| gwi[k] * gj[k]).sum();
                    u[(t * i + j) * o * c + oc] = v as f32;
                }
            }
        }
        u
    }
}

/// Transformed-domain floats (inputs and products) a block of tiles keeps
/// in a core's L2 cache.
const BLOCK_FLOATS: usize = 1 << 18;

/// Tiles a transform loop handles at once: one AVX-512 register of floats.
const LANES: usize = 16;

thread_local! {
    /// A block's transformed inputs `V` and products `M`, four output rows
    /// and its zero-padded input rows, reused.
    #[allow(clippy::type_complexity)]
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new(), Vec::new())) };
}

/// How an `h x w` picture is cut into tiles of m x m outputs.
#[derive(Clone, Copy)]
struct Tiling {
    m: usize,
    h: usize,
    /// Tile rows.
    th: usize,
    /// Tiles stored per tile row: the tile columns rounded up to whole
    /// vectors, so the transforms have no scalar tails (the spare tiles see
    /// zeros and are never written out).
    tw: usize,
}

impl Tiling {
    fn new(tile: Tile, h: usize, w: usize) -> Self {
        let m = tile.m();
        Self {
            m,
            h,
            th: h.div_ceil(m),
            tw: w.div_ceil(m).next_multiple_of(LANES),
        }
    }
    /// Input pixels per tile side.
    fn t(&self) -> usize {
        self.m + 2
    }
    /// Elements of a transformed tile.
    fn xi(&self) -> usize {
        self.t() * self.t()
    }
    /// A zero-padded input row: one zero before the picture, enough after
    /// it for every tile and for the last vector's reads.
    fn row(&self) -> usize {
        self.m * self.tw + self.m
    }
}

/// `act(conv3x3(x) + bias)` of one image whose channels are the planes of
/// `inputs` in order (a U-Net skip's pieces are never concatenated); writes
/// all `o x h x w` outputs at `dst`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv3x3(
    tile: Tile,
    inputs: &[&[f32]],
    (c, h, w): (usize, usize, usize),
    o: usize,
    filters: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    dst: SendPtr,
) {
    let t = Tiling::new(tile, h, w);
    let (input_transform, output_transform): (InputTransform, OutputTransform) = match tile {
        Tile::F2 => (f2_input, f2_output),
        Tile::F4 => (f4_input, f4_output),
    };
    let (mt, xis) = (t.m, t.xi());
    let planes: Vec<&[f32]> = inputs.iter().flat_map(|x| x.chunks(h * w)).collect();
    debug_assert_eq!(planes.len(), c);
    let rows_per_block = BLOCK_FLOATS / (xis * (c + o) * t.tw);
    let (blocks, rows_per_block) = balanced_blocks(t.th, rows_per_block.max(1));
    blocks.par_iter().for_each(|&ty0| {
        let rows = rows_per_block.min(t.th - ty0);
        let tiles = rows * t.tw;
        SCRATCH.with(|scratch| {
            let (v, m, wide, staged) = &mut *scratch.borrow_mut();
            // Padded rows m * ty0 ..= m * (ty0 + rows) + 1.
            staged.resize((mt * rows + 2) * t.row(), 0.0);
            v.resize(xis * c * tiles, 0.0);
            m.resize(xis * o * tiles, 0.0);
            wide.resize(mt * mt * t.tw, 0.0);
            for (ci, plane) in planes.iter().enumerate() {
                for (k, line) in staged.chunks_exact_mut(t.row()).enumerate() {
                    match (mt * ty0 + k).checked_sub(1).filter(|&y| y < h) {
                        Some(y) => {
                            line[0] = 0.0;
                            line[1..=w].copy_from_slice(&plane[y * w..(y + 1) * w]);
                            line[w + 1..].fill(0.0);
                        }
                        None => line.fill(0.0),
                    }
                }
                for r in 0..rows {
                    let from = &staged[mt * r * t.row()..(mt * r + t.t()) * t.row()];
                    input_transform(from, t.tw, v, ci * tiles + r * t.tw, c * tiles);
                }
            }
            for xi in 0..xis {
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
            for oc in 0..o {
                let value = bias.map_or(0.0, |b| b[oc]);
                for r in 0..rows {
                    output_transform(m, o * tiles, oc * tiles + r * t.tw, wide);
                    let y = mt * (ty0 + r);
                    for (dy, line) in wide.chunks_exact(mt * t.tw).enumerate() {
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
/// compiles to AVX-512, AVX2 or scalar code (see `dispatched!`). Tiles
/// lie along the lanes.
trait Vector: Copy {
    const LANES: usize;
    fn zero() -> Self;
    /// # Safety
    /// `LANES` floats at `p` must be readable.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `LANES` floats at `p` must be writable.
    unsafe fn store(self, p: *mut f32);
    /// The even and the odd lanes of `[a, b]`.
    fn split(a: Self, b: Self) -> (Self, Self);
    /// `[a0, b0, a1, b1, ...]` as two vectors.
    fn interleave(a: Self, b: Self) -> (Self, Self);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    /// `self * k + o`.
    fn mul_add(self, k: f32, o: Self) -> Self;
}

impl Vector for f32 {
    const LANES: usize = 1;
    fn zero() -> Self {
        0.0
    }
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    unsafe fn store(self, p: *mut f32) {
        *p = self
    }
    fn split(a: Self, b: Self) -> (Self, Self) {
        (a, b)
    }
    fn interleave(a: Self, b: Self) -> (Self, Self) {
        (a, b)
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn sub(self, o: Self) -> Self {
        self - o
    }
    fn mul_add(self, k: f32, o: Self) -> Self {
        self * k + o
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Eight lanes; only ever used by code compiled for AVX2 and FMA.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256);

    impl super::Vector for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: only reached from AVX2 code (see the type's doc).
            Self(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Self(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
        #[inline(always)]
        fn split(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: only reached from AVX2 code (see the type's doc).
            unsafe {
                // Within each 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6];
                // then the 64-bit pairs in order.
                let order = |x: __m256| {
                    _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(x), 0b11_01_10_00))
                };
                (
                    Self(order(_mm256_shuffle_ps(a.0, b.0, 0b10_00_10_00))),
                    Self(order(_mm256_shuffle_ps(a.0, b.0, 0b11_01_11_01))),
                )
            }
        }
        #[inline(always)]
        fn interleave(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: as above.
            unsafe {
                // Within each 128-bit half: [a0 b0 a1 b1 | a4 b4 a5 b5] and
                // [a2 b2 a3 b3 | a6 b6 a7 b7]; then the halves in order.
                let (lo, hi) = (_mm256_unpacklo_ps(a.0, b.0), _mm256_unpackhi_ps(a.0, b.0));
                (
                    Self(_mm256_permute2f128_ps(lo, hi, 0x20)),
                    Self(_mm256_permute2f128_ps(lo, hi, 0x31)),
                )
            }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul_add(self, k: f32, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_fmadd_ps(self.0, _mm256_set1_ps(k), o.0) })
        }
    }

    /// Sixteen lanes; only ever used by code compiled for AVX-512F.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512(__m512);

    impl super::Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: only reached from AVX-512 code (see the type's doc).
            Self(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Self(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
        #[inline(always)]
        fn split(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: only reached from AVX-512 code (see the type's doc).
            unsafe {
                // Lane indices: 0..16 pick from a, 16..32 from b.
                let even =
                    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                let odd =
                    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                (
                    Self(_mm512_permutex2var_ps(a.0, even, b.0)),
                    Self(_mm512_permutex2var_ps(a.0, odd, b.0)),
                )
            }
        }
        #[inline(always)]
        fn interleave(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: as above.
            unsafe {
                let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                let hi =
                    _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                (
                    Self(_mm512_permutex2var_ps(a.0, lo, b.0)),
                    Self(_mm512_permutex2var_ps(a.0, hi, b.0)),
                )
            }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul_add(self, k: f32, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_fmadd_ps(self.0, _mm512_set1_ps(k), o.0) })
        }
    }
}

/// `dispatched!(name => kernel[Generics](arg: Type, ...))`: `name` calls
/// `kernel::<V, Generics>` compiled for the widest vector unit this CPU has.
macro_rules! dispatched {
    ($name:ident => $kernel:ident[$($g:tt)*]($($arg:ident: $ty:ty),* $(,)?)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $kernel::<x86::Avx512, $($g)*>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $kernel::<x86::Avx2, $($g)*>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, the only feature used.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel::<f32, $($g)*>($($arg),*)
        }
    };
}

type InputTransform = fn(&[f32], usize, &mut [f32], usize, usize);
type OutputTransform = fn(&[f32], usize, usize, &mut [f32]);

dispatched!(f2_input => input_tiles[F2, 2, 4](rows: &[f32], tw: usize, v: &mut [f32], at: usize, stride: usize));
dispatched!(f2_output => output_tiles[F2, 2, 4](m: &[f32], stride: usize, at: usize, rows: &mut [f32]));
dispatched!(f4_input => input_tiles[F4, 4, 6](rows: &[f32], tw: usize, v: &mut [f32], at: usize, stride: usize));
dispatched!(f4_output => output_tiles[F4, 4, 6](m: &[f32], stride: usize, at: usize, rows: &mut [f32]));

/// One Winograd algorithm's 1-D pieces over vectors of tiles: `M` outputs
/// and `T = M + 2` inputs per tile side.
trait Transform<V: Vector, const M: usize, const T: usize> {
    /// The `T` input columns of `LANES` consecutive tiles of a padded row,
    /// from `p` (tile `x` starts at column `M x`).
    ///
    /// # Safety
    /// `M * LANES + M` floats at `p` must be readable.
    unsafe fn columns(p: *const f32) -> [V; T];
    /// `Bᵀ d` for one column `d`.
    fn input(d: [V; T]) -> [V; T];
    /// `Aᵀ m` for one column `m`.
    fn output(m: [V; T]) -> [V; M];
    /// The tiles' outputs along one row, `y[k]` being each tile's k-th, to
    /// consecutive columns at `p`.
    ///
    /// # Safety
    /// `M * LANES` floats at `p` must be writable.
    unsafe fn store(y: [V; M], p: *mut f32);
}

/// F(2x2, 3x3).
struct F2;

impl<V: Vector> Transform<V, 2, 4> for F2 {
    #[inline(always)]
    unsafe fn columns(p: *const f32) -> [V; 4] {
        let n = V::LANES;
        let (c0, c1) = V::split(V::load(p), V::load(p.add(n)));
        let (c2, c3) = V::split(V::load(p.add(2)), V::load(p.add(2 + n)));
        [c0, c1, c2, c3]
    }

    /// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
    #[inline(always)]
    fn input([d0, d1, d2, d3]: [V; 4]) -> [V; 4] {
        [d0.sub(d2), d1.add(d2), d2.sub(d1), d1.sub(d3)]
    }

    /// `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
    #[inline(always)]
    fn output([m0, m1, m2, m3]: [V; 4]) -> [V; 2] {
        [m0.add(m1).add(m2), m1.sub(m2).sub(m3)]
    }

    #[inline(always)]
    unsafe fn store([y0, y1]: [V; 2], p: *mut f32) {
        let (a, b) = V::interleave(y0, y1);
        a.store(p);
        b.store(p.add(V::LANES));
    }
}

/// Columns 4x, 4x + 1, 4x + 2 and 4x + 3 of the `4 * LANES` floats at `p`.
///
/// # Safety
/// `4 * LANES` floats at `p` must be readable.
#[inline(always)]
unsafe fn phases<V: Vector>(p: *const f32) -> [V; 4] {
    let n = V::LANES;
    let (e0, o0) = V::split(V::load(p), V::load(p.add(n)));
    let (e1, o1) = V::split(V::load(p.add(2 * n)), V::load(p.add(3 * n)));
    let (c0, c2) = V::split(e0, e1);
    let (c1, c3) = V::split(o0, o1);
    [c0, c1, c2, c3]
}

/// F(4x4, 3x3).
struct F4;

impl<V: Vector> Transform<V, 4, 6> for F4 {
    /// The four phases of the `4 * LANES` floats at `p`, then the first two
    /// of the `4 * LANES` at `p + 4`.
    #[inline(always)]
    unsafe fn columns(p: *const f32) -> [V; 6] {
        let [c0, c1, c2, c3] = phases(p);
        let [c4, c5, _, _] = phases(p.add(4));
        [c0, c1, c2, c3, c4, c5]
    }

    /// `Bᵀ = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
    /// [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]`.
    #[inline(always)]
    fn input([d0, d1, d2, d3, d4, d5]: [V; 6]) -> [V; 6] {
        let (d4_d2, d4_d3) = (d4.sub(d2), d4.sub(d3));
        [
            d0.mul_add(4.0, d2.mul_add(-5.0, d4)),
            d1.add(d2).mul_add(-4.0, d3.add(d4)),
            d1.sub(d2).mul_add(4.0, d4_d3),
            d3.sub(d1).mul_add(2.0, d4_d2),
            d1.sub(d3).mul_add(2.0, d4_d2),
            d1.mul_add(4.0, d3.mul_add(-5.0, d5)),
        ]
    }

    /// `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
    /// [0, 1, -1, 8, -8, 1]]`.
    #[inline(always)]
    fn output([m0, m1, m2, m3, m4, m5]: [V; 6]) -> [V; 4] {
        let (a, b, c, d) = (m1.add(m2), m1.sub(m2), m3.add(m4), m3.sub(m4));
        [
            m0.add(a).add(c),
            d.mul_add(2.0, b),
            c.mul_add(4.0, a),
            d.mul_add(8.0, b).add(m5),
        ]
    }

    /// Interleaved in two rounds: `[y0 y2]` and `[y1 y3]` pairs, then those.
    #[inline(always)]
    unsafe fn store([y0, y1, y2, y3]: [V; 4], p: *mut f32) {
        let n = V::LANES;
        let (s_lo, s_hi) = V::interleave(y0, y2);
        let (t_lo, t_hi) = V::interleave(y1, y3);
        let (a, b) = V::interleave(s_lo, t_lo);
        a.store(p);
        b.store(p.add(n));
        let (a, b) = V::interleave(s_hi, t_hi);
        a.store(p.add(2 * n));
        b.store(p.add(3 * n));
    }
}

/// `V = Bᵀ d B` for every tile of one channel's tile row, whose `T`
/// zero-padded input rows are `rows`: element ξ of tile `tx` goes to
/// `v[ξ * stride + at + tx]`.
// The index loops read a transposed column out of a 2-D array.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn input_tiles<V: Vector, W: Transform<V, M, T>, const M: usize, const T: usize>(
    rows: &[f32],
    tw: usize,
    v: &mut [f32],
    at: usize,
    stride: usize,
) {
    let row = M * tw + M;
    assert!(rows.len() == T * row && at + (T * T - 1) * stride + tw <= v.len());
    let (src, dst) = (rows.as_ptr(), v.as_mut_ptr());
    for x0 in (0..tw).step_by(V::LANES) {
        // SAFETY: the reads end at M * x0 + M * LANES + M <= row floats into
        // each row; the outputs lie inside v (asserted above).
        unsafe {
            // Each row times B. (Plain loops: a closure here would be
            // compiled without the caller's vector features.)
            let mut h = [[V::zero(); T]; T];
            for (k, hk) in h.iter_mut().enumerate() {
                *hk = W::input(W::columns(src.add(k * row + M * x0)));
            }
            // Bᵀ times the rows, a column at a time.
            for j in 0..T {
                let mut column = [V::zero(); T];
                for (k, e) in column.iter_mut().enumerate() {
                    *e = h[k][j];
                }
                for (i, e) in W::input(column).into_iter().enumerate() {
                    e.store(dst.add((T * i + j) * stride + at + x0));
                }
            }
        }
    }
}

/// `Y = Aᵀ M A` for one tile row of one output channel: its `M` output
/// rows, each `M * tw` wide, one after another in `rows`.
// The index loops read a transposed column out of a 2-D array.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn output_tiles<V: Vector, W: Transform<V, M, T>, const M: usize, const T: usize>(
    m: &[f32],
    stride: usize,
    at: usize,
    rows: &mut [f32],
) {
    let width = rows.len() / M;
    let tw = width / M;
    assert!(at + (T * T - 1) * stride + tw <= m.len());
    for x0 in (0..tw).step_by(V::LANES) {
        // SAFETY: the reads lie inside m (asserted above), and the
        // M * LANES outputs at M * x0 inside each row.
        unsafe {
            // Aᵀ M, a column at a time. (Plain loops, as in input_tiles.)
            let mut columns = [[V::zero(); M]; T];
            for (j, cj) in columns.iter_mut().enumerate() {
                let mut column = [V::zero(); T];
                for (i, e) in column.iter_mut().enumerate() {
                    *e = V::load(m.as_ptr().add((T * i + j) * stride + at + x0));
                }
                *cj = W::output(column);
            }
            // (Aᵀ M) A, a row at a time.
            for r in 0..M {
                let mut row = [V::zero(); T];
                for (j, e) in row.iter_mut().enumerate() {
                    *e = columns[j][r];
                }
                W::store(W::output(row), rows.as_mut_ptr().add(r * width + M * x0));
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
