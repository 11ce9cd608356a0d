//! What editors import: every output format decoded back with libav
//! (ffprobe / ffmpeg from Debian's ffmpeg package) and checked for frame
//! count, timestamps, alpha planes, audio, rotation, colour tags, depth and
//! the composite arithmetic.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

fn ffprobe(path: &Path, extra: &[&str]) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(extra)
        .arg(path)
        .output()
        .expect("ffprobe is installed by scripts/deps.sh");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn streams(path: &Path) -> Vec<Value> {
    ffprobe(path, &["-show_streams"])["streams"]
        .as_array()
        .unwrap()
        .clone()
}

fn video_stream(path: &Path) -> Value {
    streams(path)
        .into_iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("{} has no video", path.display()))
}

/// Presentation times of every video frame, in seconds.
fn frame_times(path: &Path) -> Vec<f64> {
    let v = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=best_effort_timestamp_time",
        ],
    );
    v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["best_effort_timestamp_time"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Decoded samples of audio stream `n`, as 32-bit float.
fn audio_samples(path: &Path, n: usize) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-map", &format!("0:a:{n}"), "-f", "f32le", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

/// Every picture of a video or image file as raw `pix_fmt` bytes.
fn raw(path: &Path, pix_fmt: &str, decoder: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    if let Some(d) = decoder {
        cmd.args(["-c:v", d]);
    }
    let out = cmd
        .arg("-i")
        .arg(path)
        .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
    out.stdout
}

fn u16s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| f32::from(u16::from_le_bytes([b[0], b[1]])) / 65535.0)
        .collect()
}

/// A 12-frame 96x64 clip at 30000/1001 with two audio streams (AAC 48 kHz
/// and 44.1 kHz), tagged SMPTE 170M throughout.
fn clip_with_audio(dir: &Path) -> PathBuf {
    let path = dir.join("talk.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=30000/1001",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=660:sample_rate=44100",
        "-frames:v",
        "12",
        "-t",
        "0.4004",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:a",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-color_primaries",
        "smpte170m",
        "-color_trc",
        "smpte170m",
        "-colorspace",
        "smpte170m",
        "-c:a",
        "aac",
        path.to_str().unwrap(),
    ]);
    path
}

fn matte_json(input: &Path, out: &Path, extra: &[&str]) -> Value {
    let done = matte(input, out, &[&["--json"], extra].concat());
    assert!(done.status.success(), "matte {extra:?}: {}", stderr(&done));
    serde_json::from_str(stdout(&done).trim()).expect("one JSON object")
}

