//! 1x1 convolutions of stride 1: in blocks of pixels, a task each, one
//! matrix product per block (gemm's, or with few outputs vmatte's own),
//! biased and activated while the block is in cache.

use gemm::Parallelism;
use rayon::prelude::*;

use super::activation::residual_relu_rows_in_place;
use super::buffers::{balanced_blocks, SendPtr};
use super::conv::ConvOp;
use super::gemm::gemm_into;
use super::matmul::{matmul, runs_pointwise, Left, Product, FEW_OUTPUTS, PANEL_COLUMNS};

/// Floats of input and output a pointwise block keeps in a core's L2.
const POINTWISE_L2: usize = 1 << 18;

/// A 1x1 convolution of one image in blocks of pixels, a block per task:
/// each block's outputs are written by gemm (or, with few, by [`matmul`]),
/// then biased and activated in one pass while they are in cache, and the
/// tasks need no gemm-internal synchronisation. Writes all `O x plane`
/// outputs at `dst`; with a `residual` (`O x plane`), `max(conv + bias +
/// residual, 0)` instead of the layer's activation (a ResNet block's join).
pub(super) fn conv_pointwise(
    op: &ConvOp,
    image: &[f32],
    c: usize,
    plane: usize,
    weight: &[f32],
    residual: Option<&[f32]>,
    dst: SendPtr,
) {
    let o = op.spec.out_channels;
    if let Some(r) = residual {
        assert_eq!(r.len(), o * plane);
    }
    let own = runs_pointwise(o, c);
    let widest = (POINTWISE_L2 / (c + o)).clamp(64, 4096);
    let (starts, cols_per_block) = match balanced_blocks(plane, widest) {
        (_, cols) if own && o > FEW_OUTPUTS => {
            let cols = cols.next_multiple_of(PANEL_COLUMNS).min(plane);
            ((0..plane).step_by(cols).collect(), cols)
        }
        blocks => blocks,
    };
    starts.par_iter().for_each(|&x0| {
        let cols = cols_per_block.min(plane - x0);
        // SAFETY: this task owns columns x0..x0+cols of every output plane;
        // the product writes them without reading them, and they are
        // borrowed after.
        unsafe {
            if own {
                matmul(&Product {
                    m: o,
                    n: cols,
                    k: c,
                    a: Left::of(weight, op.panels.as_deref(), o, c),
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
            let at = dst.get().add(x0);
            match residual {
                // The block's own columns of the residual (asserted o x
                // plane above).
                Some(r) => residual_relu_rows_in_place(bias, at, r[x0..].as_ptr(), plane, o, cols),
                None => op.act.apply_biased_rows_in_place(bias, at, plane, o, cols),
            }
        }
    });
}
