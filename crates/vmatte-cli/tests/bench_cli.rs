//! `vmatte bench`: the JSON scripts rely on, and the precision and chunk
//! sweep with each lower precision's distance from f32.

mod support;

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

/// `vmatte bench --input <a WxH clip of 6 frames> --weights <ONNX> EXTRA...`
fn bench(width: u32, height: u32, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, width, height, 6, Rational::new(25, 1));
    let onnx = rvm_onnx();
    let mut args = vec![
        "bench",
        "--input",
        clip.to_str().unwrap(),
        "--weights",
        onnx.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    vmatte(&args)
}

#[test]
fn sweeps_precisions_and_chunks_and_reports_distance_from_f32() {
    let out = bench(
        128,
        96,
        &[
            "--frames",
            "4",
            "--warmup",
            "1",
            "--dtypes",
            "f32,f16",
            "--seq-chunk",
            "1,4",
            "--model-only",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let combos: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["dtype"].as_str().unwrap(),
                r["seq_chunk"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(combos, [("f32", 1), ("f32", 4), ("f16", 1), ("f16", 4)]);
    // The top level is the first row, as single-run scripts read it.
    assert_eq!(report["model_only"], rows[0]["model_only"]);
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(128), Some(96))
    );
    for r in rows {
        assert_eq!(r["model_only"]["frames"], 4);
        assert!(r["model_only"]["fps"].as_f64().unwrap() > 0.0);
        // No GPU here: no utilisation, and no telemetry line either.
        assert!(r["gpu"].is_null());
        if r["dtype"] == "f32" {
            assert!(r["vs_f32"].is_null());
        } else {
            // Half precision: a 10-bit mantissa keeps alpha within a few
            // 1/255 steps of f32, and not bit-identical.
            let max = r["vs_f32"]["alpha_max_abs_diff"].as_f64().unwrap();
            let mean = r["vs_f32"]["alpha_mean_abs_diff"].as_f64().unwrap();
            assert!(max > 0.0 && max < 0.02, "{max}");
            assert!(mean <= max && mean < 1e-3, "{mean}");
        }
    }
    assert!(!stderr(&out).contains("info"), "{}", stderr(&out));
}

#[test]
fn bf16_on_the_cpu_is_one_clear_line() {
    let out = bench(
        64,
        64,
        &["--dtype", "bf16", "--frames", "1", "--warmup", "0"],
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("bf16") && e.contains("f16"), "{e}");
}
