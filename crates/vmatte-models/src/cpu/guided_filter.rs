//! The low-resolution half of RVM's deep guided filter in one pass: the
//! box-filtered means, covariance and variance of the guide and the
//! network's output, the three 1x1 layers that turn them (with the hidden
//! features) into the linear model's slope `A`, and its offset `b`.
//!
//! As tensor ops that is a dozen passes over full low-resolution frames,
//! most of them serial element-wise ops and a 24-channel concatenation, and
//! 1x1 layers too thin (4 to 24 channels) for a general gemm to run at
//! speed. Here a task makes a band of rows, one row at a time, and every
//! intermediate stays in its core's cache.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::buffers::{contiguous, SendPtr};
use super::matmul::{matmul, Left, Product};
use crate::conv_spec::Activation;
use crate::simd::vectorized;

/// Guide channels: RGB and their mean.
const GUIDE: usize = 4;

/// Rows per task: each band makes the statistics of the two source rows
/// beyond it again, so a band of 8 did a quarter more of that work.
const BAND: usize = 16;

thread_local! {
    /// A task's rows, reused across bands and frames: made afresh, the
    /// band's 200 KB (at 480 wide) were allocated and zeroed every time.
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

/// A 1x1 convolution's `(out, in)` weights, bias and activation.
#[derive(Clone, Debug)]
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

impl Dense {
    fn out(&self) -> usize {
        self.bias.len()
    }

    /// `dst = act(bias + weight · x)` for `x` stacked from `parts`, each
    /// `(rows, row stride)` of a row of `n` pixels, in the weight's column
    /// order.
    fn forward(&self, parts: &[(*const f32, usize, usize)], n: usize, dst: &mut [f32]) {
        let cols: usize = parts.iter().map(|p| p.1).sum();
        let o = self.out();
        assert!(self.weight.len() == o * cols && dst.len() == o * n);
        for (row, b) in dst.chunks_exact_mut(n).zip(&self.bias) {
            row.fill(*b);
        }
        let mut k0 = 0;
        for &(b, k, ldb) in parts {
            // SAFETY: the weight's columns k0..k0 + k, the part's k rows of
            // n floats (the callers' slices) and dst, asserted above.
            unsafe {
                matmul(&Product {
                    m: o,
                    n,
                    k,
                    a: Left::Rows {
                        a: self.weight.as_ptr().add(k0),
                        lda: cols,
                    },
                    b,
                    ldb,
                    dst: dst.as_mut_ptr(),
                    ldd: n,
                    accumulate: true,
                })
            }
            k0 += k;
        }
        self.act.apply_in_place(dst);
    }
}

/// `(source (T, 3, h, w), network output (T, 4, h, w), hidden (T, C, h, w))`
/// at low resolution to `[A, b]`, `(T, 8, h, w)`.
#[derive(Clone, Debug)]
pub struct GuidedCoefficientsOp {
    /// The learnt depthwise 3x3 box filter, 9 taps per guide channel.
    pub box_taps: Vec<f32>,
    pub box_bias: [f32; GUIDE],
    /// `[cov(x, y), var(x), hidden]` to `A`.
    pub layers: [Dense; 3],
}

impl CustomOp3 for GuidedCoefficientsOp {
    fn name(&self) -> &'static str {
        "vmatte-guided-coefficients"
    }

    fn cpu_fwd(
        &self,
        src_s: &CpuStorage,
        src_l: &Layout,
        out_s: &CpuStorage,
        out_l: &Layout,
        hid_s: &CpuStorage,
        hid_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous(src_s, src_l, "source")?;
        let net = contiguous(out_s, out_l, "network output")?;
        let hid = contiguous(hid_s, hid_l, "hidden features")?;
        let (n, c, h, w) = src_l.shape().dims4()?;
        let hidden = hid_l.shape().dims4()?.1;
        if c != 3
            || out_l.shape().dims4()? != (n, GUIDE, h, w)
            || hid_l.shape().dims4()? != (n, hidden, h, w)
            || self.layers[0].weight.len() != self.layers[0].out() * (2 * GUIDE + hidden)
        {
            candle_core::bail!(
                "vmatte-guided-coefficients: wants source (T, 3, h, w), output (T, 4, h, w) and hidden (T, C, h, w)"
            );
        }
        let plane = h * w;
        let len = n * 2 * GUIDE * plane;
        let mut coefficients = Vec::<f32>::with_capacity(len);
        let dst = SendPtr(coefficients.as_mut_ptr());
        let bands: Vec<(usize, usize)> = (0..n)
            .flat_map(|f| (0..h).step_by(BAND).map(move |y| (f, y)))
            .collect();
        bands.par_iter().for_each(|&(f, y0)| {
            let frame = Frame {
                rgb: &src[f * 3 * plane..(f + 1) * 3 * plane],
                net: &net[f * GUIDE * plane..(f + 1) * GUIDE * plane],
                hid: &hid[f * hidden * plane..(f + 1) * hidden * plane],
                hidden,
                h,
                w,
            };
            let sizes = (w, self.layers[0].out(), self.layers[1].out());
            SCRATCH.with(|cell| {
                let mut cell = cell.borrow_mut();
                let scratch = match &mut *cell {
                    Some(s) if s.sizes == sizes => s,
                    other => other.insert(Scratch::new(sizes)),
                };
                // Statistics tagged with a row of another frame would be
                // taken for this one's.
                for (made, _) in scratch.stats.iter_mut() {
                    *made = usize::MAX;
                }
                for y in y0..(y0 + BAND).min(h) {
                    // SAFETY: row y of each of frame f's 8 planes belongs to
                    // this band alone; it is borrowed once, to be written
                    // whole.
                    let rows: [&mut [f32]; 2 * GUIDE] = std::array::from_fn(|ch| unsafe {
                        let at = dst.get().add(((f * 2 * GUIDE + ch) * h + y) * w);
                        std::slice::from_raw_parts_mut(at, w)
                    });
                    self.row(&frame, y, scratch, rows);
                }
            });
        });
        // SAFETY: the bands wrote every row of every plane.
        unsafe { coefficients.set_len(len) };
        Ok((
            CpuStorage::F32(coefficients),
            Shape::from((n, 2 * GUIDE, h, w)),
        ))
    }
}

