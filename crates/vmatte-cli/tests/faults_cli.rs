//! Hostile inputs and faults: every case ends with one clear line per
//! problem, the other jobs done, and nothing lost or left under a final
//! name (the reliability findings of issue 22, and issue 21's user-visible
//! ones).

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use vmatte_media::Rational;

fn clips(dir: &Path, names: &[&str], frames: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in names.iter().enumerate() {
        make_clip(
            &dir.join(name),
            96,
            64,
            frames + i as u32,
            Rational::new(25, 1),
        );
    }
    dir.to_path_buf()
}

fn frames_of(path: &Path) -> usize {
    decode_frames(path, usize::MAX).len()
}

#[test]
fn a_video_that_changes_size_is_matted_at_its_first_size_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inputs = d.join("in");
    std::fs::create_dir(&inputs).unwrap();
    for (name, size) in [("s1.mp4", "320x180"), ("s2.mp4", "160x120")] {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=24"),
            "-frames:v",
            "12",
            d.join(name).to_str().unwrap(),
        ]);
    }
    let list = d.join("list.txt");
    std::fs::write(&list, "file 's1.mp4'\nfile 's2.mp4'\n").unwrap();
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        inputs.join("a_res.mp4").to_str().unwrap(),
    ]);
    clips(&inputs, &["b.mp4"], 6);
    let out = d.join("out");
    let (done, report) = batch(&[&inputs], &out, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    let job = job(&report, "a_res.mp4");
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["frames"], 24);
    let warnings = job["warnings"].as_array().expect("a warning");
    assert_eq!(warnings.len(), 1, "{job}");
    assert_eq!(warnings[0]["frame"], 12);
    assert!(
        warnings[0]["message"].as_str().unwrap().contains("160x120"),
        "{job}"
    );
    let alpha = out.join("a_res.alpha.mp4");
    let frames = decode_frames(&alpha, usize::MAX);
    assert_eq!(frames.len(), 24);
    assert!(frames.iter().all(|f| (f.width, f.height) == (320, 180)));
    let events = std::fs::read_to_string(out.join("logs/a_res.jsonl")).unwrap();
    assert!(events.contains("\"resized\""), "{events}");
    assert!(stderr(&done).contains("frame 12"), "{}", stderr(&done));
    // `vmatte matte` too.
    let single = matte(&inputs.join("a_res.mp4"), &d.join("single"), &[]);
    assert!(single.status.success(), "{}", stderr(&single));
    assert_eq!(frames_of(&d.join("single/a_res.alpha.mp4")), 24);
}

#[test]
fn a_panic_fails_its_own_job_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["a.mp4", "b.mp4", "c.mp4"], 5);
    let out = dir.path().join("out");
    let run = batch_command(&[&inputs], &out, &["--json"])
        .env("VMATTE_FAKE_PANIC", "b.mp4")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let report = json_of(&run);
    assert_eq!(job(&report, "a.mp4")["status"], "done");
    assert_eq!(job(&report, "c.mp4")["status"], "done");
    let b = job(&report, "b.mp4");
    assert_eq!(b["status"], "failed");
    let err = b["error"].as_str().unwrap();
    assert!(
        err.contains("internal error") && err.contains("VMATTE_FAKE_PANIC"),
        "{err}"
    );
    assert!(!stderr(&run).contains("panicked at"), "{}", stderr(&run));
    assert!(
        list_dir(&out).iter().all(|n| !n.starts_with("b.")),
        "{:?}",
        list_dir(&out)
    );
    no_partials(&out);
    let rows = status_rows(&out);
    let b_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["safe_name"] == "b")
        .unwrap();
    assert_eq!(b_row["state"], "failed", "never left running: {b_row}");
    // Without the injected bug, the retry finishes it.
    let (done, report) = batch(&[&inputs], &out, &["--retry-failed"]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(job(&report, "b.mp4")["status"], "done");
}

