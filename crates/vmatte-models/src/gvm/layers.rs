//! The layers Stable Video Diffusion's UNet and temporal VAE share: norms,
//! linear maps, attention that stays within memory, GEGLU feed-forwards,
//! sinusoidal embeddings, and the spatio-temporal residual block with its
//! alpha blender. Tensors are frames-in-batch, `[B*F, C, H, W]`, as in
//! diffusers; the temporal pieces regroup them per clip.

use candle_core::{DType, Device, Tensor, D};

use crate::ops::{Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

/// Norms, softmax and embeddings run in f32 whatever the model's dtype, as
/// PyTorch's autocast does: their sums lose too much in f16.
fn f32_param(w: &Weights, name: &str, shape: &[usize]) -> Result<Tensor> {
    Ok(w.get(name, shape)?.to_device(w.device())?)
}

/// `nn.GroupNorm`: statistics over each group's channels and every position
/// after them (frames too, for 5-D temporal inputs).
#[derive(Clone, Debug)]
pub struct GroupNorm {
    groups: usize,
    eps: f64,
    gamma: Tensor,
    beta: Tensor,
}

impl GroupNorm {
    pub fn load(w: &Weights, channels: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            groups: 32,
            eps,
            gamma: f32_param(w, "weight", &[channels])?,
            beta: f32_param(w, "bias", &[channels])?,
        })
    }

    /// `x` is `[N, C, ...]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (n, c) = (dims[0], dims[1]);
        let dtype = x.dtype();
        let g = x.to_dtype(DType::F32)?.reshape((n, self.groups, ()))?;
        let mean = g.mean_keepdim(2)?;
        let centred = g.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(2)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let mut param_shape = vec![1usize; dims.len()];
        param_shape[1] = c;
        let y = normed
            .reshape(dims.as_slice())?
            .broadcast_mul(&self.gamma.reshape(param_shape.as_slice())?)?
            .broadcast_add(&self.beta.reshape(param_shape.as_slice())?)?;
        Ok(y.to_dtype(dtype)?)
    }
}

/// `nn.LayerNorm` over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    pub fn load(w: &Weights, dim: usize) -> Result<Self> {
        Ok(Self {
            gamma: f32_param(w, "weight", &[dim])?,
            beta: f32_param(w, "bias", &[dim])?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let y = centred
            .broadcast_div(&(var + 1e-5)?.sqrt()?)?
            .broadcast_mul(&self.gamma)?
            .broadcast_add(&self.beta)?;
        Ok(y.to_dtype(dtype)?)
    }
}

/// `nn.Linear` over the last dimension of any input.
#[derive(Clone, Debug)]
pub struct Linear {
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = w.finish(&w.get("weight", &[out_dim, in_dim])?)?;
        let bias = if w.contains("bias") {
            Some(w.finish(&w.get("bias", &[out_dim])?)?)
        } else {
            None
        };
        Ok(Self {
            weight_t: weight.t()?,
            bias,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight_t)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        *out.last_mut().expect("at least one dimension") = y.dim(1)?;
        Ok(y.reshape(out)?)
    }
}

/// Query elements times key elements one attention slice may hold. Full
/// self-attention at 1024x576 is 9,216 tokens a frame: the scores of one
/// 8-frame window would be 13 GB in f32, so queries are taken in slices.
fn score_budget(device: &Device) -> usize {
    if device.is_cpu() {
        1 << 24
    } else {
        1 << 27
    }
}

/// Scaled dot-product attention of `q` `[N, Lq, heads*d]` over `k`, `v`
/// `[N, Lk, heads*d]`, in slices of queries so the scores stay within
/// [`score_budget`]; the softmax runs in f32.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    let (n, lq, inner) = q.dims3()?;
    let lk = k.dim(1)?;
    let d = inner / heads;
    let split = |x: &Tensor, l: usize| -> Result<Tensor> {
        Ok(x.reshape((n, l, heads, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((n * heads, l, d))?)
    };
    let scale = 1.0 / (d as f64).sqrt();
    let q = (split(q, lq)? * scale)?;
    let kt = split(k, lk)?.t()?;
    let v = split(v, lk)?;
    let rows = (score_budget(q.device()) / (n * heads * lk).max(1)).clamp(1, lq);
    let mut parts = Vec::with_capacity(lq.div_ceil(rows));
    for start in (0..lq).step_by(rows) {
        let len = rows.min(lq - start);
        let qs = q.narrow(1, start, len)?;
        let scores = qs.matmul(&kt)?.to_dtype(DType::F32)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        parts.push(probs.matmul(&v)?);
    }
    let out = if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Tensor::cat(&parts, 1)?
    };
    Ok(out
        .reshape((n, heads, lq, d))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n, lq, inner))?)
}

