//! The small blocks MatAnyone is built from (upstream `model/modules.py`,
//! `group_modules.py`, `channel_attn.py`). vmatte runs one object, so the
//! upstream "group" (per-object) tensors `(B, objects, C, H, W)` are plain
//! `(1, C, H, W)` here and a GConv2d is a Conv2d.

use candle_core::{Module, Tensor};

use crate::ops::{self, Activation, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

/// `nn.Linear` on the last axis.
pub(super) struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    pub(super) fn load(w: &Weights, input: usize, output: usize) -> Result<Self> {
        Ok(Self {
            weight_t: w.finish(&w.get("weight", &[output, input])?.t()?.contiguous()?)?,
            bias: w.finish(&w.get("bias", &[output])?)?,
        })
    }

    /// A linear layer from a slice of a fused projection (attention's
    /// `in_proj_weight`).
    pub(super) fn from_parts(w: &Weights, weight: &Tensor, bias: &Tensor) -> Result<Self> {
        Ok(Self {
            weight_t: w.finish(&weight.t()?.contiguous()?)?,
            bias: w.finish(bias)?,
        })
    }

    /// `x (..., N, input)` → `(..., N, output)`.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_matmul(&self.weight_t)?
            .broadcast_add(&self.bias)?)
    }
}

/// `nn.LayerNorm` over the last axis (eps 1e-5).
pub(super) struct LayerNorm(candle_nn::LayerNorm);

impl LayerNorm {
    pub(super) fn load(w: &Weights, dim: usize) -> Result<Self> {
        Ok(Self(candle_nn::LayerNorm::new(
            w.finish(&w.get("weight", &[dim])?)?,
            w.finish(&w.get("bias", &[dim])?)?,
            1e-5,
        )))
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.0.forward(x)?)
    }
}

/// A convolution with a bias and the "same" padding.
pub(super) fn conv(w: &Weights, input: usize, output: usize, kernel: usize) -> Result<Conv2d> {
    Conv2d::load_winograd(
        w,
        ConvSpec::new(input, output, kernel),
        None,
        super::WINOGRAD,
    )
}

/// Channel attention residual block (`CAResBlock`): two 3x3 convolutions
/// after ReLUs, each channel scaled by a sigmoid of a 1-D convolution over
/// the channels' means (ECA), plus the input.
pub(super) struct CaResBlock {
    conv1: Conv2d,
    conv2: Conv2d,
    /// The 1-D kernel across channels, odd length, no bias.
    eca: Vec<f32>,
}

