//! The matrix product under the 1x1, patch-matrix and Winograd
//! convolutions: `dst (m x n) = [dst +] a (m x k) · b (k x n)`, `b` and
//! `dst` row-major, `a` row-major or in panels.
//!
//! RVM's products are small and thin: 4 to 960 output channels, 16 to 960
//! input channels, pixels or tiles along `n`. A general gemm packs both
//! operands into panels first, which for these shapes costs about as much
//! as the arithmetic, and its per-call set-up shows when a Winograd block
//! makes 36 products of a few thousand multiplications each. Here `b`'s
//! rows are read where they lie (pixels and tiles are contiguous already;
//! a column panel read by many row blocks is copied together once) and
//! `a`, the weights, is laid out in panels once when the layer is loaded.
//!
//!   weights (o x c) --panels(), at load--> a: [o/6][k][6]
//!   activations b (c x pixels or tiles) --column panels of 32--+
//!   micro-kernel: 12 (AVX-512) or 6 rows x 32 columns in registers,
//!                 down k: one load of b, a broadcast of a per row
//!                 --> dst
//!
//! With AVX2 the micro-kernel's 6 x 2 vectors are 12 accumulators, two
//! vectors of `b` and one broadcast of `a`: 15 of the 16 registers; AVX-512
//! has 32, and 12 rows (24 accumulators) read each vector of `b` for twice
//! the arithmetic.

use std::cell::RefCell;

use super::buffers::grown;
use super::lanes::{dispatched, Vector};

/// Output rows per micro-kernel (twice this with AVX-512), and per panel
/// of `a`.
const ROWS: usize = 6;

/// Inner dimensions from which this kernel, rather than the gemm crate's,
/// runs the 1x1 and patch-matrix convolutions: with a long inner dimension
/// it is about twice gemm's speed here (ResNet-50's 128 to 2304 channels
/// and taps), where gemm's packing of both operands per call does not pay.
pub(crate) const OWN_FROM_K: usize = 128;

/// Output channels up to which a 1x1 layer's product is vmatte's own
/// micro-kernel rather than gemm's, whose kernels are shaped for more rows
/// (RVM's last layer: 16 to 4 channels at the decoder's full size).
pub(crate) const FEW_OUTPUTS: usize = 8;

/// Column alignment of the blocks callers hand this kernel: two vectors of
/// the widest lanes, so that no block but the last has a scalar tail.
pub(crate) const PANEL_COLUMNS: usize = 32;

/// The left operand `a` (m x k) of a [`Product`].
#[derive(Clone, Copy)]
pub(crate) enum Left {
    /// Row-major, rows `lda` floats apart.
    Rows { a: *const f32, lda: usize },
    /// In [`panels`]' layout: a layer's weights, laid out once.
    Panels(*const f32),
}

impl Left {
    /// The `m x k` row-major matrix `rows`, or its [`panels`] where given.
    pub(crate) fn of(rows: &[f32], panels: Option<&[f32]>, m: usize, k: usize) -> Self {
        assert!(rows.len() >= m * k);
        match panels {
            Some(p) => {
                assert!(p.len() >= panels_len(m, k));
                Left::Panels(p.as_ptr())
            }
            None => Left::Rows {
                a: rows.as_ptr(),
                lda: k,
            },
        }
    }
}

/// Whether a 1x1 layer of `o` outputs and `c` inputs runs on this kernel
/// rather than the gemm crate's: a long inner dimension, or few outputs.
pub(crate) fn runs_pointwise(o: usize, c: usize) -> bool {
    o <= FEW_OUTPUTS || c >= OWN_FROM_K
}

// SAFETY: a `Left` points at weights that nothing writes while products
// read them (each constructor's caller keeps them borrowed for the call),
// so tasks on other threads may read through a copy.
unsafe impl Send for Left {}
// SAFETY: as for Send: shared, it is only read.
unsafe impl Sync for Left {}

/// One product's operands. `ldb` and `ldd` are row strides in floats;
/// `accumulate` adds to `dst` instead of overwriting it.
#[derive(Clone, Copy)]
pub(crate) struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Left,
    pub b: *const f32,
    pub ldb: usize,
    pub dst: *mut f32,
    pub ldd: usize,
    pub accumulate: bool,
}

/// Computes `p`.
///
/// # Safety
/// `a` must hold `m` rows of `k` floats at stride `lda`, or [`panels`] of
/// them, `b` `k` rows of `n` at `ldb`, and `dst` `m` rows of `n` at `ldd`,
/// writable and touched by no other thread meanwhile.
pub(crate) unsafe fn matmul(p: &Product) {
    match p.a {
        Left::Rows { .. } => product_of_rows(p),
        Left::Panels(_) => product_of_panels(p),
    }
}

dispatched!(product_of_rows => product_in[false](p: &Product));
dispatched!(product_of_panels => product_in[true](p: &Product));