/// diffusers' `Attention` as self-attention: bias-free (UNet) or biased
/// (VAE) projections, then `to_out.0`.
#[derive(Clone, Debug)]
pub struct SelfAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl SelfAttention {
    pub fn load(w: &Weights, dim: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            to_q: Linear::load(&w.pp("to_q"), dim, dim)?,
            to_k: Linear::load(&w.pp("to_k"), dim, dim)?,
            to_v: Linear::load(&w.pp("to_v"), dim, dim)?,
            to_out: Linear::load(&w.pp("to_out.0"), dim, dim)?,
            heads,
        })
    }

    /// `x` is `[N, L, dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = attention(
            &self.to_q.forward(x)?,
            &self.to_k.forward(x)?,
            &self.to_v.forward(x)?,
            self.heads,
        )?;
        self.to_out.forward(&out)
    }
}

/// Cross-attention to GVM's context, which is always zeros of length one:
/// its keys and values are exactly zero (`to_k`/`to_v` have no bias, and a
/// merged LoRA keeps them zero), so the softmax averages zero vectors and
/// the block's output is `to_out.0`'s bias on every token. Only that bias
/// is loaded; `norm2` and the projections cannot change the result.
#[derive(Clone, Debug)]
pub struct ZeroContextCrossAttention {
    out_bias: Tensor,
}

impl ZeroContextCrossAttention {
    pub fn load(w: &Weights, dim: usize) -> Result<Self> {
        Ok(Self {
            out_bias: w.finish(&w.get("to_out.0.bias", &[dim])?)?,
        })
    }

    /// The residual `x + attn2(norm2(x), zeros)`.
    pub fn add_to(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_add(&self.out_bias)?)
    }
}

/// `FeedForward` with GEGLU: `proj` to twice the inner width, the first
/// half gated by the exact-erf GELU of the second, then `net.2`.
#[derive(Clone, Debug)]
pub struct GegluFeedForward {
    proj: Linear,
    out: Linear,
    inner: usize,
}

impl GegluFeedForward {
    pub fn load(w: &Weights, dim: usize, dim_out: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj: Linear::load(&w.pp("net.0.proj"), dim, 2 * inner)?,
            out: Linear::load(&w.pp("net.2"), inner, dim_out)?,
            inner,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.proj.forward(x)?;
        let value = h.narrow(D::Minus1, 0, self.inner)?;
        let gate = h.narrow(D::Minus1, self.inner, self.inner)?;
        self.out.forward(&(value * gate.gelu_erf()?)?)
    }
}

/// diffusers' `Timesteps(dim, flip_sin_to_cos=True, shift=0)`:
/// `[cos(t·w_k), sin(t·w_k)]`, `w_k = exp(-ln(10000)·k/(dim/2))`, computed in
/// f32 with PyTorch's order of operations (f64 would differ by 1e-5).
pub fn sinusoidal_embedding(timesteps: &[f32], dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let ln = -(10000f64.ln() as f32);
    let freqs: Vec<f32> = (0..half)
        .map(|k| (ln * k as f32 / half as f32).exp())
        .collect();
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        out.extend(freqs.iter().map(|w| (t * w).cos()));
        out.extend(freqs.iter().map(|w| (t * w).sin()));
    }
    Ok(Tensor::from_vec(out, (timesteps.len(), dim), device)?)
}

/// `TimestepEmbedding`: linear, SiLU, linear.
#[derive(Clone, Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn load(w: &Weights, in_dim: usize, hidden: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::load(&w.pp("linear_1"), in_dim, hidden)?,
            linear_2: Linear::load(&w.pp("linear_2"), hidden, out_dim)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.silu()?)
    }
}

/// Nearest-neighbour resize to an explicit size, PyTorch's rule: source
/// index `floor(dst · in/out)` in f32. The UNet needs explicit sizes
/// because its latents halve to odd sizes (9 -> 5 -> 3 upsamples to 5,
/// not 6).
pub fn upsample_nearest(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, ih, iw) = x.dims4()?;
    let index = |input: usize, output: usize| -> Result<Tensor> {
        let scale = input as f32 / output as f32;
        let idx: Vec<u32> = (0..output)
            .map(|d| ((d as f32 * scale).floor() as usize).min(input - 1) as u32)
            .collect();
        Ok(Tensor::from_vec(idx, output, x.device())?)
    };
    let x = x.index_select(&index(ih, h)?, 2)?;
    Ok(x.index_select(&index(iw, w)?, 3)?)
}

