//! `vmatte batch` on the awkward inputs real folders contain. The media are
//! made with the ffmpeg command-line tool (installed by scripts/deps.sh):
//! only to create test files; vmatte itself never runs it.

mod support;

use std::process::Stdio;

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

#[test]
fn ten_bit_hevc_vfr_rotation_and_audio_only() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let p = |name: &str| inputs.join(name).to_str().unwrap().to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=128x72:r=25",
        "-t",
        "0.4",
        "-c:v",
        "libx265",
        "-pix_fmt",
        "yuv420p10le",
        "-x265-params",
        "log-level=error",
        &p("hevc10.mp4"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=d=1",
        "-c:a",
        "aac",
        &p("voice.mp4"),
    ]);
    let plain = dir.path().join("plain.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=128x72:r=25",
        "-t",
        "0.4",
        "-c:v",
        "libx264",
        plain.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        &p("portrait.mp4"),
    ]);
    // Variable frame rate: irregular timestamps in a 1/90000 time base.
    let vfr = inputs.join("vfr.mp4");
    make_vfr_clip(&vfr);

    let out_dir = dir.path().join("out");
    let (out, report) = batch(&[&inputs], &out_dir, &[]);
    assert!(!out.status.success(), "the audio-only file fails the batch");
    for file in ["hevc10.mp4", "portrait.mp4", "vfr.mp4"] {
        assert_eq!(job(&report, file)["status"], "done", "{file}: {report}");
    }
    let voice = job(&report, "voice.mp4");
    assert_eq!(voice["status"], "failed");
    assert!(
        voice["error"].as_str().unwrap().contains("no video stream"),
        "{voice}"
    );
    // Variable frame rate stays variable: every timestamp survives.
    let src = decode_frames(&vfr, usize::MAX);
    let name = job(&report, "vfr.mp4")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let alpha = decode_frames(&out_dir.join(format!("{name}.alpha.mp4")), usize::MAX);
    assert_eq!(alpha.len(), src.len());
    let in_tb = vmatte_media::open_source(&vfr, None)
        .unwrap()
        .info()
        .time_base;
    let out_tb = vmatte_media::open_source(&out_dir.join(format!("{name}.alpha.mp4")), None)
        .unwrap()
        .info()
        .time_base;
    for (a, b) in src.iter().zip(&alpha) {
        let t = |f: &vmatte_media::Frame, tb: Rational| f.pts.unwrap() as f64 * tb.as_f64();
        assert!(
            (t(a, in_tb) - t(b, out_tb)).abs() < 1e-4,
            "{} vs {}",
            t(a, in_tb),
            t(b, out_tb)
        );
    }
    // The probe, rotation included, is in the job's log.
    let log_name = job(&report, "portrait.mp4")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let events =
        std::fs::read_to_string(out_dir.join("logs").join(format!("{log_name}.jsonl"))).unwrap();
    assert!(
        events.contains("\"rotation\":90")
            || events.contains("\"rotation\":-90")
            || events.contains("\"rotation\":270"),
        "{events}"
    );
}

#[test]
fn unwritable_output_folder_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 96, 64, 2, Rational::new(25, 1));
    let blocker = dir.path().join("a file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = vmatte(&[
        "batch",
        clip.to_str().unwrap(),
        "-o",
        blocker.join("out").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("a file/out") && err.contains("writable"),
        "{err}"
    );
}

#[test]
fn a_file_deleted_mid_batch_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    make_clip(
        &inputs.join("a_first.mp4"),
        256,
        144,
        60,
        Rational::new(25, 1),
    );
    make_clip(&inputs.join("b_gone.mp4"), 96, 64, 3, Rational::new(25, 1));
    make_clip(&inputs.join("c_last.mp4"), 96, 64, 4, Rational::new(25, 1));
    let out_dir = dir.path().join("out");
    let child = batch_command(&[&inputs], &out_dir, &["--downsample-ratio", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once the first job is under way, the second file disappears.
    wait_for_partial(&out_dir);
    std::fs::remove_file(inputs.join("b_gone.mp4")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job(&report, "a_first.mp4")["status"], "done");
    assert_eq!(job(&report, "c_last.mp4")["status"], "done");
    let gone = job(&report, "b_gone.mp4");
    assert_eq!(gone["status"], "failed");
    assert!(
        gone["error"].as_str().unwrap().contains("not found"),
        "{gone}"
    );
}

/// A full disk fails the job with its reason and leaves no partial file.
/// The full disk is a 400 KiB tmpfs, mounted for the test: that needs root,
/// which `scripts/test.sh` (and CI) runs as.
#[test]
fn a_full_disk_fails_the_job_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    // Noise: its lossless foreground is far larger than the disk.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "nullsrc=s=256x144:r=25,geq=random(1)*255:128:128",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-crf",
        "0",
        clip.to_str().unwrap(),
    ]);
    let out_dir = dir.path().join("out");
    let _unmount = small_disk(&out_dir, "120k");

    let (out, report) = batch(
        &[&clip],
        &out_dir,
        &["--outputs", "foreground", "--crf", "0"],
    );
    assert!(!out.status.success());
    let job = job(&report, "clip.mp4");
    assert_eq!(job["status"], "failed");
    let err = job["error"].as_str().unwrap();
    assert!(
        err.contains("No space left") && err.contains("free space"),
        "{err}"
    );
    let left: Vec<_> = list_dir(&out_dir)
        .into_iter()
        .filter(|n| n.contains("partial") || n.ends_with(".mp4"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
