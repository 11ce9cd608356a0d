//! The few layers RVM is built from, with BatchNorm folded into the
//! convolutions at load time so inference is one op per layer.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor, D};

pub use crate::conv_spec::{Activation, ConvSpec};
use crate::cpu::{
    AreaDownOp, BilinearAddOp, BilinearOp, BinaryOp, ChannelMeanOp, ConvOp, Dense, GruUpdateOp,
    GuidedMatteOp, HalvingPoolOp, MaxPool3x3S2Op, ReluOp, ScaleChannelsOp, SensoryGateOp, Tile,
    UpsampledConv,
};
use crate::weights::Weights;
use crate::Result;

/// A 2-D convolution with an optional bias, BatchNorm already folded in,
/// and the activation after it; optionally of its input's ReLU (see
/// [`Conv2d::after_relu`]).
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    spec: ConvSpec,
    act: Activation,
    relu_input: bool,
    /// The CPU kernel with its own copy of the bias, for f32 on the CPU.
    cpu: Option<std::sync::Arc<ConvOp>>,
    /// With [`Self::upsampling`], the CPU kernel that takes its first
    /// channels at half resolution.
    upsampled: Option<std::sync::Arc<UpsampledConv>>,
}

/// Where a convolution's BatchNorm lives, if it has one.
pub struct BatchNorm<'a> {
    pub weights: &'a Weights,
    pub eps: f64,
}

impl Conv2d {
    /// Loads `<w>.weight` (and `<w>.bias` when present). With `bn`, the
    /// BatchNorm statistics at `bn` are folded into weight and bias; files in
    /// vmatte's fused form (the ONNX import) carry no BatchNorm keys and a
    /// bias instead, and load as they are. A padded 3x3 layer runs on the
    /// CPU with the most exact Winograd algorithm, F(2x2, 3x3).
    pub fn load(w: &Weights, spec: ConvSpec, bn: Option<BatchNorm>) -> Result<Self> {
        Self::load_winograd(w, spec, bn, Tile::default())
    }

    /// A layer the architecture gives neither bias nor BatchNorm (RVM's
    /// LR-ASPP gate, the refiner's box filter): `<w>.weight` only.
    pub fn load_unbiased(w: &Weights, spec: ConvSpec) -> Result<Self> {
        Self::load_with(w, spec, None, Tile::default(), false)
    }

    /// [`Self::load`], a padded 3x3 layer running on the CPU with the
    /// Winograd algorithm `tile`: the model's choice, by how much float
    /// rounding its parity allows (see `cpu::winograd`).
    pub(crate) fn load_winograd(
        w: &Weights,
        spec: ConvSpec,
        bn: Option<BatchNorm>,
        tile: Tile,
    ) -> Result<Self> {
        Self::load_with(w, spec, bn, tile, true)
    }

    /// Every tensor the layer needs must be there: the bias of a layer that
    /// has one, and for a layer with BatchNorm either its statistics (a
    /// checkpoint) or the bias they fold into (vmatte's fused form). A
    /// missing one is an error, never a layer quietly without it.
    fn load_with(
        w: &Weights,
        spec: ConvSpec,
        bn: Option<BatchNorm>,
        tile: Tile,
        biased: bool,
    ) -> Result<Self> {
        let mut weight = w.get("weight", &spec.weight_shape())?;
        let bn_stats = bn
            .as_ref()
            .is_some_and(|b| b.weights.contains("running_mean"));
        let mut bias = if biased && (!bn_stats || w.contains("bias")) {
            Some(w.get("bias", &[spec.out_channels])?)
        } else {
            None
        };
        if let Some(BatchNorm { weights: bn, eps }) = bn {
            if bn_stats {
                let c = [spec.out_channels];
                let gamma = bn.get("weight", &c)?;
                let beta = bn.get("bias", &c)?;
                let mean = bn.get("running_mean", &c)?;
                let var = bn.get("running_var", &c)?;
                let scale = (gamma / (var + eps)?.sqrt()?)?;
                weight = weight.broadcast_mul(&scale.reshape((spec.out_channels, 1, 1, 1))?)?;
                let b0 = match bias {
                    Some(b) => b,
                    None => mean.zeros_like()?,
                };
                bias = Some(((b0 - mean)? * &scale + beta)?);
            }
        }
        let weight = w.finish(&weight)?.contiguous()?;
        let bias = bias.map(|b| w.finish(&b)).transpose()?;
        let cpu = on_cpu_kernels(&weight)
            .then(|| -> Result<_> {
                let bias = bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?;
                let w = weight.flatten_all()?.to_vec1::<f32>()?;
                Ok(std::sync::Arc::new(ConvOp::new(spec, bias, &w, tile)))
            })
            .transpose()?;
        Ok(Self {
            weight,
            bias,
            spec,
            act: Activation::Identity,
            relu_input: false,
            cpu,
            upsampled: None,
        })
    }

