//! `vmatte batch` end to end: bad inputs among good ones, reruns that skip
//! finished work, resume after kill -9, two processes on one OUTDIR, and
//! names that collide or cannot be written as they are.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

fn statuses(report: &Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let input = Path::new(j["input"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (input, j["status"].as_str().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn bad_inputs_fail_with_reasons_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    make_clip(
        &inputs.join("good one.mp4"),
        96,
        64,
        4,
        Rational::new(25, 1),
    );
    make_clip(
        &inputs.join("odd size.mp4"),
        97,
        65,
        3,
        Rational::new(30000, 1001),
    );
    let long = format!("{}.mp4", "very long name ".repeat(16)); // 244 characters
    make_clip(&inputs.join(&long), 96, 64, 5, Rational::new(25, 1));
    make_clip(
        &inputs.join("Интервью.mp4"),
        96,
        64,
        6,
        Rational::new(25, 1),
    );
    // Two names that sanitise to the same string.
    make_clip(&inputs.join("take 1.mp4"), 96, 64, 7, Rational::new(25, 1));
    make_clip(&inputs.join("take_1.mp4"), 64, 96, 2, Rational::new(25, 1));
    // Same content under another name: one job, and the copy gets the
    // job's outputs under its own name.
    std::fs::copy(inputs.join("good one.mp4"), inputs.join("zz copy.mp4")).unwrap();
    std::fs::write(inputs.join("empty.mp4"), b"").unwrap();
    std::fs::write(inputs.join("notes.mp4"), b"not a video at all\n").unwrap();
    let good = std::fs::read(inputs.join("good one.mp4")).unwrap();
    std::fs::write(inputs.join("cut.mp4"), &good[..good.len() / 2]).unwrap();
    std::fs::write(
        inputs.join("readme.txt"),
        b"ignored: not a video by name or by probe\n",
    )
    .unwrap();

    let out_dir = dir.path().join("out");
    let (out, report) = batch(&[&inputs], &out_dir, &[]);
    assert!(!out.status.success(), "failures must fail the exit status");
    let s = statuses(&report);
    let failed: Vec<_> = s
        .iter()
        .filter(|(_, st)| st == "failed")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(failed, ["cut.mp4", "empty.mp4", "notes.mp4"], "{s:?}");
    assert_eq!(report["done"], 7, "{s:?} {report}");
    assert_eq!(report["failed"], 3);
    assert_eq!(report["skipped"], 0);
    let copy = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["input"].as_str().unwrap().ends_with("zz copy.mp4"))
        .unwrap();
    assert!(
        copy["note"].as_str().unwrap().contains("good one.mp4"),
        "{copy}"
    );
    assert_eq!(copy["status"], "done", "{copy}");
    let copy_alpha = copy["outputs"]["alpha"].as_str().unwrap();
    assert!(
        copy_alpha.contains(copy["name"].as_str().unwrap()),
        "{copy}"
    );
    assert_eq!(decode_frames(Path::new(copy_alpha), usize::MAX).len(), 4);
    for job in report["jobs"].as_array().unwrap() {
        if job["status"] == "failed" {
            let err = job["error"].as_str().unwrap();
            assert!(
                err.contains(job["input"].as_str().unwrap()) || err.contains(".mp4"),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
    // Names: ASCII, at most 40 characters before the kind, distinct.
    let mut names: Vec<String> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] != "skipped")
        .filter_map(|j| j["name"].as_str().map(str::to_string))
        .collect();
    for n in &names {
        assert!(n.len() <= 40 && n.is_ascii() && !n.contains(' '), "{n}");
    }
    let before = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), before, "colliding names were not separated");
    // Manifest and logs.
    let manifest = std::fs::read_to_string(out_dir.join("manifest.csv")).unwrap();
    assert!(
        manifest.contains("good one.mp4") && manifest.contains("composite"),
        "{manifest}"
    );
    let logs = list_dir(&out_dir.join("logs"));
    assert!(logs.iter().any(|l| l.ends_with(".jsonl")) && logs.iter().any(|l| l.ends_with(".log")));
    let good_log = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["input"].as_str().unwrap().ends_with("good one.mp4"))
        .unwrap();
    let events = std::fs::read_to_string(
        out_dir
            .join("logs")
            .join(format!("{}.jsonl", good_log["name"].as_str().unwrap())),
    )
    .unwrap();
    for event in ["\"start\"", "\"probe\"", "\"end\""] {
        assert!(events.contains(event), "{event} missing: {events}");
    }
    no_partials(&out_dir);

    // Rerun: finished jobs are skipped, failures stay failed until asked.
    let (out, report) = batch(&[&inputs], &out_dir, &[]);
    assert!(!out.status.success());
    assert_eq!(report["skipped"], 7);
    assert_eq!(report["failed"], 3);
    let (_, report) = batch(&[&inputs], &out_dir, &["--retry-failed"]);
    assert_eq!(report["failed"], 3);
    assert_eq!(report["skipped"], 7);

    let rows = status_rows(&out_dir);
    assert_eq!(rows.as_array().unwrap().len(), 9);
    let retried = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["input_path"].as_str().unwrap().ends_with("notes.mp4"))
        .unwrap();
    assert_eq!(retried["attempts"], 2);
}

