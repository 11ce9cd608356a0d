//! [`ConvOp`] as a candle op: which algorithm runs a layer, by its shape
//! (the table in `cpu`'s module doc), and the frame loop around it.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use rayon::prelude::*;

use super::buffers::{contiguous, SendPtr};
use super::conv::ConvOp;
use super::depthwise::conv_depthwise;
use super::elementwise::rectified;
use super::narrow::{conv_narrow, NARROW_TAPS};
use super::patches::conv_patches;
use super::pointwise::conv_pointwise;
use super::shifted::conv_shifted;
use super::winograd;
use crate::conv_spec::Activation;

impl ConvOp {
    /// The convolution of the channel concatenation of `inputs`, each
    /// `(N, C_i, H, W)`, contiguous, when this is a stride-1 k x k
    /// convolution: its kernel copies its input into a padded buffer anyway,
    /// so the concatenation is never made. `None` for other convolutions.
    pub fn forward_concat(
        &self,
        inputs: &[&[f32]],
        (n, h, w): (usize, usize, usize),
    ) -> Option<(Vec<f32>, Shape)> {
        let taps = self.tap_major.as_ref()?;
        let s = &self.spec;
        let (ho, wo) = self.out_size(h, w);
        let per_frame = s.out_channels * ho * wo;
        // Every output is written once by the kernel: no zeroing first.
        let mut out = Vec::<f32>::with_capacity(n * per_frame);
        let frame_len = |t: &[f32]| t.len() / n;
        for b in 0..n {
            let mut frame: Vec<&[f32]> = inputs
                .iter()
                .map(|t| &t[b * frame_len(t)..(b + 1) * frame_len(t)])
                .collect();
            // The Winograd transform takes the ReLU as it reads; the
            // shifted kernel reads rectified copies.
            let relu_of_frame: Vec<Vec<f32>>;
            if self.relu_input && self.winograd.is_none() {
                relu_of_frame = frame.iter().map(|x| rectified(x)).collect();
                frame = relu_of_frame.iter().map(Vec::as_slice).collect();
            }
            // SAFETY: frame b's outputs lie inside the capacity.
            let dst = SendPtr(unsafe { out.as_mut_ptr().add(b * per_frame) });
            match &self.winograd {
                Some((tile, filters)) => winograd::conv3x3(
                    *tile,
                    &frame,
                    (s.in_channels, h, w),
                    0,
                    self.relu_input,
                    s.out_channels,
                    filters,
                    self.bias.as_deref(),
                    self.act,
                    dst,
                ),
                None => conv_shifted(self, &frame, (s.in_channels, h, w), (ho, wo), taps, dst),
            }
        }
        // SAFETY: conv3x3 or conv_shifted wrote all `per_frame` outputs of
        // every frame.
        unsafe { out.set_len(n * per_frame) };
        Some((out, Shape::from((n, s.out_channels, ho, wo))))
    }
}