    /// Readies the layer for inputs whose first `channels` are a bilinear
    /// x2 upsample, which [`Self::forward_upsampled`] then takes at half
    /// resolution (see `cpu/upsampled.rs`). Only 3x3 layers of
    /// stride 1 and padding 1 on vmatte's CPU kernels have it.
    pub fn upsampling(mut self, channels: usize) -> Result<Self> {
        let s = &self.spec;
        let shape = (s.kernel, s.stride, s.padding, s.dilation, s.groups);
        if let (Some(op), (3, 1, 1, 1, 1)) = (&self.cpu, shape) {
            let tile = op.winograd.as_ref().map_or(Tile::default(), |(t, _)| *t);
            let weight = self.weight.flatten_all()?.to_vec1::<f32>()?;
            let (o, bias) = (s.out_channels, op.bias.as_deref());
            let conv = UpsampledConv::new(&weight, o, channels, bias, self.act, tile);
            self.upsampled = Some(std::sync::Arc::new(conv));
        }
        Ok(self)
    }

    /// The layer as plain `(O, C/groups · K · K)` weights, bias (zeros if
    /// it has none) and activation, for a CPU kernel that fuses it with its
    /// neighbours; `None` unless it runs on vmatte's CPU kernels.
    pub(crate) fn dense(&self) -> Result<Option<Dense>> {
        if self.cpu.is_none() || self.relu_input {
            return Ok(None);
        }
        Ok(Some(Dense {
            weight: self.weight.flatten_all()?.to_vec1()?,
            bias: match &self.bias {
                Some(b) => b.to_vec1()?,
                None => vec![0.0; self.spec.out_channels],
            },
            act: self.act,
        }))
    }

    /// Follows the convolution with `act`.
    pub fn then(mut self, act: Activation) -> Self {
        self.act = act;
        if let Some(op) = &self.upsampled {
            self.upsampled = Some(std::sync::Arc::new(op.then(act)));
        }
        if let Some(op) = &self.cpu {
            self.cpu = Some(std::sync::Arc::new(ConvOp {
                act,
                ..ConvOp::clone(op)
            }));
        }
        self
    }

    /// The layer of `max(x, 0)`: a pre-activation block's ReLU, which the
    /// CPU's Winograd kernel takes as it reads its input instead of as a
    /// pass of its own. Not with [`Self::upsampling`] or [`Self::dense`].
    pub fn after_relu(mut self) -> Self {
        self.relu_input = true;
        self.upsampled = None;
        if let Some(op) = &self.cpu {
            self.cpu = Some(std::sync::Arc::new(ConvOp {
                relu_input: true,
                ..ConvOp::clone(op)
            }));
        }
        self
    }

