//! [`ConvOp`]: one convolution layer for vmatte's CPU kernels, its
//! weights laid out at load time in the form its algorithm reads (per tap,
//! or in Winograd's domain). Which algorithm runs it is `dispatch.rs`'s
//! choice; the algorithms read the layer from here.

use std::mem::MaybeUninit;

use super::buffers::made_in_pieces;
use super::matmul::{panels, runs_pointwise, OWN_FROM_K};
use super::winograd::Tile;
use crate::conv_spec::{Activation, ConvSpec};

/// `act(x (N, C, H, W) * weight (O, C/groups, K, K) + bias)`, or with
/// `relu_input` of `max(x, 0)` instead of `x`.
#[derive(Clone, Debug)]
pub struct ConvOp {
    pub spec: ConvSpec,
    pub bias: Option<Vec<f32>>,
    pub act: Activation,
    pub relu_input: bool,
    /// Stride-1 k x k weights as one `O x C` matrix per tap, `[tap][o][c]`.
    pub(crate) tap_major: Option<Vec<f32>>,
    /// Padded, undilated 3x3 weights in Winograd's domain for the
    /// algorithm given (see [`Tile`]), which those convolutions use
    /// instead of `tap_major`.
    pub(crate) winograd: Option<(Tile, Vec<f32>)>,
    /// The dense `O x (C K K)` weight matrix in the matrix product's
    /// panels, for the layers whose product vmatte's micro-kernel runs:
    /// strided ones with `OWN_FROM_K` taps or more, and the 1x1s of
    /// `matmul::runs_pointwise`.
    pub(crate) panels: Option<Vec<f32>>,
}

impl ConvOp {
    /// `weight`: the `(O, C/groups, K, K)` weights, contiguous; `tile`: the
    /// Winograd algorithm for a padded 3x3 convolution.
    pub fn new(spec: ConvSpec, bias: Option<Vec<f32>>, weight: &[f32], tile: Tile) -> Self {
        let (o, c, kk) = (
            spec.out_channels,
            spec.in_channels,
            spec.kernel * spec.kernel,
        );
        let tap_major = (spec.groups == 1 && spec.stride == 1 && spec.kernel > 1).then(|| {
            let mut t = vec![0.0; kk * o * c];
            for (i, v) in weight.iter().enumerate() {
                let (oc, tap) = (i / kk, i % kk);
                t[tap * o * c + oc] = *v;
            }
            t
        });
        let winograd =
            (tap_major.is_some() && spec.kernel == 3 && spec.dilation == 1 && spec.padding == 1)
                .then(|| (tile, tile.filters(weight, o, c)));
        let own = match spec.is_pointwise() {
            true => runs_pointwise(o, c),
            false => c * kk >= OWN_FROM_K,
        };
        let panels =
            (spec.groups == 1 && tap_major.is_none() && own).then(|| panels(weight, o, c * kk));
        Self {
            spec,
            bias,
            act: Activation::Identity,
            relu_input: false,
            tap_major,
            winograd,
            panels,
        }
    }

    /// The output's height and width for an `h x w` input.
    pub(super) fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let s = &self.spec;
        let span = s.dilation * (s.kernel - 1);
        (
            (h + 2 * s.padding - span - 1) / s.stride + 1,
            (w + 2 * s.padding - span - 1) / s.stride + 1,
        )
    }

    /// Every output plane starts as its channel's bias, written once, a
    /// plane per task (on the calling thread alone, the workers waited on
    /// ResNet's stem for 30 MB of it).
    pub(super) fn start(&self, n: usize, plane: usize) -> Vec<f32> {
        let o = self.spec.out_channels;
        match &self.bias {
            Some(b) => made_in_pieces(n * o * plane, plane, |i, _, out| {
                out.fill(MaybeUninit::new(b[i % o]));
            }),
            None => vec![0.0; n * o * plane],
        }
    }
}