#[test]
fn kill_9_then_rerun_finishes_everything_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..3 {
        make_clip(
            &inputs.join(format!("clip{i}.mp4")),
            256,
            144,
            40 + i,
            Rational::new(25, 1),
        );
    }
    let out_dir = dir.path().join("out");
    let mut child = batch_command(&[&inputs], &out_dir, &["--downsample-ratio", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it in the middle of a job, while its outputs are being written.
    wait_for_partial(&out_dir);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The same command again, at once: the dead process's job is taken over
    // (its holder is gone) and everything finishes.
    let (out, report) = batch(&[&inputs], &out_dir, &["--downsample-ratio", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report["failed"], 0, "{report}");
    no_partials(&out_dir);
    for i in 0..3 {
        let alpha = out_dir.join(format!("clip{i}.alpha.mp4"));
        assert_eq!(
            decode_frames(&alpha, usize::MAX).len(),
            40 + i,
            "{}",
            alpha.display()
        );
    }
}

#[test]
fn two_processes_share_one_outdir_without_duplicating_work() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..6 {
        make_clip(
            &inputs.join(format!("v{i}.mp4")),
            128,
            72,
            12 + i,
            Rational::new(25, 1),
        );
    }
    let out_dir = dir.path().join("out");
    let spawn = || {
        batch_command(&[&inputs], &out_dir, &["--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let ra: Value = serde_json::from_slice(&a.stdout).unwrap();
    let rb: Value = serde_json::from_slice(&b.stdout).unwrap();
    let done = |r: &Value| -> Vec<String> {
        statuses(r)
            .into_iter()
            .filter(|(_, s)| s == "done")
            .map(|(n, _)| n)
            .collect()
    };
    let (da, db) = (done(&ra), done(&rb));
    assert!(
        da.iter().all(|n| !db.contains(n)),
        "a job ran twice: {da:?} / {db:?}"
    );
    // Whatever one process skipped as busy, the other finished.
    let rows = status_rows(&out_dir);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "done"),
        "{rows}"
    );
    assert_eq!(da.len() + db.len(), 6, "{da:?} {db:?}");
    no_partials(&out_dir);
}

#[test]
fn globs_lists_and_files_without_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::create_dir(&a).unwrap();
    make_clip(&a.join("one.mp4"), 96, 64, 2, Rational::new(25, 1));
    make_clip(&a.join("two.mp4"), 96, 64, 3, Rational::new(25, 1));
    make_clip(&a.join("three.mov"), 96, 64, 4, Rational::new(25, 1));
    // Inside a folder, a video without an extension is found by probing.
    let b = dir.path().join("b");
    std::fs::create_dir(&b).unwrap();
    make_clip(&b.join("camera-dump"), 96, 64, 5, Rational::new(25, 1));
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "# from the edit\na/three.mov\n").unwrap();
    let pattern = format!("{}/*.mp4", a.display());
    let out_dir = dir.path().join("out");
    let (out, report) = batch(
        &[Path::new(&pattern), &b],
        &out_dir,
        &["--list", list.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<_> = statuses(&report).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["camera-dump", "one.mp4", "three.mov", "two.mp4"]);
}

#[test]
fn one_file_named_twice_is_matted_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::create_dir(&a).unwrap();
    make_clip(&a.join("one.mp4"), 96, 64, 2, Rational::new(25, 1));
    // `a/../a/one.mp4`: another spelling, one file (`.` would be folded
    // by the path type itself).
    let twice = a.join("..").join("a").join("one.mp4");
    let out_dir = dir.path().join("out");
    let (out, report) = batch(&[&a.join("one.mp4"), &twice], &out_dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs = report["jobs"].as_array().unwrap();
    let mut seen: Vec<_> = jobs
        .iter()
        .map(|j| j["status"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, ["done", "skipped"], "{report}");
    let skipped = jobs.iter().find(|j| j["status"] == "skipped").unwrap();
    assert!(
        skipped["note"]
            .as_str()
            .unwrap()
            .contains("the same file as"),
        "{skipped}"
    );
    // One set of outputs, under one name.
    let alphas = list_dir(&out_dir)
        .into_iter()
        .filter(|n| n.ends_with(".alpha.mp4"))
        .count();
    assert_eq!(alphas, 1, "{:?}", list_dir(&out_dir));
}
