//! The zero-padded input planes that the depthwise, narrow, shifted and
//! upsampled convolutions read: each plane cut into its stride's phases,
//! so that every tap reads one run of floats at unit stride.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffers::plane_row;
use super::lanes::{copy, dispatched, fill, Vector};
use crate::conv_spec::ConvSpec;

/// A convolution's input plane, zero-padded and cut into its stride's
/// `s x s` phases: phase `(φy, φx)` holds padded pixel `(s i + φy, s j +
/// φx)` at `(i, j)`, each phase `hs x ws`, one after another. Every tap
/// then reads one phase at unit stride, one long run of floats for the
/// whole plane from a single offset (stride 1 is the one phase, the
/// padded plane itself).
pub(super) struct Polyphase {
    pub(super) s: usize,
    pub(super) p: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) hs: usize,
    pub(super) ws: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Polyphase {
    /// The layout of an `h x w` plane padded by `p` for stride `s`, whose
    /// convolution makes `ho x wo` outputs.
    pub(super) fn new(
        (s, p): (usize, usize),
        (h, w): (usize, usize),
        (ho, wo): (usize, usize),
    ) -> Self {
        Self {
            s,
            p,
            h,
            w,
            hs: (h + 2 * p).div_ceil(s),
            ws: (w + 2 * p).div_ceil(s),
            ho,
            wo,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.s * self.s * self.hs * self.ws
    }

    /// Outputs swept at once: rows `ws` apart, the last `wo` long. An
    /// output's tap reads `ox + (kx d) / s < ws` in its phase, so the extra
    /// columns of each row are the only waste.
    pub(super) fn wide_len(&self) -> usize {
        (self.ho - 1) * self.ws + self.wo
    }

    /// Where each tap `(ky, kx)` reads, from an output's position in the
    /// wide sweep.
    pub(super) fn offsets(&self, spec: &ConvSpec) -> Vec<usize> {
        let (k, d, s) = (spec.kernel, spec.dilation, self.s);
        (0..k * k)
            .map(|t| {
                let (dy, dx) = (t / k * d, t % k * d);
                let phase = (dy % s) * s + dx % s;
                phase * self.hs * self.ws + dy / s * self.ws + dx / s
            })
            .collect()
    }
}

/// `planes`, each `h x w`, in `layout` one after another, a task a plane.
pub(super) fn polyphase_planes(layout: &Polyphase, planes: &[&[f32]]) -> Vec<f32> {
    let len = planes.len() * layout.len();
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(layout.len())
        .zip(planes)
        .for_each(|(to, plane)| write_polyphase(layout, plane, to));
    // SAFETY: write_polyphase set every float of each plane's layout.
    unsafe { out.set_len(len) };
    out
}

dispatched!(pub(super) write_polyphase => write_polyphase_in[](layout: &Polyphase, plane: &[f32], to: &mut [MaybeUninit<f32>]));

/// Writes `plane` in `layout` to `to`, each float once. (One call a plane,
/// not a row: the deep layers' planes are small, and every call goes
/// through the CPU-feature dispatch.)
#[inline(always)]
fn write_polyphase_in<V: Vector>(layout: &Polyphase, plane: &[f32], to: &mut [MaybeUninit<f32>]) {
    let (s, p, w) = (layout.s, layout.p, layout.w);
    assert!(plane.len() == layout.h * w && to.len() == layout.len());
    let phases = to.chunks_exact_mut(layout.hs * layout.ws);
    for (phase, rows) in phases.enumerate() {
        let (fy, fx) = (phase / s, phase % s);
        // Phase columns j whose picture column s j + fx - p is inside.
        let lo = p.saturating_sub(fx).div_ceil(s).min(layout.ws);
        let hi = (w + p).saturating_sub(fx).div_ceil(s).clamp(lo, layout.ws);
        for (i, row) in rows.chunks_exact_mut(layout.ws).enumerate() {
            let y = (s * i + fy) as isize - p as isize;
            let Some(src) = plane_row(plane, (layout.h, w), y) else {
                fill::<V>(row, 0.0);
                continue;
            };
            fill::<V>(&mut row[..lo], 0.0);
            fill::<V>(&mut row[hi..], 0.0);
            // (A plane narrower than the stride may have no column here.)
            if lo < hi {
                every_nth::<V>(&src[s * lo + fx - p..], s, &mut row[lo..hi]);
            }
        }
    }
}

/// `out[j] = src[s j]`: one phase of a row.
#[inline(always)]
fn every_nth<V: Vector>(src: &[f32], s: usize, out: &mut [MaybeUninit<f32>]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    assert!(src.len() > s * (n - 1));
    let mut j = 0;
    match s {
        1 => {
            copy::<V>(&src[..n], out);
            j = n;
        }
        // The even lanes of two vectors, a vector of outputs at a time.
        2 => {
            let l = V::LANES;
            while j + l <= n && 2 * (j + l) <= src.len() {
                // SAFETY: 2 l floats from 2 j lie inside src, l from j
                // inside out (checked above).
                unsafe {
                    let at = src.as_ptr().add(2 * j);
                    let (even, _) = V::split(V::load(at), V::load(at.add(l)));
                    even.store(out.as_mut_ptr().add(j).cast());
                }
                j += l;
            }
        }
        _ => {}
    }
    for (o, v) in out[j..].iter_mut().zip(src[s * j..].iter().step_by(s)) {
        o.write(*v);
    }
}