    /// `max(conv(x) + residual, 0)`: a ResNet block's last convolution and
    /// its join. On the CPU a 1x1 layer makes the join as it writes each
    /// block of outputs (not as a pass of its own over the block's output).
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        if let (Some(op), true) = (&self.cpu, on_cpu_kernels(x) && on_cpu_kernels(residual)) {
            if residual.dims4()? == (n, self.spec.out_channels, h, w) {
                let made = with_cpu_slices(&[x, &self.weight, residual], |s| {
                    op.forward_residual_relu(s[0], s[1], s[2], (n, h, w))
                })?;
                if let Some((out, shape)) = made {
                    return Ok(Tensor::from_vec(out, shape, &Device::Cpu)?);
                }
            }
        }
        add_relu(&self.forward(x)?, residual)
    }

    /// The convolution of `xs` concatenated along channels, the input of
    /// every U-Net decoder block. On the CPU the stride-1 k x k kernel reads
    /// the pieces straight into its padded buffer.
    pub fn forward_cat(&self, xs: &[&Tensor]) -> Result<Tensor> {
        let (n, _, h, w) = xs[0].dims4()?;
        if let (Some(op), true) = (&self.cpu, xs.iter().all(|x| on_cpu_kernels(x))) {
            let made = with_cpu_slices(xs, |slices| op.forward_concat(slices, (n, h, w)))?;
            if let Some((out, shape)) = made {
                return Ok(Tensor::from_vec(out, shape, &Device::Cpu)?);
            }
        }
        self.forward(&cat_channels(xs)?)
    }

    /// The convolution of `low`, each bilinearly upsampled x2 and cropped to
    /// the size of `full`, concatenated with `full` along channels, without
    /// making the upsample: `None` where the layer has no such kernel (see
    /// [`Self::upsampling`]) or the sizes do not pair up.
    pub fn forward_upsampled(&self, low: &[&Tensor], full: &[&Tensor]) -> Result<Option<Tensor>> {
        let Some(op) = self.upsampled.as_ref().filter(|_| !self.relu_input) else {
            return Ok(None);
        };
        let (n, _, h, w) = full[0].dims4()?;
        let (_, _, hl, wl) = low[0].dims4()?;
        let all: Vec<&Tensor> = low.iter().chain(full).copied().collect();
        if !all.iter().all(|x| on_cpu_kernels(x)) || (hl, wl) != (h.div_ceil(2), w.div_ceil(2)) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(n * self.spec.out_channels * h * w);
        for_each_cpu_frame(&all, |frame| {
            let (low, full) = frame.split_at(low.len());
            op.forward(low, full, (hl, wl), (h, w), &mut out)
        })?;
        let shape = (n, self.spec.out_channels, h, w);
        Ok(Some(Tensor::from_vec(out, shape, &Device::Cpu)?))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = &self.spec;
        if let (Some(op), true) = (&self.cpu, on_cpu_kernels(x)) {
            if s.groups == 1 || s.is_depthwise() {
                return Ok(x
                    .contiguous()?
                    .apply_op2_no_bwd(&self.weight, op.as_ref())?);
            }
        }
        let x = &match self.relu_input {
            true => x.relu()?,
            false => x.clone(),
        };
        let y = if s.is_depthwise() {
            depthwise_conv2d(x, &self.weight, s)?
        } else if s.kernel > 1 && s.groups == 1 && x.device().is_cpu() {
            im2col_conv2d(x, &self.weight, s)?
        } else {
            x.conv2d(&self.weight, s.padding, s.stride, s.dilation, s.groups)?
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, s.out_channels, 1, 1))?)?,
            None => y,
        };
        self.act.apply(&y)
    }
}

/// Depthwise convolution as a sum of shifted, per-channel-scaled copies of
/// the input. candle runs grouped convolutions one group at a time, which is
/// hundreds of tiny convolutions per layer here; this is a handful of
/// elementwise ops whatever the channel count, on any device.
fn depthwise_conv2d(x: &Tensor, weight: &Tensor, s: &ConvSpec) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let (k, p, d) = (s.kernel, s.padding, s.dilation);
    let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    // Output of the stride-1 convolution; strided layers subsample it below.
    let h1 = h + 2 * p - d * (k - 1);
    let w1 = w + 2 * p - d * (k - 1);
    let taps = weight.reshape((c, k * k))?;
    let mut acc: Option<Tensor> = None;
    for i in 0..k {
        let rows = xp.narrow(2, i * d, h1)?;
        for j in 0..k {
            let tap = taps.narrow(1, i * k + j, 1)?.reshape((1, c, 1, 1))?;
            let term = rows.narrow(3, j * d, w1)?.broadcast_mul(&tap)?;
            acc = Some(match acc {
                Some(a) => (a + term)?,
                None => term,
            });
        }
    }
    let y = acc.expect("kernel has at least one tap");
    if s.stride == 1 {
        return Ok(y);
    }
    subsample(&y, s.stride)
}

/// Patch-matrix elements per block: large enough to keep gemm efficient,
/// small enough to stay in cache and be reused by the allocator.
const PATCH_BLOCK_ELEMS: usize = 1 << 21;