/// One frame's inputs.
struct Frame<'a> {
    rgb: &'a [f32],
    net: &'a [f32],
    hid: &'a [f32],
    hidden: usize,
    h: usize,
    w: usize,
}

/// A task's rows: the guide statistics of the last three source rows, their
/// box filtered sums, the covariance and variance, and the two hidden layers.
struct Scratch {
    /// The row width and the two hidden layers' widths it was made for.
    sizes: (usize, usize, usize),
    /// Source row `r`'s statistics live in slot `r % 3`, tagged with `r`:
    /// each feeds three output rows and is made once for all of them.
    stats: [(usize, Vec<f32>); 3],
    boxed: Vec<f32>,
    spread: Vec<f32>,
    hidden1: Vec<f32>,
    hidden2: Vec<f32>,
    slope: Vec<f32>,
}

impl Scratch {
    fn new(sizes: (usize, usize, usize)) -> Self {
        let (w, first, second) = sizes;
        Self {
            sizes,
            stats: std::array::from_fn(|_| (usize::MAX, vec![0.0; 4 * GUIDE * w])),
            boxed: vec![0.0; 4 * GUIDE * w],
            spread: vec![0.0; 2 * GUIDE * w],
            hidden1: vec![0.0; first * w],
            hidden2: vec![0.0; second * w],
            slope: vec![0.0; GUIDE * w],
        }
    }
}

