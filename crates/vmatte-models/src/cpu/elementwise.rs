//! The element-wise glue between RVM's convolutions (residual adds, the
//! ConvGRU's gating, squeeze-and-excitation's global average and channel
//! scale), spread over rayon's workers in cache-sized pieces.
//!
//! candle runs these on the calling thread, one pass each, which leaves
//! the other cores idle between the parallel convolutions.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::buffers::{contiguous, made_in_pieces, SendPtr};
use crate::simd::vectorized;

/// Floats per task: a few L2-sized pieces per core at RVM's sizes, and no
/// task so small that scheduling it costs more than the work.
const PIECE: usize = 1 << 14;

/// `a + b`, `max(a + b, 0)` (a residual join and its ReLU in one pass) or
/// `a · b` of two tensors of one shape.
#[derive(Clone, Copy, Debug)]
pub enum BinaryOp {
    Add,
    AddRelu,
    Mul,
}

impl CustomOp2 for BinaryOp {
    fn name(&self) -> &'static str {
        "vmatte-binary"
    }

    fn cpu_fwd(
        &self,
        a_s: &CpuStorage,
        a_l: &Layout,
        b_s: &CpuStorage,
        b_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (contiguous(a_s, a_l, "lhs")?, contiguous(b_s, b_l, "rhs")?);
        if a_l.shape() != b_l.shape() {
            candle_core::bail!("vmatte-binary: shapes differ");
        }
        let out = by_pieces([a, b], |[a, b], o| match self {
            BinaryOp::Add => add(a, b, o),
            BinaryOp::AddRelu => add_relu(a, b, o),
            BinaryOp::Mul => mul(a, b, o),
        });
        Ok((CpuStorage::F32(out), a_l.shape().clone()))
    }
}

/// `max(x, 0)` of a tensor, spread over the workers (candle's runs on the
/// calling thread).
#[derive(Clone, Copy, Debug)]
pub struct ReluOp;

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "vmatte-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "input")?;
        Ok((CpuStorage::F32(rectified(x)), l.shape().clone()))
    }
}

/// `max(x, 0)` of every float, spread over the workers.
pub(super) fn rectified(x: &[f32]) -> Vec<f32> {
    by_pieces([x], |[x], o| relu(x, o))
}

/// The ConvGRU's new state from its update gate `z`, state `h` and
/// candidate `c`: `(1 - z)·h + z·c`.
#[derive(Clone, Copy, Debug)]
pub struct GruUpdateOp;

impl CustomOp3 for GruUpdateOp {
    fn name(&self) -> &'static str {
        "vmatte-gru-update"
    }

    fn cpu_fwd(
        &self,
        z_s: &CpuStorage,
        z_l: &Layout,
        h_s: &CpuStorage,
        h_l: &Layout,
        c_s: &CpuStorage,
        c_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let z = contiguous(z_s, z_l, "update gate")?;
        let h = contiguous(h_s, h_l, "state")?;
        let c = contiguous(c_s, c_l, "candidate")?;
        if z_l.shape() != h_l.shape() || z_l.shape() != c_l.shape() {
            candle_core::bail!("vmatte-gru-update: shapes differ");
        }
        let out = by_pieces([z, h, c], |[z, h, c], o| gru_update(z, h, c, o));
        Ok((CpuStorage::F32(out), z_l.shape().clone()))
    }
}

/// MatAnyone's gated update of a sensory memory `h` (N, C, H, W) from
/// `values` (N, 3C, H, W: forget, update and candidate logits):
/// `σ(f)·h·(1 - σ(u)) + σ(u)·tanh(c)`, in one pass over the workers where
/// candle's sigmoids, tanh and products were eight on the calling thread.
#[derive(Clone, Copy, Debug)]
pub struct SensoryGateOp;

impl CustomOp2 for SensoryGateOp {
    fn name(&self) -> &'static str {
        "vmatte-sensory-gate"
    }

    fn cpu_fwd(
        &self,
        h_s: &CpuStorage,
        h_l: &Layout,
        v_s: &CpuStorage,
        v_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let h = contiguous(h_s, h_l, "sensory memory")?;
        let values = contiguous(v_s, v_l, "gate values")?;
        let (n, c, hh, w) = h_l.shape().dims4()?;
        if v_l.shape().dims4()? != (n, 3 * c, hh, w) {
            candle_core::bail!("vmatte-sensory-gate: values are not 3 x the memory's channels");
        }
        // A frame's memory, and its three value blocks in `values`.
        let frame = c * hh * w;
        let out = made_in_pieces(h.len(), PIECE, |_, at, o| {
            let mut i = at.start;
            // Runs that stay inside one frame.
            while i < at.end {
                let (b, r) = (i / frame, i % frame);
                let run = (frame - r).min(at.end - i);
                let v = |k: usize| &values[(3 * b + k) * frame + r..][..run];
                let out = &mut o[i - at.start..][..run];
                sensory_gate(&h[i..i + run], [v(0), v(1), v(2)], out);
                i += run;
            }
        });
        Ok((CpuStorage::F32(out), h_l.shape().clone()))
    }
}