impl ConvOp {
    /// `max(conv(x) + bias + residual, 0)` of a 1x1, stride-1 layer without
    /// an activation of its own (a ResNet bottleneck's last), the join made
    /// while each block of outputs is in cache; `None` for other layers.
    /// `x` is `(N, C, H, W)`, `residual` `(N, O, H, W)`, both contiguous.
    pub fn forward_residual_relu(
        &self,
        x: &[f32],
        weight: &[f32],
        residual: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> Option<(Vec<f32>, Shape)> {
        let s = &self.spec;
        let pointwise = s.is_pointwise() && s.groups == 1;
        if !pointwise || self.relu_input || self.act != Activation::Identity {
            return None;
        }
        let out = self.pointwise_frames(x, weight, Some(residual), (n, h * w));
        Some((out, Shape::from((n, s.out_channels, h, w))))
    }

    /// Every frame of `x` (`n` of `C x plane`) through [`conv_pointwise`]
    /// into a new vector, with the frame's part of `residual` if given.
    fn pointwise_frames(
        &self,
        x: &[f32],
        weight: &[f32],
        residual: Option<&[f32]>,
        (n, plane): (usize, usize),
    ) -> Vec<f32> {
        let (c, o) = (self.spec.in_channels, self.spec.out_channels);
        assert!(x.len() == n * c * plane && residual.is_none_or(|r| r.len() == n * o * plane));
        let mut out = Vec::<f32>::with_capacity(n * o * plane);
        for b in 0..n {
            let image = &x[b * c * plane..(b + 1) * c * plane];
            let res = residual.map(|r| &r[b * o * plane..(b + 1) * o * plane]);
            // SAFETY: frame b's outputs lie inside the capacity.
            let dst = SendPtr(unsafe { out.as_mut_ptr().add(b * o * plane) });
            conv_pointwise(self, image, c, plane, weight, res, dst);
        }
        // SAFETY: conv_pointwise wrote every output of every frame.
        unsafe { out.set_len(n * o * plane) };
        out
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "vmatte-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(xs, xl, "input")?;
        let w = contiguous(ws, wl, "weight")?;
        let (n, c, h, wd) = xl.shape().dims4()?;
        let (ho, wo) = self.out_size(h, wd);
        let s = &self.spec;
        // Dense, stride 1, k > 1: Winograd, or a gemm per tap.
        if let Some((out, shape)) = self.forward_concat(&[x], (n, h, wd)) {
            return Ok((CpuStorage::F32(out), shape));
        }
        let relu_of_x;
        let x = if self.relu_input {
            relu_of_x = rectified(x);
            &relu_of_x[..]
        } else {
            x
        };
        let shape = Shape::from((n, s.out_channels, ho, wo));
        let plane_out = ho * wo;
        let pointwise = s.is_pointwise();
        // Other dense layers but the plain 1x1s (so strided, or a padded
        // 1x1), with few taps: the depthwise sweep.
        if s.groups == 1 && !pointwise && c * s.kernel * s.kernel <= NARROW_TAPS {
            let mut out = Vec::<f32>::with_capacity(n * s.out_channels * plane_out);
            for b in 0..n {
                let image = &x[b * c * h * wd..(b + 1) * c * h * wd];
                conv_narrow(self, image, (c, h, wd), (ho, wo), w, &mut out);
            }
            return Ok((CpuStorage::F32(out), shape));
        }
        // And with many taps: patch matrices.
        if s.groups == 1 && !pointwise {
            let mut out = self.start(n, plane_out);
            for (b, dst) in out.chunks_mut(s.out_channels * plane_out).enumerate() {
                let image = &x[b * c * h * wd..(b + 1) * c * h * wd];
                conv_patches(self, image, (c, h, wd), (ho, wo), w, dst);
                dst.par_chunks_mut(plane_out)
                    .for_each(|plane| self.act.apply_in_place(plane));
            }
            return Ok((CpuStorage::F32(out), shape));
        }
        let depthwise = s.groups == c && s.groups == s.out_channels;
        if s.groups != 1 && !depthwise {
            candle_core::bail!("vmatte-conv2d: grouped convolutions other than depthwise");
        }
        // Each output is started at its bias, computed and activated by the
        // task that owns it, while in cache: no zeroing pass first.
        if !depthwise {
            let out = self.pointwise_frames(x, w, None, (n, plane_out));
            return Ok((CpuStorage::F32(out), shape));
        }
        let len = n * s.out_channels * plane_out;
        let mut out = Vec::<f32>::with_capacity(len);
        conv_depthwise(
            self,
            x,
            (n, c, h, wd),
            (ho, wo),
            w,
            SendPtr(out.as_mut_ptr()),
        );
        // SAFETY: conv_depthwise wrote every output.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), shape))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::conv_spec::{Activation, ConvSpec};
    use crate::cpu::test_util::{max_diff, random};
    use crate::cpu::winograd::Tile;

    const ACTIVATIONS: [Activation; 6] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Hardswish,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Hardsigmoid,
    ];

    #[test]
    fn convolutions_match_candle() {
        let specs = [
            // 1x1 with few outputs (vmatte's product) and more (gemm's).
            ConvSpec::new(8, 6, 1),
            ConvSpec::new(8, 12, 1),
            ConvSpec::new(8, 6, 3),
            // Winograd with more than one vector of tiles and channels.
            ConvSpec::new(35, 16, 3),
            ConvSpec::new(8, 6, 3).stride(2),
            ConvSpec::new(8, 6, 3).dilation(2),
            ConvSpec::new(5, 4, 5).stride(2).padding(1),
            // Few taps: swept like the depthwise layers (the stem's shape,
            // and a stride of 3).
            ConvSpec::new(3, 16, 3).stride(2),
            ConvSpec::new(1, 3, 5).stride(3),
            ConvSpec::new(8, 8, 3).depthwise(),
            ConvSpec::new(8, 8, 5).depthwise(),
            ConvSpec::new(8, 8, 5).depthwise().stride(2),
            // Odd padding swaps the stride phases; stride 3 takes the
            // scalar gather.
            ConvSpec::new(8, 8, 3).depthwise().stride(2),
            ConvSpec::new(8, 8, 3).depthwise().stride(3),
            ConvSpec::new(8, 8, 3).depthwise().dilation(3),
        ];
        // The larger sizes span several blocks of the shifted kernel; the
        // wide one splits Winograd tile rows into runs, the last one short.
        // Planes a pixel wide or high reach the stride phases that hold no
        // picture column at all.
        let sizes = specs
            .iter()
            .flat_map(|s| {
                [
                    (*s, 13, 11),
                    (*s, 70, 90),
                    (*s, 9, 301),
                    (*s, 5, 1),
                    (*s, 1, 2),
                ]
            })
            .filter(|(s, h, w)| {
                let reach = s.dilation * (s.kernel - 1) + 1;
                h + 2 * s.padding >= reach && w + 2 * s.padding >= reach
            });
        // Both Winograd algorithms (the other kernels ignore the choice).
        let cases = sizes.flat_map(|c| [(c, Tile::F2), (c, Tile::F4)]);
        for (i, ((spec, h, wd), tile)) in cases.enumerate() {
            let x = random(&[2, spec.in_channels, h, wd], i as u64);
            let w = random(
                &[
                    spec.out_channels,
                    spec.in_channels / spec.groups,
                    spec.kernel,
                    spec.kernel,
                ],
                100 + i as u64,
            );
            let bias: Vec<f32> = (0..spec.out_channels).map(|c| c as f32 * 0.1).collect();
            let act = ACTIVATIONS[i % ACTIVATIONS.len()];
            // Every third case of its input's ReLU (which Winograd takes as
            // it reads, the other kernels from a rectified copy).
            let relu_input = i % 3 == 0;
            let input = if relu_input {
                x.relu().unwrap()
            } else {
                x.clone()
            };
            let want = input
                .conv2d(&w, spec.padding, spec.stride, spec.dilation, spec.groups)
                .unwrap()
                .broadcast_add(
                    &Tensor::new(bias.as_slice(), &Device::Cpu)
                        .unwrap()
                        .reshape((1, spec.out_channels, 1, 1))
                        .unwrap(),
                )
                .unwrap();
            // Relative to the largest sum (before the activation, which may
            // squash it): Winograd's transforms round at that scale.
            let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
            let want = act.apply(&want).unwrap();
            let weights = w.flatten_all().unwrap().to_vec1().unwrap();
            let op = ConvOp {
                act,
                relu_input,
                ..ConvOp::new(spec, Some(bias), &weights, tile)
            };
            let got = x.apply_op2_no_bwd(&w, &op).unwrap();
            let d = max_diff(&got, &want) / scale;
            assert!(
                d < 1e-5,
                "{spec:?} {tile:?} {act:?} relu input {relu_input} {h}x{wd} {d}"
            );
        }
    }

    /// A 1x1 layer's join with a residual, made as it writes its outputs,
    /// against candle's convolution, add and ReLU: few outputs (vmatte's
    /// product), more (gemm's), and 130 inputs (vmatte's, weights in
    /// panels), over blocks of pixels and two frames.
    #[test]
    fn residual_joins_match_candle() {
        for (i, (c, o)) in [(8, 6), (8, 12), (130, 20)].into_iter().enumerate() {
            let (n, h, wd) = (2, 37, 61);
            let spec = ConvSpec::new(c, o, 1);
            let x = random(&[n, c, h, wd], 10 + i as u64);
            let w = random(&[o, c, 1, 1], 20 + i as u64);
            let res = random(&[n, o, h, wd], 30 + i as u64);
            let bias: Vec<f32> = (0..o).map(|k| k as f32 * 0.1 - 0.5).collect();
            let want = (x.conv2d(&w, 0, 1, 1, 1).unwrap()
                + Tensor::new(bias.as_slice(), &Device::Cpu)
                    .unwrap()
                    .reshape((1, o, 1, 1))
                    .unwrap()
                    .broadcast_as((n, o, h, wd))
                    .unwrap())
            .unwrap();
            let want = (want + &res).unwrap().relu().unwrap();
            let weights: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            let op = ConvOp::new(spec, Some(bias), &weights, Tile::F4);
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (got, shape) = op
                .forward_residual_relu(&flat(&x), &weights, &flat(&res), (n, h, wd))
                .expect("a 1x1 layer joins");
            let got = Tensor::from_vec(got, shape, &Device::Cpu).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "{c} -> {o}: {d}");
        }
        // Other layers leave the join to the caller.
        let op = ConvOp::new(ConvSpec::new(4, 4, 3), None, &[0.0; 144], Tile::F4);
        assert!(op
            .forward_residual_relu(&[0.0; 64], &[0.0; 144], &[0.0; 64], (1, 4, 4))
            .is_none());
    }

