//! GVM end to end against the reference pipeline (../shared/fixtures/gvm,
//! settings (a) and (b), README there), stage by stage and through the
//! windowed stream the CLI runs; then overlap and interpolation, checked
//! against the same computation spelled out with the model's own steps.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use vmatte_models::gvm::{frames, Geometry, Gvm, LoraChoice};
use vmatte_pipeline::gvm::GvmStream;
use vmatte_pipeline::GvmOptions;

fn gvm_dir() -> PathBuf {
    vmatte_testkit::fixture("gvm")
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(gvm_dir().join(name), &Device::Cpu).unwrap()
}

fn load(lora: bool) -> Gvm {
    let choice = if lora {
        LoraChoice::Auto
    } else {
        LoraChoice::Off
    };
    Gvm::load(
        &gvm_dir().join("weights"),
        &choice,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor, tol: f32) {
    let d = max_diff(got, want);
    eprintln!("{name}: max difference {d:e}");
    assert!(d <= tol, "{name}: max difference {d:e} > {tol:e}");
}

/// The reference clip, `[7, 3, 90, 150]` in [0, 1].
fn clip(r: &HashMap<String, Tensor>) -> Tensor {
    let v = &r["video_u8"];
    let (n, h, w, _) = v.dims4().unwrap();
    let bytes = v.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    frames::frames_from_hwc(&bytes, n, h, w, &Device::Cpu).unwrap()
}

struct Case {
    file: &'static str,
    lora: bool,
    steps: usize,
    chunk: usize,
}

const CASES: [Case; 2] = [
    Case {
        file: "reference_pipeline_a.safetensors",
        lora: false,
        steps: 1,
        chunk: 4,
    },
    Case {
        file: "reference_pipeline_b.safetensors",
        lora: true,
        steps: 2,
        chunk: 3,
    },
];

fn options(case: &Case) -> GvmOptions {
    GvmOptions {
        frames_per_batch: 4,
        decode_chunk: case.chunk,
        denoise_steps: case.steps,
        size: 64,
        max_resolution: 96,
        ensemble: 3,
        ..GvmOptions::default()
    }
}

/// Pixels of the thresholded alpha worth comparing: those whose value
/// before the thresholds is not within 1e-4 of one (README's advice).
fn assert_thresholded(name: &str, got: &Tensor, r: &HashMap<String, Tensor>) {
    let before = r["alpha_before_threshold"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want = r["alpha"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (lo, hi) = (25f32 / 255.0, 240f32 / 255.0);
    let mut compared = 0;
    for i in 0..want.len() {
        if (before[i] - lo).abs() > 1e-4 && (before[i] - hi).abs() > 1e-4 {
            compared += 1;
            assert!(
                (got[i] - want[i]).abs() <= 5e-5,
                "{name}: pixel {i} is {} not {}",
                got[i],
                want[i]
            );
        }
    }
    assert!(
        compared > want.len() * 99 / 100,
        "{name}: compared only {compared}"
    );
}

#[test]
fn every_stage_matches_the_reference_pipeline() {
    for case in &CASES {
        let r = reference(case.file);
        let gvm = load(case.lora);
        let video = clip(&r);
        let g = Geometry::new((90, 150), 64, 96).unwrap();
        let mut before = Vec::new();
        for (b, (start, n)) in [(0usize, 4usize), (4, 3)].into_iter().enumerate() {
            let name = |s: &str| format!("{} batch{b}.{s}", case.file);
            let input = frames::to_model_input(&video.i(start..start + n).unwrap(), &g).unwrap();
            let padded01 = ((&input + 1.0).unwrap() / 2.0).unwrap();
            assert_close(
                &name("rgb_padded"),
                &padded01,
                &r[&format!("batch{b}.rgb_padded")],
                1e-6,
            );
            let rgb = gvm.encode(&input).unwrap();
            assert_close(
                &name("rgb_latent"),
                &rgb,
                &r[&format!("batch{b}.rgb_latent")].i(0).unwrap(),
                1e-4,
            );
            let mut latent = rgb.zeros_like().unwrap();
            for i in 0..case.steps {
                let x = Tensor::cat(&[&latent, &rgb], 1)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                latent = gvm.unet.forward(&x, 999.0).unwrap().squeeze(0).unwrap();
                let want = r[&format!("batch{b}.latent_step{i}")].i(0).unwrap();
                assert_close(&name(&format!("latent_step{i}")), &latent, &want, 1e-4);
            }
            assert_close(
                &name("denoise"),
                &gvm.denoise(&rgb, case.steps).unwrap(),
                &latent,
                0.0,
            );
            let alpha = gvm.decode_alpha(&latent, case.chunk, 3).unwrap();
            assert_close(
                &name("alpha_padded"),
                &alpha,
                &r[&format!("batch{b}.alpha_padded")],
                5e-5,
            );
            before.push(frames::to_source_size(&alpha, &g).unwrap());
        }
        let before = Tensor::cat(&before, 0).unwrap();
        assert_close(case.file, &before, &r["alpha_before_threshold"], 5e-5);
        assert_thresholded(case.file, &frames::threshold(&before).unwrap(), &r);
    }
}

/// Pushes the clip's frames through a stream; the alphas, `[N, 1, H, W]`.
fn stream(gvm: &Gvm, opts: &GvmOptions, video: &Tensor) -> Tensor {
    let (n, _, h, w) = video.dims4().unwrap();
    let mut s = GvmStream::new(gvm, opts, (h, w), None).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(s.push(&video.i(i..i + 1).unwrap(), &mut |_| {}).unwrap());
    }
    out.extend(s.finish(&mut |_| {}).unwrap());
    assert_eq!(out.len(), n, "one alpha per frame");
    Tensor::cat(&out, 0).unwrap()
}

#[test]
fn the_stream_reproduces_both_reference_pipelines() {
    for case in &CASES {
        let r = reference(case.file);
        let gvm = load(case.lora);
        let alpha = stream(&gvm, &options(case), &clip(&r));
        assert_thresholded(case.file, &alpha, &r);
    }
}

/// The same maths by hand: latents of the given key frames.
fn window(gvm: &Gvm, inputs: &Tensor, keys: &[usize]) -> Tensor {
    let idx = Tensor::from_vec(
        keys.iter().map(|&k| k as u32).collect::<Vec<_>>(),
        keys.len(),
        &Device::Cpu,
    )
    .unwrap();
    gvm.denoise(
        &gvm.encode(&inputs.index_select(&idx, 0).unwrap()).unwrap(),
        1,
    )
    .unwrap()
}

fn settle(gvm: &Gvm, latent: &Tensor, g: &Geometry, chunk: usize) -> Tensor {
    frames::to_source_size(&gvm.decode_alpha(latent, chunk, 1).unwrap(), g).unwrap()
}

fn blend(new: &Tensor, old: &Tensor) -> Tensor {
    let o = old.dim(0).unwrap();
    let rows: Vec<Tensor> = (0..o)
        .map(|i| {
            let w = (i + 1) as f64 / (o + 1) as f64;
            ((new.i(i..i + 1).unwrap() * w).unwrap()
                + (old.i(i..i + 1).unwrap() * (1.0 - w)).unwrap())
            .unwrap()
        })
        .collect();
    let mut parts = rows;
    if new.dim(0).unwrap() > o {
        parts.push(new.i(o..).unwrap());
    }
    Tensor::cat(&parts, 0).unwrap()
}

#[test]
fn overlapping_windows_blend_their_latents() {
    let r = reference(CASES[0].file);
    let gvm = load(false);
    let video = clip(&r);
    let opts = GvmOptions {
        overlap_frames: 2,
        ..options(&CASES[0])
    };
    let got = stream(
        &gvm,
        &GvmOptions {
            ensemble: 1,
            ..opts.clone()
        },
        &video,
    );

    // 7 frames, windows of 4 sharing 2: keys 0-3 settle 0-1; keys 2-5
    // (2-3 blended) settle 2-3; the last window, keys 4-6 (4-5 blended),
    // settles the rest.
    let g = Geometry::new((90, 150), 64, 96).unwrap();
    let inputs = frames::to_model_input(&video, &g).unwrap();
    let w0 = window(&gvm, &inputs, &[0, 1, 2, 3]);
    let w1 = blend(&window(&gvm, &inputs, &[2, 3, 4, 5]), &w0.i(2..4).unwrap());
    let w2 = blend(&window(&gvm, &inputs, &[4, 5, 6]), &w1.i(2..4).unwrap());
    let want = Tensor::cat(
        &[
            settle(&gvm, &w0.i(0..2).unwrap(), &g, 4),
            settle(&gvm, &w1.i(0..2).unwrap(), &g, 4),
            settle(&gvm, &w2, &g, 4),
        ],
        0,
    )
    .unwrap();
    let want = frames::threshold(&want).unwrap();
    assert_close("overlap 2", &got, &want, 1e-5);
    // And it is not the independent-batch result.
    let plain = stream(
        &gvm,
        &GvmOptions {
            ensemble: 1,
            ..options(&CASES[0])
        },
        &video,
    );
    assert!(max_diff(&got.i(2..4).unwrap(), &plain.i(2..4).unwrap()) > 1e-3);
}

#[test]
fn interpolated_frames_lie_between_their_key_frames() {
    let r = reference(CASES[0].file);
    let gvm = load(false);
    // 8 frames: keys 0, 2, 4, 6 and the last frame, 7, made a key so
    // nothing is extrapolated.
    let video = Tensor::cat(&[clip(&r), clip(&r).i(6..7).unwrap()], 0).unwrap();
    let opts = GvmOptions {
        interp_frames: 2,
        ensemble: 1,
        ..options(&CASES[0])
    };
    let got = stream(&gvm, &opts, &video);

    let g = Geometry::new((90, 150), 64, 96).unwrap();
    let inputs = frames::to_model_input(&video, &g).unwrap();
    let first = settle(&gvm, &window(&gvm, &inputs, &[0, 2, 4, 6]), &g, 4);
    let last = settle(&gvm, &window(&gvm, &inputs, &[7]), &g, 4);
    let key = |i: usize| first.i(i..i + 1).unwrap();
    let mid = |a: &Tensor, b: &Tensor| ((a * 0.5).unwrap() + (b * 0.5).unwrap()).unwrap();
    let want = Tensor::cat(
        &[
            key(0),
            mid(&key(0), &key(1)),
            key(1),
            mid(&key(1), &key(2)),
            key(2),
            mid(&key(2), &key(3)),
            key(3),
            last,
        ],
        0,
    )
    .unwrap();
    assert_close("interp 2", &got, &frames::threshold(&want).unwrap(), 1e-5);
}

/// The library names settings as fields (a front end shows them its own
/// way: the CLI as flags).
#[test]
fn bad_window_settings_are_one_line_each() {
    let r = reference(CASES[0].file);
    let gvm = load(false);
    for (opts, says) in [
        (
            GvmOptions {
                overlap_frames: 4,
                frames_per_batch: 4,
                ..GvmOptions::default()
            },
            "overlap_frames=4 must be smaller",
        ),
        (
            GvmOptions {
                denoise_steps: 4,
                ..GvmOptions::default()
            },
            "denoise_steps=4 is outside 1..3",
        ),
        (
            GvmOptions {
                size: 720,
                max_resolution: 720,
                ..GvmOptions::default()
            },
            "max_resolution=720 must be larger",
        ),
    ] {
        let e = GvmStream::new(&gvm, &opts, (90, 150), None)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(says) && !e.contains('\n'), "{e}");
    }
    drop(r);
}

#[test]
fn every_length_overlap_and_interpolation_gives_one_alpha_per_frame() {
    let r = reference(CASES[0].file);
    let gvm = load(false);
    let video = clip(&r);
    let video = Tensor::cat(&[&video, &video], 0).unwrap(); // 14 frames
    for len in [1, 4, 5, 9] {
        for overlap in [0, 2, 3] {
            for interp in [1, 3] {
                let opts = GvmOptions {
                    overlap_frames: overlap,
                    interp_frames: interp,
                    decode_chunk: 3,
                    ensemble: 1,
                    ..options(&CASES[0])
                };
                let alpha = stream(&gvm, &opts, &video.i(0..len).unwrap());
                let v = alpha.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(
                    v.iter().all(|a| a.is_finite() && (0.0..=1.0).contains(a)),
                    "len {len} overlap {overlap} interp {interp}"
                );
            }
        }
    }
}
