//! `vmatte matte --model matanyone` end to end with the tiny random-weight
//! MatAnyone of ../shared/fixtures/matanyone standing in for the release's
//! weights: importing it, the mask choosing the subject (a file, one of
//! another size, `--mask auto` from RVM, `--mask-at`), bad masks refused in
//! one line, and batches with a mask per input. The network's numbers are
//! checked against the release in vmatte-models' matanyone_parity.rs.

mod support;

use std::path::{Path, PathBuf};

use support::*;
use vmatte_media::Rational;

/// A model folder with the fixture MatAnyone imported, and RVM (for
/// `--mask auto`).
fn models() -> tempfile::TempDir {
    let models = tempfile::tempdir().unwrap();
    let dir = models.path().to_str().unwrap();
    let weights = vmatte_testkit::fixture("matanyone/weights");
    let out = vmatte(&[
        "models",
        "import",
        "matanyone",
        weights.to_str().unwrap(),
        "--model-dir",
        dir,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("imported as matanyone"),
        "{}",
        stderr(&out)
    );
    let out = vmatte(&[
        "models",
        "import",
        rvm_onnx().to_str().unwrap(),
        "--model-dir",
        dir,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    models
}

fn clip(dir: &Path, name: &str, frames: u32) -> PathBuf {
    let path = dir.join(name);
    make_clip(&path, 160, 96, frames, Rational::new(25, 1));
    path
}

/// A PNG mask: black with a white box `(x, y, w, h)`, or one colour.
fn mask(path: &Path, size: (u32, u32), fill: &str, bx: Option<(u32, u32, u32, u32)>) -> PathBuf {
    let mut args = vec![
        "-f".to_string(),
        "lavfi".into(),
        "-i".into(),
        format!("color={fill}:s={}x{}", size.0, size.1),
    ];
    if let Some((x, y, w, h)) = bx {
        args.push("-vf".into());
        args.push(format!(
            "drawbox=x={x}:y={y}:w={w}:h={h}:color=white:t=fill"
        ));
    }
    args.extend([
        "-frames:v".into(),
        "1".into(),
        path.to_str().unwrap().into(),
    ]);
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    path.to_path_buf()
}

/// A black mask of `size` with a white box `(x, y, w, h)`.
fn boxed(dir: &Path, name: &str, size: (u32, u32), bx: (u32, u32, u32, u32)) -> PathBuf {
    mask(&dir.join(name), size, "black", Some(bx))
}

/// `matte CLIP -o OUT --model matanyone` with alpha as 8-bit PNGs, no
/// warm-up (the random model's warm-up pulls every mask's matte together,
/// see the fixture's README) and no erosion unless `extra` says otherwise.
fn run(models: &Path, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["matte", input.to_str().unwrap()];
    args.extend(alpha_pngs(models, out));
    for (flag, default) in [
        ("--warmup", "0"),
        ("--mask-erode", "0"),
        ("--mask-dilate", "0"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    vmatte(&args)
}

/// `batch INPUTS -o OUT --model matanyone` with alpha as PNGs and no
/// warm-up, then `extra`.
fn matanyone_batch(
    models: &Path,
    inputs: &[&Path],
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["batch"];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(alpha_pngs(models, out));
    args.extend(["--warmup", "0"]);
    args.extend_from_slice(extra);
    vmatte(&args)
}

/// What [`run`] and [`matanyone_batch`] share: MatAnyone from `models`,
/// alpha as PNGs into `out`.
fn alpha_pngs<'a>(models: &'a Path, out: &'a Path) -> [&'a str; 10] {
    [
        "-o",
        out.to_str().unwrap(),
        "--model",
        "matanyone",
        "--model-dir",
        models.to_str().unwrap(),
        "--outputs",
        "alpha",
        "--format",
        "png",
    ]
}

/// The alpha PNG frames of a run, as bytes of gray.
fn alphas(out: &Path, stem: &str) -> Vec<Vec<u8>> {
    let dir = out.join(format!("{stem}.alpha"));
    decode_frames(&dir, 1000)
        .into_iter()
        .map(|f| f.rgb)
        .collect()
}

fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn import_lists_the_licence_and_verifies() {
    let models = models();
    let dir = models.path().to_str().unwrap();
    let out = vmatte(&["models", "list", "--model-dir", dir]);
    let text = stdout(&out);
    assert!(
        text.contains("matanyone") && text.contains("installed"),
        "{text}"
    );
    assert!(
        text.contains("NTU S-Lab License 1.0 (non-commercial)"),
        "{text}"
    );
    let out = vmatte(&["models", "list", "--model-dir", dir, "--json"]);
    let rows = json_of(&out);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "matanyone")
        .unwrap();
    assert_eq!(row["installed"], true);
    assert_eq!(row["source"], "matanyone_tiny.pth");
    let out = vmatte(&["models", "verify", "matanyone", "--model-dir", dir]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Not MatAnyone: refused in one line, nothing installed.
    let other = tempfile::tempdir().unwrap();
    let out = vmatte(&[
        "models",
        "import",
        "matanyone",
        rvm_onnx().to_str().unwrap(),
        "--model-dir",
        other.path().to_str().unwrap(),
    ]);
    fails_in_one_line(
        &out,
        "import RVM as matanyone",
        &["not a MatAnyone checkpoint"],
    );
    assert!(!other.path().join("matanyone.safetensors").exists());
}

#[test]
fn the_mask_picks_the_subject_at_any_size_and_mask_at_reanchors() {
    let models = models();
    let work = tempfile::tempdir().unwrap();
    let input = clip(work.path(), "clip.mp4", 8);
    let left = boxed(work.path(), "left.png", (160, 96), (24, 24, 48, 48));
    let right = boxed(work.path(), "right.png", (160, 96), (96, 24, 48, 48));
    // The left mask at twice the size: nearest scaling makes it the same.
    let big = boxed(work.path(), "big.png", (320, 192), (48, 48, 96, 96));
    let outs: Vec<_> = (0..4)
        .map(|i| work.path().join(format!("out{i}")))
        .collect();
    let runs = [
        run(
            models.path(),
            &input,
            &outs[0],
            &["--mask", left.to_str().unwrap()],
        ),
        run(
            models.path(),
            &input,
            &outs[1],
            &["--mask", right.to_str().unwrap()],
        ),
        run(
            models.path(),
            &input,
            &outs[2],
            &["--mask", big.to_str().unwrap()],
        ),
        run(
            models.path(),
            &input,
            &outs[3],
            &[
                "--mask",
                left.to_str().unwrap(),
                "--mask-at",
                &format!("5={}", right.display()),
            ],
        ),
    ];
    for r in &runs {
        assert!(r.status.success(), "{}", stderr(r));
    }
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| alphas(&outs[i], "clip"));
    assert_eq!(a.len(), 8);
    // Another mask, another first matte.
    assert!(
        mean_abs(&a[0], &b[0]) > 2.0,
        "the mask changed nothing: {}",
        mean_abs(&a[0], &b[0])
    );
    assert_eq!(a, c, "a mask of twice the size is scaled to the same mask");
    // Inside at 40 px (40x66, padded to 48x80 and cropped back, then
    // scaled up): every frame comes out at the video's size.
    let small = work.path().join("small");
    let r = run(
        models.path(),
        &input,
        &small,
        &["--mask", left.to_str().unwrap(), "--max-size", "40"],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let s = alphas(&small, "clip");
    assert_eq!(s.len(), 8);
    assert_eq!(s[0].len(), a[0].len());
    // Re-anchored at frame 5: the same up to it, then the other subject.
    assert_eq!(a[..5], d[..5]);
    assert!(
        mean_abs(&a[5], &d[5]) > 2.0,
        "--mask-at changed nothing: {}",
        mean_abs(&a[5], &d[5])
    );
}

#[test]
fn bad_masks_fail_in_one_line_and_leave_nothing() {
    let models = models();
    let work = tempfile::tempdir().unwrap();
    let input = clip(work.path(), "clip.mp4", 3);
    let empty = mask(&work.path().join("empty.png"), (160, 96), "black", None);
    let white = mask(&work.path().join("white.png"), (160, 96), "white", None);
    let text = work.path().join("text.png");
    std::fs::write(&text, "not a picture").unwrap();
    let missing = work.path().join("missing.png");
    for (m, says) in [
        (&missing, "mask not found"),
        (&empty, "the mask is empty"),
        (&white, "white everywhere"),
        (&text, "not a readable image"),
    ] {
        let out_dir = work.path().join("out");
        let out = run(
            models.path(),
            &input,
            &out_dir,
            &["--mask", m.to_str().unwrap()],
        );
        let line = fails_in_one_line(&out, &format!("--mask {}", m.display()), &[says]);
        assert!(
            line.contains(m.file_name().unwrap().to_str().unwrap()),
            "{line}"
        );
        no_partials(&out_dir);
        assert!(!out_dir.join("clip.alpha").exists());
    }
    // No mask at all: the line says the three ways to give one.
    let out = run(models.path(), &input, &work.path().join("none"), &[]);
    fails_in_one_line(
        &out,
        "no mask",
        &["--mask FILE", "clip.mask.png", "--mask auto"],
    );
    // Eroded away.
    let tiny = boxed(work.path(), "tiny.png", (160, 96), (70, 40, 4, 4));
    let mut args = vec!["--mask", tiny.to_str().unwrap()];
    args.extend(["--mask-erode", "15"]);
    let out = run(models.path(), &input, &work.path().join("eroded"), &args);
    fails_in_one_line(
        &out,
        "eroded",
        &["nothing is left of the mask", "--mask-erode"],
    );
}

#[test]
fn mask_auto_runs_unattended_from_rvm() {
    let models = models();
    let work = tempfile::tempdir().unwrap();
    // RVM sees people: the sample clip has one.
    let input = sample_clip();
    let stem = input.file_stem().unwrap().to_str().unwrap().to_string();
    let out_dir = work.path().join("out");
    let out = run(
        models.path(),
        &input,
        &out_dir,
        &["--mask", "auto", "--max-frames", "3", "--max-size", "144"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(alphas(&out_dir, &stem).len(), 3);
}

#[test]
fn batch_finds_a_mask_per_input() {
    let models = models();
    let work = tempfile::tempdir().unwrap();
    let masks = work.path().join("masks");
    std::fs::create_dir(&masks).unwrap();
    // a and b are the same video: with different masks they are
    // different jobs, not one job and its copy.
    let a = clip(work.path(), "a.mp4", 3);
    let b = clip(work.path(), "b.mp4", 3);
    let c = clip(work.path(), "c.mp4", 5);
    // a's mask beside it, b's in --mask-dir, c has none.
    boxed(work.path(), "a.mask.png", (160, 96), (24, 24, 48, 48));
    boxed(&masks, "b.mask.png", (160, 96), (96, 24, 48, 48));
    let out_dir = work.path().join("out");
    let out = matanyone_batch(
        models.path(),
        &[&a, &b, &c],
        &out_dir,
        &["--mask-dir", masks.to_str().unwrap(), "--json"],
    );
    assert_no_panic(&out, "batch");
    assert!(!out.status.success(), "c has no mask: {}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(job(&report, "a.mp4")["status"], "done", "{report}");
    assert_eq!(job(&report, "b.mp4")["status"], "done", "{report}");
    let c_job = job(&report, "c.mp4");
    assert_eq!(c_job["status"], "failed", "{report}");
    assert!(
        c_job["error"]
            .as_str()
            .unwrap()
            .contains("no mask for MatAnyone"),
        "{report}"
    );
    assert_eq!(alphas(&out_dir, "a").len(), 3);
    assert_eq!(alphas(&out_dir, "b").len(), 3);
    assert_ne!(
        alphas(&out_dir, "a"),
        alphas(&out_dir, "b"),
        "b got a's matte"
    );
    // With --mask auto, the sample clip (RVM sees its person) is matted
    // from RVM's mask; a and b keep their masks.
    let sample = sample_clip();
    let out = matanyone_batch(
        models.path(),
        &[&sample, &a],
        &out_dir,
        &["--mask", "auto", "--max-frames", "2", "--max-size", "144"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stem = sample.file_stem().unwrap().to_str().unwrap();
    assert_eq!(alphas(&out_dir, stem).len(), 2);
}

/// A phone video (stored landscape, shown portrait): the mask is drawn on
/// the picture as players show it, and picks the same subject as the
/// stored frames' mask does on the unrotated video.
#[test]
fn a_mask_drawn_upright_on_a_rotated_video_is_turned_back() {
    let models = models();
    let work = tempfile::tempdir().unwrap();
    let plain = clip(work.path(), "plain.mp4", 3);
    let phone = work.path().join("phone.mp4");
    ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        phone.to_str().unwrap(),
    ]);
    // `rotate=90` shows stored pixel (x, y) at (y, 159 - x) of the 96x160
    // picture: the stored box (24, 24, 48, 48) is drawn at (24, 88).
    let stored = boxed(work.path(), "stored.png", (160, 96), (24, 24, 48, 48));
    let upright = boxed(work.path(), "upright.png", (96, 160), (24, 88, 48, 48));
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let r = run(
        models.path(),
        &plain,
        &a,
        &["--mask", stored.to_str().unwrap()],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let r = run(
        models.path(),
        &phone,
        &b,
        &["--mask", upright.to_str().unwrap()],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let (flat, turned) = (alphas(&a, "plain"), alphas(&b, "phone"));
    assert_eq!(flat.len(), 3);
    for (f, t) in flat.iter().zip(&turned) {
        // The upright frame (96 wide, 160 high) from the stored one.
        let mut want = vec![0u8; f.len()];
        for y in 0..160 {
            for x in 0..96 {
                let (sx, sy) = (159 - y, x);
                for c in 0..3 {
                    want[(y * 96 + x) * 3 + c] = f[(sy * 160 + sx) * 3 + c];
                }
            }
        }
        assert!(
            t == &want,
            "the rotated video's matte is not the turned matte: {} levels apart on average",
            mean_abs(t, &want)
        );
    }
}

/// Over HTTP: a video uploaded with its mask is matted with it (the mask
/// kept beside the upload, where MatAnyone looks); a mask without
/// MatAnyone, or a mask path outside the allowed folders, is refused with
/// its field named.
#[test]
fn the_http_api_takes_a_mask_with_the_upload() {
    use support::serve::{multipart, request, state_is, wait_job, Server};
    let models = models();
    let work = tempfile::tempdir().unwrap();
    let input = clip(work.path(), "clip.mp4", 3);
    let m = boxed(work.path(), "m.png", (160, 96), (24, 24, 48, 48));
    let out = work.path().join("out");
    let server = Server::start(
        &out,
        &["--allow-root", work.path().to_str().unwrap()],
        &[("VMATTE_MODEL_DIR", models.path().to_str().unwrap())],
    );
    let send = |options: &str, with_mask: bool| {
        let video = std::fs::read(&input).unwrap();
        let png = std::fs::read(&m).unwrap();
        let mut files: Vec<(&str, &str, &[u8])> = vec![("file", "clip.mp4", &video)];
        if with_mask {
            files.push(("mask", "m.png", &png));
        }
        let (kind, body) = multipart(&[("options", options)], &files);
        request("POST", &server.url("/api/jobs"), &[], Some((&kind, body)))
    };
    let r = send(
        r#"{"model": "matanyone", "outputs": "alpha", "format": "png", "warmup": 0}"#,
        true,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["job"]["id"].as_i64().unwrap();
    let job = wait_job(&server, id, std::time::Duration::from_secs(120), |j| {
        state_is("done")(j) || state_is("failed")(j)
    });
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(alphas(&out, "clip").len(), 3);
    assert!(
        out.join("uploads/clip.mask.png").is_file(),
        "{:?}",
        list_dir(&out.join("uploads"))
    );
    // A mask for RVM: refused, naming the field.
    let r = send(r#"{"outputs": "alpha"}"#, true);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["field"], "mask");
    // A mask path outside the allowed folders: 403 on the field.
    let r = send(r#"{"model": "matanyone", "mask": "/etc/hostname"}"#, false);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["field"], "mask");
}
