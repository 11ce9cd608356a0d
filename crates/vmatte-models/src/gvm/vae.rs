//! Stable Video Diffusion's VAE, diffusers' `AutoencoderKLTemporalDecoder`:
//! the plain 2-D SD encoder, and a decoder whose residual blocks and last
//! convolution also mix neighbouring frames. Paths are the checkpoint's keys.
//!
//! ```text
//! frames ─► Encoder (2-D) ─► quant_conv ─► mean ─► latent
//! latent ─► conv_in ─► mid (res, attn, res) ─► up x4 ─► conv_out ─► time_conv_out ─► frames
//!                      └──────── spatio-temporal residual blocks ────────┘   (3,1,1) over frames
//! ```

use candle_core::Tensor;
use serde::Deserialize;

use super::layers::{
    from_clips, to_clips, upsample_nearest, GroupNorm, Linear, ResBlockKind, ResnetBlock2D,
    SpatioTemporalResBlock, TemporalConv,
};
use crate::ops::{Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

/// `vae/config.json`, the fields the architecture depends on.
#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfig {
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub latent_channels: usize,
    #[serde(default = "sd_scaling")]
    pub scaling_factor: f64,
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
}

impl VaeConfig {
    /// The published model's VAE (SVD's temporal-decoder VAE).
    pub fn published() -> Self {
        Self {
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            scaling_factor: sd_scaling(),
            in_channels: 3,
            out_channels: 3,
        }
    }
}

fn sd_scaling() -> f64 {
    0.18215
}

fn three() -> usize {
    3
}

/// The single-head attention of the VAE's mid blocks, over all pixels of a
/// frame, group-normed and residual.
struct MidAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl MidAttention {
    fn load(w: &Weights, c: usize) -> Result<Self> {
        Ok(Self {
            group_norm: GroupNorm::load(&w.pp("group_norm"), c, 1e-6)?,
            to_q: Linear::load(&w.pp("to_q"), c, c)?,
            to_k: Linear::load(&w.pp("to_k"), c, c)?,
            to_v: Linear::load(&w.pp("to_v"), c, c)?,
            to_out: Linear::load(&w.pp("to_out.0"), c, c)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let tokens = self
            .group_norm
            .forward(x)?
            .reshape((n, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let out = super::layers::attention(
            &self.to_q.forward(&tokens)?,
            &self.to_k.forward(&tokens)?,
            &self.to_v.forward(&tokens)?,
            1,
        )?;
        let out = self
            .to_out
            .forward(&out)?
            .transpose(1, 2)?
            .reshape((n, c, h, w))?;
        Ok((out + x)?)
    }
}

pub struct Encoder {
    conv_in: Conv2d,
    /// Per level: residual blocks, then the stride-2 convolution (all but
    /// the last level).
    levels: Vec<(Vec<ResnetBlock2D>, Option<Conv2d>)>,
    mid: (ResnetBlock2D, MidAttention, ResnetBlock2D),
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Conv2d,
    latent_channels: usize,
}

impl Encoder {
    fn load(w: &Weights, quant: &Weights, cfg: &VaeConfig) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let mut prev = ch[0];
        let mut levels = Vec::with_capacity(n);
        for (i, &out) in ch.iter().enumerate() {
            let b = w.pp(format!("down_blocks.{i}"));
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    let in_c = if j == 0 { prev } else { out };
                    ResnetBlock2D::load(&b.pp(format!("resnets.{j}")), in_c, out, None, 1e-6)
                })
                .collect::<Result<_>>()?;
            let down = (i + 1 < n)
                .then(|| {
                    Conv2d::load(
                        &b.pp("downsamplers.0.conv"),
                        ConvSpec::new(out, out, 3).stride(2).padding(0),
                        None,
                    )
                })
                .transpose()?;
            levels.push((resnets, down));
            prev = out;
        }
        let last = ch[n - 1];
        let mid = w.pp("mid_block");
        let z2 = 2 * cfg.latent_channels;
        Ok(Self {
            conv_in: Conv2d::load(
                &w.pp("conv_in"),
                ConvSpec::new(cfg.in_channels, ch[0], 3),
                None,
            )?,
            levels,
            mid: (
                ResnetBlock2D::load(&mid.pp("resnets.0"), last, last, None, 1e-6)?,
                MidAttention::load(&mid.pp("attentions.0"), last)?,
                ResnetBlock2D::load(&mid.pp("resnets.1"), last, last, None, 1e-6)?,
            ),
            conv_norm_out: GroupNorm::load(&w.pp("conv_norm_out"), last, 1e-6)?,
            conv_out: Conv2d::load(&w.pp("conv_out"), ConvSpec::new(last, z2, 3), None)?,
            quant_conv: Conv2d::load(quant, ConvSpec::new(z2, z2, 1), None)?,
            latent_channels: cfg.latent_channels,
        })
    }

    /// Frames `[N, 3, H, W]` in [-1, 1] -> the latent distribution's
    /// moments `[N, 2·latent, H/8, W/8]` (mean, then log-variance).
    pub fn moments(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv_in.forward(x)?;
        for (resnets, down) in &self.levels {
            for r in resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(conv) = down {
                // SD pads right and bottom only before its stride-2 convs.
                x = conv.forward(&x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?)?;
            }
        }
        x = self.mid.0.forward(&x, None)?;
        x = self.mid.1.forward(&x)?;
        x = self.mid.2.forward(&x, None)?;
        let x = self
            .conv_out
            .forward(&self.conv_norm_out.forward(&x)?.silu()?)?;
        self.quant_conv.forward(&x)
    }

    /// The distribution's mode (its mean), unscaled.
    pub fn mean(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.moments(x)?.narrow(1, 0, self.latent_channels)?)
    }
}

