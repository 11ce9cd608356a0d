//! A 3x3 convolution (padding 1) of a bilinear x2 upsample of `x`
//! (PyTorch's `align_corners=False`) stacked with full-resolution inputs,
//! run at `x`'s resolution: RVM's decode0, whose upsampled 32 channels were
//! a 270x480 tensor at 720p, written and read back, and most of its
//! convolution's input transform.
//!
//! Each output pixel `(2i + py, 2j + px)` is, in one of four phases, a 3x3
//! convolution at low resolution around `(i, j)`:
//! - an upsampled row is `0.25 x[i-1] + 0.75 x[i]` (even) or
//!   `0.75 x[i] + 0.25 x[i+1]` (odd), so the three taps of a phase over the
//!   upsampled rows are fixed mixtures of `x[i-1..=i+1]` ([`MIX`]), and
//!   likewise along rows;
//! - a full-resolution input is split into its four phases (even and odd
//!   rows and columns), each a low-resolution plane; output phase `py`'s
//!   tap `ky` reads full row `2i + py + ky - 1`, one of them.
//!
//! So the whole layer is one Winograd convolution at low resolution with
//! four times the outputs (every phase) and `C_up + 4 C_full` inputs, on a
//! quarter of the pixels. The upsample clamps at the picture's edges,
//! which the low-resolution convolution reproduces by repeating `x`'s edge
//! pixels; the full-resolution convolution, though, zero-pads the upsampled
//! picture. Those out-of-picture taps are the only difference, and are
//! subtracted again on the output's border rows and columns
//! ([`Border`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::bilinear::{lerp_columns, taps};
use super::buffers::{as_uninit, fresh_row, SendPtr};
use super::matmul::{matmul, Left, Product};
use super::polyphase::{polyphase_planes, Polyphase};
use super::winograd::{conv3x3, Tile};
use crate::conv_spec::Activation;
use crate::simd::vectorized;

/// `MIX[p][k]`: how much of `x[i - 1]`, `x[i]` and `x[i + 1]` the
/// upsampled sample that phase `p`'s tap `k` reads holds.
const MIX: [[[f64; 3]; 3]; 2] = [
    [[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.75, 0.25]],
    [[0.25, 0.75, 0.0], [0.0, 0.75, 0.25], [0.0, 0.25, 0.75]],
];

/// The layer: `act(conv3x3([up2(x), full]) + bias)`.
#[derive(Clone, Debug)]
pub struct UpsampledConv {
    o: usize,
    c_up: usize,
    c_full: usize,
    tile: Tile,
    /// The low-resolution convolution's Winograd filters: `4 o` outputs
    /// (phase-major) over `c_up + 4 c_full` inputs.
    filters: Vec<f32>,
    /// `-W[o][c][ky][kx]` over the upsampled channels, as `[ky][kx]`
    /// matrices `o x c_up`: the taps the border takes out again.
    edge: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
}

