//! MobileNetV3-Large encoder (torchvision layout, last stage dilated), the
//! backbone of `rvm_mobilenetv3`. Keys: `backbone.features.N...`.

use candle_core::Tensor;

use crate::ops::{self, Activation, BatchNorm, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

const BN_EPS: f64 = 1e-3;
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// One inverted-residual block of the MobileNetV3 paper's Table 1.
struct BlockSpec {
    input: usize,
    kernel: usize,
    expanded: usize,
    out: usize,
    squeeze_excite: bool,
    act: Activation,
    stride: usize,
    dilation: usize,
}

#[allow(clippy::too_many_arguments)] // one row of the paper's table
const fn block(
    input: usize,
    kernel: usize,
    expanded: usize,
    out: usize,
    squeeze_excite: bool,
    act: Activation,
    stride: usize,
    dilation: usize,
) -> BlockSpec {
    BlockSpec {
        input,
        kernel,
        expanded,
        out,
        squeeze_excite,
        act,
        stride,
        dilation,
    }
}

use Activation::{Hardswish as HS, Relu as RE};

/// features[1..=15]; RVM dilates the last stage instead of striding it, so
/// f4 stays at 1/16 of the input.
const BLOCKS: [BlockSpec; 15] = [
    block(16, 3, 16, 16, false, RE, 1, 1),
    block(16, 3, 64, 24, false, RE, 2, 1),
    block(24, 3, 72, 24, false, RE, 1, 1),
    block(24, 5, 72, 40, true, RE, 2, 1),
    block(40, 5, 120, 40, true, RE, 1, 1),
    block(40, 5, 120, 40, true, RE, 1, 1),
    block(40, 3, 240, 80, false, HS, 2, 1),
    block(80, 3, 200, 80, false, HS, 1, 1),
    block(80, 3, 184, 80, false, HS, 1, 1),
    block(80, 3, 184, 80, false, HS, 1, 1),
    block(80, 3, 480, 112, true, HS, 1, 1),
    block(112, 3, 672, 112, true, HS, 1, 1),
    block(112, 5, 672, 160, true, HS, 1, 2),
    block(160, 5, 960, 160, true, HS, 1, 2),
    block(160, 5, 960, 160, true, HS, 1, 2),
];

/// `Conv2d` + `BatchNorm2d` stored as `<w>.0` and `<w>.1`.
fn conv_bn(w: &Weights, spec: ConvSpec) -> Result<Conv2d> {
    Conv2d::load(
        &w.pp("0"),
        spec,
        Some(BatchNorm {
            weights: &w.pp("1"),
            eps: BN_EPS,
        }),
    )
}

/// Squeeze-and-excitation: channel weights from the global average.
struct SqueezeExcite {
    fc1: Conv2d,
    fc2: Conv2d,
}

impl SqueezeExcite {
    fn load(w: &Weights, channels: usize) -> Result<Self> {
        let squeezed = make_divisible(channels / 4, 8);
        Ok(Self {
            fc1: Conv2d::load(&w.pp("fc1"), ConvSpec::new(channels, squeezed, 1), None)?
                .then(Activation::Relu),
            fc2: Conv2d::load(&w.pp("fc2"), ConvSpec::new(squeezed, channels, 1), None)?
                .then(Activation::Hardsigmoid),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = ops::global_avg_pool(x)?;
        let s = self.fc2.forward(&self.fc1.forward(&s)?)?;
        ops::scale_channels(x, &s)
    }
}

/// torchvision's `_make_divisible`: round to a multiple of `divisor`, never
/// below 90% of the value.
fn make_divisible(v: usize, divisor: usize) -> usize {
    let rounded = ((v + divisor / 2) / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * v as f64 {
        rounded + divisor
    } else {
        rounded
    }
}

struct InvertedResidual {
    expand: Option<Conv2d>,
    depthwise: Conv2d,
    squeeze_excite: Option<SqueezeExcite>,
    project: Conv2d,
    residual: bool,
}

impl InvertedResidual {
    fn load(w: &Weights, b: &BlockSpec) -> Result<Self> {
        // Sub-modules are numbered in order; the expansion is absent when
        // it would not change the channel count.
        let mut index = 0;
        let mut next = || {
            index += 1;
            w.pp((index - 1).to_string())
        };
        let expand = if b.expanded != b.input {
            Some(conv_bn(&next(), ConvSpec::new(b.input, b.expanded, 1))?.then(b.act))
        } else {
            None
        };
        let dw = ConvSpec::new(b.expanded, b.expanded, b.kernel)
            .stride(b.stride)
            .dilation(b.dilation)
            .depthwise();
        let depthwise = conv_bn(&next(), dw)?.then(b.act);
        let squeeze_excite = if b.squeeze_excite {
            Some(SqueezeExcite::load(&next(), b.expanded)?)
        } else {
            None
        };
        let project = conv_bn(&next(), ConvSpec::new(b.expanded, b.out, 1))?;
        Ok(Self {
            expand,
            depthwise,
            squeeze_excite,
            project,
            residual: b.stride == 1 && b.input == b.out,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some(expand) = &self.expand {
            y = expand.forward(&y)?;
        }
        y = self.depthwise.forward(&y)?;
        if let Some(se) = &self.squeeze_excite {
            y = se.forward(&y)?;
        }
        y = self.project.forward(&y)?;
        if self.residual {
            ops::add(&y, x)
        } else {
            Ok(y)
        }
    }
}

pub struct MobileNetV3LargeEncoder {
    stem: Conv2d,
    blocks: Vec<InvertedResidual>,
    head: Conv2d,
    mean: Tensor,
    std: Tensor,
}

impl MobileNetV3LargeEncoder {
    /// Channels of f1..f4.
    pub const CHANNELS: [usize; 4] = [16, 24, 40, 960];

    pub fn load(w: &Weights) -> Result<Self> {
        let f = w.pp("features");
        let stem = conv_bn(&f.pp("0"), ConvSpec::new(3, 16, 3).stride(2))?.then(HS);
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(i, b)| InvertedResidual::load(&f.pp(format!("{}.block", i + 1)), b))
            .collect::<Result<_>>()?;
        let head = conv_bn(&f.pp("16"), ConvSpec::new(160, 960, 1))?.then(HS);
        let stat = |v: [f32; 3]| -> Result<Tensor> {
            w.finish(&Tensor::from_slice(
                &v,
                (1, 3, 1, 1),
                &candle_core::Device::Cpu,
            )?)
        };
        Ok(Self {
            stem,
            blocks,
            head,
            mean: stat(IMAGENET_MEAN)?,
            std: stat(IMAGENET_STD)?,
        })
    }

    /// `x` in [0, 1]; returns f1 (1/2), f2 (1/4), f3 (1/8), f4 (1/16).
    pub fn forward(&self, x: &Tensor) -> Result<[Tensor; 4]> {
        let x = x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        let mut x = self.stem.forward(&x)?;
        let mut taps = Vec::with_capacity(4);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            // features 1, 3 and 6 end the 1/2, 1/4 and 1/8 stages.
            if matches!(i + 1, 1 | 3 | 6) {
                taps.push(x.clone());
            }
        }
        taps.push(self.head.forward(&x)?);
        Ok(taps.try_into().expect("four feature maps"))
    }
}