    /// Layers whose transformed filters pass SHARED_FILTER_FLOATS (4 MB)
    /// run the products of all blocks for one ξ together: 16 x 260 x 256
    /// and 36 x 180 x 176 floats, over several blocks of tiles; the
    /// second of its input's ReLU.
    #[test]
    fn winograd_with_shared_filters_matches_candle() {
        for (c, o, tile) in [(260, 256, Tile::F2), (180, 176, Tile::F4)] {
            let spec = ConvSpec::new(c, o, 3);
            let x = random(&[1, c, 70, 90], 7);
            let w = random(&[o, c, 3, 3], 8);
            let relu_input = tile == Tile::F4;
            let input = if relu_input {
                x.relu().unwrap()
            } else {
                x.clone()
            };
            let want = input.conv2d(&w, 1, 1, 1, 1).unwrap();
            let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
            let weights = w.flatten_all().unwrap().to_vec1().unwrap();
            let op = ConvOp {
                relu_input,
                ..ConvOp::new(spec, None, &weights, tile)
            };
            let got = x.apply_op2_no_bwd(&w, &op).unwrap();
            // F(4x4) over 180 channels rounds at 1.1e-5 of the largest
            // sum, the same bits as block by block (checked by raising the
            // threshold): the products' sums run in one order either way.
            let d = max_diff(&got, &want) / scale;
            assert!(d < 2e-5, "{c}->{o} {tile:?}: {d}");
        }
    }
}
