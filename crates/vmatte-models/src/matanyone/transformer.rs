//! The object transformer and the object summarizer (upstream
//! `model/transformer/`): a few object queries, seeded from the object
//! memory's summaries, read the pixels (attention masked to the object's
//! foreground for half the queries and its background for the other
//! half), and the pixels read the queries back.
//!
//! ```text
//! summaries ─► mean ─► query, query_pe ─┐
//! pixel ─► init proj ─► pixel ──────────┼─► [read_from_pixel ─► self_attn ─► ffn
//!      └─► emb proj + sine PE ─► pixel_pe┘     ─► read_from_query ─► pixel_ffn] x blocks ─► pixel
//! ```

use candle_core::{DType, Tensor, D};

use super::config::ModelConfig;
use super::modules::{conv, CaResBlock, LayerNorm, Linear};
use crate::ops::Conv2d;
use crate::weights::Weights;
use crate::Result;

/// The 2-D sine positional encoding (`PositionalEncoding`), channel-last
/// `(h·w, 2·dim)`: `dim` channels of x (sin, cos interleaved per
/// frequency) then `dim` of y, positions normalised to `[0, scale]`.
pub(super) fn sine_encoding(
    embed_dim: usize,
    (h, w): (usize, usize),
    scale: f32,
    temperature: f32,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let dim = embed_dim.div_ceil(4) * 2;
    let inv_freq: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / temperature.powf(i as f32 / dim as f32))
        .collect();
    let axis = |n: usize| -> Vec<f32> {
        let last = (n - 1) as f32 + 1e-6;
        let mut out = Vec::with_capacity(n * dim);
        for p in 0..n {
            let pos = p as f32 / last * scale;
            for f in &inv_freq {
                let a = pos * f;
                out.push(a.sin());
                out.push(a.cos());
            }
        }
        out
    };
    let (ex, ey) = (axis(w), axis(h));
    let mut emb = Vec::with_capacity(h * w * 2 * dim);
    for y in 0..h {
        for x in 0..w {
            emb.extend_from_slice(&ex[x * dim..(x + 1) * dim]);
            emb.extend_from_slice(&ey[y * dim..(y + 1) * dim]);
        }
    }
    Ok(Tensor::from_vec(emb, (h * w, 2 * dim), device)?)
}

/// `nn.MultiheadAttention` (batch first, one sequence).
struct Attention {
    heads: usize,
    in_proj: [Linear; 3],
    out_proj: Linear,
}

impl Attention {
    fn load(w: &Weights, dim: usize, heads: usize) -> Result<Self> {
        let weight = w.get("in_proj_weight", &[3 * dim, dim])?;
        let bias = w.get("in_proj_bias", &[3 * dim])?;
        let part = |i: usize| -> Result<Linear> {
            Linear::from_parts(
                w,
                &weight.narrow(0, i * dim, dim)?,
                &bias.narrow(0, i * dim, dim)?,
            )
        };
        Ok(Self {
            heads,
            in_proj: [part(0)?, part(1)?, part(2)?],
            out_proj: Linear::load(&w.pp("out_proj"), dim, dim)?,
        })
    }

    /// `q (L, E)`, `k`, `v (S, E)`; `blocked (heads·L·S)`, where true, is
    /// not attended.
    fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        blocked: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (l, e) = q.dims2()?;
        let s = k.dim(0)?;
        let d = e / self.heads;
        let split = |x: &Tensor, n: usize| -> Result<Tensor> {
            Ok(x.reshape((n, self.heads, d))?
                .transpose(0, 1)?
                .contiguous()?)
        };
        let q = (split(&self.in_proj[0].forward(q)?, l)? * (1.0 / (d as f64).sqrt()))?;
        let k = split(&self.in_proj[1].forward(k)?, s)?;
        let v = split(&self.in_proj[2].forward(v)?, s)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(bias) = blocked {
            scores = scores.broadcast_add(bias)?;
        }
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = attn.matmul(&v)?.transpose(0, 1)?.reshape((l, e))?;
        self.out_proj.forward(&out)
    }
}

/// `CrossAttention`/`SelfAttention` with PE added to the query and key
/// (the release's `add_pe_to_qkv = [True, True, False]` everywhere): the
/// residual is taken after the (optional) input norm.
struct PeAttention {
    attn: Attention,
    norm: Option<LayerNorm>,
}