#[test]
fn damaged_frames_are_warnings_and_strict_makes_them_failures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clean = d.join("clean.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=24",
        "-frames:v",
        "48",
        "-g",
        "12",
        "-pix_fmt",
        "yuv420p",
        clean.to_str().unwrap(),
    ]);
    // Flip bytes in the middle of the coded pictures (the file's size and
    // structure stay, as a bad copy would leave them).
    let mut bytes = std::fs::read(&clean).unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    let start = mdat + 8 + (bytes.len() - mdat) / 2;
    for i in (start..start + 600).step_by(7) {
        bytes[i] ^= 0x5a;
    }
    let inputs = d.join("in");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("damaged.mp4"), &bytes).unwrap();

    let (done, report) = batch(&[&inputs], &d.join("out"), &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    let job = job(&report, "damaged.mp4");
    assert_eq!(job["status"], "done");
    let warnings = job["warnings"].as_array().expect("warnings");
    assert!(!warnings.is_empty(), "{job}");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(message.contains("damaged data"), "{message}");
    let events = std::fs::read_to_string(d.join("out/logs/damaged.jsonl")).unwrap();
    assert!(events.contains("\"damaged\""), "{events}");
    assert!(stderr(&done).contains("damaged data"), "{}", stderr(&done));

    let (strict, report) = batch(&[&inputs], &d.join("strict"), &["--strict"]);
    assert!(!strict.status.success());
    let failed = &report["jobs"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("strict"),
        "{failed}"
    );
    assert!(!list_dir(&d.join("strict"))
        .iter()
        .any(|n| n.ends_with(".mp4")));
}

#[test]
fn symlink_cycles_are_followed_once_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["a.mp4"], 4);
    std::os::unix::fs::symlink(".", inputs.join("self1")).unwrap();
    std::os::unix::fs::symlink(".", inputs.join("self2")).unwrap();
    std::os::unix::fs::symlink("..", inputs.join("up")).unwrap();
    let mut cmd = batch_command(&[&inputs], &dir.path().join("out"), &["--json"]);
    cmd.stdin(Stdio::null());
    let out = output_within(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["jobs"].as_array().unwrap().len(), 1, "{report:#}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("self1") && warnings.contains("self2"),
        "{warnings}"
    );
    // submit walks the same way (into the batch's folder: a link up the
    // tree reaches every folder beside `in`, and outputs are videos too).
    let queue = format!("sqlite:{}", dir.path().join("out").display());
    let mut submit = Command::new(env!("CARGO_BIN_EXE_vmatte"));
    submit.args([
        "submit",
        "--queue",
        &queue,
        inputs.to_str().unwrap(),
        "-o",
        dir.path().join("out").to_str().unwrap(),
        "--json",
    ]);
    let out = output_within(&mut submit, Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_of(&out)["queued"], 1);
}

#[test]
fn a_fifo_named_like_a_video_is_skipped_or_refused_never_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["a.mp4", "b.mp4"], 4);
    let fifo = inputs.join("x.mp4");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut cmd = batch_command(&[&inputs], &dir.path().join("out"), &["--json"]);
    cmd.stdin(Stdio::null());
    let out = output_within(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["done"], 2, "{report}");
    assert!(report["warnings"].to_string().contains("x.mp4"), "{report}");

    // Named on the command line: a failed job or a one-line error, at once.
    let mut cmd = batch_command(&[&fifo], &dir.path().join("out2"), &["--json"]);
    cmd.stdin(Stdio::null());
    let out = output_within(&mut cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = job(&json_of(&out), "x.mp4")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let onnx = rvm_onnx();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmatte"));
    cmd.args(["matte", fifo.to_str().unwrap(), "-o"])
        .arg(dir.path().join("out3"))
        .arg("--weights")
        .arg(&onnx);
    let out = output_within(&mut cmd, Duration::from_secs(60));
    fails_in_one_line(&out, "matte on a FIFO", &["x.mp4", "not a regular file"]);
}