/// A kernel (3, 1, 1) convolution over frames with zero padding in time,
/// as one matrix product: `[B, C, F, HW]` in, `[B, out, F, HW]` out.
#[derive(Clone, Debug)]
pub struct TemporalConv {
    /// `[out, C·3]`, tap index fastest, as Conv3d stores it.
    weight: Tensor,
    bias: Tensor,
}

impl TemporalConv {
    pub fn load(w: &Weights, in_c: usize, out_c: usize) -> Result<Self> {
        let weight = w.get("weight", &[out_c, in_c, 3, 1, 1])?;
        Ok(Self {
            weight: w.finish(&weight.reshape((out_c, in_c * 3))?)?,
            bias: w.finish(&w.get("bias", &[out_c])?)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, hw) = x.dims4()?;
        let padded = x.pad_with_zeros(2, 1, 1)?;
        let taps = [0, 1, 2]
            .iter()
            .map(|&k| padded.narrow(2, k, f))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let stacked = Tensor::stack(&taps, 2)?.reshape((b, c * 3, f * hw))?;
        let out_c = self.weight.dim(0)?;
        // One plain matrix product per clip (GVM has one): a broadcast
        // batch of weights would be a stride-0 batch on the GPU.
        let clips = (0..b)
            .map(|i| self.weight.matmul(&stacked.get(i)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let y = Tensor::stack(&clips, 0)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, out_c, 1))?)?
            .reshape((b, out_c, f, hw))?)
    }
}

/// `[B*F, C, H, W]` -> `[B, C, F, H*W]`, the layout of the temporal layers.
pub fn to_clips(x: &Tensor, frames: usize) -> Result<Tensor> {
    let (bf, c, h, w) = x.dims4()?;
    Ok(x.reshape((bf / frames, frames, c, h * w))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// The inverse of [`to_clips`].
pub fn from_clips(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, c, f, _) = x.dims4()?;
    Ok(x.transpose(1, 2)?.contiguous()?.reshape((b * f, c, h, w))?)
}

type Layer<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

/// The body both residual blocks share: norm, SiLU, conv, the projected
/// time embedding added per channel (`[N, C]` to dims 2 and 3), norm, SiLU,
/// conv.
fn residual_body(
    x: &Tensor,
    [norm1, norm2]: [&GroupNorm; 2],
    [conv1, conv2]: [Layer; 2],
    time: Option<(&Linear, &Tensor)>,
) -> Result<Tensor> {
    let h = conv1(&norm1.forward(x)?.silu()?)?;
    let h = match time {
        Some((proj, t)) => {
            let t = proj.forward(&t.silu()?)?;
            h.broadcast_add(&t.unsqueeze(2)?.unsqueeze(3)?)?
        }
        None => h,
    };
    conv2(&norm2.forward(&h)?.silu()?)
}

/// `ResnetBlock2D` (pre-norm, SiLU, optional time embedding added after the
/// first convolution, 1x1 shortcut when the width changes).
#[derive(Clone, Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn load(
        w: &Weights,
        in_c: usize,
        out_c: usize,
        temb: Option<usize>,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::load(&w.pp("norm1"), in_c, eps)?,
            conv1: Conv2d::load(&w.pp("conv1"), ConvSpec::new(in_c, out_c, 3), None)?,
            time_emb_proj: temb
                .map(|t| Linear::load(&w.pp("time_emb_proj"), t, out_c))
                .transpose()?,
            norm2: GroupNorm::load(&w.pp("norm2"), out_c, eps)?,
            conv2: Conv2d::load(&w.pp("conv2"), ConvSpec::new(out_c, out_c, 3), None)?,
            conv_shortcut: (in_c != out_c)
                .then(|| Conv2d::load(&w.pp("conv_shortcut"), ConvSpec::new(in_c, out_c, 1), None))
                .transpose()?,
        })
    }

    /// `temb` is `[B*F, T]` (or `[1, T]`, shared by every frame).
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let h = residual_body(
            x,
            [&self.norm1, &self.norm2],
            [&|t| self.conv1.forward(t), &|t| self.conv2.forward(t)],
            self.time_emb_proj.as_ref().zip(temb),
        )?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        Ok((skip + h)?)
    }
}