impl UpsampledConv {
    /// `weight`: `(o, c_up + c_full, 3, 3)`, the upsampled channels first.
    // The taps index the mixtures and the weights alike.
    #[allow(clippy::needless_range_loop)]
    pub fn new(
        weight: &[f32],
        o: usize,
        c_up: usize,
        bias: Option<&[f32]>,
        act: Activation,
        tile: Tile,
    ) -> Self {
        let c = weight.len() / (9 * o);
        assert!(weight.len() == o * c * 9 && c >= c_up);
        let c_full = c - c_up;
        let cf = c_up + 4 * c_full;
        let w =
            |oc: usize, ch: usize, ky: usize, kx: usize| weight[((oc * c + ch) * 3 + ky) * 3 + kx];
        let mut folded = vec![0f64; 4 * o * cf * 9];
        for (py, px) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let phase = 2 * py + px;
            for oc in 0..o {
                let out = (phase * o + oc) * cf;
                for ky in 0..3 {
                    for kx in 0..3 {
                        for ch in 0..c_up {
                            let v = w(oc, ch, ky, kx) as f64;
                            for (a, my) in MIX[py][ky].iter().enumerate() {
                                for (b, mx) in MIX[px][kx].iter().enumerate() {
                                    folded[((out + ch) * 3 + a) * 3 + b] += v * my * mx;
                                }
                            }
                        }
                        // Full row 2i + py + ky - 1 is row i + a - 1 of
                        // phase (py + ky - 1) mod 2; columns likewise.
                        let (ry, rx) = ((py + ky) as isize - 1, (px + kx) as isize - 1);
                        let (fy, a) = (ry.rem_euclid(2) as usize, (ry.div_euclid(2) + 1) as usize);
                        let (fx, b) = (rx.rem_euclid(2) as usize, (rx.div_euclid(2) + 1) as usize);
                        for ch in 0..c_full {
                            let to = c_up + 4 * ch + 2 * fy + fx;
                            folded[((out + to) * 3 + a) * 3 + b] += w(oc, c_up + ch, ky, kx) as f64;
                        }
                    }
                }
            }
        }
        let folded: Vec<f32> = folded.into_iter().map(|v| v as f32).collect();
        let mut edge = vec![0f32; 9 * o * c_up];
        for ky in 0..3 {
            for kx in 0..3 {
                for oc in 0..o {
                    for ch in 0..c_up {
                        edge[((3 * ky + kx) * o + oc) * c_up + ch] = -w(oc, ch, ky, kx);
                    }
                }
            }
        }
        Self {
            o,
            c_up,
            c_full,
            tile,
            filters: tile.filters(&folded, 4 * o, cf),
            edge,
            bias: bias.map_or_else(|| vec![0.0; o], <[f32]>::to_vec),
            act,
        }
    }

    /// The same layer followed by `act` instead.
    pub fn then(&self, act: Activation) -> Self {
        Self {
            act,
            ..self.clone()
        }
    }

    /// One frame: `low`, the upsampled channels' pieces at `(hl, wl)`;
    /// `full`, the other channels' pieces at the output size `(h, w)`,
    /// which the upsample crops to (`hl = ceil(h / 2)`, likewise `wl`).
    /// Appends the frame's `(o, h, w)` outputs to `out`.
    pub fn forward(
        &self,
        low: &[&[f32]],
        full: &[&[f32]],
        (hl, wl): (usize, usize),
        (h, w): (usize, usize),
        out: &mut Vec<f32>,
    ) {
        assert!(hl == h.div_ceil(2) && wl == w.div_ceil(2));
        let (o, cf) = (self.o, self.c_up + 4 * self.c_full);
        let full_planes: Vec<&[f32]> = full.iter().flat_map(|t| t.chunks(h * w)).collect();
        let low_planes: Vec<&[f32]> = low.iter().flat_map(|t| t.chunks(hl * wl)).collect();
        assert!(full_planes.len() == self.c_full && low_planes.len() == self.c_up);
        // Each full-resolution plane as its four phases (even and odd rows
        // and columns), zeros past the picture's edge: stride 2, no padding.
        let layout = Polyphase::new((2, 0), (h, w), (hl, wl));
        let phases = polyphase_planes(&layout, &full_planes);
        let mut inputs = low.to_vec();
        inputs.push(&phases);
        let mut sums = Vec::<f32>::with_capacity(4 * o * hl * wl);
        conv3x3(
            self.tile,
            &inputs,
            (cf, hl, wl),
            self.c_up,
            false,
            4 * o,
            &self.filters,
            None,
            Activation::Identity,
            SendPtr(sums.as_mut_ptr()),
        );
        // SAFETY: conv3x3 wrote all 4 o planes.
        unsafe { sums.set_len(4 * o * hl * wl) };
        let border = Border::new(self, &low_planes, (hl, wl), (h, w));
        let start = out.len();
        out.reserve(o * h * w);
        // SAFETY: the frame's outputs lie inside the capacity.
        let dst = SendPtr(unsafe { out.as_mut_ptr().add(start) });
        self.interleave(&sums, &border, (hl, wl), (h, w), dst);
        // SAFETY: interleave wrote every output of the frame.
        unsafe { out.set_len(start + o * h * w) };
    }

    /// The four phase planes, `4 o` of them at low resolution, as the
    /// `o` full-resolution planes at `dst`, with the border's correction,
    /// the bias and the activation: a task per output plane and band of
    /// rows.
    fn interleave(
        &self,
        sums: &[f32],
        border: &Border,
        (hl, wl): (usize, usize),
        (h, w): (usize, usize),
        dst: SendPtr,
    ) {
        const BAND: usize = 16;
        let o = self.o;
        let plane = hl * wl;
        let tasks: Vec<(usize, usize)> = (0..o)
            .flat_map(|oc| (0..hl).step_by(BAND).map(move |i| (oc, i)))
            .collect();
        tasks.par_iter().for_each(|&(oc, i0)| {
            let mut row = vec![0f32; 2 * wl];
            for i in i0..(i0 + BAND).min(hl) {
                for py in 0..2 {
                    let y = 2 * i + py;
                    if y >= h {
                        break;
                    }
                    let phase = |px: usize| {
                        let at = ((2 * py + px) * o + oc) * plane + i * wl;
                        &sums[at..at + wl]
                    };
                    interleave_pair(phase(0), phase(1), &mut row);
                    border.correct(oc, y, &mut row[..w]);
                    // SAFETY: row y of plane oc belongs to this task alone;
                    // apply_biased writes all of it.
                    let out = unsafe {
                        let at = fresh_row(dst, (oc * h + y) * w, w);
                        &mut *(at as *mut [MaybeUninit<f32>] as *mut [f32])
                    };
                    self.act.apply_biased(&row[..w], self.bias[oc], out);
                }
            }
        });
    }
}

