//! The GPU-facing parts of `vmatte batch` that a machine without a GPU can
//! check for real: several videos at once (`--streams`), the out-of-memory
//! ladder driven by injected failures (`VMATTE_FAKE_OOM`), and telemetry
//! with NVML absent.

mod support;

use std::path::Path;

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

fn clips(dir: &Path, count: usize, frames: u32) -> std::path::PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..count {
        // Different sizes give different content, so no two are one job.
        make_clip(
            &inputs.join(format!("clip{i}.mp4")),
            96 + 16 * i as u32,
            64,
            frames,
            Rational::new(25, 1),
        );
    }
    inputs
}

fn run_batch(
    inputs: &Path,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (bool, Value, String) {
    let mut cmd = batch_command(&[inputs], out, extra);
    cmd.arg("--json").env_remove("VMATTE_FAKE_OOM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("vmatte runs");
    let report = json_of(&output);
    (output.status.success(), report, stderr(&output))
}

/// Every alpha frame of every job in a png-format batch, by job name.
fn alphas(report: &Value) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut all: Vec<_> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let dir = Path::new(j["outputs"]["alpha"].as_str().unwrap());
            let frames = decode_frames(dir, 1000)
                .into_iter()
                .map(|f| f.rgb.clone())
                .collect();
            let input = Path::new(j["input"].as_str().unwrap());
            (
                input.file_name().unwrap().to_string_lossy().into_owned(),
                frames,
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn max_diff(a: &[(String, Vec<Vec<u8>>)], b: &[(String, Vec<Vec<u8>>)]) -> u8 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0;
    for ((na, fa), (nb, fb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(fa.len(), fb.len(), "{na}: frame count");
        for (x, y) in fa.iter().zip(fb) {
            for (p, q) in x.iter().zip(y) {
                worst = worst.max(p.abs_diff(*q));
            }
        }
    }
    worst
}

fn events(out: &Path, report: &Value, input_suffix: &str) -> Vec<Value> {
    let name = job(report, input_suffix)["name"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::read_to_string(out.join("logs").join(format!("{name}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn streams_matte_videos_at_once_each_with_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 3, 30);
    let png = ["--format", "png", "--outputs", "alpha"];
    let one_dir = dir.path().join("one");
    let (ok, one, _) = run_batch(&inputs, &one_dir, &png, &[]);
    assert!(ok && one["done"] == 3, "{one}");
    let three_dir = dir.path().join("three");
    let args = [&png[..], &["--streams", "3"]].concat();
    let (ok, three, _) = run_batch(&inputs, &three_dir, &args, &[]);
    assert!(ok && three["done"] == 3, "{three}");
    // Recurrent state shared between streams would change the mattes.
    assert_eq!(max_diff(&alphas(&one), &alphas(&three)), 0);
    // The three ran at once: every job started before any ended.
    let ts = |which: &str| -> Vec<String> {
        (0..3)
            .map(|i| {
                events(&three_dir, &three, &format!("clip{i}.mp4"))
                    .iter()
                    .find(|e| e["event"] == which)
                    .unwrap()["ts"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let (starts, ends) = (ts("start"), ts("end"));
    assert!(
        starts.iter().max() < ends.iter().min(),
        "{starts:?} {ends:?}"
    );
}

#[test]
fn out_of_memory_halves_the_chunk_and_the_video_goes_on_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 1, 10);
    let args = ["--format", "png", "--outputs", "alpha", "--seq-chunk", "4"];
    let (ok, plain, _) = run_batch(&inputs, &dir.path().join("plain"), &args, &[]);
    assert!(ok, "{plain}");
    let out = dir.path().join("oom");
    let (ok, report, _) = run_batch(&inputs, &out, &args, &[("VMATTE_FAKE_OOM", "frames>1")]);
    assert!(ok && report["done"] == 1, "{report}");
    let j = job(&report, "clip0.mp4");
    assert_eq!(j["device"], "cpu");
    let ladder: Vec<&str> = j["ladder"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        ladder,
        [
            "out of GPU memory at frame 0: chunk 4 -> 2 frames",
            "out of GPU memory at frame 0: chunk 2 -> 1 frames"
        ]
    );
    let logged: Vec<Value> = events(&out, &report, "clip0.mp4")
        .into_iter()
        .filter(|e| e["event"] == "oom")
        .collect();
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1]["step"], "halve_chunk");
    assert_eq!(
        (logged[1]["from"].as_u64(), logged[1]["to"].as_u64()),
        (Some(2), Some(1))
    );
    // Redone from the same recurrent state: the mattes are the plain run's,
    // up to float rounding between batch sizes.
    let diff = max_diff(&alphas(&plain), &alphas(&report));
    assert!(diff <= 1, "alpha differs by {diff} levels");
}

#[test]
fn out_of_memory_at_one_frame_halves_streams_then_moves_to_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 2, 6);
    let out = dir.path().join("out");
    let (ok, report, err) = run_batch(
        &inputs,
        &out,
        &["--streams", "2", "--seq-chunk", "2"],
        &[("VMATTE_FAKE_OOM", "always")],
    );
    assert!(ok && report["done"] == 2, "{report} {err}");
    let steps: Vec<String> = (0..2)
        .flat_map(|i| events(&out, &report, &format!("clip{i}.mp4")))
        .filter(|e| e["event"] == "oom" && e.get("next").is_some())
        .map(|e| e["next"]["step"].as_str().unwrap().to_string())
        .collect();
    // One job halves the streams (2 -> 1); after that every job that runs
    // out of memory at one frame goes to the CPU.
    assert_eq!(
        steps.iter().filter(|s| *s == "halve_streams").count(),
        1,
        "{steps:?}"
    );
    assert_eq!(steps.iter().filter(|s| *s == "cpu").count(), 2, "{steps:?}");
    // Both ended on the bottom rung. (Under --json the ladder's notes stay
    // off stderr; the report and the logs are where it shows.)
    for i in 0..2 {
        let j = job(&report, &format!("clip{i}.mp4"));
        assert_eq!(j["status"], "done", "{j}");
        assert_eq!(j["device"], "cpu", "{j}");
    }
    no_partials(&out);
}

#[test]
fn bad_gpu_settings_are_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 1, 2);
    let out = dir.path().join("out");
    let o = batch_command(&[&inputs], &out, &[])
        .env("VMATTE_FAKE_OOM", "sometimes")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("VMATTE_FAKE_OOM='sometimes'"), "{e}");
    let o = batch_command(&[&inputs], &out, &["--vram-limit", "lots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("'lots' is not a memory limit"), "{e}");
}

#[test]
fn monitor_without_nvml_says_so_in_one_line() {
    let o = vmatte_with_env(
        &["monitor", "--count", "1"],
        &[(
            "VMATTE_NVML_LIB",
            Path::new("/nonexistent/libnvidia-ml.so.1"),
        )],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("telemetry is off") && e.contains("VMATTE_NVML_LIB"),
        "{e}"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn nvdec_without_a_driver_falls_back_to_the_cpu_decoder_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 1, 5);
    let args = ["--format", "png", "--outputs", "alpha"];
    let (ok, cpu, _) = run_batch(
        &inputs,
        &dir.path().join("cpu"),
        &[&args[..], &["--hwdec", "cpu"]].concat(),
        &[],
    );
    assert!(ok, "{cpu}");
    let out = dir.path().join("nvdec");
    let (ok, nvdec, err) = run_batch(
        &inputs,
        &out,
        &[&args[..], &["--hwdec", "nvdec"]].concat(),
        &[],
    );
    assert!(ok, "{nvdec}");
    let probe = events(&out, &nvdec, "clip0.mp4")
        .into_iter()
        .find(|e| e["event"] == "probe")
        .unwrap();
    let said: Vec<&str> = err.lines().filter(|l| l.contains("NVDEC")).collect();
    if probe["decoder"] == "h264" {
        // No NVIDIA driver (CI): one line says NVDEC did not open.
        assert_eq!(said.len(), 1, "{err}");
        assert!(
            said[0].contains("h264_cuvid") && said[0].contains("decoding on the CPU"),
            "{err}"
        );
    } else {
        assert_eq!(probe["decoder"], "h264_cuvid");
        assert!(said.is_empty(), "{err}");
    }
    // H.264 decoding is exact either way: the same mattes.
    assert_eq!(max_diff(&alphas(&cpu), &alphas(&nvdec)), 0);
}

#[test]
fn postprocessing_beside_the_model_gives_the_cpu_paths_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 1, 5);
    let kinds = [
        "--outputs",
        "composite,alpha,foreground,rgba",
        "--format",
        "png",
    ];
    for extra in [
        &["--background", "#204080"][..],
        &["--invert-alpha", "--premultiplied"],
    ] {
        let run = |post: &str| {
            let out = dir.path().join(format!("{post}{}", extra.len()));
            let args = [&kinds[..], extra, &["--postprocess", post]].concat();
            let (ok, report, err) = run_batch(&inputs, &out, &args, &[]);
            assert!(ok, "{report} {err}");
            report
        };
        let (cpu, device) = (run("cpu"), run("device"));
        for kind in ["composite", "alpha", "foreground", "rgba"] {
            let frames = |r: &Value| {
                let dir = job(r, "clip0.mp4")["outputs"][kind]
                    .as_str()
                    .unwrap()
                    .to_string();
                decode_frames(Path::new(&dir), 100)
                    .into_iter()
                    .map(|f| f.rgb)
                    .collect::<Vec<_>>()
            };
            let (a, b) = (frames(&cpu), frames(&device));
            assert_eq!(a.len(), 5, "{kind}");
            assert!(
                a == b,
                "{kind} {extra:?}: device postprocessing changed the bytes"
            );
        }
    }
}

#[test]
fn colour_conversion_beside_the_model_agrees_with_swscale_on_real_footage() {
    let dir = tempfile::tempdir().unwrap();
    // The sample clip's first 12 frames: real footage, H.264 4:2:0 BT.709.
    let clip = dir.path().join("astronaut.mp4");
    let sample = sample_clip();
    ffmpeg(&[
        "-i",
        sample.to_str().unwrap(),
        "-frames:v",
        "12",
        "-crf",
        "12",
        clip.to_str().unwrap(),
    ]);
    let run = |pre: &str| {
        let out = dir.path().join(pre);
        let o = matte(
            &clip,
            &out,
            &["--outputs", "alpha", "--format", "png", "--preprocess", pre],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        decode_frames(&out.join("astronaut.alpha"), 100)
    };
    let (cpu, device) = (run("cpu"), run("device"));
    assert_eq!((cpu.len(), device.len()), (12, 12));
    let (mut sum, mut n) = (0u64, 0u64);
    for (a, b) in cpu.iter().zip(&device) {
        for (p, q) in a.rgb.iter().zip(&b.rgb) {
            sum += u64::from(p.abs_diff(*q));
            n += 1;
        }
    }
    // The criterion the project holds vmatte to against ONNX Runtime: a mean
    // alpha difference under one 1/255 step.
    let mean = sum as f64 / n as f64;
    assert!(mean < 1.0, "mean alpha difference {mean} steps");
}

/// A queue worker takes the same job-level rungs as a batch: out of memory
/// at one frame halves the jobs at once on the device (the job goes back to
/// the queue), then moves the job to the CPU, and every job is done.
#[test]
fn a_worker_takes_the_same_out_of_memory_rungs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 2, 6);
    let out = dir.path().join("out");
    let queue = format!("sqlite:{}", out.display());
    submit_sqlite(&inputs, &out, &["--seq-chunk", "2"]);
    let worker = std::process::Command::new(env!("CARGO_BIN_EXE_vmatte"))
        .args([
            "worker",
            "--queue",
            &queue,
            "--streams",
            "2",
            "--exit-when-idle",
        ])
        .env("VMATTE_FAKE_OOM", "always")
        .env("VMATTE_POLL_MS", "50")
        .env_remove("VMATTE_MODEL_DIR")
        .output()
        .unwrap();
    assert!(worker.status.success(), "{}", stderr(&worker));
    let err = stderr(&worker);
    assert!(err.contains("2 done, 0 failed"), "{err}");
    assert!(err.contains("redoing it on the CPU"), "{err}");
    let logs: String = ["clip0", "clip1"]
        .iter()
        .map(|n| std::fs::read_to_string(out.join(format!("logs/{n}.jsonl"))).unwrap())
        .collect();
    assert!(logs.contains("\"halve_streams\""), "{logs}");
    assert!(logs.contains("\"cpu\""), "{logs}");
    for i in 0..2 {
        assert_eq!(
            decode_frames(&out.join(format!("clip{i}.alpha.mp4")), 100).len(),
            6
        );
    }
}

/// The mp4 outputs (composite and alpha) of a batch's one clip, as bytes.
fn mp4s(out: &Path) -> Vec<Vec<u8>> {
    ["clip0.composite.mp4", "clip0.alpha.mp4"]
        .iter()
        .map(|name| std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

#[test]
fn nvenc_without_one_falls_back_to_the_cpu_encoder_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(dir.path(), 1, 5);
    let (ok, cpu, err) = run_batch(&inputs, &dir.path().join("cpu"), &["--encoder", "cpu"], &[]);
    assert!(ok, "{cpu}");
    assert!(!err.contains("NVENC"), "{err}");
    let out = dir.path().join("nvenc");
    let (ok, nvenc, err) = run_batch(&inputs, &out, &["--encoder", "nvenc"], &[]);
    assert!(ok, "{nvenc}");
    // No NVIDIA driver here (CI): h264_nvenc does not open, one line says
    // so, and libx264 writes the very bytes it writes when asked directly.
    let said: Vec<&str> = err.lines().filter(|l| l.contains("NVENC")).collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(
        said[0].contains("h264_nvenc") && said[0].ends_with("encoding on the CPU"),
        "{err}"
    );
    assert_eq!(mp4s(&dir.path().join("cpu")), mp4s(&out));
    // A 10-bit source gives 10-bit video, never NVENC's here: said, and
    // encoded on the CPU.
    let deep_in = dir.path().join("deep_in");
    std::fs::create_dir_all(&deep_in).unwrap();
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=96x64:rate=25",
            "-frames:v",
            "3",
        ])
        .args(["-pix_fmt", "yuv420p10le", "-c:v", "libx264"])
        .arg(deep_in.join("deep.mp4"))
        .status()
        .unwrap();
    assert!(made.success());
    let (ok, deep, err) = run_batch(
        &deep_in,
        &dir.path().join("deep"),
        &["--encoder", "nvenc", "--outputs", "alpha"],
        &[],
    );
    assert!(ok, "{deep}");
    assert!(
        err.contains("takes 8-bit video here") && err.contains("encoding on the CPU"),
        "{err}"
    );
    // A bad value is refused in one line naming the choices.
    let bad = batch_command(&[&inputs], &dir.path().join("bad"), &["--encoder", "gpu"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unknown encoder 'gpu'; use auto, nvenc or cpu"),
        "{err}"
    );
}
