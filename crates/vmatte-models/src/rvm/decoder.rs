//! The recurrent decoder: a U-Net decoder whose blocks keep half their
//! channels in a ConvGRU, so the matte of frame t sees frames < t.
//! Keys: `decoder.decode4` .. `decoder.decode0`.

use candle_core::Tensor;

use super::WINOGRAD;
use crate::ops::{self, Activation, BatchNorm, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

/// The decoder's BatchNorms follow PyTorch's default, whatever the backbone.
const BN_EPS: f64 = 1e-5;

fn conv3x3_bn_relu(w: &Weights, conv: &str, bn: &str, input: usize, out: usize) -> Result<Conv2d> {
    Ok(Conv2d::load_winograd(
        &w.pp(conv),
        ConvSpec::new(input, out, 3),
        Some(BatchNorm {
            weights: &w.pp(bn),
            eps: BN_EPS,
        }),
        WINOGRAD,
    )?
    .then(Activation::Relu))
}

/// Convolutional GRU over `channels` channels:
/// `r, z = σ(W_ih [x, h])`, `c = tanh(W_hh [x, r·h])`, `h' = (1 − z)·h + z·c`.
pub struct ConvGru {
    channels: usize,
    ih: Conv2d,
    hh: Conv2d,
}

impl ConvGru {
    fn load(w: &Weights, channels: usize) -> Result<Self> {
        Ok(Self {
            channels,
            ih: Conv2d::load_winograd(
                &w.pp("ih.0"),
                ConvSpec::new(2 * channels, 2 * channels, 3),
                None,
                WINOGRAD,
            )?
            .then(Activation::Sigmoid),
            hh: Conv2d::load_winograd(
                &w.pp("hh.0"),
                ConvSpec::new(2 * channels, channels, 3),
                None,
                WINOGRAD,
            )?
            .then(Activation::Tanh),
        })
    }

    /// `x` holds T frames along the batch axis; the state loops over them in
    /// order. Returns every frame's output and the state after the last.
    fn forward(&self, x: &Tensor, h: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let frames = x.dim(0)?;
        let mut h = match h {
            Some(h) => h.clone(),
            None => ops::zeros_with_channels(&x.narrow(0, 0, 1)?, self.channels)?,
        };
        let mut outputs = Vec::with_capacity(frames);
        for t in 0..frames {
            let xt = x.narrow(0, t, 1)?;
            let gates = self.ih.forward_cat(&[&xt, &h])?;
            let r = gates.narrow(1, 0, self.channels)?;
            let z = gates.narrow(1, self.channels, self.channels)?;
            let candidate = self.hh.forward_cat(&[&xt, &ops::mul(&r, &h)?])?;
            h = ops::gru_update(&z, &h, &candidate)?;
            outputs.push(h.clone());
        }
        Ok((ops::cat_frames(&outputs)?, h))
    }
}

/// A block's output channels as pieces in order: the passed-through half
/// and the GRU's. Their only reader, the next block's upsampling, takes
/// them one at a time, so on the CPU they are never concatenated.
type Halves = [Tensor; 2];

/// Runs the GRU on the second half of the channels, passes the first half.
fn split_gru(gru: &ConvGru, x: &Tensor, h: Option<&Tensor>) -> Result<(Halves, Tensor)> {
    let half = gru.channels;
    let (b, h) = gru.forward(&x.narrow(1, half, half)?, h)?;
    Ok(([x.narrow(1, 0, half)?, b], h))
}

/// Upsample x2 and crop to the skip's size (odd sizes round up on the way
/// down), as one resize to that size with the x2 coordinate mapping.
fn upsample_to(x: &Halves, like: &Tensor) -> Result<Vec<Tensor>> {
    let (_, _, h, w) = like.dims4()?;
    // Elsewhere the convolution that follows concatenates its inputs
    // anyway, so the halves are joined first: one resize instead of two.
    if !ops::on_cpu_kernels(&x[0]) {
        let whole = ops::cat_channels(&[&x[0], &x[1]])?;
        return Ok(vec![ops::scale_bilinear_to(&whole, 2.0, h, w)?]);
    }
    x.iter()
        .map(|piece| ops::scale_bilinear_to(piece, 2.0, h, w))
        .collect()
}

struct UpsamplingBlock {
    conv: Conv2d,
    gru: ConvGru,
}

impl UpsamplingBlock {
    fn load(w: &Weights, input: usize, skip: usize, image: usize, out: usize) -> Result<Self> {
        Ok(Self {
            conv: conv3x3_bn_relu(w, "conv.0", "conv.1", input + skip + image, out)?,
            gru: ConvGru::load(&w.pp("gru"), out / 2)?,
        })
    }

    fn forward(
        &self,
        x: &Halves,
        f: &Tensor,
        s: &Tensor,
        r: Option<&Tensor>,
    ) -> Result<(Halves, Tensor)> {
        let mut inputs = upsample_to(x, s)?;
        inputs.extend([f.clone(), s.clone()]);
        let x = self.conv.forward_cat(&inputs.iter().collect::<Vec<_>>())?;
        split_gru(&self.gru, &x, r)
    }
}

struct OutputBlock {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl OutputBlock {
    fn load(w: &Weights, input: usize, image: usize, out: usize) -> Result<Self> {
        Ok(Self {
            // On the CPU the upsample is folded into the convolution, at
            // half resolution: at the output's size it is the decoder's
            // largest tensor (32 channels at the size of `s0`).
            conv1: conv3x3_bn_relu(w, "conv.0", "conv.1", input + image, out)?.upsampling(input)?,
            conv2: conv3x3_bn_relu(w, "conv.3", "conv.4", out, out)?,
        })
    }

    fn forward(&self, x: &Halves, s: &Tensor) -> Result<Tensor> {
        let x = match self.conv1.forward_upsampled(&[&x[0], &x[1]], &[s])? {
            Some(x) => x,
            None => {
                let mut inputs = upsample_to(x, s)?;
                inputs.push(s.clone());
                self.conv1.forward_cat(&inputs.iter().collect::<Vec<_>>())?
            }
        };
        self.conv2.forward(&x)
    }
}

pub struct RecurrentDecoder {
    decode4_gru: ConvGru,
    decode3: UpsamplingBlock,
    decode2: UpsamplingBlock,
    decode1: UpsamplingBlock,
    decode0: OutputBlock,
}

/// The four ConvGRU states, finest first (r1 at 1/2 ... r4 at 1/16).
pub type Recurrent = [Option<Tensor>; 4];

impl RecurrentDecoder {
    /// `features`: channels of f1, f2, f3 and of the LR-ASPP output;
    /// `decoder`: output channels of decode3, decode2, decode1, decode0.
    pub fn load(w: &Weights, features: [usize; 4], decoder: [usize; 4]) -> Result<Self> {
        Ok(Self {
            decode4_gru: ConvGru::load(&w.pp("decode4.gru"), features[3] / 2)?,
            decode3: UpsamplingBlock::load(
                &w.pp("decode3"),
                features[3],
                features[2],
                3,
                decoder[0],
            )?,
            decode2: UpsamplingBlock::load(
                &w.pp("decode2"),
                decoder[0],
                features[1],
                3,
                decoder[1],
            )?,
            decode1: UpsamplingBlock::load(
                &w.pp("decode1"),
                decoder[1],
                features[0],
                3,
                decoder[2],
            )?,
            decode0: OutputBlock::load(&w.pp("decode0"), decoder[2], 3, decoder[3])?,
        })
    }

    /// `s0`: the (downsampled) source frames; `f`: f1..f3 and the LR-ASPP
    /// output. Returns the 16-channel hidden map at the size of `s0`.
    pub fn forward(&self, s0: &Tensor, f: &[Tensor; 4], r: &mut Recurrent) -> Result<Tensor> {
        let s1 = ops::avg_pool_2x2_ceil(s0)?;
        let s2 = ops::avg_pool_2x2_ceil(&s1)?;
        let s3 = ops::avg_pool_2x2_ceil(&s2)?;
        let (x4, r4) = split_gru(&self.decode4_gru, &f[3], r[3].as_ref())?;
        let (x3, r3) = self.decode3.forward(&x4, &f[2], &s3, r[2].as_ref())?;
        let (x2, r2) = self.decode2.forward(&x3, &f[1], &s2, r[1].as_ref())?;
        let (x1, r1) = self.decode1.forward(&x2, &f[0], &s1, r[0].as_ref())?;
        *r = [Some(r1), Some(r2), Some(r3), Some(r4)];
        self.decode0.forward(&x1, s0)
    }
}
