//! Finishing through the command line: `vmatte finish` with mattes made
//! elsewhere, the foreground estimation against pymatting on frames whose
//! truth is known, the edge controls end to end, and the refusals.
//! The operations' exact answers are tested beside them in
//! vmatte-pipeline's `finish` module; here, that every command reaches them.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{fails_in_one_line, stderr, vmatte};
use vmatte_media::{PixelLayout, PngSequenceWriter};

/// A folder of `frames` 8-bit gray PNG mattes: a disc of `radius` px
/// (anti-aliased over one pixel) centred in `w x h`.
fn disc_mattes(dir: &Path, (w, h): (u32, u32), radius: f32, frames: u32) {
    let mut px = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let d = ((x as f32 + 0.5 - w as f32 / 2.0).powi(2)
                + (y as f32 + 0.5 - h as f32 / 2.0).powi(2))
            .sqrt();
            px.push(((radius - d + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    write_pngs(dir, (w, h), PixelLayout::Gray8, &px, frames);
}

/// A folder of `frames` 8-bit RGB PNGs of one colour.
fn flat_pictures(dir: &Path, (w, h): (u32, u32), rgb: [u8; 3], frames: u32) {
    let px = rgb.repeat((w * h) as usize);
    write_pngs(dir, (w, h), PixelLayout::Rgb24, &px, frames);
}

fn write_pngs(dir: &Path, (w, h): (u32, u32), layout: PixelLayout, px: &[u8], frames: u32) {
    let mut writer = PngSequenceWriter::create(dir, w, h, layout).unwrap();
    for i in 0..frames {
        writer.write(u64::from(i), px).unwrap();
    }
}

fn finish(video: &Path, matte: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "finish",
        video.to_str().unwrap(),
        "--matte",
        matte.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--fps",
        "25",
    ];
    args.extend_from_slice(extra);
    vmatte(&args)
}

#[test]
fn estimated_foreground_is_at_least_as_close_to_the_truth_as_pymatting() {
    let dir = tempfile::tempdir().unwrap();
    let script = support::repo_root().join("scripts/foreground_accuracy.py");
    let run = support::output_within(
        Command::new(support::python())
            .arg(&script)
            .arg(env!("CARGO_BIN_EXE_vmatte"))
            .arg(dir.path()),
        Duration::from_secs(600),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let cases = results.as_object().unwrap();
    // The issue's three cases, hair among them.
    assert_eq!(cases.len(), 3, "{results}");
    assert!(cases.contains_key("hair"));
    for (name, r) in cases {
        let errors = |who: &str| -> Vec<f64> {
            r[who]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let (ours, theirs, source) = (errors("vmatte"), errors("pymatting"), errors("source"));
        assert!(r["pixels"].as_u64().unwrap() > 1000, "{name}: {r}");
        for c in 0..3 {
            // Per channel, no worse than pymatting: the issue's bar. Both
            // read the same 16-bit inputs; vmatte's answer is written as
            // 16-bit, which moves it by at most 1/131070.
            assert!(
                ours[c] <= theirs[c] + 1.0 / 131070.0,
                "{name}, channel {c}: vmatte {} against pymatting {} ({r})",
                ours[c],
                theirs[c]
            );
            // And it did something: the source's colour is worse (about 5x
            // on hair, 50x on the disc; only 1.2x on the motion blur, where
            // a textured subject smeared over 31 px leaves its colour least
            // determined, for pymatting too).
            assert!(ours[c] < source[c], "{name}, channel {c}: {r}");
        }
    }
}

#[test]
fn finish_applies_edge_controls_to_a_given_matte() {
    let dir = tempfile::tempdir().unwrap();
    let (pictures, mattes) = (dir.path().join("pictures"), dir.path().join("mattes"));
    flat_pictures(&pictures, (96, 80), [200, 120, 40], 3);
    disc_mattes(&mattes, (96, 80), 24.0, 3);
    let out = dir.path().join("out");
    let run = finish(
        &pictures,
        &mattes,
        &out,
        &[
            "--matte-shrink",
            "2.5",
            "--outputs",
            "alpha,rgba",
            "--format",
            "png",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let names = support::list_dir(&out.join("pictures.alpha"));
    assert_eq!(names.len(), 3, "{names:?}");
    for frame in support::decode_frames(&out.join("pictures.alpha"), 3) {
        let area: f64 = frame
            .rgb
            .chunks_exact(3)
            .map(|p| f64::from(p[0]) / 255.0)
            .sum();
        let r = (area / std::f64::consts::PI).sqrt();
        let name = frame.index;
        // 24 - 2.5; the edge functions hold 0.25 px on exact discs, and
        // the 8-bit round trip of a ring's pixels adds under 0.05 px.
        assert!((r - 21.5).abs() < 0.3, "{name}: radius {r}");
    }
    // The rgba's colour is the picture's wherever the matte is.
    let rgba = &support::decode_frames(&out.join("pictures.rgba"), 1)[0];
    let centre = 3 * (40 * 96 + 48);
    assert_eq!(rgba.rgb[centre..centre + 3], [200, 120, 40]);
}

#[test]
fn a_matte_of_another_size_or_length_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let pictures = dir.path().join("pictures");
    flat_pictures(&pictures, (64, 48), [10, 20, 30], 3);
    let small = dir.path().join("small");
    disc_mattes(&small, (32, 24), 8.0, 3);
    let short = dir.path().join("short");
    disc_mattes(&short, (64, 48), 8.0, 2);
    let out = dir.path().join("out");
    let run = finish(&pictures, &small, &out, &[]);
    fails_in_one_line(&run, "matte size", &["small", "32x24", "64x48"]);
    let run = finish(&pictures, &short, &out, &[]);
    fails_in_one_line(&run, "matte length", &["short", "2 frames", "3"]);
    // Nothing is left under a final name.
    assert!(!out.exists() || support::list_dir(&out).is_empty());
}

#[test]
fn finishing_options_are_checked_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let clip = support::sample_clip();
    let out = dir.path().join("out");
    let (clip, out) = (clip.to_str().unwrap(), out.to_str().unwrap());
    let queue = format!("sqlite:{out}");
    let bad: [(&[&str], &[&str]); 5] = [
        (
            &["--despill", "green", "--outputs", "alpha"],
            &["--despill green", "only the matte"],
        ),
        (&["--matte-levels", "0.9,0.1"], &["--matte-levels 0.9,0.1"]),
        (&["--matte-shrink=-1"], &["--matte-shrink -1"]),
        (&["--matte-feather", "500"], &["--matte-feather", "64"]),
        (
            &["--temporal-smooth", "1"],
            &["--temporal-smooth", "2 to 64"],
        ),
    ];
    for (flags, mentions) in bad {
        for command in [
            vec!["matte", clip, "-o", out],
            vec!["batch", clip, "-o", out],
            vec!["finish", clip, "--matte", clip, "-o", out],
            vec!["submit", "--queue", &queue, clip, "-o", out],
        ] {
            let mut args = command.clone();
            args.extend_from_slice(flags);
            let run = vmatte(&args);
            fails_in_one_line(&run, &args.join(" "), mentions);
        }
    }
    let run = vmatte(&["matte", clip, "-o", out, "--foreground", "blue"]);
    fails_in_one_line(&run, "foreground", &["blue", "estimate"]);
}

#[test]
fn presets_show_their_finishing() {
    let run = vmatte(&["presets"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = support::stdout(&run);
    // The preset's line, then the values it gives each size.
    let keying: String = text
        .lines()
        .skip_while(|l| !l.starts_with("keying"))
        .take(2)
        .collect();
    for shown in ["foreground estimate", "despill auto", "matte shrink 0.5 px"] {
        assert!(keying.contains(shown), "{shown}: {keying}");
    }
}

/// Reads the EXR and 16-bit TIFF outputs of one frame back with OpenEXR's
/// own Python bindings and tifffile, and says what it found, as JSON.
const EXR_CHECK: &str = r#"
import json, sys
import numpy as np, OpenEXR, tifffile
exr_dir, tiff_dir, linear, premultiplied = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
def bt709_to_linear(v):
    return np.where(v < 0.081, v / 4.5, ((v + 0.099) / 1.099) ** (1 / 0.45))
out = {}
for kind in ("alpha", "rgba"):
    f = OpenEXR.File(f"{exr_dir}/clip.{kind}/000001.exr", separate_channels=True)
    h = f.header()
    ch = f.channels()
    ref = tifffile.imread(f"{tiff_dir}/clip.{kind}/000001.tiff").astype(np.float64) / 65535.0
    if ref.ndim == 2:
        ref = ref[..., None]
    names = ["Y"] if kind == "alpha" else ["R", "G", "B", "A"]
    want = ref.copy()
    if kind == "rgba":
        if linear:
            want[..., :3] = bt709_to_linear(want[..., :3])
        if premultiplied:
            want[..., :3] *= want[..., 3:4]
    got = np.stack([ch[n].pixels.astype(np.float64) for n in names], axis=-1)
    err = np.abs(got - want)
    out[kind] = {
        "channels": sorted(ch.keys()),
        "types": sorted({str(ch[n].pixels.dtype) for n in ch}),
        "compression": str(h["compression"]),
        "chromaticities": [round(float(x), 4) for x in h["chromaticities"]],
        "max_error": float(err.max()),
        # Half floats hold 11 significant bits: relative error 2^-11.
        "max_relative_error": float((err / np.maximum(np.abs(want), 2.0 ** -14)).max()),
    }
print(json.dumps(out))
"#;

#[test]
fn exr_outputs_read_back_with_openexr() {
    let dir = tempfile::tempdir().unwrap();
    // The sample clip is its own matte here: the same size and length, and
    // every grey level, with no model to wait for.
    let clip = dir.path().join("clip.mp4");
    std::fs::copy(support::sample_clip(), &clip).unwrap();
    let run = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            "finish",
            clip.to_str().unwrap(),
            "--matte",
            clip.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--max-frames",
            "2",
            "--outputs",
            "alpha,rgba",
        ];
        args.extend_from_slice(extra);
        let done = vmatte(&args);
        assert!(done.status.success(), "{}", stderr(&done));
        out
    };
    let tiff = run("tiff", &["--format", "tiff", "--depth", "16"]);
    let check = |exr: &Path, linear: bool, premultiplied: bool| -> serde_json::Value {
        let flag = |b: bool| if b { "1" } else { "0" };
        let done = support::output_within(
            Command::new(support::python())
                .args(["-c", EXR_CHECK])
                .arg(exr)
                .arg(&tiff)
                .args([flag(linear), flag(premultiplied)]),
            Duration::from_secs(120),
        );
        assert!(done.status.success(), "{}", stderr(&done));
        serde_json::from_slice(&done.stdout).unwrap()
    };
    // BT.709's primaries and D65: the sample clip is BT.709.
    let bt709 = serde_json::json!([0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329]);

    // The defaults: half, zip, straight, the source's encoding.
    let half = check(&run("exr", &["--format", "exr"]), false, false);
    assert_eq!(
        half["alpha"]["channels"],
        serde_json::json!(["Y"]),
        "{half}"
    );
    assert_eq!(
        half["rgba"]["channels"],
        serde_json::json!(["A", "B", "G", "R"])
    );
    for kind in ["alpha", "rgba"] {
        let r = &half[kind];
        assert_eq!(r["types"], serde_json::json!(["float16"]), "{r}");
        assert_eq!(r["compression"], "Compression.ZIP_COMPRESSION", "{r}");
        assert_eq!(r["chromaticities"], bt709, "{r}");
        // Within half's precision of the 16-bit TIFF of the same frame.
        assert!(
            r["max_relative_error"].as_f64().unwrap() <= 1.0 / 2048.0,
            "{r}"
        );
    }

    // Float, piz, linear light, premultiplied there.
    let float = check(
        &run(
            "float",
            &[
                "--format",
                "exr",
                "--depth",
                "32",
                "--exr-compression",
                "piz",
                "--linear",
                "--premultiplied",
            ],
        ),
        true,
        true,
    );
    for kind in ["alpha", "rgba"] {
        let r = &float[kind];
        assert_eq!(r["types"], serde_json::json!(["float32"]), "{r}");
        assert_eq!(r["compression"], "Compression.PIZ_COMPRESSION", "{r}");
        // f32 arithmetic on the same 16-bit samples as numpy's f64.
        assert!(r["max_error"].as_f64().unwrap() < 1e-5, "{r}");
    }
    // Out of range settings for EXR are refused in one line.
    let bad = vmatte(&[
        "finish",
        clip.to_str().unwrap(),
        "--matte",
        clip.to_str().unwrap(),
        "-o",
        dir.path().join("bad").to_str().unwrap(),
        "--linear",
    ]);
    fails_in_one_line(&bad, "--linear on mp4", &["--linear", "--format exr"]);
}

#[test]
fn a_matte_written_upright_for_a_rotated_video_is_turned_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    support::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=128x72:r=25",
        "-frames:v",
        "5",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        &p("plain.mp4"),
    ]);
    support::ffmpeg(&[
        "-i",
        &p("plain.mp4"),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        &p("phone.mp4"),
    ]);
    let phone = dir.path().join("phone.mp4");
    // The clip as its own matte: its alpha folder is written upright
    // (72x128), as vmatte writes every image sequence of a rotated video.
    let first = dir.path().join("first");
    let run = finish(
        &phone,
        &phone,
        &first,
        &["--outputs", "alpha", "--format", "png"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let upright = first.join("phone.alpha");
    // That folder, given back as the matte of the same video, pairs with
    // it: the same frames come out again.
    let second = dir.path().join("second");
    let run = finish(
        &phone,
        &upright,
        &second,
        &["--outputs", "alpha", "--format", "png"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let a = support::decode_frames(&upright, 5);
    let b = support::decode_frames(&second.join("phone.alpha"), 5);
    assert_eq!(a.len(), 5);
    assert_eq!((a[0].width, a[0].height), (72, 128));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.width, x.height), (y.width, y.height));
        assert!(x.rgb == y.rgb, "frame {} differs", x.index);
    }
}

#[test]
fn config_presets_take_finishing_and_refuse_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[presets.screen]\nforeground = \"estimate\"\ndespill = \"green\"\nmatte_grow = 1.5\n\
         matte_levels = [0.02, 0.98]\ntemporal_smooth = 4\n",
    )
    .unwrap();
    let run = vmatte(&["presets", "--config", config.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = support::stdout(&run);
    let screen: String = text
        .lines()
        .skip_while(|l| !l.starts_with("screen"))
        .take(2)
        .collect();
    for shown in [
        "despill green",
        "matte grow 1.5 px",
        "matte levels 0.02,0.98",
        "temporal smooth 4 frames",
    ] {
        assert!(screen.contains(shown), "{shown}: {screen}");
    }
    for (bad, mentions) in [
        ("matte_levels = [0.1, \"x\", 0.9]", "matte_levels"),
        ("matte_levels = [0.9, 0.1]", "0.9,0.1"),
        ("matte_shrink = -2", "matte_shrink"),
        ("despill = \"red\"", "despill"),
    ] {
        std::fs::write(&config, format!("[presets.bad]\n{bad}\n")).unwrap();
        let run = vmatte(&["presets", "--config", config.to_str().unwrap()]);
        fails_in_one_line(&run, bad, &[mentions]);
    }
}