#[test]
fn missing_or_damaged_outputs_of_done_jobs_are_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["c1.mp4", "c2.mp4", "c3.mp4"], 5);
    let out = dir.path().join("out");
    let (first, _) = batch(&[&inputs], &out, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    std::fs::remove_file(out.join("c1.alpha.mp4")).unwrap();
    std::fs::write(out.join("c2.composite.mp4"), b"").unwrap();

    let (again, report) = batch(&[&inputs], &out, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(job(&report, "c1.mp4")["status"], "done", "{report}");
    assert_eq!(job(&report, "c2.mp4")["status"], "done", "{report}");
    assert_eq!(job(&report, "c3.mp4")["status"], "skipped", "{report}");
    assert_eq!(frames_of(&out.join("c1.alpha.mp4")), 5);
    assert_eq!(frames_of(&out.join("c2.composite.mp4")), 6);
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    assert!(manifest.contains("c1.alpha.mp4") && manifest.contains("c2.composite.mp4"));
    let (third, report) = batch(&[&inputs], &out, &[]);
    assert!(third.status.success());
    assert_eq!(report["skipped"], 3, "{report}");
}

#[test]
fn identical_inputs_each_get_their_own_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(
        &dir.path().join("in"),
        &["take (export).mp4", "other.mp4"],
        6,
    );
    std::fs::copy(
        inputs.join("take (export).mp4"),
        inputs.join("take (export 2).mp4"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (done, report) = batch(
        &[&inputs],
        &out,
        &["--outputs", "alpha,rgba", "--format", "png"],
    );
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(report["done"], 3, "{report}");
    let names: Vec<&str> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    for j in report["jobs"].as_array().unwrap() {
        let alpha = Path::new(j["outputs"]["alpha"].as_str().unwrap());
        assert!(alpha.starts_with(&out) && alpha.is_dir(), "{j}");
        assert!(
            alpha
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(j["name"].as_str().unwrap()),
            "{j}"
        );
    }
    let copies = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["copy_of"].is_number())
        .count();
    assert_eq!(copies, 1, "one of the two computed once: {report}");
    let take = list_dir(&out.join(format!("{}.alpha", names[1])));
    let take2 = list_dir(&out.join(format!("{}.alpha", names[2])));
    assert_eq!(take.len(), 6);
    assert_eq!(take, take2);
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    for input in ["take (export).mp4", "take (export 2).mp4", "other.mp4"] {
        assert!(
            manifest
                .lines()
                .filter(|l| l.contains(input) && l.contains(",done,"))
                .count()
                == 2,
            "{input}: {manifest}"
        );
    }
    assert!(
        stderr(&done).contains("outputs linked"),
        "{}",
        stderr(&done)
    );

    // submit: the second name is a copy, linked once its job is done.
    let q = dir.path().join("q");
    let queue = format!("sqlite:{}", q.display());
    let submitted = submit_sqlite(&inputs, &q, &["--json"]);
    let s = json_of(&submitted);
    assert_eq!(
        (s["queued"].clone(), s["copies"].clone()),
        (2.into(), 1.into()),
        "{s}"
    );
    let worker = vmatte(&["worker", "--queue", &queue, "--exit-when-idle"]);
    assert!(worker.status.success(), "{}", stderr(&worker));
    let mp4s: Vec<_> = list_dir(&q)
        .into_iter()
        .filter(|n| n.ends_with(".mp4"))
        .collect();
    assert_eq!(
        mp4s.len(),
        6,
        "every input its composite and alpha: {mp4s:?}"
    );
    // `clips` gives the second name one frame more: other.mp4 has 7, the
    // two takes (one a copy of the other) 6.
    assert_eq!(
        mp4s.iter().filter(|m| m.starts_with("other.")).count(),
        2,
        "{mp4s:?}"
    );
    for m in &mp4s {
        let want = if m.starts_with("other.") { 7 } else { 6 };
        assert_eq!(frames_of(&q.join(m)), want, "{m}");
    }
}

#[test]
fn an_unreadable_subfolder_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["a.mp4"], 4);
    let locked = clips(&inputs.join("locked"), &["hidden.mp4"], 4);
    let out = dir.path().join("out");
    // Root reads any folder: the batch runs as nobody when the tests run as
    // root (as scripts/test.sh and CI do), so the folder's mode counts.
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.path(), &inputs] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = batch_command(&[&inputs], &out, &["--json"]);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let run = output_within(&mut cmd, Duration::from_secs(120));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let report = json_of(&run);
    assert_eq!(report["done"], 1, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("locked") && warnings.contains("skipped"),
        "{warnings}"
    );
}