fn outputs(report: &Value) -> BTreeMap<String, PathBuf> {
    report["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), PathBuf::from(v.as_str().unwrap())))
        .collect()
}

#[test]
fn every_format_decodes_back_with_its_alpha_timing_audio_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip_with_audio(dir.path());
    let in_times = frame_times(&input);
    assert_eq!(in_times.len(), 12);
    let in_audio: Vec<Value> = streams(&input)
        .into_iter()
        .filter(|s| s["codec_type"] == "audio")
        .collect();
    assert_eq!(in_audio.len(), 2);

    // (format, pixel format of the rgba output, of the alpha output)
    let cases = [
        ("mp4", None, "yuvj420p"),
        ("prores", Some("yuva444p"), "yuv444p"),
        ("webm", Some("yuv420p"), "yuv420p"),
        ("mov", Some("argb"), "pal8"),
        ("png", Some("rgba"), "gray"),
        ("tiff", Some("rgba"), "gray"),
    ];
    for (format, rgba_fmt, alpha_fmt) in cases {
        let out = dir.path().join(format);
        let kinds = if rgba_fmt.is_some() {
            "composite,alpha,rgba"
        } else {
            "composite,alpha"
        };
        let report = matte_json(&input, &out, &["--format", format, "--outputs", kinds]);
        let files = outputs(&report);
        assert_eq!(files.len(), kinds.split(',').count(), "{format}: {report}");
        for (kind, path) in &files {
            assert!(path.exists(), "{format} {kind}: {}", path.display());
            if matches!(format, "png" | "tiff") {
                let names = list_dir(path);
                let expected: Vec<String> = (0..12).map(|i| format!("{i:06}.{format}")).collect();
                assert_eq!(names, expected, "{format} {kind}");
                let first = path.join(&names[0]);
                let fmt = video_stream(&first)["pix_fmt"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let want = if kind == "rgba" {
                    rgba_fmt.unwrap()
                } else if kind == "alpha" {
                    alpha_fmt
                } else {
                    "rgb24"
                };
                assert_eq!(fmt, want, "{format} {kind}");
                continue;
            }
            // Every timestamp survives (WebM keeps milliseconds).
            let times = frame_times(path);
            let tolerance = if format == "webm" { 1.5e-3 } else { 1e-4 };
            assert_eq!(times.len(), in_times.len(), "{format} {kind}");
            for (a, b) in in_times.iter().zip(&times) {
                assert!((a - b).abs() < tolerance, "{format} {kind}: {a} vs {b}");
            }
            let v = video_stream(path);
            let fmt = v["pix_fmt"].as_str().unwrap();
            match kind.as_str() {
                "rgba" => {
                    assert!(fmt.starts_with(rgba_fmt.unwrap()), "{format} rgba is {fmt}");
                    if format == "webm" {
                        // VP9 keeps alpha as a second stream that only
                        // libvpx decodes; the muxer flags it.
                        assert_eq!(v["tags"]["alpha_mode"], "1", "{v}");
                    }
                }
                "alpha" => assert!(fmt.starts_with(alpha_fmt), "{format} alpha is {fmt}"),
                _ => {}
            }
            if kind == "alpha" && matches!(format, "mp4" | "webm") {
                assert_eq!(v["color_range"], "pc", "{format}: mattes stay full range");
            }
            if kind == "composite" && matches!(format, "mp4" | "webm" | "mov") {
                for tag in ["color_primaries", "color_space"] {
                    assert_eq!(v[tag], "smpte170m", "{format} {tag}: {v}");
                }
            }
            let audio: Vec<Value> = streams(path)
                .into_iter()
                .filter(|s| s["codec_type"] == "audio")
                .collect();
            if kind == "alpha" {
                assert!(audio.is_empty(), "a matte carries no sound");
                continue;
            }
            assert_eq!(audio.len(), 2, "{format} {kind}: every audio stream");
            let codec = if format == "webm" { "opus" } else { "aac" };
            for (a, src) in audio.iter().zip(&in_audio) {
                assert_eq!(a["codec_name"], codec, "{format}");
                let secs = |s: &Value| -> f64 {
                    s["duration"]
                        .as_str()
                        .map(|d| d.parse().unwrap())
                        .unwrap_or(f64::NAN)
                };
                if format != "webm" {
                    // One AAC frame is 1024 samples.
                    let frame =
                        1024.0 / src["sample_rate"].as_str().unwrap().parse::<f64>().unwrap();
                    assert!(
                        (secs(a) - secs(src)).abs() <= frame,
                        "{format}: {a} vs {src}"
                    );
                }
            }
            if format == "mp4" {
                // Passed through untouched: the same samples decode out.
                for n in 0..2 {
                    assert!(
                        audio_samples(path, n) == audio_samples(&input, n),
                        "{format} {kind}: audio stream {n} changed"
                    );
                }
            }
            if format == "webm" {
                // Re-encoded to Opus: as long as the source within a frame.
                for (n, src) in in_audio.iter().enumerate() {
                    let seconds =
                        |path: &Path, rate: f64| audio_samples(path, n).len() as f64 / 4.0 / rate;
                    let src_rate: f64 = src["sample_rate"].as_str().unwrap().parse().unwrap();
                    let (ta, tb) = (seconds(path, 48000.0), seconds(&input, src_rate));
                    assert!((ta - tb).abs() <= 0.021, "webm audio {n}: {ta} s vs {tb} s");
                }
            }
        }
    }

    // The WebM alpha plane, decoded by libvpx, is the matte.
    let webm_alpha = raw(
        &dir.path().join("webm/talk.rgba.webm"),
        "yuva420p",
        Some("libvpx-vp9"),
    );
    let png_alpha = raw(&dir.path().join("png/talk.alpha/%06d.png"), "gray", None);
    let (w, h) = (96usize, 64usize);
    let frame = w * h * 3 / 2 + w * h;
    assert_eq!(webm_alpha.len(), 12 * frame);
    let mut err = 0.0;
    for f in 0..12 {
        let a = &webm_alpha[f * frame + w * h * 3 / 2..(f + 1) * frame];
        let p = &png_alpha[f * w * h..(f + 1) * w * h];
        err += a
            .iter()
            .zip(p)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
            .sum::<f64>();
    }
    let mean = err / (12.0 * (w * h) as f64);
    assert!(
        mean < 3.0,
        "webm alpha differs from the matte by {mean} levels on average"
    );
}

/// 16-bit PNGs make the arithmetic checkable: composite = fg * a + bg *
/// (1 - a) within 1/255, for a colour, an image and a looped video.
#[test]
fn composites_are_foreground_over_background() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    make_clip(&input, 96, 64, 8, Rational::new(25, 1));
    let px = 96 * 64;

    // A background image twice as wide: covering keeps its middle half.
    let wide = dir.path().join("wide.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0xff0000:s=96x64",
        "-f",
        "lavfi",
        "-i",
        "color=c=0x0000ff:s=96x64",
        "-filter_complex",
        "[0][1]hstack",
        "-frames:v",
        "1",
        wide.to_str().unwrap(),
    ]);
    // A background video of three solid frames, shorter than the clip.
    let plate = dir.path().join("plate.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x102030:s=96x64:r=25,format=rgb24",
        "-vf",
        "geq=r='mod(N,3)*100':g='50':b='200-mod(N,3)*60'",
        "-frames:v",
        "3",
        "-c:v",
        "ffv1",
        plate.to_str().unwrap(),
    ]);
    let plate_frames = decode_frames(&plate, 10);
    assert_eq!(plate_frames.len(), 3);
    // What the pipeline sees of the wide image: its middle 96 columns.
    let wide_rgb = decode_frames(&wide, 1).remove(0);
    assert_eq!((wide_rgb.width, wide_rgb.height), (192, 64));

    // Each background with the value it should show: (frame, pixel, channel).
    type Expected = Box<dyn Fn(usize, usize, usize) -> f32>;
    let backgrounds: Vec<(&str, Expected)> = vec![
        (
            "#204080",
            Box::new(|_, _, c| [0x20, 0x40, 0x80][c] as f32 / 255.0),
        ),
        ("white", Box::new(|_, _, _| 1.0)),
        (
            wide.to_str().unwrap(),
            Box::new(move |_, i, c| {
                let (x, y) = (i % 96, i / 96);
                f32::from(wide_rgb.rgb[3 * (y * 192 + x + 48) + c]) / 255.0
            }),
        ),
        (
            plate.to_str().unwrap(),
            Box::new(move |f, i, c| f32::from(plate_frames[f % 3].rgb[3 * i + c]) / 255.0),
        ),
    ];
    for (n, (bg, expect_bg)) in backgrounds.iter().enumerate() {
        let out = dir.path().join(format!("out{n}"));
        let report = matte_json(
            &input,
            &out,
            &[
                "--format",
                "png",
                "--depth",
                "16",
                "--outputs",
                "composite,foreground,alpha",
                "--background",
                bg,
            ],
        );
        let files = outputs(&report);
        let comp = u16s(&raw(&files["composite"].join("%06d.png"), "rgb48le", None));
        let fg = u16s(&raw(&files["foreground"].join("%06d.png"), "rgb48le", None));
        let alpha = u16s(&raw(&files["alpha"].join("%06d.png"), "gray16le", None));
        assert_eq!(alpha.len(), 8 * px);
        let mut worst = 0.0f32;
        for f in 0..8 {
            for i in 0..px {
                let a = alpha[f * px + i];
                for c in 0..3 {
                    let k = 3 * (f * px + i) + c;
                    let b = expect_bg(f, i, c);
                    let want = fg[k] * a + b * (1.0 - a);
                    worst = worst.max((comp[k] - want).abs());
                }
            }
        }
        assert!(worst <= 1.0 / 255.0, "background {bg}: off by {worst}");
    }

    // rgba: straight vs premultiplied, and --invert-alpha.
    let straight = outputs(&matte_json(
        &input,
        &dir.path().join("s"),
        &[
            "--format",
            "png",
            "--depth",
            "16",
            "--outputs",
            "rgba,alpha",
        ],
    ));
    let premul = outputs(&matte_json(
        &input,
        &dir.path().join("p"),
        &[
            "--format",
            "png",
            "--depth",
            "16",
            "--outputs",
            "rgba",
            "--premultiplied",
        ],
    ));
    let inverted = outputs(&matte_json(
        &input,
        &dir.path().join("i"),
        &[
            "--format",
            "png",
            "--depth",
            "16",
            "--outputs",
            "alpha",
            "--invert-alpha",
        ],
    ));
    let s = u16s(&raw(&straight["rgba"].join("%06d.png"), "rgba64le", None));
    let p = u16s(&raw(&premul["rgba"].join("%06d.png"), "rgba64le", None));
    let a = u16s(&raw(&straight["alpha"].join("%06d.png"), "gray16le", None));
    let inv = u16s(&raw(&inverted["alpha"].join("%06d.png"), "gray16le", None));
    for i in 0..8 * px {
        assert!(
            (s[4 * i + 3] - a[i]).abs() < 1e-6,
            "rgba alpha is the matte"
        );
        for c in 0..3 {
            let want = s[4 * i + c] * s[4 * i + 3];
            assert!((p[4 * i + c] - want).abs() < 2.0 / 65535.0, "premultiplied");
        }
        assert!((inv[i] - (1.0 - a[i])).abs() <= 1.0 / 65535.0, "inverted");
    }
}

