//! GVM's spatio-temporal UNet: diffusers' `UNetSpatioTemporalConditionModel`
//! without the added-time-ids branch (GVM conditions on the image latent
//! alone). Paths are the checkpoint's keys.
//!
//! ```text
//! [latent, rgb_latent] ─► conv_in ─► down x4 ─► mid ─► up x4 ─► norm, SiLU, conv_out ─► latent
//!       t=999 ─► time_proj ─► time_embedding ─┴──── every residual block ────┘
//! ```

use std::collections::HashMap;

use candle_core::Tensor;
use serde::Deserialize;

use super::layers::{
    sinusoidal_embedding, upsample_nearest, GegluFeedForward, GroupNorm, LayerNorm, Linear,
    ResBlockKind, SelfAttention, SpatioTemporalResBlock, TimestepEmbedding,
    ZeroContextCrossAttention,
};
use crate::ops::{Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::{Error, Result};

/// `unet/config.json`, the fields the architecture depends on. diffusers
/// accepts a number or one per block for the counts; both are read.
#[derive(Clone, Debug, Deserialize)]
pub struct UnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(deserialize_with = "same_for_every_block")]
    pub layers_per_block: usize,
    #[serde(default = "one", deserialize_with = "same_for_every_block")]
    pub transformer_layers_per_block: usize,
    #[serde(deserialize_with = "per_block")]
    pub num_attention_heads: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(usize),
    Many(Vec<usize>),
}

/// A number, or a list of one number per block.
fn per_block<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<usize>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        // Expanded to the block count in `UnetConfig::check`.
        OneOrMany::One(n) => vec![n],
        OneOrMany::Many(v) => v,
    })
}

/// A number, or a list whose entries are all the same.
fn same_for_every_block<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<usize, D::Error> {
    match OneOrMany::deserialize(d)? {
        OneOrMany::One(n) => Ok(n),
        OneOrMany::Many(v) if !v.is_empty() && v.iter().all(|&x| x == v[0]) => Ok(v[0]),
        OneOrMany::Many(v) => Err(serde::de::Error::custom(format!(
            "per-block counts {v:?} differ; vmatte supports the same count in every block"
        ))),
    }
}

impl UnetConfig {
    /// The published model's UNet (SVD-XT sizes, 1.52 B parameters).
    pub fn published() -> Self {
        Self {
            in_channels: 8,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            transformer_layers_per_block: 1,
            num_attention_heads: vec![5, 10, 20, 20],
            down_block_types: [
                "CrossAttnDownBlockSpatioTemporal",
                "CrossAttnDownBlockSpatioTemporal",
                "CrossAttnDownBlockSpatioTemporal",
                "DownBlockSpatioTemporal",
            ]
            .map(String::from)
            .to_vec(),
            up_block_types: [
                "UpBlockSpatioTemporal",
                "CrossAttnUpBlockSpatioTemporal",
                "CrossAttnUpBlockSpatioTemporal",
                "CrossAttnUpBlockSpatioTemporal",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn check(&mut self) -> Result<()> {
        let n = self.block_out_channels.len();
        if self.num_attention_heads.len() == 1 {
            self.num_attention_heads = vec![self.num_attention_heads[0]; n];
        }
        let down_ok = self.down_block_types.iter().enumerate().all(|(i, t)| {
            t == if i + 1 < n {
                "CrossAttnDownBlockSpatioTemporal"
            } else {
                "DownBlockSpatioTemporal"
            }
        });
        let up_ok = self.up_block_types.iter().enumerate().all(|(i, t)| {
            t == if i == 0 {
                "UpBlockSpatioTemporal"
            } else {
                "CrossAttnUpBlockSpatioTemporal"
            }
        });
        if !down_ok || !up_ok || self.num_attention_heads.len() != n || n < 2 {
            return Err(Error::Invalid(format!(
                "unet/config.json describes a UNet vmatte does not know ({:?} / {:?}); GVM's is SVD's spatio-temporal UNet",
                self.down_block_types, self.up_block_types
            )));
        }
        Ok(())
    }
}

/// The spatial `BasicTransformerBlock`: self-attention, the zero-context
/// cross-attention, GEGLU feed-forward, each pre-normed and residual.
struct SpatialBlock {
    norm1: LayerNorm,
    attn1: SelfAttention,
    attn2: ZeroContextCrossAttention,
    norm3: LayerNorm,
    ff: GegluFeedForward,
}

impl SpatialBlock {
    fn load(w: &Weights, dim: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::load(&w.pp("norm1"), dim)?,
            attn1: SelfAttention::load(&w.pp("attn1"), dim, heads)?,
            attn2: ZeroContextCrossAttention::load(&w.pp("attn2"), dim)?,
            norm3: LayerNorm::load(&w.pp("norm3"), dim)?,
            ff: GegluFeedForward::load(&w.pp("ff"), dim, dim)?,
        })
    }

    /// `x` `[B*F, HW, C]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (self.attn1.forward(&self.norm1.forward(x)?)? + x)?;
        let x = self.attn2.add_to(&x)?;
        Ok((self.ff.forward(&self.norm3.forward(&x)?)? + x)?)
    }
}