#[test]
fn an_empty_job_store_is_damage_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["a.mp4"], 4);
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join(".vmatte")).unwrap();
    std::fs::write(out.join(".vmatte/jobs.db"), b"").unwrap();
    let run = batch_command(&[&inputs], &out, &[]).output().unwrap();
    fails_in_one_line(&run, "batch on an empty store", &["jobs.db", "damaged"]);
    assert!(!list_dir(&out).iter().any(|n| n.ends_with(".mp4")));
}

#[test]
fn processes_starting_on_a_fresh_output_folder_all_proceed() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["a.mp4", "b.mp4", "c.mp4"], 3);
    for round in 0..6 {
        let out = dir.path().join(format!("out{round}"));
        let spawn = || {
            batch_command(&[&inputs], &out, &[])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        // Four at once make the race of creating the store likely.
        let runs: Vec<_> = (0..4).map(|_| spawn()).collect();
        for run in runs.into_iter().map(|r| r.wait_with_output().unwrap()) {
            assert!(run.status.success(), "round {round}: {}", stderr(&run));
            assert!(!stderr(&run).contains("manifest"), "{}", stderr(&run));
        }
        assert!(out.join("manifest.csv").is_file());
        no_partials(&out);
    }
}

#[test]
fn interrupts_stop_cleanly_and_the_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    make_clip(
        &inputs.join("long.mp4"),
        256,
        144,
        300,
        Rational::new(25, 1),
    );
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let out = dir.path().join(format!("out{code}"));
        let child = batch_command(&[&inputs], &out, &["--downsample-ratio", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_partial(&out);
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let started = Instant::now();
        let done = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(30), "slow to stop");
        assert_eq!(done.status.code(), Some(code), "{}", stderr(&done));
        let err = stderr(&done);
        assert!(
            err.contains("interrupted") && err.contains("status"),
            "{err}"
        );
        no_partials(&out);
        assert!(!list_dir(&out).iter().any(|n| n.ends_with(".mp4")));
        let rows = status_rows(&out);
        assert_eq!(rows[0]["state"], "queued", "{rows}");
    }
    // `vmatte matte` as well.
    let out = dir.path().join("matte");
    let onnx = rvm_onnx();
    let child = Command::new(env!("CARGO_BIN_EXE_vmatte"))
        .args(["matte", inputs.join("long.mp4").to_str().unwrap(), "-o"])
        .arg(&out)
        .args(["--downsample-ratio", "1", "--weights"])
        .arg(&onnx)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_partial(&out);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", stderr(&done));
    assert!(list_dir(&out).is_empty(), "{:?}", list_dir(&out));
}

#[test]
fn bad_values_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["a.mp4"], 3);
    let out = dir.path().join("out");
    for (args, says) in [
        (&["--crf", "55"][..], "--crf 55"),
        (&["--fps", "1/1000000"][..], "frame rate"),
    ] {
        let run = batch_command(&[&inputs], &out, args).output().unwrap();
        fails_in_one_line(&run, &format!("batch {args:?}"), &[says]);
    }
    assert!(
        !out.join(".vmatte").exists(),
        "nothing made before the refusal"
    );
    // --crf 55 is fine for webm.
    let (run, _) = batch(&[&inputs], &out, &["--crf", "55", "--format", "webm"]);
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn names_with_newlines_stay_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(&dir.path().join("in"), &["two\nlines.mp4"], 3);
    std::fs::write(inputs.join("bad\nname.mp4"), b"not a video").unwrap();
    let run = batch_command(&[&inputs], &dir.path().join("out"), &[])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = stderr(&run);
    // The summary's rows: status first.
    let rows: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("done ") || l.starts_with("failed "))
        .collect();
    assert_eq!(rows.len(), 2, "{err}");
    assert!(rows.iter().any(|l| l.contains("two\\nlines.mp4")), "{err}");
    assert!(
        rows.iter()
            .any(|l| l.starts_with("failed") && l.contains("bad\\nname.mp4")),
        "{err}"
    );
    assert!(!err.contains("-0.0s"), "{err}");
}