impl GuidedCoefficientsOp {
    /// Output row `y`: `A` into `rows[..4]`, `b` into `rows[4..]`.
    fn row(&self, f: &Frame, y: usize, s: &mut Scratch, mut rows: [&mut [f32]; 2 * GUIDE]) {
        let w = f.w;
        // Box sums of [x, y, x·y, x·x], 4 channels each, started at the
        // filter's bias.
        for (q, sums) in s.boxed.chunks_exact_mut(w).enumerate() {
            sums.fill(self.box_bias[q % GUIDE]);
        }
        for ky in 0..3 {
            let Some(r) = (y + ky).checked_sub(1).filter(|&r| r < f.h) else {
                continue;
            };
            let at = |ch: usize| &f.rgb[(ch * f.h + r) * w..(ch * f.h + r + 1) * w];
            let net = |ch: usize| &f.net[(ch * f.h + r) * w..(ch * f.h + r + 1) * w];
            let (made, stats) = &mut s.stats[r % 3];
            if *made != r {
                guide_statistics(
                    [at(0), at(1), at(2)],
                    [net(0), net(1), net(2), net(3)],
                    stats,
                );
                *made = r;
            }
            for (q, (line, sums)) in stats
                .chunks_exact(w)
                .zip(s.boxed.chunks_exact_mut(w))
                .enumerate()
            {
                let taps = &self.box_taps[(q % GUIDE) * 9 + 3 * ky..][..3];
                box_row(line, [taps[0], taps[1], taps[2]], sums);
            }
        }
        let (means, products) = s.boxed.split_at(2 * GUIDE * w);
        spread(means, products, &mut s.spread);
        let [first, second, third] = &self.layers;
        first.forward(
            &[
                (s.spread.as_ptr(), 2 * GUIDE, w),
                (f.hid[y * w..].as_ptr(), f.hidden, f.h * w),
            ],
            w,
            &mut s.hidden1,
        );
        second.forward(&[(s.hidden1.as_ptr(), first.out(), w)], w, &mut s.hidden2);
        third.forward(&[(s.hidden2.as_ptr(), second.out(), w)], w, &mut s.slope);
        let (mean_x, mean_y) = means.split_at(GUIDE * w);
        let (slope, offsets) = rows.split_at_mut(GUIDE);
        for (ch, (a, b)) in slope.iter_mut().zip(offsets).enumerate() {
            let at = ch * w..(ch + 1) * w;
            a.copy_from_slice(&s.slope[at.clone()]);
            offset(a, &mean_x[at.clone()], &mean_y[at], b);
        }
    }
}

vectorized! {
    /// `[x, y, x·y, x·x]` of one row, 4 channels each, where the guide `x`
    /// is RGB and their mean and `y` the network's output.
    fn guide_statistics(rgb: [&[f32]; 3], net: [&[f32]; 4], stats: &mut [f32]) {
        let w = rgb[0].len();
        let (x, rest) = stats.split_at_mut(GUIDE * w);
        let (y, rest) = rest.split_at_mut(GUIDE * w);
        let (xy, xx) = rest.split_at_mut(GUIDE * w);
        for (ch, plane) in rgb.iter().enumerate() {
            x[ch * w..(ch + 1) * w].copy_from_slice(plane);
        }
        let [r, g, b] = rgb;
        for (i, m) in x[3 * w..].iter_mut().enumerate() {
            *m = (r[i] + g[i] + b[i]) / 3.0;
        }
        for (ch, plane) in net.iter().enumerate() {
            y[ch * w..(ch + 1) * w].copy_from_slice(plane);
        }
        for ((p, q), (a, b)) in xy.iter_mut().zip(xx.iter_mut()).zip(x.iter().zip(y.iter())) {
            *p = a * b;
            *q = a * a;
        }
    }
}

vectorized! {
    /// `sums[i] += k[0] line[i - 1] + k[1] line[i] + k[2] line[i + 1]`,
    /// zero beyond the row's ends: one row of a 3x3 filter.
    fn box_row(line: &[f32], k: [f32; 3], sums: &mut [f32]) {
        let w = line.len();
        if w == 1 {
            sums[0] += k[1] * line[0];
            return;
        }
        sums[0] += k[1] * line[0] + k[2] * line[1];
        sums[w - 1] += k[0] * line[w - 2] + k[1] * line[w - 1];
        let inner = sums[1..w - 1]
            .iter_mut()
            .zip(&line[..w - 2])
            .zip(&line[1..w - 1])
            .zip(&line[2..]);
        for (((s, l), c), r) in inner {
            *s += k[0] * l + k[1] * c + k[2] * r;
        }
    }
}

