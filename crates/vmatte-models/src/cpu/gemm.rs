//! The one product shape the convolutions ask of the gemm crate, and its
//! parallel, accumulating form.

use gemm::Parallelism;

use super::matmul::{Left, OWN_FROM_K, PANEL_COLUMNS};

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
pub(super) unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    rhs: *const f32,
    rhs_rs: usize,
    parallelism: Parallelism,
    accumulate: bool,
) {
    // SAFETY: the caller's contract: the three matrices lie in valid
    // memory with these strides, and no other thread touches `dst`'s.
    unsafe {
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
}

/// Columns per task of [`own_matmul_add`].
const OWN_BLOCK: usize = 8 * PANEL_COLUMNS;

/// [`matmul_add`] on vmatte's micro-kernel, blocks of columns across the
/// workers.
fn own_matmul_add(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: Left,
    rhs: &[f32],
    (m, k, cols): (usize, usize, usize),
) {
    use rayon::prelude::*;
    assert!(rhs.len() >= k * cols);
    assert!(m == 0 || dst.len() >= (m - 1) * dst_rs + cols);
    let base = super::buffers::SendPtr(dst.as_mut_ptr());
    (0..cols).into_par_iter().step_by(OWN_BLOCK).for_each(|j0| {
        let n = OWN_BLOCK.min(cols - j0);
        let p = super::matmul::Product {
            m,
            n,
            k,
            a: lhs,
            b: rhs[j0..].as_ptr(),
            ldb: cols,
            // SAFETY: inside `dst` (asserted above); each task owns its
            // columns j0..j0 + n of every row.
            dst: unsafe { base.get().add(j0) },
            ldd: dst_rs,
            accumulate: true,
        };
        // SAFETY: the three matrices lie in the slices (asserted above,
        // and `lhs` by `matmul_add`'s contract) and no other task touches
        // these columns of `dst`.
        unsafe { super::matmul::matmul(&p) };
    });
}

/// `dst (m x cols, row stride dst_rs) += lhs (m x k) * rhs (k x cols)`;
/// `panels`, if given, are `lhs`'s panels (`matmul::panels`), which
/// vmatte's micro-kernel reads instead where it runs the product.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_add(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    panels: Option<&[f32]>,
    rhs: &[f32],
    m: usize,
    k: usize,
    cols: usize,
) {
    let left = Left::of(lhs, panels, m, k);
    if k >= OWN_FROM_K {
        own_matmul_add(dst, dst_rs, left, rhs, (m, k, cols));
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths of `matmul_add` (gemm's, and vmatte's own from
    /// `OWN_FROM_K` taps, with the weights in rows or in panels) add the
    /// same product, across block edges and a destination wider than the
    /// product.
    #[test]
    fn both_paths_add_the_product() {
        for (m, k, cols) in [(20, 150, 300), (9, 200, 257), (64, 100, 40)] {
            let dst_rs = cols + 7;
            let lhs: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
                .collect();
            let rhs: Vec<f32> = (0..k * cols)
                .map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5)
                .collect();
            let start: Vec<f32> = (0..m * dst_rs).map(|i| (i % 13) as f32).collect();
            let panels = super::super::matmul::panels(&lhs, m, k);
            for with_panels in [false, true] {
                let mut got = start.clone();
                let panels = with_panels.then_some(&panels[..]);
                matmul_add(&mut got, dst_rs, &lhs, panels, &rhs, m, k, cols);
                for i in 0..m {
                    for j in 0..dst_rs {
                        let want = if j < cols {
                            start[i * dst_rs + j]
                                + (0..k)
                                    .map(|kk| lhs[i * k + kk] * rhs[kk * cols + j])
                                    .sum::<f32>()
                        } else {
                            start[i * dst_rs + j]
                        };
                        let g = got[i * dst_rs + j];
                        assert!(
                            (g - want).abs() <= 1e-3,
                            "{m}x{k}x{cols} at ({i}, {j}): {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
