//! The activations as loops over slices, for the CPU kernels to run on
//! their outputs while those are still in cache: in place, or fused with
//! the bias (`act(x + bias)`) into one pass. Each loop is compiled for the
//! widest vector unit the CPU has (`vectorized!`), and the functions that
//! need `e^x` (sigmoid, tanh) use a polynomial [`exp`] that vectorises.

use crate::conv_spec::Activation;
use crate::simd::vectorized;

impl Activation {
    /// The same function over a slice in place, in candle's order of
    /// operations.
    pub(crate) fn apply_in_place(self, xs: &mut [f32]) {
        activate(self, xs)
    }

    /// `out = self(xs + bias)`, in one pass.
    pub(crate) fn apply_biased(self, xs: &[f32], bias: f32, out: &mut [f32]) {
        activate_biased(self, xs, bias, out)
    }

    /// [`Self::apply_biased`] from rows of `xs` `stride` apart to the
    /// rows of `out`, `width` each (a wide sweep's rows to a plane's).
    pub(crate) fn apply_biased_rows(
        self,
        xs: &[f32],
        stride: usize,
        bias: f32,
        out: &mut [f32],
        width: usize,
    ) {
        activate_biased_rows(self, xs, stride, bias, out, width)
    }

    /// `act(x + bias)` in place over `rows` rows of `cols` floats
    /// `stride` apart from `at` (a block of pixels of every output plane),
    /// row `r` biased by `bias[r]`, in one call: a call a row went through
    /// the CPU-feature dispatch for every 64 pixels of every channel.
    ///
    /// # Safety
    /// The rows must be valid, initialised and the caller's alone.
    pub(crate) unsafe fn apply_biased_rows_in_place(
        self,
        bias: Option<&[f32]>,
        at: *mut f32,
        stride: usize,
        rows: usize,
        cols: usize,
    ) {
        assert_bias_for(bias, rows);
        activate_biased_rows_in_place(self, bias, at, stride, rows, cols)
    }
}

vectorized! {
    /// One loop per function, so each vectorises.
    fn activate(act: Activation, xs: &mut [f32]) {
        match act {
            Activation::Identity => {}
            Activation::Relu => xs.iter_mut().for_each(|v| *v = scalar::relu(*v)),
            Activation::Hardsigmoid => xs.iter_mut().for_each(|v| *v = scalar::hardsigmoid(*v)),
            Activation::Hardswish => xs.iter_mut().for_each(|v| *v = scalar::hardswish(*v)),
            Activation::Sigmoid => xs.iter_mut().for_each(|v| *v = scalar::sigmoid(*v)),
            Activation::Tanh => xs.iter_mut().for_each(|v| *v = scalar::tanh(*v)),
        }
    }
}

/// `out = act(xs + bias)`, inlined into each vectorised caller.
#[inline(always)]
fn biased(act: Activation, xs: &[f32], bias: f32, out: &mut [f32]) {
    let pairs = out.iter_mut().zip(xs);
    match act {
        Activation::Identity => pairs.for_each(|(o, x)| *o = x + bias),
        Activation::Relu => pairs.for_each(|(o, x)| *o = scalar::relu(x + bias)),
        Activation::Hardsigmoid => pairs.for_each(|(o, x)| *o = scalar::hardsigmoid(x + bias)),
        Activation::Hardswish => pairs.for_each(|(o, x)| *o = scalar::hardswish(x + bias)),
        Activation::Sigmoid => pairs.for_each(|(o, x)| *o = scalar::sigmoid(x + bias)),
        Activation::Tanh => pairs.for_each(|(o, x)| *o = scalar::tanh(x + bias)),
    }
}

vectorized! {
    /// `out = act(xs + bias)` in one pass: each output is stored once,
    /// activated, rather than stored, read back and stored again.
    fn activate_biased(act: Activation, xs: &[f32], bias: f32, out: &mut [f32]) {
        biased(act, xs, bias, out)
    }
}

vectorized! {
    /// [`activate_biased`] from rows of `xs` `stride` apart to the rows of
    /// `out`, `width` each, in one call.
    fn activate_biased_rows(
        act: Activation,
        xs: &[f32],
        stride: usize,
        bias: f32,
        out: &mut [f32],
        width: usize,
    ) {
        for (r, row) in out.chunks_exact_mut(width).enumerate() {
            biased(act, &xs[r * stride..r * stride + width], bias, row);
        }
    }
}

/// `xs = act(xs + bias)`, inlined into each vectorised caller.
#[inline(always)]
fn biased_in_place(act: Activation, bias: f32, xs: &mut [f32]) {
    let xs = xs.iter_mut();
    match act {
        Activation::Identity => xs.for_each(|v| *v += bias),
        Activation::Relu => xs.for_each(|v| *v = scalar::relu(*v + bias)),
        Activation::Hardsigmoid => xs.for_each(|v| *v = scalar::hardsigmoid(*v + bias)),
        Activation::Hardswish => xs.for_each(|v| *v = scalar::hardswish(*v + bias)),
        Activation::Sigmoid => xs.for_each(|v| *v = scalar::sigmoid(*v + bias)),
        Activation::Tanh => xs.for_each(|v| *v = scalar::tanh(*v + bias)),
    }
}

vectorized! {
    /// `xs = act(xs + bias)` over `rows` rows of `cols` floats,
    /// `stride` apart from `at`, row `r` biased by `bias[r]` (see
    /// [`Activation::apply_biased_rows_in_place`]).
    fn activate_biased_rows_in_place(
        act: Activation,
        bias: Option<&[f32]>,
        at: *mut f32,
        stride: usize,
        rows: usize,
        cols: usize,
    ) {
        for r in 0..rows {
            // SAFETY: the caller's contract (apply_biased_rows_in_place).
            let xs = unsafe { std::slice::from_raw_parts_mut(at.add(r * stride), cols) };
            biased_in_place(act, bias.map_or(0.0, |b| b[r]), xs);
        }
    }
}