/// A k x k convolution as matrix products over shifted copies of the input,
/// a block of output rows at a time. candle's CPU kernel gathers its patches
/// element by element, slow for the decoder's 3x3 convolutions; this copies
/// whole shifted rows and hands gemm one product per block.
fn im2col_conv2d(x: &Tensor, weight: &Tensor, s: &ConvSpec) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (k, p, d, st) = (s.kernel, s.padding, s.dilation, s.stride);
    let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    let ho = (h + 2 * p - d * (k - 1) - 1) / st + 1;
    let wo = (w + 2 * p - d * (k - 1) - 1) / st + 1;
    let patch = c * k * k;
    // Row `c*k*k + tap` of the patch matrix matches the flattened weight.
    let w2 = weight.reshape((s.out_channels, patch))?;
    let rows_per_block = (PATCH_BLOCK_ELEMS / (patch * wo)).clamp(1, ho);
    let mut frames = Vec::with_capacity(n);
    for b in 0..n {
        let frame = xp.narrow(0, b, 1)?;
        let mut blocks = Vec::with_capacity(ho.div_ceil(rows_per_block));
        for r0 in (0..ho).step_by(rows_per_block) {
            let rows = rows_per_block.min(ho - r0);
            let mut taps = Vec::with_capacity(k * k);
            for i in 0..k {
                for j in 0..k {
                    let tap = frame
                        .narrow(2, r0 * st + i * d, (rows - 1) * st + 1)?
                        .narrow(3, j * d, (wo - 1) * st + 1)?;
                    taps.push(if st == 1 { tap } else { subsample(&tap, st)? });
                }
            }
            let cols = Tensor::stack(&taps, 2)?.reshape((patch, rows * wo))?;
            blocks.push(w2.matmul(&cols)?.reshape((1, s.out_channels, rows, wo))?);
        }
        frames.push(Tensor::cat(&blocks, 2)?);
    }
    Ok(Tensor::cat(&frames, 0)?)
}

/// Keeps every `stride`-th row and column, starting at the first.
fn subsample(y: &Tensor, stride: usize) -> Result<Tensor> {
    let (n, c, h, w) = y.dims4()?;
    let (ho, wo) = (h.div_ceil(stride), w.div_ceil(stride));
    let y = y
        .pad_with_zeros(2, 0, ho * stride - h)?
        .pad_with_zeros(3, 0, wo * stride - w)?
        .reshape((n, c, ho, stride, wo, stride))?;
    Ok(y.narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, ho, wo))?)
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&ReluOp)?);
    }
    Ok(x.relu()?)
}

/// `max(a + b, 0)`: a residual join and its ReLU, in one pass on the CPU.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::AddRelu)
}

/// The mean of each `factor x factor` cell (PyTorch's `interpolate(mode=
/// 'area')` by a whole factor); the sizes must be multiples of `factor`.
pub fn area_down(x: &Tensor, factor: usize) -> Result<Tensor> {
    if factor == 1 {
        return Ok(x.clone());
    }
    if on_cpu_kernels(x) {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&AreaDownOp { factor })?);
    }
    Ok(x.avg_pool2d(factor)?)
}

/// ResNet's stem pool: PyTorch's `MaxPool2d(3, stride 2, padding 1)`. Off
/// the CPU kernels, `x` must be >= 0 (after a ReLU), where zero padding
/// never wins a max either.
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&MaxPool3x3S2Op)?);
    }
    Ok(x.pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 2)?)
}

/// Mean over the spatial dims, keeping them as 1x1.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&ChannelMeanOp)?);
    }
    Ok(x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?)
}

/// `x (N, C, H, W) · s (N, C, 1, 1)`: squeeze-and-excitation's and
/// LR-ASPP's channel gates.
pub fn scale_channels(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(x) && on_cpu_kernels(s) {
        return Ok(x
            .contiguous()?
            .apply_op2_no_bwd(&s.contiguous()?, &ScaleChannelsOp)?);
    }
    Ok(x.broadcast_mul(s)?)
}

/// `a + b` (a residual connection) of two tensors of one shape.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Add)
}

/// `a · b`, element by element, of two tensors of one shape.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Mul)
}

fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    if on_cpu_kernels(a) && on_cpu_kernels(b) && a.shape() == b.shape() {
        return Ok(a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &op)?);
    }
    Ok(match op {
        BinaryOp::Add => (a + b)?,
        BinaryOp::AddRelu => (a + b)?.relu()?,
        BinaryOp::Mul => (a * b)?,
    })
}