/// `TemporalResnetBlock`: the same shape of block with (3, 1, 1)
/// convolutions over frames, on `[B, C, F, HW]`.
#[derive(Clone, Debug)]
pub struct TemporalResnetBlock {
    norm1: GroupNorm,
    conv1: TemporalConv,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: TemporalConv,
}

impl TemporalResnetBlock {
    pub fn load(w: &Weights, c: usize, temb: Option<usize>, eps: f64) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::load(&w.pp("norm1"), c, eps)?,
            conv1: TemporalConv::load(&w.pp("conv1"), c, c)?,
            time_emb_proj: temb
                .map(|t| Linear::load(&w.pp("time_emb_proj"), t, c))
                .transpose()?,
            norm2: GroupNorm::load(&w.pp("norm2"), c, eps)?,
            conv2: TemporalConv::load(&w.pp("conv2"), c, c)?,
        })
    }

    /// `temb` is one row per clip, `[B, T]` (every frame has the same).
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let h = residual_body(
            x,
            [&self.norm1, &self.norm2],
            [&|t| self.conv1.forward(t), &|t| self.conv2.forward(t)],
            self.time_emb_proj.as_ref().zip(temb),
        )?;
        Ok((x + h)?)
    }
}

/// `AlphaBlender` reduced to its weight: `a·spatial + (1-a)·temporal`, with
/// `a = sigmoid(mix_factor)` in the UNet ("learned_with_images", no image-only
/// frames) and `a = 1 - sigmoid(mix_factor)` in the VAE ("learned" with the
/// switch).
#[derive(Clone, Copy, Debug)]
pub struct AlphaBlender {
    spatial_weight: f32,
}

impl AlphaBlender {
    pub fn load(w: &Weights, switch: bool) -> Result<Self> {
        let m = w.get("mix_factor", &[1])?.to_vec1::<f32>()?[0];
        let s = 1.0 / (1.0 + (-m).exp());
        Ok(Self {
            spatial_weight: if switch { 1.0 - s } else { s },
        })
    }

    pub fn mix(&self, spatial: &Tensor, temporal: &Tensor) -> Result<Tensor> {
        let a = f64::from(self.spatial_weight);
        let b = f64::from(1.0 - self.spatial_weight);
        Ok(((spatial * a)? + (temporal * b)?)?)
    }
}

/// `SpatioTemporalResBlock`: a 2-D residual block per frame, then a
/// temporal one across frames, blended.
#[derive(Clone, Debug)]
pub struct SpatioTemporalResBlock {
    spatial: ResnetBlock2D,
    temporal: TemporalResnetBlock,
    mixer: AlphaBlender,
}

/// How a [`SpatioTemporalResBlock`] is built: the UNet's, or the VAE
/// decoder's (no time embedding, its own temporal eps, switched blender).
#[derive(Clone, Copy, Debug)]
pub struct ResBlockKind {
    pub temb: Option<usize>,
    pub eps: f64,
    pub temporal_eps: f64,
    pub switch_mix: bool,
}

impl SpatioTemporalResBlock {
    pub fn load(w: &Weights, in_c: usize, out_c: usize, kind: ResBlockKind) -> Result<Self> {
        Ok(Self {
            spatial: ResnetBlock2D::load(
                &w.pp("spatial_res_block"),
                in_c,
                out_c,
                kind.temb,
                kind.eps,
            )?,
            temporal: TemporalResnetBlock::load(
                &w.pp("temporal_res_block"),
                out_c,
                kind.temb,
                kind.temporal_eps,
            )?,
            mixer: AlphaBlender::load(&w.pp("time_mixer"), kind.switch_mix)?,
        })
    }

    /// `x` `[B*F, C, H, W]`; `temb` one row per clip `[B, T]` or none.
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>, frames: usize) -> Result<Tensor> {
        let (bf, _, h, w) = x.dims4()?;
        let per_frame = temb
            .map(|t| -> Result<Tensor> {
                let (b, d) = t.dims2()?;
                Ok(t.unsqueeze(1)?
                    .broadcast_as((b, bf / b, d))?
                    .reshape((bf, d))?)
            })
            .transpose()?;
        let spatial = self.spatial.forward(x, per_frame.as_ref())?;
        let clips = to_clips(&spatial, frames)?;
        let temporal = self.temporal.forward(&clips, temb)?;
        from_clips(&self.mixer.mix(&clips, &temporal)?, h, w)
    }
}