pub struct TemporalDecoder {
    conv_in: Conv2d,
    mid_resnets: [SpatioTemporalResBlock; 2],
    mid_attention: MidAttention,
    up: Vec<(Vec<SpatioTemporalResBlock>, Option<Conv2d>)>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    time_conv_out: TemporalConv,
}

impl TemporalDecoder {
    fn load(w: &Weights, cfg: &VaeConfig) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let last = ch[n - 1];
        let kind = ResBlockKind {
            temb: None,
            eps: 1e-6,
            temporal_eps: 1e-5,
            switch_mix: true,
        };
        let mid = w.pp("mid_block");
        let mid_res = |j: usize| {
            SpatioTemporalResBlock::load(&mid.pp(format!("resnets.{j}")), last, last, kind)
        };
        let mut up = Vec::with_capacity(n);
        let mut prev = last;
        for (i, &out) in ch.iter().rev().enumerate() {
            let b = w.pp(format!("up_blocks.{i}"));
            let resnets = (0..cfg.layers_per_block + 1)
                .map(|j| {
                    let in_c = if j == 0 { prev } else { out };
                    SpatioTemporalResBlock::load(&b.pp(format!("resnets.{j}")), in_c, out, kind)
                })
                .collect::<Result<_>>()?;
            let upsample = (i + 1 < n)
                .then(|| Conv2d::load(&b.pp("upsamplers.0.conv"), ConvSpec::new(out, out, 3), None))
                .transpose()?;
            up.push((resnets, upsample));
            prev = out;
        }
        Ok(Self {
            conv_in: Conv2d::load(
                &w.pp("conv_in"),
                ConvSpec::new(cfg.latent_channels, last, 3),
                None,
            )?,
            mid_resnets: [mid_res(0)?, mid_res(1)?],
            mid_attention: MidAttention::load(&mid.pp("attentions.0"), last)?,
            up,
            conv_norm_out: GroupNorm::load(&w.pp("conv_norm_out"), ch[0], 1e-6)?,
            conv_out: Conv2d::load(
                &w.pp("conv_out"),
                ConvSpec::new(ch[0], cfg.out_channels, 3),
                None,
            )?,
            time_conv_out: TemporalConv::load(
                &w.pp("time_conv_out"),
                cfg.out_channels,
                cfg.out_channels,
            )?,
        })
    }

    /// `z` `[F, latent, h, w]`, one clip of F frames (they see each other
    /// through the temporal layers) -> `[F, 3, 8h, 8w]`.
    pub fn forward_traced(
        &self,
        z: &Tensor,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let frames = z.dim(0)?;
        let mut x = self.conv_in.forward(z)?;
        x = self.mid_resnets[0].forward(&x, None, frames)?;
        x = self.mid_attention.forward(&x)?;
        x = self.mid_resnets[1].forward(&x, None, frames)?;
        trace("decoder.mid_block", &x);
        for (i, (resnets, upsample)) in self.up.iter().enumerate() {
            for r in resnets {
                x = r.forward(&x, None, frames)?;
            }
            if let Some(conv) = upsample {
                let (_, _, h, w) = x.dims4()?;
                x = conv.forward(&upsample_nearest(&x, 2 * h, 2 * w)?)?;
            }
            trace(&format!("decoder.up_blocks.{i}"), &x);
        }
        let x = self
            .conv_out
            .forward(&self.conv_norm_out.forward(&x)?.silu()?)?;
        trace("decoder.conv_out", &x);
        let (_, _, h, w) = x.dims4()?;
        from_clips(&self.time_conv_out.forward(&to_clips(&x, frames)?)?, h, w)
    }
}

/// The VAE: [`Encoder`] plus [`TemporalDecoder`].
pub struct Vae {
    pub encoder: Encoder,
    pub decoder: TemporalDecoder,
    pub scaling_factor: f64,
}

impl Vae {
    pub fn load(w: &Weights, cfg: &VaeConfig) -> Result<Self> {
        Ok(Self {
            encoder: Encoder::load(&w.pp("encoder"), &w.pp("quant_conv"), cfg)?,
            decoder: TemporalDecoder::load(&w.pp("decoder"), cfg)?,
            scaling_factor: cfg.scaling_factor,
        })
    }

    /// Frames in [-1, 1] -> scaled latents (mean x scaling factor).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        Ok((self.encoder.mean(x)? * self.scaling_factor)?)
    }

    /// Unscaled latents of one clip -> frames.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward_traced(z, &mut |_, _| {})
    }
}