#[test]
fn rotation_variable_frame_rate_and_ten_bit_survive() {
    let dir = tempfile::tempdir().unwrap();
    // Portrait: a landscape stream that players turn 90 degrees.
    let plain = dir.path().join("plain.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=25",
        "-frames:v",
        "6",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        plain.to_str().unwrap(),
    ]);
    let portrait = dir.path().join("portrait.mp4");
    ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        portrait.to_str().unwrap(),
    ]);
    let rotation = |p: &Path| -> i64 {
        video_stream(p)["side_data_list"]
            .as_array()
            .and_then(|l| l.iter().find_map(|s| s["rotation"].as_i64()))
            .unwrap_or(0)
    };
    assert_ne!(rotation(&portrait), 0);
    let out = dir.path().join("portrait");
    let files = outputs(&matte_json(
        &portrait,
        &out,
        &["--outputs", "composite,alpha"],
    ));
    for path in files.values() {
        assert_eq!(rotation(path), rotation(&portrait), "{}", path.display());
    }
    let files = outputs(&matte_json(
        &portrait,
        &out,
        &["--format", "png", "--outputs", "composite"],
    ));
    let first = video_stream(&files["composite"].join("000000.png"));
    assert_eq!(
        (first["width"].as_i64(), first["height"].as_i64()),
        (Some(64), Some(96)),
        "shown upright"
    );

    // Variable frame rate: irregular timestamps in a 1/90000 time base.
    let vfr = dir.path().join("vfr.mp4");
    make_vfr_clip(&vfr);
    let in_times = frame_times(&vfr);
    for format in ["prores", "mov"] {
        let files = outputs(&matte_json(
            &vfr,
            &dir.path().join(format),
            &["--format", format, "--outputs", "rgba"],
        ));
        let times = frame_times(&files["rgba"]);
        assert_eq!(times.len(), in_times.len());
        for (a, b) in in_times.iter().zip(&times) {
            assert!((a - b).abs() < 1e-4, "{format}: {a} vs {b}");
        }
    }

    // Ten bits: a horizontal ramp of 1024 levels, losslessly encoded, keeps
    // far more than 256 levels through to a 16-bit foreground.
    let ramp = dir.path().join("ramp.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "nullsrc=s=1024x32:r=25",
        "-frames:v",
        "2",
        "-vf",
        "format=yuv444p10le,geq=lum='64+X*876/1023':cb=512:cr=512",
        "-c:v",
        "libx264",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv444p10le",
        ramp.to_str().unwrap(),
    ]);
    let files = outputs(&matte_json(
        &ramp,
        &dir.path().join("ramp"),
        &[
            "--format",
            "png",
            "--outputs",
            "foreground,composite",
            "--downsample-ratio",
            "0.5",
        ],
    ));
    let fg = raw(&files["foreground"].join("000000.png"), "rgb48le", None);
    assert_eq!(
        video_stream(&files["foreground"].join("000000.png"))["pix_fmt"],
        "rgb48be"
    );
    let row = 16 * 1024 * 6;
    let mut levels: Vec<u16> = fg[row..row + 1024 * 6]
        .chunks_exact(6)
        .map(|p| u16::from_le_bytes([p[2], p[3]]))
        .collect();
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() > 600, "only {} levels: banding", levels.len());
    // Video outputs of a 10-bit source are 10-bit.
    let files = outputs(&matte_json(
        &ramp,
        &dir.path().join("ramp_mp4"),
        &["--outputs", "composite", "--downsample-ratio", "0.5"],
    ));
    assert_eq!(video_stream(&files["composite"])["pix_fmt"], "yuv420p10le");
}