/// A ConvGRU's new state: `(1 - z)·h + z·c` for update gate `z`, state `h`
/// and candidate `c`.
pub fn gru_update(z: &Tensor, h: &Tensor, c: &Tensor) -> Result<Tensor> {
    let same = z.shape() == h.shape() && h.shape() == c.shape();
    if same && [z, h, c].iter().all(|t| on_cpu_kernels(t)) {
        return Ok(z.contiguous()?.apply_op3_no_bwd(
            &h.contiguous()?,
            &c.contiguous()?,
            &GruUpdateOp,
        )?);
    }
    Ok(((z.affine(-1.0, 1.0)? * h)? + (z * c)?)?)
}

/// MatAnyone's gated update of a sensory memory `h` (N, C, H, W) from
/// `values` (N, 3C, H, W: forget, update, candidate): `σ(f)·h·(1 - σ(u)) +
/// σ(u)·tanh(c)`.
pub fn sensory_gate(h: &Tensor, values: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(h) && on_cpu_kernels(values) {
        return Ok(h
            .contiguous()?
            .apply_op2_no_bwd(&values.contiguous()?, &SensoryGateOp)?);
    }
    sensory_gate_of_tensors(h, values)
}

/// [`sensory_gate`] in candle's tensor operations.
pub(crate) fn sensory_gate_of_tensors(h: &Tensor, values: &Tensor) -> Result<Tensor> {
    let c = h.dim(1)?;
    let forget = candle_nn::ops::sigmoid(&values.narrow(1, 0, c)?)?;
    let update = candle_nn::ops::sigmoid(&values.narrow(1, c, c)?)?;
    let candidate = values.narrow(1, 2 * c, c)?.tanh()?;
    let kept = ((forget * h)? * update.affine(-1.0, 1.0)?)?;
    Ok((kept + (update * candidate)?)?)
}

/// PyTorch's `AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`:
/// odd edges make a last, partial window averaged over its real pixels.
pub fn avg_pool_2x2_ceil(x: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&HalvingPoolOp)?);
    }
    avg_pool_2x2_ceil_tensor(x)
}

/// [`avg_pool_2x2_ceil`] as candle tensor ops, for any device and dtype.
fn avg_pool_2x2_ceil_tensor(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let padded = x
        .pad_with_zeros(2, 0, ho * 2 - h)?
        .pad_with_zeros(3, 0, wo * 2 - w)?;
    let sums = (padded.avg_pool2d(2)? * 4.0)?;
    if h % 2 == 0 && w % 2 == 0 {
        return Ok((sums / 4.0)?);
    }
    let mut counts = vec![4f32; ho * wo];
    for (i, row) in counts.chunks_mut(wo).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let rows = if h % 2 == 1 && i == ho - 1 { 1 } else { 2 };
            let cols = if w % 2 == 1 && j == wo - 1 { 1 } else { 2 };
            *v = (rows * cols) as f32;
        }
    }
    let counts = Tensor::from_vec(counts, (1, 1, ho, wo), x.device())?.to_dtype(x.dtype())?;
    Ok(sums.broadcast_div(&counts)?)
}

/// Bilinear resize with half-pixel centres and no antialiasing, to an
/// explicit size (PyTorch `interpolate(size=..., align_corners=False)`).
pub fn resize_bilinear(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, hi, wi) = x.dims4()?;
    if (hi, wi) == (h, w) {
        return Ok(x.clone());
    }
    if on_cpu_kernels(x) {
        return bilinear_cpu(x, h, w, None);
    }
    Ok(x.upsample_bilinear2d(h, w, false)?)
}

/// Bilinear resize by a scale factor, output size `floor(size * scale)`, with
/// source coordinates mapped through `1 / scale` as PyTorch does with
/// `recompute_scale_factor=False` (and ONNX Resize with `scales`).
pub fn scale_bilinear(x: &Tensor, scale: f64) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (ho, wo) = (
        (h as f64 * scale).floor() as usize,
        (w as f64 * scale).floor() as usize,
    );
    if on_cpu_kernels(x) && (ho, wo) != (h, w) {
        return bilinear_cpu(x, ho, wo, Some(scale));
    }
    Ok(x.upsample_bilinear2d_with_scale(scale, scale, false)?)
}

