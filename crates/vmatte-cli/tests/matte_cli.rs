//! `vmatte matte` end to end through the real binary: outputs, names,
//! timing, JSON, and what happens with bad input.

mod support;

use support::*;
use vmatte_media::{open_source, Rational};

#[test]
fn mp4_outputs_keep_every_timestamp_and_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("talk show.mp4");
    make_clip(&clip, 128, 72, 10, Rational::new(30000, 1001));
    let out_dir = dir.path().join("out");
    let out = matte(
        &clip,
        &out_dir,
        &["--outputs", "composite,alpha,foreground", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(report["frames"], 10);
    assert_eq!(report["frame_rate"], "30000/1001");
    assert!(report["fps"].as_f64().unwrap() > 0.0);
    assert_eq!(report["settings"]["downsample_ratio"], "auto");
    let input = decode_frames(&clip, usize::MAX);
    for kind in ["composite", "alpha", "foreground"] {
        let path = out_dir.join(format!("talk show.{kind}.mp4"));
        assert_eq!(report["outputs"][kind], path.to_str().unwrap());
        let mut src = open_source(&path, None).unwrap();
        assert_eq!(src.info().frame_rate, Rational::new(30000, 1001), "{kind}");
        let tb = src.info().time_base;
        let mut n = 0;
        while let Some(f) = src.next_frame().unwrap() {
            let seconds = |pts: Option<i64>, tb: Rational| pts.unwrap() as f64 * tb.as_f64();
            let expected = seconds(
                input[n].pts,
                open_source(&clip, None).unwrap().info().time_base,
            );
            assert!(
                (seconds(f.pts, tb) - expected).abs() < 1e-6,
                "{kind} frame {n}"
            );
            n += 1;
        }
        assert_eq!(n, input.len(), "{kind} frame count");
    }
    assert_eq!(
        list_dir(&out_dir).len(),
        3,
        "no partial files left: {:?}",
        list_dir(&out_dir)
    );
}

#[test]
fn png_outputs_are_numbered_and_alpha_is_gray() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 96, 64, 3, Rational::new(25, 1));
    let out_dir = dir.path().join("out");
    let out = matte(
        &clip,
        &out_dir,
        &["--format", "png", "--downsample-ratio", "0.5"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alpha = out_dir.join("clip.alpha");
    assert_eq!(list_dir(&alpha), ["000000.png", "000001.png", "000002.png"]);
    let png = std::fs::read(alpha.join("000000.png")).unwrap();
    // IHDR: bit depth 8, colour type 0 (grayscale).
    assert_eq!((png[24], png[25]), (8, 0));
    assert_eq!(list_dir(&out_dir.join("clip.composite")).len(), 3);
}

#[test]
fn bad_inputs_fail_with_one_line_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.mp4");
    make_clip(&good, 96, 64, 6, Rational::new(25, 1));
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "these are my notes, not a video\n").unwrap();
    let truncated = dir.path().join("cut.mp4");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir.path().join("missing.mp4");

    for (input, reason) in [
        (&missing, "not found"),
        (&text, "notes.mp4"),
        (&truncated, "cut.mp4"),
    ] {
        let out_dir = dir.path().join("out");
        let out = matte(input, &out_dir, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{} should fail", input.display());
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {}: {err}", input.display());
        assert!(
            lines[0].contains(input.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
        assert!(lines[0].contains(reason), "{err}");
        assert!(
            list_dir(&out_dir).is_empty(),
            "left {:?}",
            list_dir(&out_dir)
        );
    }

    // A bad input among good ones: the good one is done, the exit fails.
    let out_dir = dir.path().join("mixed");
    let out = matte(&missing, &out_dir, &[good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(list_dir(&out_dir), ["good.alpha.mp4", "good.composite.mp4"]);
}

#[test]
fn unsupported_ratio_and_missing_model_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 96, 64, 2, Rational::new(25, 1));
    let out = vmatte(&[
        "matte",
        clip.to_str().unwrap(),
        "-o",
        "out",
        "--downsample-ratio",
        "1.5",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("outside (0, 1]"), "{}", stderr(&out));

    let empty = dir.path().join("models");
    let out = vmatte(&[
        "matte",
        clip.to_str().unwrap(),
        "-o",
        dir.path().join("o").to_str().unwrap(),
        "--model-dir",
        empty.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("vmatte models install rvm-mobilenetv3"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn image_folder_input_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 96, 64, 3, Rational::new(25, 1));
    // Turn the clip into a folder of PNGs named 1, 2, 10 with vmatte itself.
    let pngs = dir.path().join("pngs");
    let out = matte(&clip, &pngs, &["--format", "png", "--outputs", "composite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let frames = pngs.join("clip.composite");
    let seq = dir.path().join("seq");
    std::fs::create_dir(&seq).unwrap();
    for (from, to) in [
        ("000000.png", "1.png"),
        ("000001.png", "2.png"),
        ("000002.png", "10.png"),
    ] {
        std::fs::copy(frames.join(from), seq.join(to)).unwrap();
    }
    let out_dir = dir.path().join("out");
    let out = matte(&seq, &out_dir, &["--fps", "29.97", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["frames"], 3);
    assert_eq!(report["frame_rate"], "30000/1001");
    assert!(out_dir.join("seq.alpha.mp4").is_file());
}

/// Two inputs of one name get outputs of their own, numbered as a batch
/// numbers them (`clip`, `clip_2`).
#[test]
fn inputs_of_one_name_are_numbered_like_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        make_clip(
            &dir.path().join(sub).join("clip.mp4"),
            64,
            48,
            2,
            vmatte_media::Rational::new(25, 1),
        );
    }
    let onnx = rvm_onnx();
    let out = dir.path().join("out");
    let run = vmatte(&[
        "matte",
        dir.path().join("a/clip.mp4").to_str().unwrap(),
        dir.path().join("b/clip.mp4").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--weights",
        onnx.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let names = list_dir(&out);
    assert!(names.contains(&"clip.alpha.mp4".to_string()), "{names:?}");
    assert!(names.contains(&"clip_2.alpha.mp4".to_string()), "{names:?}");
}