vectorized! {
    /// `out[2j] = even[j]`, `out[2j + 1] = odd[j]`.
    fn interleave_pair(even: &[f32], odd: &[f32], out: &mut [f32]) {
        for ((pair, e), d) in out.chunks_exact_mut(2).zip(even).zip(odd) {
            pair[0] = *e;
            pair[1] = *d;
        }
    }
}

/// What the low-resolution convolution added for taps outside the
/// picture, where the full-resolution one reads zeros, per output channel:
/// along the top and bottom rows (`w` each) and down the left and right
/// columns (`h` each, without the rows the first two cover). Already
/// negated: [`Border::correct`] adds it.
struct Border {
    h: usize,
    w: usize,
    top: Vec<f32>,
    bottom: Vec<f32>,
    left: Vec<f32>,
    right: Vec<f32>,
}

impl Border {
    fn new(
        conv: &UpsampledConv,
        x: &[&[f32]],
        (hl, wl): (usize, usize),
        (h, w): (usize, usize),
    ) -> Self {
        let (o, c) = (conv.o, conv.c_up);
        let (rows, cols) = (taps(hl, h, Some(2.0)), taps(wl, w, Some(2.0)));
        // Low-resolution row `r` of each channel upsampled along the row,
        // from column -1 to w: what the low-resolution convolution sees in
        // the clamped upsampled row -1 (r = 0) or h (r = hl - 1), whose
        // edge pixels repeat at -1 and w.
        let row = |r: usize| -> Vec<f32> {
            let mut line = vec![0f32; c * (w + 2)];
            for (ch, out) in line.chunks_exact_mut(w + 2).enumerate() {
                let src = &x[ch][r * wl..(r + 1) * wl];
                out[0] = src[0];
                // SAFETY: lerp_columns writes only initialised floats.
                lerp_columns(src, &cols, unsafe { as_uninit(&mut out[1..=w]) });
                out[w + 1] = src[wl - 1];
            }
            line
        };
        // The upsampled column `k`, rows 0..h, with zeros at -1 and h:
        // those taps are the rows' to take out.
        let column = |k: usize| -> Vec<f32> {
            let mut line = vec![0f32; c * (h + 2)];
            for (ch, out) in line.chunks_exact_mut(h + 2).enumerate() {
                let src: Vec<f32> = x[ch].iter().skip(k).step_by(wl).copied().collect();
                // SAFETY: lerp_columns writes only initialised floats.
                lerp_columns(&src, &rows, unsafe { as_uninit(&mut out[1..=h]) });
            }
            line
        };
        // Taps (ky, kx) for k in 0..3, summed over the line's shifts.
        let sums = |line: &[f32], len: usize, tap: &dyn Fn(usize) -> usize| -> Vec<f32> {
            let mut out = vec![0f32; o * len];
            for k in 0..3 {
                // SAFETY: edge's matrix is o x c, line c rows of len + 2
                // from which len are read at offset k, out o x len.
                unsafe {
                    matmul(&Product {
                        m: o,
                        n: len,
                        k: c,
                        a: Left::Rows {
                            a: conv.edge.as_ptr().add(tap(k) * o * c),
                            lda: c,
                        },
                        b: line.as_ptr().add(k),
                        ldb: len + 2,
                        dst: out.as_mut_ptr(),
                        ldd: len,
                        accumulate: k > 0,
                    })
                }
            }
            out
        };
        Self {
            h,
            w,
            top: sums(&row(0), w, &|kx| kx),
            bottom: sums(&row(hl - 1), w, &|kx| 6 + kx),
            left: sums(&column(0), h, &|ky| 3 * ky),
            right: sums(&column(wl - 1), h, &|ky| 3 * ky + 2),
        }
    }