/// `x` upscaled x2 bilinearly (`align_corners=False`) plus `skip`, of the
/// upscaled shape: a decoder's join, in one pass on the CPU.
pub fn up2_add(x: &Tensor, skip: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if on_cpu_kernels(x) && on_cpu_kernels(skip) && skip.dims4()? == (n, c, 2 * h, 2 * w) {
        let op = BilinearAddOp(BilinearOp {
            height: 2 * h,
            width: 2 * w,
            scale: Some((2.0, 2.0)),
        });
        return Ok(planar(x)?.apply_op2_no_bwd(&skip.contiguous()?, &op)?);
    }
    add(&scale_bilinear(x, 2.0)?, skip)
}

/// `[rgb, mean(rgb)]`: the guide image the deep guided filter fits its
/// linear model against.
pub fn guide(rgb: &Tensor) -> Result<Tensor> {
    cat_channels(&[rgb, &rgb.mean_keepdim(1)?])
}

/// RVM's output from the network's `[fgr residual, pha]` at full size:
/// `[clamp(residual + src), clamp(pha)]`.
pub fn residual_matte(out: &Tensor, src: &Tensor) -> Result<Tensor> {
    let fgr = (out.narrow(1, 0, 3)? + src)?.clamp(0f32, 1f32)?;
    let pha = out.narrow(1, 3, 1)?.clamp(0f32, 1f32)?;
    cat_channels(&[&fgr, &pha])
}

/// The output of RVM with the deep guided filter: the low-resolution linear
/// model `(a, b)` (4 channels each) upsampled to `src`'s size and applied
/// to its guide, then [`residual_matte`]. One fused pass on the CPU.
pub fn guided_matte(a: &Tensor, b: &Tensor, src: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(src) {
        // A and b may be views of one (T, 8, h, w) tensor: the kernel
        // reads each frame's planes where they lie.
        return Ok(planar(a)?.apply_op3_no_bwd(&planar(b)?, &src.contiguous()?, &GuidedMatteOp)?);
    }
    let (_, _, h, w) = src.dims4()?;
    let a = resize_bilinear(a, h, w)?;
    let b = resize_bilinear(b, h, w)?;
    residual_matte(&((a * guide(src)?)? + b)?, src)
}

/// The top-left `h x w` of [`scale_bilinear`]'s result, made directly.
pub fn scale_bilinear_to(x: &Tensor, scale: f64, h: usize, w: usize) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return bilinear_cpu(x, h, w, Some(scale));
    }
    Ok(scale_bilinear(x, scale)?.narrow(2, 0, h)?.narrow(3, 0, w)?)
}

/// vmatte's CPU resize to `h x w`, with coordinates mapped through
/// `1 / scale` when the size came from one.
fn bilinear_cpu(x: &Tensor, h: usize, w: usize, scale: Option<f64>) -> Result<Tensor> {
    let op = BilinearOp {
        height: h,
        width: w,
        scale: scale.map(|s| (s, s)),
    };
    Ok(planar(x)?.apply_op1_no_bwd(&op)?)
}

/// `t` as it is when each frame's planes lie together (a channel slice of
/// a contiguous tensor does), else a contiguous copy: what the CPU kernels
/// that read frame by frame take.
fn planar(t: &Tensor) -> Result<Tensor> {
    Ok(if crate::cpu::frames_planar(t.layout()) {
        t.clone()
    } else {
        t.contiguous()?
    })
}

/// Whether `x` takes vmatte's own CPU kernels (`cpu.rs`): f32 on the CPU.
pub(crate) fn on_cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// Channels-first concat, the glue of every U-Net skip.
pub fn cat_channels(xs: &[&Tensor]) -> Result<Tensor> {
    let (n, _, h, w) = xs[0].dims4()?;
    let same_frames = xs
        .iter()
        .all(|x| x.dims4().is_ok_and(|(m, _, y, x)| (m, y, x) == (n, h, w)));
    if same_frames {
        let channels: usize = xs
            .iter()
            .map(|x| x.dim(1))
            .sum::<candle_core::Result<_>>()?;
        if let Some(t) = cat_on_cpu(xs, n, (n, channels, h, w))? {
            return Ok(t);
        }
    }
    Ok(Tensor::cat(xs, 1)?)
}

