//! The ResNet trunks of MatAnyone's two encoders (upstream
//! `model/utils/resnet.py`): torchvision's layout up to `layer3` (stride
//! 16), BasicBlocks for ResNet-18 and Bottlenecks for ResNet-50, with
//! BatchNorm folded into each convolution at load. The stem is left to the
//! encoders: the pixel encoder takes RGB, the mask encoder RGB + mask.

use candle_core::Tensor;

use super::config::Backbone;
use crate::ops::{Activation, BatchNorm, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

const BN_EPS: f64 = 1e-5;

/// `<conv>` with the BatchNorm `<bn>` folded in.
pub(super) fn conv_bn(w: &Weights, conv: &str, bn: &str, spec: ConvSpec) -> Result<Conv2d> {
    Conv2d::load_winograd(
        &w.pp(conv),
        spec,
        Some(BatchNorm {
            weights: &w.pp(bn),
            eps: BN_EPS,
        }),
        super::WINOGRAD,
    )
}

enum Block {
    /// conv3x3 (stride) → conv3x3, plus the identity or a strided 1x1.
    Basic {
        conv1: Conv2d,
        conv2: Conv2d,
        downsample: Option<Conv2d>,
    },
    /// 1x1 reduce → 3x3 (stride) → 1x1 expand, plus the identity.
    Bottleneck {
        conv1: Conv2d,
        conv2: Conv2d,
        conv3: Conv2d,
        downsample: Option<Conv2d>,
    },
}

impl Block {
    fn load(
        w: &Weights,
        kind: Backbone,
        input: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let out = planes * kind.expansion();
        let downsample = (stride != 1 || input != out)
            .then(|| {
                conv_bn(
                    w,
                    "downsample.0",
                    "downsample.1",
                    ConvSpec::new(input, out, 1).stride(stride),
                )
            })
            .transpose()?;
        Ok(match kind {
            Backbone::Resnet18 => Self::Basic {
                conv1: conv_bn(
                    w,
                    "conv1",
                    "bn1",
                    ConvSpec::new(input, planes, 3).stride(stride),
                )?
                .then(Activation::Relu),
                conv2: conv_bn(w, "conv2", "bn2", ConvSpec::new(planes, planes, 3))?,
                downsample,
            },
            Backbone::Resnet50 => Self::Bottleneck {
                conv1: conv_bn(w, "conv1", "bn1", ConvSpec::new(input, planes, 1))?
                    .then(Activation::Relu),
                conv2: conv_bn(
                    w,
                    "conv2",
                    "bn2",
                    ConvSpec::new(planes, planes, 3).stride(stride),
                )?
                .then(Activation::Relu),
                conv3: conv_bn(w, "conv3", "bn3", ConvSpec::new(planes, out, 1))?,
                downsample,
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let downsample = match self {
            Self::Basic { downsample, .. } | Self::Bottleneck { downsample, .. } => downsample,
        };
        let identity = match downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        // The last convolution makes the join (a 1x1 on the CPU as it
        // writes its outputs).
        match self {
            Self::Basic { conv1, conv2, .. } => {
                conv2.forward_add_relu(&conv1.forward(x)?, &identity)
            }
            Self::Bottleneck {
                conv1,
                conv2,
                conv3,
                ..
            } => conv3.forward_add_relu(&conv2.forward(&conv1.forward(x)?)?, &identity),
        }
    }
}

/// One `layerN`: its blocks in order, the first carrying the stride.
pub(super) struct Layer(Vec<Block>);

impl Layer {
    pub(super) fn load(
        w: &Weights,
        kind: Backbone,
        input: usize,
        planes: usize,
        stride: usize,
        count: usize,
    ) -> Result<Self> {
        let mut blocks = vec![Block::load(&w.pp("0"), kind, input, planes, stride)?];
        for i in 1..count {
            let input = planes * kind.expansion();
            blocks.push(Block::load(&w.pp(i.to_string()), kind, input, planes, 1)?);
        }
        Ok(Self(blocks))
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.iter().try_fold(x.clone(), |x, b| b.forward(&x))
    }
}

/// `layer1`..`layer3` of a trunk, named as `names` in the checkpoint (the
/// pixel encoder calls its first one `res2`): strides 4, 8 and 16.
pub(super) struct Trunk {
    layers: [Layer; 3],
}

impl Trunk {
    pub(super) fn load(w: &Weights, kind: Backbone, names: [&str; 3]) -> Result<Self> {
        let (e, n) = (kind.expansion(), kind.blocks_per_layer());
        Ok(Self {
            layers: [
                Layer::load(&w.pp(names[0]), kind, 64, 64, 1, n[0])?,
                Layer::load(&w.pp(names[1]), kind, 64 * e, 128, 2, n[1])?,
                Layer::load(&w.pp(names[2]), kind, 128 * e, 256, 2, n[2])?,
            ],
        })
    }

    /// f4, f8, f16 from the pooled stem.
    pub(super) fn forward(&self, x: &Tensor) -> Result<[Tensor; 3]> {
        let f4 = self.layers[0].forward(x)?;
        let f8 = self.layers[1].forward(&f4)?;
        let f16 = self.layers[2].forward(&f8)?;
        Ok([f4, f8, f16])
    }
}
