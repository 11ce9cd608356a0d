//! Lite R-ASPP (MobileNetV3 paper, Fig. 10): a 1x1 projection of f4 gated by
//! a sigmoid of its global average. Keys: `aspp.aspp1`, `aspp.aspp2`.

use candle_core::Tensor;

use crate::ops::{self, Activation, BatchNorm, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

/// PyTorch's default; only the MobileNetV3 backbone itself uses 1e-3.
const BN_EPS: f64 = 1e-5;

pub struct LrAspp {
    project: Conv2d,
    gate: Conv2d,
}

impl LrAspp {
    pub fn load(w: &Weights, input: usize, out: usize) -> Result<Self> {
        let project = Conv2d::load(
            &w.pp("aspp1.0"),
            ConvSpec::new(input, out, 1),
            Some(BatchNorm {
                weights: &w.pp("aspp1.1"),
                eps: BN_EPS,
            }),
        )?
        .then(Activation::Relu);
        let gate = Conv2d::load_unbiased(&w.pp("aspp2.1"), ConvSpec::new(input, out, 1))?
            .then(Activation::Sigmoid);
        Ok(Self { project, gate })
    }

    pub fn forward(&self, f4: &Tensor) -> Result<Tensor> {
        let features = self.project.forward(f4)?;
        let gate = self.gate.forward(&ops::global_avg_pool(f4)?)?;
        ops::scale_channels(&features, &gate)
    }
}