vectorized! {
    /// `[cov(x, y), var(x)] = [box(x·y) - mean_x·mean_y, box(x·x) - mean_x²]`.
    fn spread(means: &[f32], products: &[f32], out: &mut [f32]) {
        let n = means.len() / 2;
        let (mean_x, mean_y) = means.split_at(n);
        let (xy, xx) = products.split_at(n);
        let (cov, var) = out.split_at_mut(n);
        for (((c, p), x), y) in cov.iter_mut().zip(xy).zip(mean_x).zip(mean_y) {
            *c = p - x * y;
        }
        for ((v, p), x) in var.iter_mut().zip(xx).zip(mean_x) {
            *v = p - x * x;
        }
    }
}

vectorized! {
    /// `b = mean_y - A·mean_x`.
    fn offset(a: &[f32], mean_x: &[f32], mean_y: &[f32], b: &mut [f32]) {
        for (((b, a), x), y) in b.iter_mut().zip(a).zip(mean_x).zip(mean_y) {
            *b = y - a * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::cpu::test_util::{max_diff, random};

    #[test]
    fn guided_coefficients_are_the_tensor_ops_fused() {
        let hidden = 16;
        let dense = |o: usize, c: usize, act, seed| {
            let w = random(&[o, c, 1, 1], seed).affine(0.3, 0.0).unwrap();
            let b = random(&[o], seed + 1);
            let op = Dense {
                weight: w.flatten_all().unwrap().to_vec1().unwrap(),
                bias: b.to_vec1().unwrap(),
                act,
            };
            let layer = move |x: &Tensor| {
                let y = x
                    .conv2d(&w, 0, 1, 1, 1)
                    .unwrap()
                    .broadcast_add(&b.reshape((1, o, 1, 1)).unwrap())
                    .unwrap();
                act.apply(&y).unwrap()
            };
            (op, layer)
        };
        let (l1, conv1) = dense(hidden, 8 + hidden, Activation::Relu, 10);
        let (l2, conv2) = dense(hidden, hidden, Activation::Relu, 20);
        let (l3, conv3) = dense(4, hidden, Activation::Identity, 30);
        let taps = random(&[4, 1, 3, 3], 40).affine(0.1, 0.1).unwrap();
        let box_bias = [0.01f32, -0.02, 0.03, 0.0];
        let op = GuidedCoefficientsOp {
            box_taps: taps.flatten_all().unwrap().to_vec1().unwrap(),
            box_bias,
            layers: [l1, l2, l3],
        };
        let bias = Tensor::new(&box_bias, &Device::Cpu)
            .unwrap()
            .reshape((1, 4, 1, 1))
            .unwrap();
        let boxed = |t: &Tensor| {
            t.conv2d(&taps, 1, 1, 1, 4)
                .unwrap()
                .broadcast_add(&bias)
                .unwrap()
        };
        // Widths below, at and past the vector widths, and a single column.
        for (h, w) in [(7, 19), (12, 33), (5, 1)] {
            let src = random(&[2, 3, h, w], 1).affine(0.5, 0.5).unwrap();
            let out = random(&[2, 4, h, w], 2);
            let hid = random(&[2, hidden, h, w], 3);
            let x = Tensor::cat(&[&src, &src.mean_keepdim(1).unwrap()], 1).unwrap();
            let (mean_x, mean_y) = (boxed(&x), boxed(&out));
            let cov = (boxed(&(&x * &out).unwrap()) - (&mean_x * &mean_y).unwrap()).unwrap();
            let var = (boxed(&(&x * &x).unwrap()) - (&mean_x * &mean_x).unwrap()).unwrap();
            let a = conv3(&conv2(&conv1(
                &Tensor::cat(&[&cov, &var, &hid], 1).unwrap(),
            )));
            let b = (mean_y - (&a * &mean_x).unwrap()).unwrap();
            let want = Tensor::cat(&[&a, &b], 1).unwrap();
            let got = src.apply_op3_no_bwd(&out, &hid, &op).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 1e-5, "{h}x{w}: {d}");
        }
    }
}
