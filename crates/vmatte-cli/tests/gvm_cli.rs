//! `vmatte matte --model gvm` end to end with the tiny random-weight GVM of
//! ../shared/fixtures/gvm: registering the folder, windows that overlap,
//! interpolated frames, the options users know, presets and the
//! out-of-memory ladder.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

fn gvm_weights() -> PathBuf {
    vmatte_testkit::fixture("gvm/weights")
}

/// A model folder with the fixture GVM registered in it.
fn registered() -> tempfile::TempDir {
    let models = tempfile::tempdir().unwrap();
    let out = vmatte(&[
        "models",
        "import",
        "gvm",
        gvm_weights().to_str().unwrap(),
        "--model-dir",
        models.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("gvm registered"), "{}", stderr(&out));
    models
}

/// The command failed and said `text` on stderr.
fn fails_with(out: &std::process::Output, text: &str) {
    assert!(!out.status.success(), "succeeded: {}", stderr(out));
    assert!(stderr(out).contains(text), "{}", stderr(out));
}

fn clip(dir: &Path, frames: u32) -> PathBuf {
    let path = dir.join("clip.mp4");
    make_clip(&path, 160, 90, frames, Rational::new(25, 1));
    path
}

/// `vmatte matte CLIP -o OUT --model gvm` at a size the tiny model runs
/// in a second, alpha as PNGs so outputs compare exactly.
fn gvm_matte(
    models: &Path,
    input: &Path,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &Path)],
) -> std::process::Output {
    let mut args = vec![
        "matte",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "gvm",
        "--model-dir",
        models.to_str().unwrap(),
        "--size",
        "64",
        "--max-resolution",
        "128",
        "--outputs",
        "alpha",
        "--format",
        "png",
    ];
    args.extend_from_slice(extra);
    vmatte_with_env(&args, env)
}

fn alphas(out: &Path) -> Vec<Vec<u8>> {
    decode_frames(&out.join("clip.alpha"), 1000)
        .into_iter()
        .map(|f| f.rgb)
        .collect()
}

#[test]
fn models_import_registers_a_gvm_folder() {
    let models = registered();
    let out = vmatte(&[
        "models",
        "list",
        "--json",
        "--model-dir",
        models.path().to_str().unwrap(),
    ]);
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let gvm = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "gvm")
        .unwrap();
    assert_eq!(gvm["installed"], true);
    assert_eq!(
        PathBuf::from(gvm["path"].as_str().unwrap()),
        gvm_weights().canonicalize().unwrap()
    );

    let md = models.path().to_str().unwrap();
    let out = vmatte(&["models", "verify", "gvm", "--model-dir", md]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("gvm: ok, folder"), "{}", stdout(&out));
    let out = vmatte(&["models", "install", "gvm", "--model-dir", md]);
    fails_with(&out, "vmatte models import gvm DIR");

    // A folder that is not GVM's: one line naming what is missing.
    let empty = tempfile::tempdir().unwrap();
    let out = vmatte(&[
        "models",
        "import",
        "gvm",
        empty.path().to_str().unwrap(),
        "--model-dir",
        models.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("has no unet/config.json") && err.trim().lines().count() == 1,
        "{err}"
    );

    // Without a registration, --model gvm says how to get one.
    let nothing = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), 2);
    let out = gvm_matte(nothing.path(), &input, &dir.path().join("o"), &[], &[]);
    fails_with(&out, "vmatte models import gvm DIR");
}

