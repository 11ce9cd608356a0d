//! The one product shape the convolutions ask of the gemm crate, and its
//! parallel, accumulating form.

use gemm::Parallelism;

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

/// `dst (m x cols, row stride dst_rs) += lhs (m x k) * rhs (k x cols)`.
pub(super) fn matmul_add(
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
