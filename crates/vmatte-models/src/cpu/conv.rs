//! [`ConvOp`]: one convolution layer for vmatte's CPU kernels, its
//! weights laid out at load time in the form its algorithm reads (per tap,
//! or in Winograd's domain). Which algorithm runs it is `dispatch.rs`'s
//! choice; the algorithms read the layer from here.

use super::winograd::Tile;
use crate::conv_spec::{Activation, ConvSpec};

/// `act(x (N, C, H, W) * weight (O, C/groups, K, K) + bias)`.
#[derive(Clone, Debug)]
pub struct ConvOp {
    pub spec: ConvSpec,
    pub bias: Option<Vec<f32>>,
    pub act: Activation,
    /// Stride-1 k x k weights as one `O x C` matrix per tap, `[tap][o][c]`.
    pub(crate) tap_major: Option<Vec<f32>>,
    /// Padded, undilated 3x3 weights in Winograd's domain for the
    /// algorithm given (see [`Tile`]), which those convolutions use
    /// instead of `tap_major`.
    pub(crate) winograd: Option<(Tile, Vec<f32>)>,
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
        Self {
            spec,
            bias,
            act: Activation::Identity,
            tap_major,
            winograd,
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

    /// Every output plane starts as its channel's bias, written once.
    pub(super) fn start(&self, n: usize, plane: usize) -> Vec<f32> {
        let o = self.spec.out_channels;
        match &self.bias {
            Some(b) => {
                let mut out = Vec::with_capacity(n * o * plane);
                for i in 0..n * o {
                    out.extend(std::iter::repeat_n(b[i % o], plane));
                }
                out
            }
            None => vec![0.0; n * o * plane],
        }
    }
}