/// Floats of the [`panels`] of an `m x k` matrix.
pub(crate) fn panels_len(m: usize, k: usize) -> usize {
    m.next_multiple_of(ROWS) * k
}

/// The `m x k` row-major matrix `a` as the micro-kernel reads it: panels of
/// `ROWS` rows (the last filled up with zeros), each column after column,
/// so that the `ROWS` elements a step of `k` broadcasts are adjacent, one
/// stream from one pointer instead of `ROWS` rows a stride apart (whose
/// addressing took as many instructions as the arithmetic).
pub(crate) fn panels(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    assert_eq!(a.len(), m * k);
    let mut out = vec![0.0; panels_len(m, k)];
    for (i, row) in a.chunks_exact(k).enumerate() {
        let panel = &mut out[i / ROWS * ROWS * k..];
        for (kk, &x) in row.iter().enumerate() {
            panel[kk * ROWS + i % ROWS] = x;
        }
    }
    out
}

thread_local! {
    /// One packed panel of `b` per worker thread, reused call after call.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Column panels of two vectors, then one, then single columns; `a` in
/// [`panels`] if `PANELS`, else in rows.
#[inline(always)]
fn product_in<V: Vector, const PANELS: bool>(p: &Product) {
    let l = V::LANES;
    let w = 2 * l;
    // A panel's rows lie `ldb` floats apart: for a 1x1 convolution a whole
    // image plane (100 KB at 480p), so each of its `k` rows is on another
    // page and, at strides of 4 KB multiples, in the same cache set: rows
    // of the panel evict each other and every row block reads it from
    // memory again (43 against 100 GFLOP/s at k = 1152). Copied once into
    // adjacent rows, it stays in L2 for all the row blocks that read it.
    // A panel read by one or two row blocks is not worth the copy.
    let pack = p.m >= 3 * ROWS && p.ldb != w && p.n >= w;
    // The loops stay outside the thread-local's closure, which would be
    // compiled without this function's target features (and the kernels
    // inlined into it with them). The buffer is only resized here and
    // `matmul` never re-enters itself, so the pointer stays valid.
    let packed = if pack {
        PANEL.with_borrow_mut(|v| grown(v, p.k * w).as_mut_ptr())
    } else {
        std::ptr::null_mut()
    };
    let mut j = 0;
    // SAFETY: every panel lies inside the matrices (see `matmul`), and a
    // packed one is the first `k` rows of `w` floats of this thread's buffer.
    unsafe {
        while j + w <= p.n {
            if pack {
                for kk in 0..p.k {
                    std::ptr::copy_nonoverlapping(p.b.add(kk * p.ldb + j), packed.add(kk * w), w);
                }
                panel::<V, 2, PANELS>(p, j, packed, w);
            } else {
                panel::<V, 2, PANELS>(p, j, p.b.add(j), p.ldb);
            }
            j += w;
        }
        if j + l <= p.n {
            panel::<V, 1, PANELS>(p, j, p.b.add(j), p.ldb);
            j += l;
        }
        while j < p.n {
            panel::<f32, 1, PANELS>(p, j, p.b.add(j), p.ldb);
            j += 1;
        }
    }
}

/// Every row of the `NV`-vector column panel at `j` of `dst`, `2 * ROWS`
/// at a time with 16 lanes (the 24 accumulators fit AVX-512's 32
/// registers), then `ROWS`, then the rest, reading the panel's `k` rows
/// of `b` at `b`, `ldb` apart: the panel stays in cache while the rows
/// pass over it.
///
/// # Safety
/// As for [`matmul`], with the panel's columns inside `dst` and `k` rows of
/// `NV * LANES` floats at `b`, `ldb` apart.
#[inline(always)]
unsafe fn panel<V: Vector, const NV: usize, const PANELS: bool>(
    p: &Product,
    j: usize,
    b: *const f32,
    ldb: usize,
) {
    // SAFETY: the caller's contract (above).
    unsafe {
        let mut i = 0;
        if V::LANES >= 16 {
            while i + 2 * ROWS <= p.m {
                micro::<V, { 2 * ROWS }, NV, PANELS>(p, i, j, b, ldb);
                i += 2 * ROWS;
            }
        }
        while i + ROWS <= p.m {
            micro::<V, ROWS, NV, PANELS>(p, i, j, b, ldb);
            i += ROWS;
        }
        match p.m - i {
            1 => micro::<V, 1, NV, PANELS>(p, i, j, b, ldb),
            2 => micro::<V, 2, NV, PANELS>(p, i, j, b, ldb),
            3 => micro::<V, 3, NV, PANELS>(p, i, j, b, ldb),
            4 => micro::<V, 4, NV, PANELS>(p, i, j, b, ldb),
            5 => micro::<V, 5, NV, PANELS>(p, i, j, b, ldb),
            _ => {}
        }
    }
}

/// Rows `i..i + R`, columns `j..j + NV * LANES` of `dst`, from the panel
/// of `b` at `b` (rows `ldb` apart).
///
/// # Safety
/// As for [`panel`], with rows `i..i + R` inside `a` and `dst`.
// The index loops address registers of a 2-D array.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn micro<V: Vector, const R: usize, const NV: usize, const PANELS: bool>(
    p: &Product,
    i: usize,
    j: usize,
    b: *const f32,
    ldb: usize,
) {
    // SAFETY: the caller's contract (`panel`): rows `i..i + R` and
    // columns `j..j + NV * LANES` lie inside `dst`, those rows inside `a`,
    // and the panel's `k` rows at `b`.
    unsafe {
        let l = V::LANES;
        let mut acc = [[V::zero(); NV]; R];
        let dst = p.dst.add(i * p.ldd + j);
        if p.accumulate {
            for r in 0..R {
                for v in 0..NV {
                    acc[r][v] = V::load(dst.add(r * p.ldd + v * l));
                }
            }
        }
        // Where row r's element kk of `a` lies from `a`; `i` is a
        // multiple of ROWS, so in panels its rows start one. (`PANELS`, a
        // constant, is what `matmul` chose by `p.a`: the offsets fold into
        // the instructions' addressing.)
        let (a, lda) = match p.a {
            Left::Rows { a, lda } => (a.add(i * lda), lda),
            Left::Panels(a) => (a.add(i * p.k), 0),
        };
        let at = |r: usize, kk: usize| match PANELS {
            true => r / ROWS * ROWS * p.k + kk * ROWS + r % ROWS,
            false => r * lda + kk,
        };
        let mut b = b;
        for kk in 0..p.k {
            let mut bv = [V::zero(); NV];
            for v in 0..NV {
                bv[v] = V::load(b.add(v * l));
            }
            for r in 0..R {
                let ar = *a.add(at(r, kk));
                for v in 0..NV {
                    acc[r][v] = bv[v].mul_add(ar, acc[r][v]);
                }
            }
            b = b.add(ldb);
        }
        for r in 0..R {
            for v in 0..NV {
                acc[r][v].store(dst.add(r * p.ldd + v * l));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `matmul` as dispatched, and the scalar and AVX2 kernels beside it
    /// (the widest is what runs here): each runs `p` and says whether this
    /// CPU could.
    const KERNELS: [unsafe fn(&Product) -> bool; 3] = [dispatched, scalar, avx2];

    /// # Safety
    /// As for [`matmul`].
    unsafe fn dispatched(p: &Product) -> bool {
        // SAFETY: the caller's.
        unsafe { matmul(p) };
        true
    }

    /// # Safety
    /// As for [`matmul`].
    unsafe fn scalar(p: &Product) -> bool {
        match p.a {
            Left::Rows { .. } => product_in::<f32, false>(p),
            Left::Panels(_) => product_in::<f32, true>(p),
        }
        true
    }

    /// # Safety
    /// As for [`matmul`].
    unsafe fn avx2(p: &Product) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            use crate::cpu::lanes::x86::Avx2;
            #[target_feature(enable = "avx2,fma")]
            fn run(p: &Product) {
                match p.a {
                    Left::Rows { .. } => product_in::<Avx2, false>(p),
                    Left::Panels(_) => product_in::<Avx2, true>(p),
                }
            }
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { run(p) };
            return true;
        }
        false
    }

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], dst: &mut [f32]) {
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|kk| a[i * k + kk] as f64 * b[kk * n + j] as f64)
                    .sum();
                dst[i * n + j] += s as f32;
            }
        }
    }

    #[test]
    fn products_match_the_definition_at_every_edge() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // Row counts around ROWS and 2 * ROWS, column counts around one
        // and two vectors of every width, with scalar tails; from 3 * ROWS
        // rows the two-vector panels of `b` are packed. `a` in rows and in
        // panels.
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 7, 3),
            (6, 16, 16),
            (13, 33, 35),
            (16, 50, 9),
            (18, 64, 7),
            (23, 70, 12),
            (40, 97, 130),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let start: Vec<f32> = (0..m * n).map(|_| next()).collect();
            let a_panels = panels(&a, m, k);
            let lefts = [
                Left::Rows {
                    a: a.as_ptr(),
                    lda: k,
                },
                Left::Panels(a_panels.as_ptr()),
            ];
            for (left, accumulate) in lefts.into_iter().flat_map(|l| [(l, false), (l, true)]) {
                let mut want = if accumulate {
                    start.clone()
                } else {
                    vec![0.0; m * n]
                };
                naive(m, n, k, &a, &b, &mut want);
                for kernel in KERNELS {
                    let mut got = start.clone();
                    let p = Product {
                        m,
                        n,
                        k,
                        a: left,
                        b: b.as_ptr(),
                        ldb: n,
                        dst: got.as_mut_ptr(),
                        ldd: n,
                        accumulate,
                    };
                    // SAFETY: the three matrices are the vectors above.
                    if !unsafe { kernel(&p) } {
                        continue;
                    }
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "{m}x{n}x{k}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