/// `TemporalBasicTransformerBlock`: every pixel attends across the frames
/// of its clip.
struct TemporalBlock {
    norm_in: LayerNorm,
    ff_in: GegluFeedForward,
    norm1: LayerNorm,
    attn1: SelfAttention,
    attn2: ZeroContextCrossAttention,
    norm3: LayerNorm,
    ff: GegluFeedForward,
}

impl TemporalBlock {
    fn load(w: &Weights, dim: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            norm_in: LayerNorm::load(&w.pp("norm_in"), dim)?,
            ff_in: GegluFeedForward::load(&w.pp("ff_in"), dim, dim)?,
            norm1: LayerNorm::load(&w.pp("norm1"), dim)?,
            attn1: SelfAttention::load(&w.pp("attn1"), dim, heads)?,
            attn2: ZeroContextCrossAttention::load(&w.pp("attn2"), dim)?,
            norm3: LayerNorm::load(&w.pp("norm3"), dim)?,
            ff: GegluFeedForward::load(&w.pp("ff"), dim, dim)?,
        })
    }

    /// `x` `[B*F, S, C]` in and out; inside, `[B*S, F, C]`.
    fn forward(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        let (bf, s, c) = x.dims3()?;
        let b = bf / frames;
        let x = x
            .reshape((b, frames, s, c))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * s, frames, c))?;
        let x = (self.ff_in.forward(&self.norm_in.forward(&x)?)? + &x)?;
        let x = (self.attn1.forward(&self.norm1.forward(&x)?)? + &x)?;
        let x = self.attn2.add_to(&x)?;
        let x = (self.ff.forward(&self.norm3.forward(&x)?)? + &x)?;
        Ok(x.reshape((b, s, frames, c))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((bf, s, c))?)
    }
}

/// `TransformerSpatioTemporalModel`: spatial blocks per frame, temporal
/// blocks per pixel with a frame-position embedding, blended.
struct SpatioTemporalTransformer {
    norm: GroupNorm,
    proj_in: Linear,
    spatial: Vec<SpatialBlock>,
    temporal: Vec<TemporalBlock>,
    time_pos_embed: TimestepEmbedding,
    mixer: super::layers::AlphaBlender,
    proj_out: Linear,
    channels: usize,
}

impl SpatioTemporalTransformer {
    fn load(w: &Weights, channels: usize, heads: usize, layers: usize) -> Result<Self> {
        let blocks = |name: &str| w.pp(name);
        Ok(Self {
            norm: GroupNorm::load(&w.pp("norm"), channels, 1e-6)?,
            proj_in: Linear::load(&w.pp("proj_in"), channels, channels)?,
            spatial: (0..layers)
                .map(|i| {
                    SpatialBlock::load(
                        &blocks("transformer_blocks").pp(i.to_string()),
                        channels,
                        heads,
                    )
                })
                .collect::<Result<_>>()?,
            temporal: (0..layers)
                .map(|i| {
                    TemporalBlock::load(
                        &blocks("temporal_transformer_blocks").pp(i.to_string()),
                        channels,
                        heads,
                    )
                })
                .collect::<Result<_>>()?,
            time_pos_embed: TimestepEmbedding::load(
                &w.pp("time_pos_embed"),
                channels,
                4 * channels,
                channels,
            )?,
            mixer: super::layers::AlphaBlender::load(&w.pp("time_mixer"), false)?,
            proj_out: Linear::load(&w.pp("proj_out"), channels, channels)?,
            channels,
        })
    }

    fn forward(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        let (bf, c, h, w) = x.dims4()?;
        let tokens = self
            .norm
            .forward(x)?
            .permute((0, 2, 3, 1))?
            .reshape((bf, h * w, c))?;
        let mut hidden = self.proj_in.forward(&tokens)?;
        // Frame k of every clip gets the embedding of position k.
        let positions: Vec<f32> = (0..bf).map(|i| (i % frames) as f32).collect();
        let pos =
            sinusoidal_embedding(&positions, self.channels, x.device())?.to_dtype(x.dtype())?;
        let pos = self.time_pos_embed.forward(&pos)?.unsqueeze(1)?;
        for (spatial, temporal) in self.spatial.iter().zip(&self.temporal) {
            hidden = spatial.forward(&hidden)?;
            let mixed = temporal.forward(&hidden.broadcast_add(&pos)?, frames)?;
            hidden = self.mixer.mix(&hidden, &mixed)?;
        }
        let out = self
            .proj_out
            .forward(&hidden)?
            .reshape((bf, h, w, c))?
            .permute((0, 3, 1, 2))?;
        Ok((out + x)?)
    }
}