    /// Adds output channel `oc`'s corrections to its row `y`.
    fn correct(&self, oc: usize, y: usize, row: &mut [f32]) {
        let (h, w) = (self.h, self.w);
        if y == 0 {
            add_into(&self.top[oc * w..(oc + 1) * w], row);
        }
        if y == h - 1 {
            add_into(&self.bottom[oc * w..(oc + 1) * w], row);
        }
        row[0] += self.left[oc * h + y];
        row[w - 1] += self.right[oc * h + y];
    }
}

/// `acc += xs`.
fn add_into(xs: &[f32], acc: &mut [f32]) {
    for (a, x) in acc.iter_mut().zip(xs) {
        *a += x;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::cpu::test_util::{max_diff, random};

    /// Against the upsample (vmatte's resize, itself held to candle's), a
    /// concatenation and candle's convolution: even and odd output sizes
    /// (the upsample crops), single rows and columns, the upsampled
    /// channels in two pieces as RVM's decoder passes them.
    #[test]
    fn matches_upsampling_then_convolving() {
        let sizes = [
            (5, 7, 10, 14),
            (5, 7, 9, 13),
            (9, 12, 17, 24),
            (1, 3, 2, 5),
            (1, 1, 1, 1),
            (12, 20, 24, 39),
            // Wide enough for vectors of tiles read in place beside the
            // edge windows, and for tile rows cut into runs.
            (20, 200, 40, 400),
            (21, 200, 41, 399),
        ];
        for (i, &(hl, wl, h, w)) in sizes.iter().enumerate() {
            let (c_up, c_full, o, n) = (6, 3, 5, 2);
            let seed = 10 * i as u64;
            let x0 = random(&[n, c_up / 2, hl, wl], seed);
            let x1 = random(&[n, c_up / 2, hl, wl], seed + 1);
            let s = random(&[n, c_full, h, w], seed + 2);
            let weight = random(&[o, c_up + c_full, 3, 3], seed + 3);
            let bias: Vec<f32> = (0..o).map(|k| k as f32 * 0.1 - 0.2).collect();
            let up = |x: &Tensor| crate::ops::scale_bilinear_to(x, 2.0, h, w).unwrap();
            let cat = crate::ops::cat_channels(&[&up(&x0), &up(&x1), &s]).unwrap();
            let bias_t = Tensor::new(bias.as_slice(), &Device::Cpu).unwrap();
            let want = cat
                .conv2d(&weight, 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&bias_t.reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            let want = Activation::Relu.apply(&want).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let conv = UpsampledConv::new(
                &flat(&weight),
                o,
                c_up,
                Some(&bias),
                Activation::Relu,
                Tile::F4,
            );
            let (a, b, c) = (flat(&x0), flat(&x1), flat(&s));
            let mut got = Vec::new();
            let frame = |t: &[f32], f: usize| t.chunks(t.len() / n).nth(f).unwrap().to_vec();
            for f in 0..n {
                let (a, b, c) = (frame(&a, f), frame(&b, f), frame(&c, f));
                conv.forward(&[&a, &b], &[&c], (hl, wl), (h, w), &mut got);
            }
            let got = Tensor::from_vec(got, (n, o, h, w), &Device::Cpu).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "{hl}x{wl} to {h}x{w}: {d}");
        }
    }
}
