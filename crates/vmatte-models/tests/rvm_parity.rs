//! RVM against the reference outputs in shared/fixtures/rvm: every tensor
//! (fgr, pha, r1..r4) within 1e-3, frame by frame and as one 4-frame chunk.
//!
//! One measured exception, for the random-weight checkpoints only: their
//! recurrent states amplify float32 rounding. Perturbing the input by 1e-7
//! (below f32 resolution on [0, 1]) moves r4 of `mnv3_random` by ~1e-2
//! (`random_weight_states_amplify_rounding` shows it), so any port that does
//! not replicate PyTorch's exact summation order lands some state elements
//! beyond 1e-3 (measured: at most 0.31% of r1 of `mnv3_random_dsr1.0`, mean
//! error 1.6e-5; a 1e-7 input nudge alone puts 0.08% beyond). For those
//! states the test asks that 99% of the elements are within 1e-3 and that the
//! mean error is below 5e-5 (a wrong BatchNorm epsilon, a real bug met while
//! porting, gave 1.3e-4). fgr and pha, and every tensor of the real-weight
//! ONNX cases, must be within 1e-3 everywhere.

mod common;

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use vmatte_models::rvm::{MattingNetwork, RecurrentState};

const TOLERANCE: f32 = 1e-3;

/// How strictly the recurrent states are compared (see the module docs).
#[derive(Clone, Copy, PartialEq)]
enum States {
    Everywhere,
    RoundingAmplified,
}

fn load(path: &Path) -> Result<std::collections::HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu).with_context(|| path.display().to_string())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    anyhow::ensure!(
        a.dims() == b.dims(),
        "shape {:?} vs {:?}",
        a.dims(),
        b.dims()
    );
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// Runs the clip through the model, `chunk` frames at a time, and compares
/// every output tensor with the reference.
fn check(weights: &Path, reference: &str, ratio: f64, chunk: usize, states: States) -> Result<()> {
    let model = MattingNetwork::from_file(weights, &Device::Cpu, DType::F32)?;
    let src = &load(&common::fixture("clip_astronaut_t4_144x256.safetensors"))?["src"];
    let expected = load(&common::fixture(reference))?;
    let mut state = RecurrentState::default();
    let (mut fgr, mut pha) = (Vec::new(), Vec::new());
    for start in (0..src.dim(0)?).step_by(chunk) {
        let out = model.forward(&src.narrow(0, start, chunk)?, &mut state, ratio)?;
        fgr.push(out.fgr);
        pha.push(out.pha);
    }
    let mut got = vec![
        ("fgr", Tensor::cat(&fgr, 0)?),
        ("pha", Tensor::cat(&pha, 0)?),
    ];
    let final_states = state
        .tensors()
        .context("no recurrent state after four frames")?;
    for (i, r) in final_states.iter().enumerate() {
        got.push((["r1", "r2", "r3", "r4"][i], r.squeeze(0)?));
    }
    for (name, tensor) in got {
        let expected = &expected[name];
        let diff =
            max_abs_diff(&tensor, expected).with_context(|| format!("{reference}: {name}"))?;
        if name.starts_with('r') && states == States::RoundingAmplified {
            let (outside, mean) = outside_fraction_and_mean(&tensor, expected)?;
            assert!(
                outside <= 1e-2 && mean <= 5e-5,
                "{reference} (chunk {chunk}): {name}: {:.4}% of elements beyond {TOLERANCE:e}, mean error {mean:e} (max {diff:e})",
                outside * 100.0
            );
            continue;
        }
        assert!(
            diff <= TOLERANCE,
            "{reference} (chunk {chunk}): {name} differs by {diff:e} > {TOLERANCE:e}"
        );
    }
    Ok(())
}

/// The share of elements differing by more than the tolerance, and the mean
/// absolute difference.
fn outside_fraction_and_mean(a: &Tensor, b: &Tensor) -> Result<(f64, f32)> {
    let diff = (a - b)?.abs()?.flatten_all()?.to_vec1::<f32>()?;
    let outside = diff.iter().filter(|d| **d > TOLERANCE).count();
    let mean = diff.iter().sum::<f32>() / diff.len() as f32;
    Ok((outside as f64 / diff.len() as f64, mean))
}

fn both_chunkings(weights: &Path, reference: &str, ratio: f64, states: States) -> Result<()> {
    check(weights, reference, ratio, 1, states)?;
    check(weights, reference, ratio, 4, states)
}

#[test]
fn mobilenetv3_onnx_weights_ratio_1() -> Result<()> {
    both_chunkings(
        &common::rvm_onnx(),
        "mnv3_onnx_dsr1.0.safetensors",
        1.0,
        States::Everywhere,
    )
}