/// Frames stacked along the batch axis (a ConvGRU's outputs, one frame
/// each): on the CPU one parallel copy of whole buffers.
pub fn cat_frames(xs: &[Tensor]) -> Result<Tensor> {
    let (_, c, h, w) = xs[0].dims4()?;
    let frames = xs
        .iter()
        .map(|x| x.dim(0))
        .sum::<candle_core::Result<usize>>()?;
    let same = xs
        .iter()
        .all(|x| x.dims4().is_ok_and(|(_, k, y, x)| (k, y, x) == (c, h, w)));
    if same {
        // Whole buffers one after another: one "frame" of every piece.
        let refs: Vec<&Tensor> = xs.iter().collect();
        if let Some(t) = cat_on_cpu(&refs, 1, (frames, c, h, w))? {
            return Ok(t);
        }
    }
    Ok(Tensor::cat(xs, 0)?)
}

/// `xs`, each `n` frames, concatenated frame by frame (each frame holds
/// every piece's frame in turn) into a tensor of `shape`, by one parallel
/// copy; `None` unless all of them take vmatte's CPU kernels.
fn cat_on_cpu(
    xs: &[&Tensor],
    n: usize,
    shape: (usize, usize, usize, usize),
) -> Result<Option<Tensor>> {
    if !xs.iter().all(|x| on_cpu_kernels(x)) {
        return Ok(None);
    }
    let out = with_cpu_slices(xs, |slices| crate::cpu::cat_frames(slices, n))?;
    Ok(Some(Tensor::from_vec(out, shape, &Device::Cpu)?))
}

/// `f` of the f32 data of `xs` (CPU tensors), each made contiguous first.
fn with_cpu_slices<R>(xs: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Result<R> {
    let xs = xs
        .iter()
        .map(|x| x.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let storages: Vec<_> = xs.iter().map(|x| x.storage_and_layout()).collect();
    let slices = storages
        .iter()
        .map(|(storage, layout)| {
            Ok(&cpu_f32(storage)?[layout.start_offset()..][..layout.shape().elem_count()])
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(f(&slices))
}

/// A CPU f32 tensor's whole storage.
fn cpu_f32(storage: &Storage) -> candle_core::Result<&[f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(v)) => Ok(v),
        _ => Err(candle_core::Error::Msg("expected CPU f32".into())),
    }
}

/// Each frame of `xs` (CPU f32, the same frame count) as its planes, one
/// slice per tensor, handed to `body` in order: a frame-planar view (a
/// channel slice) is read where it lies, anything else made contiguous.
fn for_each_cpu_frame(xs: &[&Tensor], mut body: impl FnMut(&[&[f32]])) -> Result<()> {
    let xs = xs.iter().map(|x| planar(x)).collect::<Result<Vec<_>>>()?;
    let storages: Vec<_> = xs.iter().map(|x| x.storage_and_layout()).collect();
    let n = xs[0].dim(0)?;
    for f in 0..n {
        let frame = storages
            .iter()
            .map(|(storage, layout)| {
                let len = layout.shape().elem_count() / n;
                Ok(&cpu_f32(storage)?[layout.start_offset() + f * layout.stride()[0]..][..len])
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        body(&frame);
    }
    Ok(())
}

/// Zeros shaped like `like` but with `channels` channels.
pub fn zeros_with_channels(like: &Tensor, channels: usize) -> Result<Tensor> {
    let (n, _, h, w) = like.dims4()?;
    Ok(Tensor::zeros(
        (n, channels, h, w),
        like.dtype(),
        like.device(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::worst;

    #[test]
    fn halving_pool_matches_the_tensor_ops() {
        for (h, w) in [(6, 8), (7, 9), (1, 5), (5, 1), (270, 480), (135, 241)] {
            let n = 2 * 3 * h * w;
            let data: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1013) as f32 / 1013.0)
                .collect();
            let x = Tensor::from_vec(data, (2, 3, h, w), &candle_core::Device::Cpu).unwrap();
            let want = avg_pool_2x2_ceil_tensor(&x).unwrap();
            let got = avg_pool_2x2_ceil(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(worst(&flat(got), &flat(want)) < 1e-6, "{h}x{w}");
        }
    }
}