impl PeAttention {
    fn load(w: &Weights, inner: &str, dim: usize, heads: usize, norm: bool) -> Result<Self> {
        Ok(Self {
            attn: Attention::load(&w.pp(inner), dim, heads)?,
            norm: norm
                .then(|| LayerNorm::load(&w.pp("norm"), dim))
                .transpose()?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mem: &Tensor,
        x_pe: &Tensor,
        mem_pe: &Tensor,
        blocked: Option<&Tensor>,
    ) -> Result<Tensor> {
        let x = match &self.norm {
            Some(n) => n.forward(x)?,
            None => x.clone(),
        };
        let q = (&x + x_pe)?;
        let k = (mem + mem_pe)?;
        Ok((&x + self.attn.forward(&q, &k, mem, blocked)?)?)
    }

    /// Self-attention: the memory is the normed input itself.
    fn forward_self(&self, x: &Tensor, pe: &Tensor) -> Result<Tensor> {
        let x = match &self.norm {
            Some(n) => n.forward(x)?,
            None => x.clone(),
        };
        let qk = (&x + pe)?;
        Ok((&x + self.attn.forward(&qk, &qk, &x, None)?)?)
    }
}

/// `FFN`: pre-norm MLP with a residual from before the norm.
struct Ffn {
    norm: LayerNorm,
    linear1: Linear,
    linear2: Linear,
}

impl Ffn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear1.forward(&self.norm.forward(x)?)?.relu()?;
        Ok((x + self.linear2.forward(&y)?)?)
    }
}

struct Block {
    read_from_pixel: PeAttention,
    self_attn: PeAttention,
    ffn: Ffn,
    read_from_query: PeAttention,
    pixel_ffn: CaResBlock,
}

impl Block {
    fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        let (e, h) = (c.embed_dim, c.num_heads);
        Ok(Self {
            read_from_pixel: PeAttention::load(&w.pp("read_from_pixel"), "cross_attn", e, h, true)?,
            self_attn: PeAttention::load(&w.pp("self_attn"), "self_attn", e, h, true)?,
            ffn: Ffn {
                norm: LayerNorm::load(&w.pp("ffn.norm"), e)?,
                linear1: Linear::load(&w.pp("ffn.linear1"), e, c.ff_dim)?,
                linear2: Linear::load(&w.pp("ffn.linear2"), c.ff_dim, e)?,
            },
            // The release builds it with output_norm False: no norm.
            read_from_query: PeAttention::load(
                &w.pp("read_from_query"),
                "cross_attn",
                e,
                h,
                false,
            )?,
            pixel_ffn: CaResBlock::load(&w.pp("pixel_ffn.conv"), e)?,
        })
    }

    /// `query (Q, E)`, `pixel (1, E, h, w)`, `pixel_pe (h·w, E)`.
    fn forward(
        &self,
        query: &Tensor,
        pixel: &Tensor,
        query_pe: &Tensor,
        pixel_pe: &Tensor,
        blocked: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (_, e, h, w) = pixel.dims4()?;
        let flat = pixel.reshape((e, h * w))?.t()?.contiguous()?;
        let x = self
            .read_from_pixel
            .forward(query, &flat, query_pe, pixel_pe, Some(blocked))?;
        let x = self.self_attn.forward_self(&x, query_pe)?;
        let x = self.ffn.forward(&x)?;
        let flat = self
            .read_from_query
            .forward(&flat, &x, pixel_pe, query_pe, None)?;
        let pixel = flat.t()?.contiguous()?.reshape((1, e, h, w))?;
        Ok((x, self.pixel_ffn.forward(&pixel)?))
    }
}

/// `QueryTransformer`.
pub(super) struct QueryTransformer {
    query_init: Tensor,
    query_emb: Tensor,
    summary_to_query_init: Linear,
    summary_to_query_emb: Linear,
    pixel_init_proj: Conv2d,
    pixel_emb_proj: Conv2d,
    blocks: Vec<Block>,
    /// `mask_pred[i]`: ReLU then a 1x1 convolution to one logit map; the
    /// last one's output is never read, so it is not loaded.
    mask_pred: Vec<Conv2d>,
    heads: usize,
    queries: usize,
    pe: (f32, f32),
}

