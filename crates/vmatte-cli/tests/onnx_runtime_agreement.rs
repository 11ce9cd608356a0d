//! `vmatte matte` on the real-person sample clip agrees with ONNX Runtime
//! running the authors' ONNX export on the same decoded frames: mean
//! absolute alpha error below 1/255.

mod support;

use std::collections::HashMap;
use std::process::Command;

use candle_core::{Device, Tensor};
use support::*;

/// Frames compared; the recurrence is causal, so the first N frames of the
/// full run are exactly what ONNX Runtime sees on N frames.
const FRAMES: usize = 24;

#[test]
fn sample_clip_alpha_matches_onnx_runtime() {
    let clip = sample_clip();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = matte(
        &clip,
        &out_dir,
        &["--format", "png", "--outputs", "alpha", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let ratio = report["downsample_ratio"].as_f64().unwrap();

    // The same decoded frames, handed to ONNX Runtime.
    let frames = decode_frames(&clip, FRAMES);
    assert_eq!(frames.len(), FRAMES, "the sample clip is long enough");
    let (w, h) = (frames[0].width as usize, frames[0].height as usize);
    let mut planar = Vec::new();
    for frame in &frames {
        vmatte_pipeline::frames::push_planar(frame, &mut planar);
    }
    let src = Tensor::from_vec(planar, (FRAMES, 3, h, w), &Device::Cpu).unwrap();
    let frames_file = dir.path().join("frames.safetensors");
    candle_core::safetensors::save(&HashMap::from([("src", src)]), &frames_file).unwrap();
    let reference_file = dir.path().join("ort.safetensors");
    let status = Command::new(python())
        .arg(repo_root().join("scripts/ort_reference.py"))
        .args(["--onnx", rvm_onnx().to_str().unwrap()])
        .args(["--frames", frames_file.to_str().unwrap()])
        .args(["--ratio", &ratio.to_string()])
        .args(["--out", reference_file.to_str().unwrap()])
        .status()
        .expect("python runs");
    assert!(status.success(), "ort_reference.py failed");
    let reference = candle_core::safetensors::load(&reference_file, &Device::Cpu).unwrap();
    let ort = reference["pha"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();

    let mattes = decode_frames(&out_dir.join("astronaut.alpha"), FRAMES);
    assert_eq!(mattes.len(), FRAMES, "one alpha PNG per frame");
    let mut total = 0f64;
    let mut worst = 0f64;
    for (t, frame) in mattes.iter().enumerate() {
        let ours = frame.rgb.chunks_exact(3).map(|px| f64::from(px[0]) / 255.0);
        let theirs = &ort[t * w * h..(t + 1) * w * h];
        let err: f64 = ours
            .zip(theirs)
            .map(|(a, b)| (a - f64::from(*b)).abs())
            .sum::<f64>()
            / (w * h) as f64;
        worst = worst.max(err);
        total += err;
    }
    let mean = total / FRAMES as f64;
    eprintln!(
        "mean abs alpha error vs ONNX Runtime: {mean:.6} (worst frame {worst:.6}), 1/255 = {:.6}",
        1.0 / 255.0
    );
    assert!(mean < 1.0 / 255.0, "mean abs alpha error {mean} >= 1/255");
    // The matte is not trivially empty or full: the person is found.
    let coverage = ort[..w * h].iter().filter(|a| **a > 0.5).count() as f64 / (w * h) as f64;
    assert!(
        (0.05..0.95).contains(&coverage),
        "alpha coverage {coverage}"
    );
}
