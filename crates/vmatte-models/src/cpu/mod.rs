//! CPU kernels on contiguous NCHW f32, called from candle as custom ops.
//!
//! candle's generic CPU convolution gathers patches element by element and
//! runs grouped convolutions one group at a time; RVM is almost nothing but
//! 1x1, 3x3 and depthwise convolutions, so these shapes get kernels of their
//! own. A layer's [`ConvOp`] (`conv.rs`) goes to one of them by its shape
//! (`dispatch.rs`):
//!
//! ```text
//! ConvOp ─┬─ dense, stride 1, k > 1 ─┬─ 3x3, padding 1 ─ winograd.rs  F(2x2) or F(4x4) tiles,
//!         │  (a U-Net skip's pieces  │                                 products by matmul.rs
//!         │   read unconcatenated)   └─ other ────────── shifted.rs   a gemm per tap over the
//!         │                                                            padded input
//!         ├─ dense, C·K·K <= 32 (MobileNetV3's stem) ─── narrow.rs    the depthwise sweep over
//!         │                                                            every output plane
//!         ├─ dense, strided (ResNet-50's) ────────────── patches.rs   a patch matrix per block
//!         │                                                            of rows, one gemm each
//!         ├─ depthwise ───────────────────────────────── depthwise.rs a plane's stride phases
//!         │                                                            (polyphase.rs) as one sweep
//!         └─ 1x1, stride 1 ───────────────────────────── pointwise.rs gemm (matmul.rs for few
//!                                                                      outputs) per pixel block
//! UpsampledConv (RVM's decode0: 3x3 of an x2 upsample and full-size
//! inputs) ── upsampled.rs ── winograd.rs at half resolution
//! ```
//!
//! Every output is biased and activated (`activation.rs`) by the task that
//! made it, while it is still in cache; a 1x1 layer ending a ResNet block
//! adds the residual and its ReLU there too, and a layer after a ReLU
//! (`relu_input`) takes it as it reads (Winograd's input transform) or
//! from a rectified copy. The products of `matmul.rs` read the weights in
//! panels laid out once, at load (`conv.rs`). The rest of RVM's CPU pass lives
//! here too: the bilinear resize (`bilinear.rs`), the decoder's halving
//! pool (`pool.rs`), the element-wise glue between layers
//! (`elementwise.rs`), and both halves of the deep guided filter
//! (`guided_filter.rs` fits its linear model at low resolution,
//! `guided_matte.rs` applies it at full size). Their loops are compiled for
//! the widest vector unit the CPU has (`simd.rs`'s `vectorized!` and
//! `lanes.rs`); `buffers.rs` holds what they share about memory.

mod activation;
mod bilinear;
mod buffers;
mod conv;
mod depthwise;
mod dispatch;
mod elementwise;
mod gemm;
mod guided_filter;
mod guided_matte;
mod lanes;
mod matmul;
mod narrow;
mod patches;
mod pointwise;
mod polyphase;
mod pool;
mod shifted;
#[cfg(test)]
pub(crate) mod test_util;
mod upsampled;
mod winograd;

pub use bilinear::{BilinearAddOp, BilinearOp};
pub(crate) use buffers::frames_planar;
pub use conv::ConvOp;
pub use elementwise::{
    cat_frames, BinaryOp, ChannelMeanOp, GruUpdateOp, ReluOp, ScaleChannelsOp, SensoryGateOp,
};
pub use guided_filter::{Dense, GuidedCoefficientsOp};
pub use guided_matte::GuidedMatteOp;
pub use pool::{AreaDownOp, HalvingPoolOp, MaxPool3x3S2Op};
pub(crate) use upsampled::UpsampledConv;
pub(crate) use winograd::Tile;