impl QueryTransformer {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        let (e, q) = (c.embed_dim, c.num_queries);
        let blocks = (0..c.num_blocks)
            .map(|i| Block::load(&w.pp(format!("blocks.{i}")), c))
            .collect::<Result<_>>()?;
        let mask_pred = (0..c.num_blocks)
            .map(|i| conv(&w.pp(format!("mask_pred.{i}.1")), e, 1, 1))
            .collect::<Result<_>>()?;
        Ok(Self {
            query_init: w.finish(&w.get("query_init.weight", &[q, e])?)?,
            query_emb: w.finish(&w.get("query_emb.weight", &[q, e])?)?,
            summary_to_query_init: Linear::load(&w.pp("summary_to_query_init"), e, e)?,
            summary_to_query_emb: Linear::load(&w.pp("summary_to_query_emb"), e, e)?,
            pixel_init_proj: conv(&w.pp("pixel_init_proj"), e, e, 1)?,
            pixel_emb_proj: conv(&w.pp("pixel_emb_proj"), e, e, 1)?,
            blocks,
            mask_pred,
            heads: c.num_heads,
            queries: q,
            pe: (c.pe_scale, c.pe_temperature),
        })
    }

    /// `pixel (1, E, h, w)`, `summaries (Q, E + 1)` (running sums with the
    /// area in the last channel) → the pixel features `(1, E, h, w)`.
    pub(super) fn forward(&self, pixel: &Tensor, summaries: &Tensor) -> Result<Tensor> {
        let (_, e, h, w) = pixel.dims4()?;
        let sums = summaries.narrow(1, 0, e)?;
        let area = (summaries.narrow(1, e, 1)? + 1e-4)?;
        let values = sums.broadcast_div(&area)?;
        let query = (&self.query_init + self.summary_to_query_init.forward(&values)?)?;
        let query_pe = (&self.query_emb + self.summary_to_query_emb.forward(&values)?)?;

        let emb = self.pixel_emb_proj.forward(pixel)?;
        let emb = emb.reshape((e, h * w))?.t()?;
        let pe = sine_encoding(e, (h, w), self.pe.0, self.pe.1, pixel.device())?;
        let pixel_pe = (pe.to_dtype(emb.dtype())? + emb)?.contiguous()?;
        let mut pixel = self.pixel_init_proj.forward(pixel)?;
        let mut query = query;
        for (block, pred) in self.blocks.iter().zip(&self.mask_pred) {
            let logits = pred.forward(&pixel.relu()?)?;
            let blocked = self.attention_bias(&logits)?;
            (query, pixel) = block.forward(&query, &pixel, &query_pe, &pixel_pe, &blocked)?;
        }
        Ok(pixel)
    }

    /// `_get_aux_mask` as an additive bias `(heads, Q, h·w)`: the first half
    /// of the queries sees only the pixels where the object's logit is at
    /// least the background's, the second half only the others; a query
    /// that would see nothing sees everything.
    fn attention_bias(&self, logits: &Tensor) -> Result<Tensor> {
        let logits: Vec<f32> = logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let n = logits.len();
        // `aggregate`: [1 - p, p] clamped, as log-odds; the object is
        // foreground where its log-odds reach the maximum.
        let odds = |p: f32| {
            let p = p.clamp(1e-7, 1.0 - 1e-7);
            (p / (1.0 - p)).ln()
        };
        let fg: Vec<bool> = logits
            .iter()
            .map(|&x| {
                let p = 1.0 / (1.0 + (-x).exp());
                let (object, background) = (odds(p), odds(1.0 - p));
                object >= object.max(background)
            })
            .collect();
        let half = self.queries / 2;
        let any_fg = fg.iter().any(|&f| f);
        let any_bg = fg.iter().any(|&f| !f);
        let mut bias = Vec::with_capacity(self.queries * n);
        for q in 0..self.queries {
            let wants_fg = q < half;
            let open = if wants_fg { !any_fg } else { !any_bg };
            bias.extend(fg.iter().map(|&f| {
                if open || f == wants_fg {
                    0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
        let bias = Tensor::from_vec(bias, (1, self.queries, n), self.query_init.device())?;
        Ok(bias
            .to_dtype(self.query_init.dtype())?
            .repeat((self.heads, 1, 1))?)
    }
}

/// `ObjectSummarizer`: `num_summaries` weighted means of the mask value's
/// features, half weighted inside the mask and half outside, with their
/// total weights (areas) in the last channel: `(Q, E + 1)`.
pub(super) struct ObjectSummarizer {
    input_proj: Linear,
    feature_pred: [Linear; 2],
    weights_pred: [Linear; 2],
    summaries: usize,
    pe: (f32, f32),
    embed_dim: usize,
}

impl ObjectSummarizer {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        let e = c.embed_dim;
        Ok(Self {
            input_proj: Linear::load(&w.pp("input_proj"), c.value_dim, e)?,
            feature_pred: [
                Linear::load(&w.pp("feature_pred.0"), e, e)?,
                Linear::load(&w.pp("feature_pred.2"), e, e)?,
            ],
            weights_pred: [
                Linear::load(&w.pp("weights_pred.0"), e, e)?,
                Linear::load(&w.pp("weights_pred.2"), e, c.num_summaries)?,
            ],
            summaries: c.num_summaries,
            pe: (c.pe_scale, c.pe_temperature),
            embed_dim: e,
        })
    }

    /// `mask (1, 1, h, w)` already at the value's size; `value (1, C, h, w)`.
    pub(super) fn forward(&self, mask: &Tensor, value: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = value.dims4()?;
        let m = mask.reshape((h * w, 1))?;
        let inv = m.affine(-1.0, 1.0)?;
        let half = self.summaries / 2;
        let masks = Tensor::cat(&[m.repeat((1, half))?, inv.repeat((1, half))?], D::Minus1)?;
        let v = value.reshape((c, h * w))?.t()?.contiguous()?;
        let v = self.input_proj.forward(&v)?;
        let pe = sine_encoding(self.embed_dim, (h, w), self.pe.0, self.pe.1, v.device())?;
        let v = (v + pe.to_dtype(value.dtype())?)?;
        let feature = self.feature_pred[1].forward(&self.feature_pred[0].forward(&v)?.relu()?)?;
        let logits = self.weights_pred[1].forward(&self.weights_pred[0].forward(&v)?.relu()?)?;
        let weights = (candle_nn::ops::sigmoid(&logits)? * masks)?;
        let sums = weights.t()?.matmul(&feature)?;
        let area = weights.sum(0)?.unsqueeze(1)?;
        Ok(Tensor::cat(&[sums, area], 1)?)
    }
}