/// One run of [`SensoryGateOp`], with candle's sigmoid `1 / (1 + e^-x)`.
fn sensory_gate(h: &[f32], [f, u, c]: [&[f32]; 3], out: &mut [MaybeUninit<f32>]) {
    assert!([f, u, c].iter().all(|x| x.len() == h.len()) && out.len() == h.len());
    let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
    for ((((o, &h), &f), &u), &c) in out.iter_mut().zip(h).zip(f).zip(u).zip(c) {
        let u = sigmoid(u);
        o.write(sigmoid(f) * h * (1.0 - u) + u * c.tanh());
    }
}

/// `f` of matching `PIECE`-long pieces of `inputs` (all one length) into
/// a new vector of that length, a task per piece.
fn by_pieces<const N: usize>(
    inputs: [&[f32]; N],
    f: impl Fn([&[f32]; N], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    made_in_pieces(inputs[0].len(), PIECE, |_, at, o| {
        f(inputs.map(|x| &x[at.clone()]), o)
    })
}

/// `x (N, C, H, W) · s (N, C, 1, 1)`: each plane by its own factor.
#[derive(Clone, Copy, Debug)]
pub struct ScaleChannelsOp;

impl CustomOp2 for ScaleChannelsOp {
    fn name(&self) -> &'static str {
        "vmatte-scale-channels"
    }

    fn cpu_fwd(
        &self,
        x_s: &CpuStorage,
        x_l: &Layout,
        s_s: &CpuStorage,
        s_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, s) = (
            contiguous(x_s, x_l, "input")?,
            contiguous(s_s, s_l, "scale")?,
        );
        let (n, c, h, w) = x_l.shape().dims4()?;
        if s_l.shape().dims4()? != (n, c, 1, 1) {
            candle_core::bail!("vmatte-scale-channels: wants x (N, C, H, W) and s (N, C, 1, 1)");
        }
        let plane = (h * w).max(1);
        let planes_per_task = (PIECE / plane).max(1);
        let out = made_in_pieces(x.len(), planes_per_task * plane, |i, at, o| {
            let factors = &s[i * planes_per_task..];
            for ((o, x), s) in o.chunks_mut(plane).zip(x[at].chunks(plane)).zip(factors) {
                scale(x, *s, o);
            }
        });
        Ok((CpuStorage::F32(out), x_l.shape().clone()))
    }
}

/// The mean of each plane of `(N, C, H, W)`, as `(N, C, 1, 1)`.
#[derive(Clone, Copy, Debug)]
pub struct ChannelMeanOp;

impl CustomOp1 for ChannelMeanOp {
    fn name(&self) -> &'static str {
        "vmatte-channel-mean"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "input")?;
        let (n, c, h, w) = l.shape().dims4()?;
        let plane = (h * w).max(1);
        let means = x
            .par_chunks(plane)
            .map(|p| {
                let mut total = 0.0;
                plane_sum(p, &mut total);
                total / plane as f32
            })
            .collect();
        Ok((CpuStorage::F32(means), Shape::from((n, c, 1, 1))))
    }
}

/// The concatenation along channels of `pieces`, each `n` frames of its
/// own channel count and one plane size: frame by frame, each piece's frame
/// copied by a task of its own.
pub fn cat_frames(pieces: &[&[f32]], n: usize) -> Vec<f32> {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let frame: usize = len / n;
    let mut out = Vec::<f32>::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    let mut copies = Vec::with_capacity(n * pieces.len());
    for f in 0..n {
        let mut at = f * frame;
        for p in pieces {
            let part = p.len() / n;
            copies.push((at, &p[f * part..(f + 1) * part]));
            at += part;
        }
    }
    copies.par_iter().for_each(|&(at, from)| {
        for (k, piece) in from.chunks(PIECE).enumerate() {
            // SAFETY: the copies tile the output's `len` floats, each range
            // written by one task only.
            unsafe {
                let to = dst.get().add(at + k * PIECE);
                std::ptr::copy_nonoverlapping(piece.as_ptr(), to, piece.len());
            }
        }
    });
    // SAFETY: every float was written above.
    unsafe { out.set_len(len) };
    out
}

vectorized! {
    fn add(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!(a.len() == out.len() && b.len() == out.len());
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            o.write(a + b);
        }
    }
}

vectorized! {
    fn add_relu(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!(a.len() == out.len() && b.len() == out.len());
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            o.write((a + b).max(0.0));
        }
    }
}