#[test]
fn mattes_a_clip_with_overlapping_windows_and_interpolated_frames() {
    let models = registered();
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), 13);
    let out = dir.path().join("out");
    let run = gvm_matte(
        models.path(),
        &input,
        &out,
        &[
            "--frames-per-batch",
            "4",
            "--overlap-frames",
            "1",
            "--interp-frames",
            "2",
            "--outputs",
            "alpha,composite",
            "--json",
        ],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let report: Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    assert_eq!(report["frames"], 13);
    assert_eq!(
        report["gvm"]["geometry"]["resized"],
        serde_json::json!([64, 113])
    );
    assert_eq!(report["settings"]["gvm"]["overlap_frames"], 1);
    let a = alphas(&out);
    assert_eq!(a.len(), 13);
    assert_eq!(list_dir(&out.join("clip.composite")).len(), 13);
    // A matte, not a constant: values spread over the range.
    let (lo, hi) = a
        .iter()
        .flatten()
        .fold((255u8, 0u8), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(lo < 64 && hi > 192, "alpha spans {lo}..{hi}");
    no_partials(&out);

    // The same clip every frame, no overlap: different mattes, same count.
    let plain = dir.path().join("plain");
    let run = gvm_matte(
        models.path(),
        &input,
        &plain,
        &["--frames-per-batch", "4"],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let b = alphas(&plain);
    assert_eq!(b.len(), 13);
    assert_ne!(a, b);
    // Key frames 0 and 2 settle in the first window in both runs; frame 1
    // is interpolated in one and inferred in the other.
    assert_ne!(a[1], b[1]);
}

#[test]
fn image_sequence_only_max_frames_and_lora_switches() {
    let models = registered();
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), 8);
    let out = dir.path().join("seq");
    let args = vec![
        "matte",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "gvm",
        "--model-dir",
        models.path().to_str().unwrap(),
        "--preset",
        "preview",
        "--size",
        "64",
        "--max-resolution",
        "128",
        "--image-seq-only",
        "--max-frames",
        "5",
    ];
    let run = vmatte(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    // Only PNG folders, five frames each.
    assert_eq!(list_dir(&out), vec!["clip.alpha", "clip.composite"]);
    assert_eq!(list_dir(&out.join("clip.alpha")).len(), 5);

    // --no-lora runs the base UNet; --lora DIR a chosen adapter (here the
    // same one as the default, so the same mattes).
    let with = dir.path().join("with");
    let without = dir.path().join("without");
    let chosen = dir.path().join("chosen");
    let unet = gvm_weights().join("unet");
    // --lora FILE takes that file, not whichever adapter its folder holds
    // first (here a file that is no adapter at all).
    let picked_dir = dir.path().join("adapters");
    std::fs::create_dir(&picked_dir).unwrap();
    std::fs::copy(
        unet.join("adapter_config.json"),
        picked_dir.join("adapter_config.json"),
    )
    .unwrap();
    std::fs::copy(
        unet.join("pytorch_lora_weights.pt"),
        picked_dir.join("mine.pt"),
    )
    .unwrap();
    std::fs::write(picked_dir.join("pytorch_lora_weights.pt"), b"not this one").unwrap();
    let picked = dir.path().join("picked");
    let file = picked_dir.join("mine.pt");
    for (o, extra) in [
        (&with, vec![]),
        (&without, vec!["--no-lora"]),
        (&chosen, vec!["--lora", unet.to_str().unwrap()]),
        (&picked, vec!["--lora", file.to_str().unwrap()]),
    ] {
        let mut e = vec!["--max-frames", "4", "--frames-per-batch", "4"];
        e.extend(extra);
        let run = gvm_matte(models.path(), &input, o, &e, &[]);
        assert!(run.status.success(), "{}", stderr(&run));
    }
    assert_ne!(alphas(&with), alphas(&without));
    assert_eq!(alphas(&with), alphas(&chosen));
    assert_eq!(alphas(&with), alphas(&picked));

    // --weights DIR runs a GVM folder without registering it.
    let direct = dir.path().join("direct");
    let weights = gvm_weights();
    let args = vec![
        "matte",
        input.to_str().unwrap(),
        "-o",
        direct.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--size",
        "64",
        "--max-resolution",
        "128",
        "--outputs",
        "alpha",
        "--format",
        "png",
        "--max-frames",
        "4",
        "--frames-per-batch",
        "4",
    ];
    let run = vmatte(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(alphas(&direct), alphas(&with));
}

#[test]
fn out_of_memory_lowers_the_window_and_goes_on() {
    let models = registered();
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), 6);
    let lowered = dir.path().join("lowered");
    let run = gvm_matte(
        models.path(),
        &input,
        &lowered,
        &["--frames-per-batch", "4"],
        &[("VMATTE_FAKE_OOM", Path::new("frames>2"))],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("out of GPU memory at frame 0: frames per batch 4 -> 2"),
        "{}",
        stderr(&run)
    );
    // The failed window was redone with 2 frames: the result is a 2-frame run's.
    let two = dir.path().join("two");
    let run = gvm_matte(
        models.path(),
        &input,
        &two,
        &["--frames-per-batch", "2"],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(alphas(&lowered), alphas(&two));

    // Failing whatever is lowered: every rung, then one line and no outputs.
    let never = dir.path().join("never");
    let run = gvm_matte(
        models.path(),
        &input,
        &never,
        &["--frames-per-batch", "2", "--decode-chunk", "2", "--json"],
        &[("VMATTE_FAKE_OOM", Path::new("always"))],
    );
    assert!(!run.status.success());
    let line: Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    let err = line["error"].as_str().unwrap();
    assert!(
        err.contains("even with 1-frame windows at the smallest size, 64 px"),
        "{err}"
    );
    assert!(err.contains("clip.mp4"), "the file is named: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // The steps are said as they are taken, also when the video fails in
    // the end.
    let run = gvm_matte(
        models.path(),
        &input,
        &dir.path().join("told"),
        &["--frames-per-batch", "2", "--decode-chunk", "2"],
        &[("VMATTE_FAKE_OOM", Path::new("always"))],
    );
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(err.contains("frames per batch 2 -> 1"), "{err}");
    assert!(err.contains("smallest size"), "{err}");
    // A rung that would change nothing is not taken: with one-frame windows
    // each decode slice is one frame whatever the chunk.
    let run = gvm_matte(
        models.path(),
        &input,
        &dir.path().join("one"),
        &["--frames-per-batch", "1", "--decode-chunk", "4"],
        &[("VMATTE_FAKE_OOM", Path::new("always"))],
    );
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(!err.contains("decode chunk"), "{err}");
    assert!(err.contains("smallest size"), "{err}");
    assert!(
        list_dir(&never)
            .iter()
            .all(|n| list_dir(&never.join(n)).is_empty()),
        "{:?}",
        list_dir(&never)
    );
    no_partials(&never);
}

#[test]
fn presets_and_misplaced_flags() {
    let out = vmatte(&["presets", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let find = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["preset"]["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    let hq = find("hq");
    assert_eq!(hq["preset"]["gvm"]["denoise_steps"], 3);
    assert_eq!(hq["preset"]["gvm"]["overlap_frames"], 2);
    assert_eq!(hq["resolved"]["1920x1080"]["model_sees"], "1280x720");
    assert_eq!(
        find("lowmem")["resolved"]["1920x1080"]["model_sees"],
        "720x405"
    );
    assert_eq!(
        find("balanced")["resolved"]["1920x1080"]["model_sees"],
        "960x540"
    );
    assert_eq!(find("preview")["preset"]["max_frames"], 50);

    // A preset of the user's own: GVM settings in the config file, and a
    // flag over it.
    let dir = tempfile::tempdir().unwrap();
    let models = registered();
    let input = clip(dir.path(), 5);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[presets.hair]\nmodel = \"gvm\"\nframes_per_batch = 3\noverlap_frames = 1\n\
         size = 64\nmax_resolution = 128\nmax_frames = 4\n",
    )
    .unwrap();
    let mine = dir.path().join("mine");
    let out = vmatte(&[
        "matte",
        input.to_str().unwrap(),
        "-o",
        mine.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--preset",
        "hair",
        "--model-dir",
        models.path().to_str().unwrap(),
        "--decode-chunk",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["frames"], 4);
    let g = &report["settings"]["gvm"];
    assert_eq!(
        (
            g["frames_per_batch"].as_u64(),
            g["overlap_frames"].as_u64(),
            g["decode_chunk"].as_u64()
        ),
        (Some(3), Some(1), Some(2))
    );
    std::fs::write(
        &config,
        "[presets.bad]\nmodel = \"gvm\"\nframes_per_batch = 2\noverlap_frames = 2\n",
    )
    .unwrap();
    let out = vmatte(&["presets", "--config", config.to_str().unwrap()]);
    fails_with(
        &out,
        "presets.bad: --overlap-frames 2 must be smaller than --frames-per-batch 2",
    );

    let o = dir.path().join("o");
    let out = vmatte(&[
        "matte",
        input.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--overlap-frames",
        "2",
    ]);
    fails_with(&out, "are GVM settings; add --model gvm");
    let out = gvm_matte(
        models.path(),
        &input,
        &o,
        &["--frames-per-batch", "4", "--overlap-frames", "4"],
        &[],
    );
    fails_with(
        &out,
        "--overlap-frames 4 must be smaller than --frames-per-batch 4",
    );
}

#[test]
fn bench_gvm_times_windows_per_resolution() {
    let weights = gvm_weights();
    let out = vmatte(&[
        "bench-gvm",
        "--weights",
        weights.to_str().unwrap(),
        "--source",
        "320x180",
        "--size",
        "64",
        "--max-resolution",
        "128,160",
        "--frames-per-batch",
        "3",
        "--decode-chunk",
        "2",
        "--windows",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["model_sees"], "113x64");
    assert_eq!(rows[1]["model_sees"], "113x64");
    for row in rows {
        let total = row["seconds_per_window"].as_f64().unwrap();
        let parts: f64 = ["encode_seconds", "denoise_seconds", "decode_seconds"]
            .iter()
            .map(|k| row[k].as_f64().unwrap())
            .sum();
        assert!(
            total > 0.0 && (parts - total).abs() < 0.5 * total + 0.05,
            "{row}"
        );
        assert_eq!(row["frames_per_window"], 3);
    }
    let bad = vmatte(&[
        "bench-gvm",
        "--weights",
        weights.to_str().unwrap(),
        "--random-weights",
    ]);
    fails_with(&bad, "exclude each other");
}

#[test]
fn batch_runs_gvm_jobs_and_their_settings_are_part_of_the_job() {
    let models = registered();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.mp4");
    let b = dir.path().join("b.mp4");
    make_clip(&a, 160, 90, 5, Rational::new(25, 1));
    make_clip(&b, 96, 128, 3, Rational::new(30, 1));
    let out = dir.path().join("out");
    let run = |extra: &[&str]| -> Value {
        let mut args = vec![
            "batch",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--model",
            "gvm",
            "--model-dir",
            models.path().to_str().unwrap(),
            "--size",
            "64",
            "--max-resolution",
            "128",
            "--outputs",
            "alpha",
            "--format",
            "png",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = vmatte(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(stdout(&o).trim()).unwrap()
    };
    let first = run(&["--frames-per-batch", "2"]);
    assert_eq!(job(&first, "a.mp4")["status"], "done", "{first}");
    assert_eq!(job(&first, "b.mp4")["status"], "done", "{first}");
    assert_eq!(list_dir(&out.join("a.alpha")).len(), 5);
    assert_eq!(list_dir(&out.join("b.alpha")).len(), 3);
    // The same settings again: nothing to do.
    let again = run(&["--frames-per-batch", "2"]);
    assert_eq!(job(&again, "a.mp4")["status"], "skipped", "{again}");
    // Different GVM settings are different jobs.
    let other = run(&["--frames-per-batch", "2", "--overlap-frames", "1"]);
    assert_eq!(job(&other, "a.mp4")["status"], "done", "{other}");
}
