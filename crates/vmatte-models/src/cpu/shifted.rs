//! Stride-1 k x k dense convolutions that Winograd does not take (5x5,
//! dilated, other paddings): one gemm per tap, read at a fixed offset
//! from the zero-padded input, into a block of outputs that stays in
//! cache.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

use super::buffers::{balanced_blocks, SendPtr};
use super::conv::ConvOp;
use super::gemm::gemm_into;
use super::polyphase::{polyphase_planes, Polyphase};

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
pub(super) fn conv_shifted(
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