impl CaResBlock {
    pub(super) fn load(w: &Weights, dim: usize) -> Result<Self> {
        let t = (((dim as f64).log2().abs() + 1.0) / 2.0).floor() as usize;
        let k = if t % 2 == 1 { t } else { t + 1 };
        Ok(Self {
            // The ReLU before conv1 is taken as conv1 reads its input (the
            // block's input feeds the residual as it is), the one before
            // conv2 is conv1's activation: conv1's output feeds nothing else.
            conv1: conv(&w.pp("conv1"), dim, dim, 3)?
                .after_relu()
                .then(Activation::Relu),
            conv2: conv(&w.pp("conv2"), dim, dim, 3)?,
            eca: w.get("conv.weight", &[1, 1, k])?.flatten_all()?.to_vec1()?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv2.forward(&self.conv1.forward(x)?)?;
        let means: Vec<f32> = ops::global_avg_pool(&y)?.flatten_all()?.to_vec1()?;
        let (c, k) = (means.len(), self.eca.len());
        let half = (k - 1) / 2;
        let gate: Vec<f32> = (0..c)
            .map(|i| {
                let mut s = 0f32;
                for (j, wj) in self.eca.iter().enumerate() {
                    if let Some(m) = (i + j).checked_sub(half).and_then(|at| means.get(at)) {
                        s += wj * m;
                    }
                }
                1.0 / (1.0 + (-s).exp())
            })
            .collect();
        let gate = Tensor::from_vec(gate, (1, c, 1, 1), y.device())?.to_dtype(y.dtype())?;
        ops::add(&ops::scale_channels(&y, &gate)?, x)
    }
}

/// `GroupResBlock`: two 3x3 convolutions after ReLUs, plus the input (by a
/// 1x1 convolution where the width changes).
pub(super) struct ResBlock {
    conv1: Conv2d,
    conv2: Conv2d,
    downsample: Option<Conv2d>,
}

impl ResBlock {
    pub(super) fn load(w: &Weights, input: usize, output: usize) -> Result<Self> {
        Ok(Self {
            // As CaResBlock's: conv1 takes its ReLU as it reads, conv2's
            // is conv1's activation.
            conv1: conv(&w.pp("conv1"), input, output, 3)?
                .after_relu()
                .then(Activation::Relu),
            conv2: conv(&w.pp("conv2"), output, output, 3)?,
            downsample: (input != output)
                .then(|| conv(&w.pp("downsample"), input, output, 1))
                .transpose()?,
        })
    }

    pub(super) fn forward(&self, g: &Tensor) -> Result<Tensor> {
        let y = self.conv2.forward(&self.conv1.forward(g)?)?;
        let skip = match &self.downsample {
            Some(d) => d.forward(g)?,
            None => g.clone(),
        };
        ops::add(&y, &skip)
    }
}

/// `GroupFeatureFusionBlock`: `x_transform(x) + g_transform(g)`, then two
/// channel-attention blocks.
pub(super) struct FeatureFusion {
    x_transform: Conv2d,
    g_transform: Conv2d,
    block1: CaResBlock,
    block2: CaResBlock,
}

impl FeatureFusion {
    pub(super) fn load(w: &Weights, x_dim: usize, g_dim: usize, out: usize) -> Result<Self> {
        Ok(Self {
            x_transform: conv(&w.pp("distributor.x_transform"), x_dim, out, 1)?,
            g_transform: conv(&w.pp("distributor.g_transform"), g_dim, out, 1)?,
            block1: CaResBlock::load(&w.pp("block1"), out)?,
            block2: CaResBlock::load(&w.pp("block2"), out)?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, g: &Tensor) -> Result<Tensor> {
        let g = ops::add(&self.x_transform.forward(x)?, &self.g_transform.forward(g)?)?;
        self.block2.forward(&self.block1.forward(&g)?)
    }
}

/// `MaskUpsampleBlock`: the coarser map upsampled x2, plus the skip
/// feature, through a [`ResBlock`].
pub(super) struct UpsampleBlock {
    out_conv: ResBlock,
}

impl UpsampleBlock {
    pub(super) fn load(w: &Weights, input: usize, output: usize) -> Result<Self> {
        Ok(Self {
            out_conv: ResBlock::load(&w.pp("out_conv"), input, output)?,
        })
    }

    pub(super) fn forward(&self, g: &Tensor, skip: &Tensor) -> Result<Tensor> {
        self.out_conv.forward(&ops::up2_add(g, skip)?)
    }
}

/// `SensoryDeepUpdater`: the mask encoder's update of the sensory memory.
pub(super) struct SensoryDeepUpdater {
    transform: Conv2d,
}

impl SensoryDeepUpdater {
    pub(super) fn load(w: &Weights, f_dim: usize, sensory_dim: usize) -> Result<Self> {
        Ok(Self {
            transform: conv(&w.pp("transform"), f_dim + sensory_dim, sensory_dim * 3, 3)?,
        })
    }

    pub(super) fn forward(&self, g: &Tensor, h: &Tensor) -> Result<Tensor> {
        ops::sensory_gate(h, &self.transform.forward_cat(&[g, h])?)
    }
}

/// `SensoryUpdater_fullscale`: the decoder's update of the sensory memory
/// from its maps at every stride (each area-pooled to stride 16).
pub(super) struct SensoryUpdater {
    /// g16, g8, g4, g2, g1 convolutions.
    convs: [Conv2d; 5],
    transform: Conv2d,
}

impl SensoryUpdater {
    pub(super) fn load(
        w: &Weights,
        g_dims: [usize; 5],
        mid: usize,
        sensory: usize,
    ) -> Result<Self> {
        let c = |name: &str, dim: usize| conv(&w.pp(name), dim, mid, 1);
        Ok(Self {
            convs: [
                c("g16_conv", g_dims[0])?,
                c("g8_conv", g_dims[1])?,
                c("g4_conv", g_dims[2])?,
                c("g2_conv", g_dims[3])?,
                c("g1_conv", g_dims[4])?,
            ],
            transform: conv(&w.pp("transform"), mid + sensory, sensory * 3, 3)?,
        })
    }

    /// `gs`: the maps at strides 16, 8, 4, 2, 1.
    pub(super) fn forward(&self, gs: [&Tensor; 5], h: &Tensor) -> Result<Tensor> {
        let mut g = self.convs[0].forward(gs[0])?;
        for (i, (conv, x)) in self.convs.iter().zip(gs).enumerate().skip(1) {
            g = ops::add(&g, &conv.forward(&ops::area_down(x, 1 << i)?)?)?;
        }
        ops::sensory_gate(h, &self.transform.forward_cat(&[&g, h])?)
    }
}
