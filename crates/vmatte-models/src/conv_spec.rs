//! What a convolution layer is, apart from its weights: how it slides over
//! its input ([`ConvSpec`]) and the pointwise function that follows it
//! ([`Activation`]), as candle tensor ops. A leaf: the layers (`ops`) and
//! the CPU kernels (`cpu`, which also runs the activations inside its
//! convolutions) both take these from here.

use candle_core::Tensor;

use crate::Result;

/// How a convolution slides over its input.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvSpec {
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: kernel / 2,
            dilation: 1,
            groups: 1,
        }
    }

    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// Dilation with the "same" padding that keeps the spatial size.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self.padding = (self.kernel - 1) / 2 * dilation;
        self
    }

    pub fn depthwise(mut self) -> Self {
        self.groups = self.in_channels;
        self
    }

    /// A plain 1x1: kernel 1, stride 1, no padding (any grouping).
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    /// One group per channel, in and out.
    pub(crate) fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// `(O, C/groups, K, K)`: the shape of the layer's weights.
    pub(crate) fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel,
            self.kernel,
        ]
    }
}

/// The pointwise function that follows a convolution. On the CPU it runs
/// inside the convolution kernel, while the outputs are still in cache,
/// instead of as a pass of its own over memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    /// `relu6(x + 3) / 6`, MobileNetV3's cheap sigmoid.
    Hardsigmoid,
    /// `x * hardsigmoid(x)`.
    Hardswish,
    Sigmoid,
    Tanh,
}

impl Activation {
    /// The function over a tensor, as candle computes it: what the CPU
    /// kernels' in-place forms (`cpu::activation`) are held to.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Identity => x.clone(),
            Self::Relu => x.relu()?,
            Self::Hardsigmoid => hardsigmoid(x)?,
            Self::Hardswish => (x * hardsigmoid(x)?)?,
            Self::Sigmoid => candle_nn::ops::sigmoid(x)?,
            Self::Tanh => x.tanh()?,
        })
    }
}

fn hardsigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(((x + 3.0)?.clamp(0f32, 6f32)? / 6.0)?)
}