/// The job store's disk fills up mid-batch (a 160 KiB tmpfs under
/// OUTDIR/.vmatte: mounting needs root, which scripts/test.sh and CI run
/// as): the job whose result cannot be recorded fails with one clear line,
/// the batch stops cleanly with its summary, nothing is left under a
/// partial name or under a final name without a done job, and once there
/// is room the same command finishes the rest.
#[test]
fn a_full_disk_under_the_job_store_stops_the_batch_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = clips(
        &dir.path().join("in"),
        &["c1.mp4", "c2.mp4", "c3.mp4", "c4.mp4"],
        6,
    );
    let out = dir.path().join("out");
    let store_dir = out.join(".vmatte");
    let unmount = small_disk(&store_dir, "160k");

    let run = batch_command(&[&inputs], &out, &[]).output().unwrap();
    assert!(!run.status.success());
    let err = stderr(&run);
    let stopped: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("the batch stopped"))
        .collect();
    assert_eq!(stopped.len(), 1, "{err}");
    assert!(
        stopped[0].contains("jobs.db") && stopped[0].contains("full"),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("status ")),
        "no summary: {err}"
    );
    no_partials(&out);
    let rows = status_rows(&out);
    let done: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "done")
        .map(|r| r["safe_name"].as_str().unwrap().to_string())
        .collect();
    for name in list_dir(&out).iter().filter(|n| n.ends_with(".mp4")) {
        let job = name.split('.').next().unwrap();
        assert!(
            done.iter().any(|d| d == job),
            "{name} is no done job's: {rows}"
        );
    }

    // Room again: the store moves to a plain folder, and the rerun finishes.
    // (with its write-ahead log, if the full disk kept it from folding in).
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    for file in list_dir(&store_dir)
        .iter()
        .filter(|f| f.starts_with("jobs.db"))
    {
        std::fs::copy(store_dir.join(file), saved.join(file)).unwrap();
    }
    drop(unmount);
    for file in list_dir(&saved) {
        std::fs::copy(saved.join(&file), store_dir.join(&file)).unwrap();
    }
    let (again, report) = batch(&[&inputs], &out, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(report["failed"], 0, "{report}");
    for i in 1..=4 {
        let alpha = out.join(format!("c{i}.alpha.mp4"));
        assert_eq!(frames_of(&alpha), 5 + i);
    }
    no_partials(&out);
}

/// Frames too small for the network say so, and do not advise a larger
/// downsample ratio when the ratio is not what is wrong.
#[test]
fn tiny_frames_are_named_as_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.mp4");
    make_clip(&tiny, 2, 2, 3, Rational::new(25, 1));
    let out = matte(&tiny, &dir.path().join("out"), &[]);
    let err = fails_in_one_line(&out, "matte on 2x2 frames", &["2x2", "too small"]);
    assert!(!err.contains("downsample"), "{err}");
    // A ratio that shrinks a fine video too far is the ratio's fault.
    let small = dir.path().join("small.mp4");
    make_clip(&small, 64, 48, 3, Rational::new(25, 1));
    let out = matte(
        &small,
        &dir.path().join("out2"),
        &["--downsample-ratio", "0.05"],
    );
    let err = stderr(&out);
    assert!(err.contains("--downsample-ratio"), "{err}");
}