vectorized! {
    fn relu(x: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!(x.len() == out.len());
        for (o, x) in out.iter_mut().zip(x) {
            o.write(x.max(0.0));
        }
    }
}

vectorized! {
    fn mul(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!(a.len() == out.len() && b.len() == out.len());
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            o.write(a * b);
        }
    }
}

vectorized! {
    fn gru_update(z: &[f32], h: &[f32], c: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!([z, h, c].iter().all(|x| x.len() == out.len()));
        for (((o, z), h), c) in out.iter_mut().zip(z).zip(h).zip(c) {
            o.write((1.0 - z) * h + z * c);
        }
    }
}

vectorized! {
    fn scale(x: &[f32], s: f32, out: &mut [MaybeUninit<f32>]) {
        assert_eq!(x.len(), out.len());
        for (o, x) in out.iter_mut().zip(x) {
            o.write(x * s);
        }
    }
}

vectorized! {
    /// `total = Σ xs`, in 16 running sums so that the loop vectorises.
    fn plane_sum(xs: &[f32], total: &mut f32) {
        let mut lanes = [0f32; 16];
        let mut blocks = xs.chunks_exact(16);
        for block in &mut blocks {
            for (l, x) in lanes.iter_mut().zip(block) {
                *l += x;
            }
        }
        *total = lanes.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>();
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use crate::cpu::test_util::{max_diff, random};

    #[test]
    fn element_wise_glue_matches_candle() {
        use crate::ops;
        // Odd sizes, more floats than one task's piece, and views with an
        // offset (a ConvGRU's gates are narrows of one tensor).
        for (n, c, h, w) in [(2, 5, 3, 7), (1, 6, 70, 90)] {
            let gates = random(&[n, 2 * c, h, w], 1);
            let (r, z) = (
                gates.narrow(1, 0, c).unwrap(),
                gates.narrow(1, c, c).unwrap(),
            );
            let x = random(&[n, c, h, w], 2);
            let s = random(&[n, c, 1, 1], 3);
            let close = |got: Tensor, want: Tensor, what: &str| {
                let d = max_diff(&got, &want);
                assert!(d < 1e-5, "{what} {n}x{c}x{h}x{w}: {d}");
            };
            close(ops::add(&r, &x).unwrap(), (&r + &x).unwrap(), "add");
            close(ops::mul(&r, &x).unwrap(), (&r * &x).unwrap(), "mul");
            close(ops::relu(&r).unwrap(), r.relu().unwrap(), "relu");
            close(
                ops::add_relu(&r, &x).unwrap(),
                (&r + &x).unwrap().relu().unwrap(),
                "add relu",
            );
            // PyTorch's padding never wins a max: lifted above zero, candle's
            // zero-padded pool is the reference.
            let lifted = (&x + 100.0).unwrap();
            let want = (lifted
                .pad_with_zeros(2, 1, 1)
                .unwrap()
                .pad_with_zeros(3, 1, 1)
                .unwrap()
                .max_pool2d_with_stride(3, 2)
                .unwrap()
                - 100.0)
                .unwrap();
            close(ops::max_pool_3x3_s2(&x).unwrap(), want, "max pool");
            if h % 2 == 0 && w % 2 == 0 {
                let want = x.avg_pool2d(2).unwrap();
                close(ops::area_down(&x, 2).unwrap(), want, "area down");
            }
            let cells = random(&[n, c, 32, 48], 4);
            let want = cells.avg_pool2d(16).unwrap();
            close(ops::area_down(&cells, 16).unwrap(), want, "area down by 16");
            let want = ((z.affine(-1.0, 1.0).unwrap() * &x).unwrap() + (&z * &r).unwrap()).unwrap();
            close(ops::gru_update(&z, &x, &r).unwrap(), want, "gru update");
            // With the batch of two, tasks' pieces cross from one frame's
            // values to the next's.
            let values = (random(&[n, 3 * c, h, w], 5) * 3.0).unwrap();
            close(
                ops::sensory_gate(&x, &values).unwrap(),
                ops::sensory_gate_of_tensors(&x, &values).unwrap(),
                "sensory gate",
            );
            close(
                ops::scale_channels(&x, &s).unwrap(),
                x.broadcast_mul(&s).unwrap(),
                "scale channels",
            );
            let mean = x.mean_keepdim(3).unwrap().mean_keepdim(2).unwrap();
            close(ops::global_avg_pool(&x).unwrap(), mean, "mean");
            close(
                ops::cat_channels(&[&z, &x, &r]).unwrap(),
                Tensor::cat(&[&z, &x, &r], 1).unwrap(),
                "cat",
            );
            let frames = [x.clone(), z.contiguous().unwrap(), x.clone()];
            close(
                ops::cat_frames(&frames).unwrap(),
                Tensor::cat(&frames, 0).unwrap(),
                "cat frames",
            );
        }
    }
}
