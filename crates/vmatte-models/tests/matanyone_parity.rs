//! MatAnyone against fp32 references of the released inference loop
//! (../shared/fixtures/matanyone, README there): a tiny random model in
//! the release's tensor names, two cases.
//!
//! Tolerances (the README's): 1e-4 absolute on every recorded intermediate
//! and on the alpha of every step, warm-up included; the written uint8
//! alpha within one level. The mask path is checked where it shows: the
//! first prediction and the step-1 intermediates (later frames barely
//! depend on the mask with random weights, see the README).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, IndexOp, Tensor};
use vmatte_models::matanyone::{mask, Config, MatAnyone, MemoryConfig, Session};

const TOL: f32 = 1e-4;

fn dir() -> PathBuf {
    vmatte_testkit::fixture("matanyone")
}

fn reference(case: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        dir().join(format!("reference_{case}.safetensors")),
        &Device::Cpu,
    )
    .unwrap()
}

fn model() -> MatAnyone {
    let config = Config::read(&dir().join("weights/config.json")).unwrap();
    MatAnyone::load(
        &dir().join("weights/matanyone_tiny.pth"),
        config.model,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The largest |a - b|, asserted under `tol`.
fn assert_close(name: &str, got: &Tensor, want: &Tensor, tol: f32) -> f32 {
    let (g, w) = (flat(got), flat(want));
    assert_eq!(
        g.len(),
        w.len(),
        "{name}: {:?} vs {:?}",
        got.dims(),
        want.dims()
    );
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tol, "{name}: max difference {worst:e} > {tol:e}");
    worst
}

/// `(1, 3, H, W)` in [0, 1] from `(H, W, 3)` uint8.
fn frame(frames: &Tensor, t: usize) -> Tensor {
    (frames
        .i(t)
        .unwrap()
        .permute((2, 0, 1))
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        / 255.0)
        .unwrap()
}

struct Run {
    alphas: Vec<Tensor>,
    probed: HashMap<String, Tensor>,
}

fn run(
    case: &str,
    memory: MemoryConfig,
    warmup: usize,
    erode: usize,
    dilate: usize,
) -> (Run, HashMap<String, Tensor>) {
    let r = reference(case);
    let net = model();
    let frames = &r["frames_u8"];
    let (t, h, w, _) = frames.dims4().unwrap();
    let gray: Vec<u8> = r["mask0_u8"].flatten_all().unwrap().to_vec1().unwrap();
    let prepared = mask::prepare(&gray, (w, h), erode, dilate);
    let m = Tensor::from_vec(prepared, (1, 1, h, w), &Device::Cpu).unwrap();
    assert_close(&format!("{case}: mask_in"), &m, &r["mask_in"], 0.0);

    let probed = Arc::new(Mutex::new(HashMap::new()));
    let sink = probed.clone();
    let mut session = Session::new(&net, memory).with_probe(Box::new(move |name, t| {
        sink.lock().unwrap().insert(name.to_string(), t.clone());
    }));
    let mut alphas = session
        .anchor(&frame(frames, 0), &m, warmup)
        .unwrap()
        .alphas;
    for i in 1..t {
        alphas.push(session.next(&frame(frames, i)).unwrap());
    }
    drop(session);
    let probed = std::mem::take(&mut *probed.lock().unwrap());
    (Run { alphas, probed }, r)
}

fn check_alphas(case: &str, run: &Run, r: &HashMap<String, Tensor>, warmup: usize) {
    let all = &r["alpha_all_steps"];
    assert_eq!(run.alphas.len(), all.dim(0).unwrap(), "{case}: steps");
    let mut worst = 0f32;
    for (i, a) in run.alphas.iter().enumerate() {
        worst = worst.max(assert_close(
            &format!("{case}: alpha step {i}"),
            a,
            &all.i(i).unwrap(),
            TOL,
        ));
    }
    eprintln!("{case}: alpha max difference {worst:e}");
    let out: Vec<u8> = run.alphas[warmup..]
        .iter()
        .flat_map(flat)
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let want: Vec<u8> = r["alpha_out_u8"].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(out.len(), want.len());
    let levels = out
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(levels <= 1, "{case}: uint8 alpha off by {levels} levels");
}

#[test]
fn case_a_every_intermediate_of_ten_steps() {
    let (run, r) = run("a", MemoryConfig::default(), 3, 0, 0);
    let mut checked = 0;
    let mut keys: Vec<_> = r.keys().filter(|k| k.starts_with("step")).collect();
    keys.sort();
    for key in keys {
        let got = run
            .probed
            .get(key.as_str())
            .unwrap_or_else(|| panic!("no intermediate {key}"));
        let worst = assert_close(key, got, &r[key.as_str()], TOL);
        eprintln!("{key}: {worst:e}");
        checked += 1;
    }
    // Every kind of intermediate, at the mask step (0), the first
    // first-frame prediction (1) and the first frame read from memory (5).
    assert!(checked > 100, "only {checked} intermediates");
    for key in [
        "step1.memory_read_first_frame.0",
        "step5.memory_read.0",
        "step5.uncert_prob",
        "step0.encode_mask.2",
    ] {
        assert!(r.contains_key(key), "{key}");
    }
    check_alphas("a", &run, &r, 3);
}

#[test]
fn case_b_small_memory_with_eviction() {
    let memory = MemoryConfig {
        mem_every: 2,
        max_mem_frames: 3,
        stagger_updates: 2,
        top_k: 8,
    };
    let (run, r) = run("b", memory, 1, 7, 3);
    check_alphas("b", &run, &r, 1);
}

/// The memory holds at most `max_mem_frames` frames however long the shot:
/// the state a stream carries is bounded (the RSS figure for long clips is
/// in docs/benchmarks.md).
#[test]
fn memory_stays_bounded_over_a_long_shot() {
    let r = reference("b");
    let net = model();
    let frames = &r["frames_u8"];
    let (t, h, w, _) = frames.dims4().unwrap();
    let m = Tensor::from_vec(flat(&r["mask_in"]), (1, 1, h, w), &Device::Cpu).unwrap();
    let memory = MemoryConfig {
        mem_every: 1,
        max_mem_frames: 3,
        stagger_updates: 1,
        top_k: 8,
    };
    let mut session = Session::new(&net, memory);
    session.anchor(&frame(frames, 0), &m, 0).unwrap();
    let mut most = session.memory_frames();
    for i in 0..40 {
        session.next(&frame(frames, 1 + i % (t - 1))).unwrap();
        most = most.max(session.memory_frames());
    }
    assert_eq!(most, 3, "memory frames grew to {most}");
}