#[test]
fn impossible_combinations_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    make_clip(&input, 64, 48, 3, Rational::new(25, 1));
    for (args, needle) in [
        (&["--outputs", "rgba"][..], "alpha channel"),
        (&["--format", "png", "--depth", "10"][..], "use 8 or 16"),
        (
            &["--format", "webm", "--codec", "h265"][..],
            "--codec applies to --format mp4",
        ),
        (
            &["--background", "no-such-file.png"][..],
            "neither a colour",
        ),
    ] {
        let out = matte(&input, &dir.path().join("out"), args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// PCM cannot go into MP4: it is re-encoded to AAC, in sync and as long as
/// the source within one AAC frame; MOV takes it as it is.
#[test]
fn audio_the_container_refuses_is_reencoded() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pcm.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:sample_rate=44100",
        "-frames:v",
        "10",
        "-t",
        "0.4",
        "-c:v",
        "ffv1",
        "-c:a",
        "pcm_s16le",
        input.to_str().unwrap(),
    ]);
    let src_len = audio_samples(&input, 0).len() as f64 / 4.0 / 44100.0;
    for (format, codec) in [("mp4", "aac"), ("mov", "pcm_s16le")] {
        let files = outputs(&matte_json(
            &input,
            &dir.path().join(format),
            &["--format", format, "--outputs", "composite"],
        ));
        let audio: Vec<Value> = streams(&files["composite"])
            .into_iter()
            .filter(|s| s["codec_type"] == "audio")
            .collect();
        assert_eq!(audio.len(), 1, "{format}");
        assert_eq!(audio[0]["codec_name"], codec, "{format}");
        let rate: f64 = audio[0]["sample_rate"].as_str().unwrap().parse().unwrap();
        let out_len = audio_samples(&files["composite"], 0).len() as f64 / 4.0 / rate;
        assert!(
            (out_len - src_len).abs() <= 1024.0 / rate,
            "{format}: {out_len} s vs {src_len} s"
        );
        if codec.starts_with("pcm") {
            assert!(
                audio_samples(&files["composite"], 0) == audio_samples(&input, 0),
                "mov keeps PCM samples exactly"
            );
        }
    }
    // --no-audio leaves it out.
    let files = outputs(&matte_json(
        &input,
        &dir.path().join("silent"),
        &["--outputs", "composite", "--no-audio"],
    ));
    assert!(streams(&files["composite"])
        .iter()
        .all(|s| s["codec_type"] != "audio"));
}

