//! Dense convolutions with few taps (MobileNetV3's stem: 3 channels, 27
//! taps an output), run as the depthwise layers are: every output plane a
//! sweep over all the input planes' padded phases.

use rayon::prelude::*;

use super::buffers::{grown, SendPtr};
use super::conv::ConvOp;
use super::depthwise::{tap_sums, DEPTHWISE_SCRATCH};
use super::polyphase::{polyphase_planes, Polyphase};

/// Taps (input channels times kernel positions) up to which a dense layer
/// sweeps every output plane over its padded input phases ([`conv_narrow`])
/// rather than making a patch matrix for gemm.
pub(super) const NARROW_TAPS: usize = 32;

/// Output rows per task of [`conv_narrow`].
const NARROW_BAND: usize = 8;

/// A dense convolution of one image with few input channels (MobileNetV3's
/// stem: 3 channels, 27 taps an output) as the depthwise layers run: the
/// input planes' padded phases ([`Polyphase`]) one after another, and each
/// output plane a wide sweep summing all the taps of all the channels from
/// their offsets. A task makes a band of rows of every output plane, so the
/// band's input stays in cache across them. (A patch matrix and gemm suit
/// it badly: a 27-deep product is mostly loads and stores.) Appends the
/// image's outputs to `out`.
pub(super) fn conv_narrow(
    op: &ConvOp,
    image: &[f32],
    (c, h, w): (usize, usize, usize),
    (ho, wo): (usize, usize),
    weight: &[f32],
    out: &mut Vec<f32>,
) {
    let s = &op.spec;
    let (o, kk) = (s.out_channels, s.kernel * s.kernel);
    let layout = Polyphase::new((s.stride, s.padding), (h, w), (ho, wo));
    let (one, plane_len) = (layout.offsets(s), layout.len());
    let offsets: Vec<usize> = (0..c)
        .flat_map(|ch| one.iter().map(move |t| ch * plane_len + t))
        .collect();
    let planes: Vec<&[f32]> = image.chunks(h * w).collect();
    let padded = polyphase_planes(&layout, &planes);
    let start = out.len();
    out.reserve(o * ho * wo);
    // SAFETY: the image's outputs lie inside the capacity.
    let base = SendPtr(unsafe { out.as_mut_ptr().add(start) });
    let ws = layout.ws;
    (0..ho.div_ceil(NARROW_BAND))
        .into_par_iter()
        .for_each(|band| {
            let (r0, r1) = (band * NARROW_BAND, ((band + 1) * NARROW_BAND).min(ho));
            let len = (r1 - r0 - 1) * ws + wo;
            DEPTHWISE_SCRATCH.with(|scratch| {
                let (_, wide) = &mut *scratch.borrow_mut();
                let wide = grown(wide, len);
                for oc in 0..o {
                    let taps = &weight[oc * c * kk..(oc + 1) * c * kk];
                    tap_sums(&padded[r0 * ws..], taps, &offsets, wide);
                    // SAFETY: rows r0..r1 of plane oc belong to this task
                    // alone; apply_biased_rows writes every float of them.
                    let dst = unsafe {
                        let at = base.get().add(oc * ho * wo + r0 * wo);
                        std::slice::from_raw_parts_mut(at, (r1 - r0) * wo)
                    };
                    let bias = op.bias.as_ref().map_or(0.0, |b| b[oc]);
                    op.act.apply_biased_rows(wide, ws, bias, dst, wo);
                }
            });
        });
    // SAFETY: the bands wrote every row of every output plane.
    unsafe { out.set_len(start + o * ho * wo) };
}
