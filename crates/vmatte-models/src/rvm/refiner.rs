//! Deep guided filter refiner: learns a local linear model `y = A·x + b` at
//! low resolution and applies it to the full-resolution frame.
//! Keys: `refiner.box_filter`, `refiner.conv`.

use candle_core::Tensor;

use crate::cpu::GuidedCoefficientsOp;
use crate::ops::{self, Activation, BatchNorm, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

const BN_EPS: f64 = 1e-5;

pub struct DeepGuidedFilterRefiner {
    box_filter: Conv2d,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    /// The box filter and the three layers fused, for f32 on the CPU.
    cpu: Option<GuidedCoefficientsOp>,
}

fn conv_bn_relu(w: &Weights, conv: &str, bn: &str, input: usize, out: usize) -> Result<Conv2d> {
    Ok(Conv2d::load(
        &w.pp(conv),
        ConvSpec::new(input, out, 1),
        Some(BatchNorm {
            weights: &w.pp(bn),
            eps: BN_EPS,
        }),
    )?
    .then(Activation::Relu))
}

impl DeepGuidedFilterRefiner {
    pub fn load(w: &Weights, hidden: usize) -> Result<Self> {
        // A learnt 3x3 box filter, one per channel (stored, init 1/9).
        let box_filter =
            Conv2d::load_unbiased(&w.pp("box_filter"), ConvSpec::new(4, 4, 3).depthwise())?;
        let conv1 = conv_bn_relu(w, "conv.0", "conv.1", 4 * 2 + hidden, hidden)?;
        let conv2 = conv_bn_relu(w, "conv.3", "conv.4", hidden, hidden)?;
        let conv3 = Conv2d::load(&w.pp("conv.6"), ConvSpec::new(hidden, 4, 1), None)?;
        let cpu = match (
            box_filter.dense()?,
            conv1.dense()?,
            conv2.dense()?,
            conv3.dense()?,
        ) {
            (Some(boxes), Some(l1), Some(l2), Some(l3)) => Some(GuidedCoefficientsOp {
                box_bias: [boxes.bias[0], boxes.bias[1], boxes.bias[2], boxes.bias[3]],
                box_taps: boxes.weight,
                layers: [l1, l2, l3],
            }),
            _ => None,
        };
        Ok(Self {
            box_filter,
            conv1,
            conv2,
            conv3,
            cpu,
        })
    }

    /// Returns RVM's full-size output `[fgr, pha]` (4 channels).
    pub fn forward(
        &self,
        fine_src: &Tensor,
        base_src: &Tensor,
        base_out: &Tensor,
        base_hid: &Tensor,
    ) -> Result<Tensor> {
        if let (Some(op), true) = (&self.cpu, ops::on_cpu_kernels(base_src)) {
            let ab = base_src.contiguous()?.apply_op3_no_bwd(
                &base_out.contiguous()?,
                &base_hid.contiguous()?,
                op,
            )?;
            return ops::guided_matte(&ab.narrow(1, 0, 4)?, &ab.narrow(1, 4, 4)?, fine_src);
        }
        let base_x = ops::guide(base_src)?;
        let boxed = |t: &Tensor| self.box_filter.forward(t);
        let mean_x = boxed(&base_x)?;
        let mean_y = boxed(base_out)?;
        let cov_xy = (boxed(&(&base_x * base_out)?)? - (&mean_x * &mean_y)?)?;
        let var_x = (boxed(&(&base_x * &base_x)?)? - (&mean_x * &mean_x)?)?;
        let a = self
            .conv1
            .forward(&ops::cat_channels(&[&cov_xy, &var_x, base_hid])?)?;
        let a = self.conv3.forward(&self.conv2.forward(&a)?)?;
        let b = (mean_y - (&a * &mean_x)?)?;
        ops::guided_matte(&a, &b, fine_src)
    }
}