/// `max(x + bias[r] + residual, 0)` for each of `rows` rows of `cols`
/// floats at `at`, `stride` apart, the residual's rows at `residual` with
/// the same stride: a ResNet block's join, while its last convolution's
/// outputs are in cache.
///
/// # Safety
/// The rows at `at` must be valid, initialised and the caller's alone,
/// those at `residual` valid and initialised.
pub(crate) unsafe fn residual_relu_rows_in_place(
    bias: Option<&[f32]>,
    at: *mut f32,
    residual: *const f32,
    stride: usize,
    rows: usize,
    cols: usize,
) {
    assert_bias_for(bias, rows);
    residual_relu_rows(bias, at, residual, stride, rows, cols)
}

/// A bias, where there is one, for each of `rows` rows: a short one fails
/// here, before any row is written.
fn assert_bias_for(bias: Option<&[f32]>, rows: usize) {
    assert!(bias.is_none_or(|b| b.len() >= rows));
}

vectorized! {
    fn residual_relu_rows(
        bias: Option<&[f32]>,
        at: *mut f32,
        residual: *const f32,
        stride: usize,
        rows: usize,
        cols: usize,
    ) {
        for r in 0..rows {
            // SAFETY: the caller's contract (residual_relu_rows_in_place).
            let (xs, res) = unsafe {
                (
                    std::slice::from_raw_parts_mut(at.add(r * stride), cols),
                    std::slice::from_raw_parts(residual.add(r * stride), cols),
                )
            };
            let b = bias.map_or(0.0, |b| b[r]);
            for (x, res) in xs.iter_mut().zip(res) {
                *x = scalar::relu(*x + b + res);
            }
        }
    }
}

/// The activations on one value, shared by the in-place and the biased
/// passes.
mod scalar {
    #[inline(always)]
    pub fn relu(v: f32) -> f32 {
        v.max(0.0)
    }

    /// candle divides a tensor by a scalar as a multiply by its inverse.
    #[inline(always)]
    pub fn hardsigmoid(v: f32) -> f32 {
        (v + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)
    }

    #[inline(always)]
    pub fn hardswish(v: f32) -> f32 {
        v * hardsigmoid(v)
    }

    #[inline(always)]
    pub fn sigmoid(v: f32) -> f32 {
        1.0 / (1.0 + super::exp(-v))
    }

    #[inline(always)]
    pub fn tanh(v: f32) -> f32 {
        // tanh(9) is 1 to within f32's precision.
        let e = super::exp(2.0 * v.clamp(-9.0, 9.0));
        (e - 1.0) / (e + 1.0)
    }
}

/// `e^x` to within 2 ulp over f32's range, in operations that vectorise
/// (libm's `expf` is a call per element, and the ConvGRUs' sigmoid and
/// tanh gates need it for every output): `x = n·ln 2 + r` with
/// `|r| <= ln 2 / 2`, `e^r` by its Taylor series to degree 7, and `2^n`
/// written straight into the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // SAFETY: the clamp above keeps n in [-126, 127]. (`as i32` would be a
    // saturating cast, which compiles to a lane at a time.)
    let n = unsafe { n.to_int_unchecked::<i32>() };
    p * f32::from_bits(((n + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use super::*;
    use crate::cpu::test_util::worst;

    #[test]
    fn exp_is_close_to_libm() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    /// In place, and with a bias added first (in place or not), as
    /// candle's tensor ops compute them.
    #[test]
    fn activations_match_candle() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 5e-3).collect();
        let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap();
        let bias = 0.37;
        let biased = (&t + bias as f64).unwrap();
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::Hardsigmoid,
            Activation::Hardswish,
            Activation::Sigmoid,
            Activation::Tanh,
        ] {
            let want = act.apply(&t).unwrap().to_vec1::<f32>().unwrap();
            let mut got = xs.clone();
            act.apply_in_place(&mut got);
            assert!(worst(&got, &want) < 5e-7, "{act:?}");

            let want = act.apply(&biased).unwrap().to_vec1::<f32>().unwrap();
            let mut got = vec![f32::NAN; xs.len()];
            act.apply_biased(&xs, bias, &mut got);
            assert!(worst(&got, &want) < 5e-7, "{act:?} biased");
            // Two rows, each biased by its own value, 3 floats short of
            // their stride: the gaps stay as they were.
            let mut got = xs.clone();
            let (stride, cols) = (xs.len() / 2, xs.len() / 2 - 3);
            let biases = [bias, -0.2];
            // SAFETY: both rows lie inside got, which nothing else touches.
            unsafe {
                act.apply_biased_rows_in_place(Some(&biases), got.as_mut_ptr(), stride, 2, cols)
            };
            let second = (&t + -0.2).unwrap();
            let want_second = act.apply(&second).unwrap().to_vec1::<f32>().unwrap();
            let first_row = worst(&got[..cols], &want[..cols]);
            let at = stride..stride + cols;
            let second_row = worst(&got[at.clone()], &want_second[at]);
            assert!(
                first_row.max(second_row) < 5e-7,
                "{act:?} biased rows in place"
            );
            assert_eq!(got[cols..stride], xs[cols..stride], "{act:?} gap");
            assert_eq!(got[stride + cols..], xs[stride + cols..], "{act:?} gap");
        }
    }
}