/// A down or up block: residual blocks, each followed by a transformer in
/// the cross-attention kinds, then the resampler.
struct Block {
    resnets: Vec<SpatioTemporalResBlock>,
    attentions: Vec<SpatioTemporalTransformer>,
    resample: Option<Conv2d>,
}

impl Block {
    fn forward_res(&self, i: usize, x: &Tensor, temb: &Tensor, frames: usize) -> Result<Tensor> {
        let x = self.resnets[i].forward(x, Some(temb), frames)?;
        match self.attentions.get(i) {
            Some(attn) => attn.forward(&x, frames),
            None => Ok(x),
        }
    }
}

pub struct Unet {
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    time_channels: usize,
    down: Vec<Block>,
    mid_resnets: [SpatioTemporalResBlock; 2],
    mid_attention: SpatioTemporalTransformer,
    up: Vec<Block>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Unet {
    pub fn load(w: &Weights, cfg: &UnetConfig) -> Result<Self> {
        let mut cfg = cfg.clone();
        cfg.check()?;
        let cfg = &cfg;
        let ch = &cfg.block_out_channels;
        let heads = &cfg.num_attention_heads;
        let n = ch.len();
        let temb = 4 * ch[0];
        let tl = cfg.transformer_layers_per_block;
        let kind = |eps: f64| ResBlockKind {
            temb: Some(temb),
            eps,
            temporal_eps: eps,
            switch_mix: false,
        };
        let mut down = Vec::with_capacity(n);
        let mut prev = ch[0];
        for (i, &out) in ch.iter().enumerate() {
            let w = w.pp(format!("down_blocks.{i}"));
            let cross = i + 1 < n;
            // diffusers gives the attention blocks' resnets eps 1e-6 and the
            // last, attention-free block 1e-5.
            let eps = if cross { 1e-6 } else { 1e-5 };
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    let in_c = if j == 0 { prev } else { out };
                    SpatioTemporalResBlock::load(
                        &w.pp(format!("resnets.{j}")),
                        in_c,
                        out,
                        kind(eps),
                    )
                })
                .collect::<Result<_>>()?;
            let attentions = if cross {
                (0..cfg.layers_per_block)
                    .map(|j| {
                        SpatioTemporalTransformer::load(
                            &w.pp(format!("attentions.{j}")),
                            out,
                            heads[i],
                            tl,
                        )
                    })
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            let resample = (i + 1 < n)
                .then(|| {
                    Conv2d::load(
                        &w.pp("downsamplers.0.conv"),
                        ConvSpec::new(out, out, 3).stride(2),
                        None,
                    )
                })
                .transpose()?;
            down.push(Block {
                resnets,
                attentions,
                resample,
            });
            prev = out;
        }
        let last = ch[n - 1];
        let mid = w.pp("mid_block");
        let mid_res = |j: usize| {
            SpatioTemporalResBlock::load(&mid.pp(format!("resnets.{j}")), last, last, kind(1e-5))
        };
        let mid_resnets = [mid_res(0)?, mid_res(1)?];
        let mid_attention =
            SpatioTemporalTransformer::load(&mid.pp("attentions.0"), last, heads[n - 1], tl)?;

        let mut up = Vec::with_capacity(n);
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let rev_heads: Vec<usize> = heads.iter().rev().copied().collect();
        let mut prev_out = rev[0];
        let layers = cfg.layers_per_block + 1;
        for i in 0..n {
            let w = w.pp(format!("up_blocks.{i}"));
            let out = rev[i];
            let skip_in = rev[(i + 1).min(n - 1)];
            let cross = i > 0;
            let resnets = (0..layers)
                .map(|j| {
                    let res_skip = if j == layers - 1 { skip_in } else { out };
                    let in_c = if j == 0 { prev_out } else { out };
                    SpatioTemporalResBlock::load(
                        &w.pp(format!("resnets.{j}")),
                        in_c + res_skip,
                        out,
                        kind(1e-6),
                    )
                })
                .collect::<Result<_>>()?;
            let attentions = if cross {
                (0..layers)
                    .map(|j| {
                        SpatioTemporalTransformer::load(
                            &w.pp(format!("attentions.{j}")),
                            out,
                            rev_heads[i],
                            tl,
                        )
                    })
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            let resample = (i + 1 < n)
                .then(|| Conv2d::load(&w.pp("upsamplers.0.conv"), ConvSpec::new(out, out, 3), None))
                .transpose()?;
            up.push(Block {
                resnets,
                attentions,
                resample,
            });
            prev_out = out;
        }
        Ok(Self {
            conv_in: Conv2d::load(
                &w.pp("conv_in"),
                ConvSpec::new(cfg.in_channels, ch[0], 3),
                None,
            )?,
            time_embedding: TimestepEmbedding::load(&w.pp("time_embedding"), ch[0], temb, temb)?,
            time_channels: ch[0],
            down,
            mid_resnets,
            mid_attention,
            up,
            conv_norm_out: GroupNorm::load(&w.pp("conv_norm_out"), ch[0], 1e-5)?,
            conv_out: Conv2d::load(
                &w.pp("conv_out"),
                ConvSpec::new(ch[0], cfg.out_channels, 3),
                None,
            )?,
        })
    }

    /// The time embedding of `t` (GVM always uses 999), `[1, 4·C0]`.
    pub fn time_embedding(&self, t: f32, like: &Tensor) -> Result<Tensor> {
        let proj = sinusoidal_embedding(&[t], self.time_channels, like.device())?
            .to_dtype(like.dtype())?;
        self.time_embedding.forward(&proj)
    }

    /// `sample` `[B, F, C_in, h, w]` at timestep `t` -> `[B, F, C_out, h, w]`.
    pub fn forward(&self, sample: &Tensor, t: f32) -> Result<Tensor> {
        self.forward_traced(sample, t, &mut |_, _| {})
    }

    /// [`Unet::forward`], handing each block's output to `trace` under
    /// diffusers' module name (what the parity fixtures record).
    pub fn forward_traced(
        &self,
        sample: &Tensor,
        t: f32,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let (b, frames, c, h, w) = sample.dims5()?;
        let temb = self.time_embedding(t, sample)?;
        let temb = temb.broadcast_as((b, temb.dim(1)?))?.contiguous()?;
        let mut x = self
            .conv_in
            .forward(&sample.reshape((b * frames, c, h, w))?)?;
        trace("conv_in", &x);
        let mut skips = vec![x.clone()];
        for (i, block) in self.down.iter().enumerate() {
            for j in 0..block.resnets.len() {
                x = block.forward_res(j, &x, &temb, frames)?;
                skips.push(x.clone());
            }
            if let Some(down) = &block.resample {
                x = down.forward(&x)?;
                skips.push(x.clone());
            }
            trace(&format!("down_blocks.{i}"), &x);
        }
        x = self.mid_resnets[0].forward(&x, Some(&temb), frames)?;
        x = self.mid_attention.forward(&x, frames)?;
        x = self.mid_resnets[1].forward(&x, Some(&temb), frames)?;
        trace("mid_block", &x);
        for (i, block) in self.up.iter().enumerate() {
            for j in 0..block.resnets.len() {
                let skip = skips.pop().expect("a skip per up-block resnet");
                x = block.forward_res(j, &Tensor::cat(&[&x, &skip], 1)?, &temb, frames)?;
            }
            if let Some(conv) = &block.resample {
                // To the next skip's size: 2x, or less where a halving
                // rounded up.
                let (_, _, sh, sw) = skips.last().expect("skips remain").dims4()?;
                x = conv.forward(&upsample_nearest(&x, sh, sw)?)?;
            }
            trace(&format!("up_blocks.{i}"), &x);
        }
        let x = self.conv_norm_out.forward(&x)?.silu()?;
        let x = self.conv_out.forward(&x)?;
        trace("conv_out", &x);
        let (_, co, _, _) = x.dims4()?;
        Ok(x.reshape((b, frames, co, h, w))?)
    }
}

/// Named activations recorded by a traced forward.
pub type Trace = HashMap<String, Tensor>;

#[cfg(test)]
mod tests {
    use super::UnetConfig;

    const BLOCKS: &str = r#""in_channels": 8, "out_channels": 4, "block_out_channels": [32, 32, 64, 64],
        "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
        "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"]"#;

    fn parse(extra: &str) -> Result<UnetConfig, String> {
        let mut cfg: UnetConfig =
            serde_json::from_str(&format!("{{{BLOCKS}, {extra}}}")).map_err(|e| e.to_string())?;
        cfg.check().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn counts_are_numbers_or_one_per_block() {
        let a = parse(r#""layers_per_block": 2, "num_attention_heads": 4"#).unwrap();
        assert_eq!((a.layers_per_block, a.num_attention_heads), (2, vec![4; 4]));
        let b = parse(r#""layers_per_block": [2, 2, 2, 2], "num_attention_heads": [1, 2, 2, 4], "transformer_layers_per_block": [1, 1, 1, 1]"#).unwrap();
        assert_eq!(
            (b.layers_per_block, b.num_attention_heads),
            (2, vec![1, 2, 2, 4])
        );
        let bad =
            parse(r#""layers_per_block": [1, 2, 2, 2], "num_attention_heads": 4"#).unwrap_err();
        assert!(
            bad.contains("per-block counts [1, 2, 2, 2] differ"),
            "{bad}"
        );
    }
}
