//! ResNet-50 encoder (torchvision layout, layer4 dilated instead of strided),
//! the backbone of `rvm_resnet50`. Keys: `backbone.conv1`, `backbone.layerN`.

use candle_core::Tensor;

use super::WINOGRAD;
use crate::ops::{self, Activation, BatchNorm, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

const BN_EPS: f64 = 1e-5;

fn conv_bn(w: &Weights, conv: &str, bn: &str, spec: ConvSpec) -> Result<Conv2d> {
    Conv2d::load_winograd(
        &w.pp(conv),
        spec,
        Some(BatchNorm {
            weights: &w.pp(bn),
            eps: BN_EPS,
        }),
        WINOGRAD,
    )
}

/// Bottleneck v1.5: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand.
struct Bottleneck {
    reduce: Conv2d,
    spatial: Conv2d,
    expand: Conv2d,
    downsample: Option<Conv2d>,
}

impl Bottleneck {
    fn load(
        w: &Weights,
        input: usize,
        planes: usize,
        stride: usize,
        dilation: usize,
    ) -> Result<Self> {
        let out = planes * 4;
        let downsample = if stride != 1 || input != out {
            Some(conv_bn(
                w,
                "downsample.0",
                "downsample.1",
                ConvSpec::new(input, out, 1).stride(stride),
            )?)
        } else {
            None
        };
        Ok(Self {
            reduce: conv_bn(w, "conv1", "bn1", ConvSpec::new(input, planes, 1))?
                .then(Activation::Relu),
            spatial: conv_bn(
                w,
                "conv2",
                "bn2",
                ConvSpec::new(planes, planes, 3)
                    .stride(stride)
                    .dilation(dilation),
            )?
            .then(Activation::Relu),
            expand: conv_bn(w, "conv3", "bn3", ConvSpec::new(planes, out, 1))?,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.reduce.forward(x)?;
        let y = self.spatial.forward(&y)?;
        let y = self.expand.forward(&y)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        ops::add_relu(&y, &identity)
    }
}

struct Layer(Vec<Bottleneck>);

impl Layer {
    /// torchvision's `_make_layer`: with `dilate`, the stride becomes a
    /// dilation, but the first block still runs at the previous dilation.
    fn load(
        w: &Weights,
        input: usize,
        planes: usize,
        blocks: usize,
        stride: usize,
        dilate: bool,
    ) -> Result<Self> {
        let (first_stride, first_dilation, dilation) = if dilate {
            (1, 1, stride)
        } else {
            (stride, 1, 1)
        };
        let mut layer = vec![Bottleneck::load(
            &w.pp("0"),
            input,
            planes,
            first_stride,
            first_dilation,
        )?];
        for i in 1..blocks {
            layer.push(Bottleneck::load(
                &w.pp(i.to_string()),
                planes * 4,
                planes,
                1,
                dilation,
            )?);
        }
        Ok(Self(layer))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.iter().try_fold(x.clone(), |x, b| b.forward(&x))
    }
}

pub struct ResNet50Encoder {
    stem: Conv2d,
    layers: [Layer; 4],
}

impl ResNet50Encoder {
    /// Channels of f1..f4.
    pub const CHANNELS: [usize; 4] = [64, 256, 512, 2048];

    pub fn load(w: &Weights) -> Result<Self> {
        Ok(Self {
            stem: conv_bn(w, "conv1", "bn1", ConvSpec::new(3, 64, 7).stride(2))?
                .then(Activation::Relu),
            layers: [
                Layer::load(&w.pp("layer1"), 64, 64, 3, 1, false)?,
                Layer::load(&w.pp("layer2"), 256, 128, 4, 2, false)?,
                Layer::load(&w.pp("layer3"), 512, 256, 6, 2, false)?,
                Layer::load(&w.pp("layer4"), 1024, 512, 3, 2, true)?,
            ],
        })
    }

    /// `x` in [0, 1], not normalised (RVM trains ResNet-50 that way);
    /// returns f1 (1/2), f2 (1/4), f3 (1/8), f4 (1/16).
    pub fn forward(&self, x: &Tensor) -> Result<[Tensor; 4]> {
        let f1 = self.stem.forward(x)?;
        // 3x3/2 max pool with padding 1: the input is post-ReLU (>= 0), so
        // zero padding never wins the max and equals PyTorch's -inf padding.
        let pooled = f1
            .pad_with_zeros(2, 1, 1)?
            .pad_with_zeros(3, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        let f2 = self.layers[0].forward(&pooled)?;
        let f3 = self.layers[1].forward(&f2)?;
        let f4 = self.layers[3].forward(&self.layers[2].forward(&f3)?)?;
        Ok([f1, f2, f3, f4])
    }
}
