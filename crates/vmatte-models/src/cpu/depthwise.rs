//! Depthwise convolutions: a plane per task, its zero-padded stride
//! phases ([`Polyphase`]) swept as one run of vectors, each output's taps
//! summed in a register ([`tap_sums`], which the narrow dense layers
//! share).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffers::{fresh_row, grown, SendPtr};
use super::conv::ConvOp;
use super::lanes::{dispatched, Vector};
use super::polyphase::{write_polyphase, Polyphase};
use crate::conv_spec::Activation;

thread_local! {
    /// A padded input plane and a wide output plane, reused (the narrow
    /// dense layers use the second too).
    pub(super) static DEPTHWISE_SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A depthwise convolution of `n` frames of `c` planes `h x w`, a plane
/// per task, biased and activated: writes all `n c` output planes of
/// `ho x wo` at `base`.
pub(super) fn conv_depthwise(
    op: &ConvOp,
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (ho, wo): (usize, usize),
    weight: &[f32],
    base: SendPtr,
) {
    let s = &op.spec;
    let plane_out = ho * wo;
    // Where each tap reads in a padded plane's phases, the same for all
    // planes.
    let layout = Polyphase::new((s.stride, s.padding), (h, w), (ho, wo));
    let offsets = layout.offsets(s);
    let kk = s.kernel * s.kernel;
    (0..n * c).into_par_iter().for_each(|bc| {
        let ch = bc % c;
        // SAFETY: plane `bc` lies inside the capacity and belongs to this
        // task alone; depthwise_plane writes every float of it.
        let dst = unsafe { fresh_row(base, bc * plane_out, plane_out) };
        let plane = &x[bc * h * w..(bc + 1) * h * w];
        let taps = (&weight[ch * kk..(ch + 1) * kk], offsets.as_slice());
        let bias = op.bias.as_ref().map_or(0.0, |b| b[ch]);
        DEPTHWISE_SCRATCH.with(|scratch| {
            let (padded, wide) = &mut *scratch.borrow_mut();
            depthwise_plane(&layout, plane, taps, (bias, op.act), padded, wide, dst);
        });
    });
}

/// One channel of a depthwise convolution over the whole plane at once,
/// biased and activated. With the input laid out by [`Polyphase`] and the
/// outputs as wide as its rows, every tap reads a single long run of
/// floats (the trick of `shifted.rs`), so the whole plane is one run of
/// vectors, each summing its taps in a register; the extra columns are
/// dropped on the way out. The deep MobileNetV3 layers have planes only 30
/// pixels wide, where row-by-row loops spend most of their time in scalar
/// tails, and strided ones read a row and a tap at a time are slower
/// still.
fn depthwise_plane(
    layout: &Polyphase,
    plane: &[f32],
    (taps, offsets): (&[f32], &[usize]),
    (bias, act): (f32, Activation),
    padded: &mut Vec<f32>,
    wide: &mut Vec<f32>,
    dst: &mut [MaybeUninit<f32>],
) {
    padded.clear();
    padded.reserve(layout.len());
    write_polyphase(
        layout,
        plane,
        &mut padded.spare_capacity_mut()[..layout.len()],
    );
    // SAFETY: write set every float of the layout.
    unsafe { padded.set_len(layout.len()) };
    let wide = grown(wide, layout.wide_len());
    tap_sums(padded, taps, offsets, wide);
    // SAFETY: every float of dst is written before it is read.
    let dst = unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) };
    act.apply_biased_rows(wide, layout.ws, bias, dst, layout.wo);
}

dispatched!(pub(super) tap_sums => tap_sums_in[](padded: &[f32], taps: &[f32], offsets: &[usize], out: &mut [f32]));

/// `out[i] = Σ taps[t] · padded[i + offsets[t]]`, a vector of outputs at a
/// time with its sum in a register: one load and one multiply-add per tap,
/// rather than a pass over the whole run per tap that loads and stores the
/// running sums each time.
#[inline(always)]
fn tap_sums_in<V: Vector>(padded: &[f32], taps: &[f32], offsets: &[usize], out: &mut [f32]) {
    let furthest = offsets.iter().max().copied().unwrap_or(0);
    assert!(taps.len() == offsets.len() && out.len() + furthest <= padded.len());
    let l = V::LANES;
    // Four vectors at once: a multiply-add waits for the one before it on
    // the same sum, so one sum at a time would run at its latency.
    const SUMS: usize = 4;
    let mut i = 0;
    while i + SUMS * l <= out.len() {
        let mut sums = [V::zero(); SUMS];
        for (&t, &at) in taps.iter().zip(offsets) {
            for (k, sum) in sums.iter_mut().enumerate() {
                // SAFETY: i + k l + at + l <= out.len() + furthest <= padded.len().
                *sum = unsafe { V::load(padded.as_ptr().add(i + k * l + at)) }.mul_add(t, *sum);
            }
        }
        for (k, sum) in sums.into_iter().enumerate() {
            // SAFETY: i + k l + l <= out.len().
            unsafe { sum.store(out.as_mut_ptr().add(i + k * l)) };
        }
        i += SUMS * l;
    }
    while i + l <= out.len() {
        let mut sum = V::zero();
        for (&t, &at) in taps.iter().zip(offsets) {
            // SAFETY: i + at + l <= out.len() + furthest <= padded.len().
            sum = unsafe { V::load(padded.as_ptr().add(i + at)) }.mul_add(t, sum);
        }
        // SAFETY: i + l <= out.len().
        unsafe { sum.store(out.as_mut_ptr().add(i)) };
        i += l;
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        *o = taps.iter().zip(offsets).fold(0.0, |sum, (&t, &at)| {
            Vector::mul_add(padded[j + at], t, sum)
        });
    }
}