#[test]
fn mp4_takes_h265_and_a_bitrate() {
    let dir = tempfile::tempdir().unwrap();
    // Noise, so that a higher bitrate has something to spend its bits on.
    let input = dir.path().join("noisy.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=128x96:rate=25,noise=alls=80:allf=t",
        "-frames:v",
        "10",
        "-c:v",
        "ffv1",
        input.to_str().unwrap(),
    ]);
    let files = outputs(&matte_json(
        &input,
        &dir.path().join("h265"),
        &["--codec", "h265", "--outputs", "composite"],
    ));
    let v = video_stream(&files["composite"]);
    assert_eq!(v["codec_name"], "hevc");
    assert_eq!(v["codec_tag_string"], "hvc1", "tagged for Apple players");
    assert_eq!(frame_times(&files["composite"]).len(), 10);
    let low = outputs(&matte_json(
        &input,
        &dir.path().join("low"),
        &["--bitrate", "20k", "--outputs", "composite"],
    ));
    let high = outputs(&matte_json(
        &input,
        &dir.path().join("high"),
        &["--bitrate", "2M", "--outputs", "composite"],
    ));
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&low["composite"]) * 3 < size(&high["composite"]),
        "--bitrate steers the size: {} vs {} bytes",
        size(&low["composite"]),
        size(&high["composite"])
    );
}

/// `--max-frames` cuts the audio with the pictures: a preview of the first
/// frames does not carry on with the rest of the sound track.
#[test]
fn max_frames_ends_the_audio_with_the_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=2",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        input.to_str().unwrap(),
    ]);
    let duration = |path: &Path, kind: &str| -> f64 {
        let s = streams(path)
            .into_iter()
            .find(|s| s["codec_type"] == kind)
            .unwrap();
        s["duration"].as_str().unwrap().parse().unwrap()
    };
    assert!(duration(&input, "audio") > 1.9);
    let out = dir.path().join("out");
    let run = matte(
        &input,
        &out,
        &["--outputs", "composite", "--max-frames", "10"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let output = out.join("long.composite.mp4");
    assert_eq!(frame_times(&output).len(), 10);
    let (video, audio) = (duration(&output, "video"), duration(&output, "audio"));
    // Whole audio packets: at most one 1024-sample AAC frame past the end.
    assert!(
        (video - 0.4).abs() < 0.01 && audio >= video - 0.025 && audio <= video + 0.025,
        "audio lasts {audio} s, the video {video} s"
    );
}