#[test]
fn mobilenetv3_onnx_weights_ratio_half() -> Result<()> {
    both_chunkings(
        &common::rvm_onnx(),
        "mnv3_onnx_dsr0.5.safetensors",
        0.5,
        States::Everywhere,
    )
}

#[test]
fn mobilenetv3_pth_ratio_1() -> Result<()> {
    both_chunkings(
        &common::fixture("mnv3_random.pth"),
        "mnv3_random_dsr1.0.safetensors",
        1.0,
        States::RoundingAmplified,
    )
}

#[test]
fn mobilenetv3_pth_ratio_half() -> Result<()> {
    both_chunkings(
        &common::fixture("mnv3_random.pth"),
        "mnv3_random_dsr0.5.safetensors",
        0.5,
        States::RoundingAmplified,
    )
}

#[test]
fn resnet50_safetensors_ratio_1() -> Result<()> {
    both_chunkings(
        &common::fixture("r50_random_f16.safetensors"),
        "r50_random_dsr1.0.safetensors",
        1.0,
        States::RoundingAmplified,
    )
}

#[test]
fn resnet50_safetensors_ratio_half() -> Result<()> {
    both_chunkings(
        &common::fixture("r50_random_f16.safetensors"),
        "r50_random_dsr0.5.safetensors",
        0.5,
        States::RoundingAmplified,
    )
}

/// The 4-frame chunk and frame-by-frame runs agree with each other, not
/// only with the reference.
#[test]
fn chunked_equals_frame_by_frame() -> Result<()> {
    let model = MattingNetwork::from_file(
        &common::fixture("mnv3_random.pth"),
        &Device::Cpu,
        DType::F32,
    )?;
    let src = &load(&common::fixture("clip_astronaut_t4_144x256.safetensors"))?["src"];
    let mut whole = RecurrentState::default();
    let chunk = model.forward(src, &mut whole, 0.5)?;
    let mut single = RecurrentState::default();
    for t in 0..4 {
        let one = model.forward(&src.narrow(0, t, 1)?, &mut single, 0.5)?;
        for (a, b) in [
            (&one.pha, chunk.pha.narrow(0, t, 1)?),
            (&one.fgr, chunk.fgr.narrow(0, t, 1)?),
        ] {
            let diff = max_abs_diff(a, &b)?;
            assert!(
                diff <= 1e-4,
                "frame {t}: chunked vs single differ by {diff:e}"
            );
        }
    }
    Ok(())
}

/// A fresh state is zeros: a second video must not see the first.
#[test]
fn state_resets_between_videos() -> Result<()> {
    let model = MattingNetwork::from_file(
        &common::fixture("mnv3_random.pth"),
        &Device::Cpu,
        DType::F32,
    )?;
    let src = &load(&common::fixture("clip_astronaut_t4_144x256.safetensors"))?["src"];
    let first = src.narrow(0, 0, 1)?;
    let mut state = RecurrentState::default();
    let a = model.forward(&first, &mut state, 1.0)?;
    model.forward(&src.narrow(0, 1, 3)?, &mut state, 1.0)?;
    let carried = model.forward(&first, &mut state, 1.0)?;
    state.reset();
    let b = model.forward(&first, &mut state, 1.0)?;
    assert_eq!(max_abs_diff(&a.pha, &b.pha)?, 0.0);
    assert!(
        max_abs_diff(&a.pha, &carried.pha)? > 0.0,
        "state was not carried"
    );
    Ok(())
}

/// The reason for `States::RoundingAmplified`: with random weights, an input
/// change far below float32 resolution moves the recurrent state by more
/// than the tolerance, while fgr and pha stay within it.
#[test]
fn random_weight_states_amplify_rounding() -> Result<()> {
    let model = MattingNetwork::from_file(
        &common::fixture("mnv3_random.pth"),
        &Device::Cpu,
        DType::F32,
    )?;
    let src = &load(&common::fixture("clip_astronaut_t4_144x256.safetensors"))?["src"];
    let nudged = (src + 1e-7)?;
    let (mut a, mut b) = (RecurrentState::default(), RecurrentState::default());
    let (mut pha_diff, mut state_diff) = (0f32, 0f32);
    for t in 0..4 {
        let pa = model.forward(&src.narrow(0, t, 1)?, &mut a, 0.5)?.pha;
        let pb = model.forward(&nudged.narrow(0, t, 1)?, &mut b, 0.5)?.pha;
        pha_diff = pha_diff.max(max_abs_diff(&pa, &pb)?);
    }
    for (x, y) in a.tensors().unwrap().iter().zip(b.tensors().unwrap()) {
        state_diff = state_diff.max(max_abs_diff(x, y)?);
    }
    assert!(pha_diff < TOLERANCE, "pha moved by {pha_diff:e}");
    assert!(
        state_diff > TOLERANCE,
        "states moved by only {state_diff:e}"
    );
    Ok(())
}
