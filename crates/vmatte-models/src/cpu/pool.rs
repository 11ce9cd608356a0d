//! RVM's decoder halves the source frames three times (2x2 average, odd
//! sizes rounding up, a border cell averaging only the pixels it has).
//! As candle ops that is a padded copy, a pool, and two scalings of each
//! level, all on the calling thread; here it is one pass, a plane per task.
//! ResNet's stem max pool likewise (two padded copies and a pool on one
//! thread as candle ops), and MatAnyone's area downsampling of its decoder
//! maps to stride 16 (candle's average pool, on one thread).

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

use super::buffers::{contiguous, made_in_pieces};

/// `(N, C, H, W)` to `(N, C, ⌈H/2⌉, ⌈W/2⌉)`, each output the mean of the
/// (up to four) inputs under it.
#[derive(Clone, Copy, Debug)]
pub struct HalvingPoolOp;

impl CustomOp1 for HalvingPoolOp {
    fn name(&self) -> &'static str {
        "vmatte-halving-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "input")?;
        let (n, c, h, w) = l.shape().dims4()?;
        let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
        // A task per output plane, each row of it written by halve_row.
        let out = made_in_pieces(n * c * ho * wo, (ho * wo).max(1), |p, _, dst| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for (oy, row) in dst.chunks_exact_mut(wo).enumerate() {
                let top = &plane[2 * oy * w..(2 * oy + 1) * w];
                let bottom = plane.get((2 * oy + 1) * w..(2 * oy + 2) * w);
                halve_row(top, bottom, row);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

/// ResNet's stem pool, PyTorch's `MaxPool2d(3, stride 2, padding 1)`:
/// `(N, C, H, W)` to `(N, C, ⌊(H-1)/2⌋+1, ⌊(W-1)/2⌋+1)`, each output the
/// largest of the inputs of its 3x3 window inside the picture (the padding
/// never wins).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool3x3S2Op;

impl CustomOp1 for MaxPool3x3S2Op {
    fn name(&self) -> &'static str {
        "vmatte-max-pool-3x3-s2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "input")?;
        let (n, c, h, w) = l.shape().dims4()?;
        if h == 0 || w == 0 {
            candle_core::bail!("vmatte-max-pool-3x3-s2: an empty plane");
        }
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let out = made_in_pieces(n * c * ho * wo, ho * wo, |p, _, dst| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            // The row maxima of the three rows under each output row, then
            // the window maxima along it.
            let mut rows = vec![f32::NEG_INFINITY; w];
            for (oy, out) in dst.chunks_exact_mut(wo).enumerate() {
                rows.fill(f32::NEG_INFINITY);
                for y in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(h) {
                    for (m, v) in rows.iter_mut().zip(&plane[y * w..(y + 1) * w]) {
                        *m = m.max(*v);
                    }
                }
                for (ox, o) in out.iter_mut().enumerate() {
                    let window = &rows[(2 * ox).saturating_sub(1)..(2 * ox + 2).min(w)];
                    o.write(window.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

/// The mean of each `factor x factor` cell of `(N, C, H, W)`, `H` and `W`
/// multiples of `factor` (PyTorch's `interpolate(mode='area')` by a whole
/// factor).
#[derive(Clone, Copy, Debug)]
pub struct AreaDownOp {
    pub factor: usize,
}

impl CustomOp1 for AreaDownOp {
    fn name(&self) -> &'static str {
        "vmatte-area-down"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "input")?;
        let (n, c, h, w) = l.shape().dims4()?;
        let f = self.factor;
        if f == 0 || h % f != 0 || w % f != 0 {
            candle_core::bail!("vmatte-area-down: {h}x{w} is not a multiple of {f}");
        }
        let (ho, wo) = (h / f, w / f);
        let scale = 1.0 / (f * f) as f32;
        let out = made_in_pieces(n * c * ho * wo, (ho * wo).max(1), |p, _, dst| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            // The cell's rows summed at full width, then each run of f.
            let mut sums = vec![0.0f32; w];
            for (oy, out) in dst.chunks_exact_mut(wo).enumerate() {
                sums.copy_from_slice(&plane[f * oy * w..(f * oy + 1) * w]);
                for y in f * oy + 1..f * (oy + 1) {
                    for (s, v) in sums.iter_mut().zip(&plane[y * w..(y + 1) * w]) {
                        *s += v;
                    }
                }
                for (o, cell) in out.iter_mut().zip(sums.chunks_exact(f)) {
                    o.write(cell.iter().sum::<f32>() * scale);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

/// One output row from the one or two input rows under it.
fn halve_row(top: &[f32], bottom: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
    let pairs = top.len() / 2;
    assert_eq!(out.len(), top.len().div_ceil(2));
    match bottom {
        Some(bottom) => {
            for (o, (t, b)) in out
                .iter_mut()
                .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
            {
                o.write((t[0] + t[1] + b[0] + b[1]) / 4.0);
            }
            if top.len() % 2 == 1 {
                out[pairs].write((top[2 * pairs] + bottom[2 * pairs]) / 2.0);
            }
        }
        None => {
            for (o, t) in out.iter_mut().zip(top.chunks_exact(2)) {
                o.write((t[0] + t[1]) / 2.0);
            }
            if top.len() % 2 == 1 {
                out[pairs].write(top[2 * pairs]);
            }
        }
    }
}
