//! A batch killed again and again, at random moments and at the moments
//! around its store writes, loses nothing: after every kill no file under a
//! final name belongs to a job the store does not record as done, and the
//! run that is finally left alone finishes every job with complete outputs,
//! no partial file, and a store that agrees with the files.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;
use vmatte_media::Rational;

/// Seven inputs: six clips of different lengths and a second name for one
/// of them (a copy, linked from its job's outputs).
fn inputs(dir: &Path) -> BTreeMap<String, usize> {
    std::fs::create_dir_all(dir).unwrap();
    let mut frames = BTreeMap::new();
    for i in 0..6u32 {
        let name = format!("clip{i}.mp4");
        make_clip(&dir.join(&name), 128, 72, 12 + 3 * i, Rational::new(25, 1));
        frames.insert(name, 12 + 3 * i as usize);
    }
    std::fs::copy(dir.join("clip2.mp4"), dir.join("clip2 again.mp4")).unwrap();
    frames.insert("clip2 again.mp4".into(), 18);
    frames
}

/// The store's view: the outputs of done jobs and of linked copies.
fn recorded(out: &Path) -> BTreeSet<PathBuf> {
    // The store is built whole under a name of its own and linked into
    // place: without `jobs.db` the batch was killed before it had a store,
    // and with it `status` must read it.
    if !out.join(".vmatte/jobs.db").exists() {
        return BTreeSet::new();
    }
    let rows = status_rows(out);
    let mut files = BTreeSet::new();
    for row in rows.as_array().unwrap() {
        if row["state"] != "done" {
            continue;
        }
        for path in row["outputs"].as_object().unwrap().values() {
            files.insert(PathBuf::from(path.as_str().unwrap()));
        }
        for copy in row["copies"].as_array().into_iter().flatten() {
            for path in copy["outputs"].as_object().unwrap().values() {
                files.insert(PathBuf::from(path.as_str().unwrap()));
            }
        }
    }
    files
}

/// Files under final names that are not the outputs of a done job (or of
/// a linked copy of one).
fn unexplained(out: &Path) -> Vec<String> {
    let done = recorded(out);
    list_dir(out)
        .into_iter()
        .filter(|n| n.ends_with(".mp4"))
        .filter(|n| !done.iter().any(|p| p.file_name().unwrap() == n.as_str()))
        .collect()
}

#[test]
fn a_batch_killed_twenty_times_still_finishes_everything_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let frames = inputs(&input_dir);
    let out = dir.path().join("out");
    let run = |env: Option<&str>| {
        let mut cmd = batch_command(&[&input_dir], &out, &["--outputs", "alpha,composite"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(point) = env {
            cmd.env("VMATTE_CRASH_AT", point);
        }
        cmd.spawn().unwrap()
    };
    // How long an undisturbed batch takes here, and how long one takes that
    // finds everything done (its start: weights, store, inputs).
    let probe = dir.path().join("probe");
    let timed = || {
        let started = Instant::now();
        let out = batch_command(&[&input_dir], &probe, &["--outputs", "alpha,composite"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        started.elapsed().as_millis() as u64
    };
    let whole = timed().max(200);
    let start = timed().min(whole);
    // Random kills land in a run's start or the first half of the job it
    // works on (half an average job, 19.5 frames, is less than the
    // shortest, 12), so they let no job finish and the work outlasts twenty
    // kills: progress comes from the crash points, one job per `published`
    // round, and the moments killed move through the jobs with it.
    let window = start + (whole - start) / 12;

    // A fixed seed: the same moments on every run of the test.
    let mut seed = 0x5eed_u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    // Only a death the test caused counts: a crash point reached (SIGABRT)
    // or SIGKILL sent to a batch still running.
    const ROUNDS: usize = 48;
    let mut kills = 0;
    for round in 0..ROUNDS {
        if kills >= 20 {
            break;
        }
        let point = match round % 6 {
            1 => Some("claimed"),
            3 => Some("recorded"),
            5 => Some("published"),
            _ => None,
        };
        let mut child = run(point);
        let status = match point {
            // Dies by itself at the point.
            Some(_) => {
                let status = child.wait().unwrap();
                if status.signal() == Some(libc::SIGABRT) {
                    kills += 1;
                }
                status
            }
            None => {
                std::thread::sleep(Duration::from_millis(next() % window));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap(); // SIGKILL
                }
                let status = child.wait().unwrap();
                if status.signal() == Some(libc::SIGKILL) {
                    kills += 1;
                }
                status
            }
        };
        let strays = unexplained(&out);
        assert!(
            strays.is_empty(),
            "round {round} ({point:?}): files under final names that no done job owns: {strays:?}"
        );
        // A run that ended by itself finished every job: nothing is left to
        // kill.
        if status.success() {
            break;
        }
    }
    assert!(
        kills >= 20,
        "only {kills} kills before the batch ran out of work (or {ROUNDS} rounds)"
    );

    // Left alone, the same command finishes everything.
    let (done, report) = batch(&[&input_dir], &out, &["--outputs", "alpha,composite"]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(report["failed"], 0, "{report}");
    no_partials(&out);
    let mut seen = 0;
    for job in report["jobs"].as_array().unwrap() {
        let input = Path::new(job["input"].as_str().unwrap());
        let want = frames[input.file_name().unwrap().to_str().unwrap()];
        for kind in ["alpha", "composite"] {
            let path = PathBuf::from(job["outputs"][kind].as_str().unwrap());
            assert_eq!(
                decode_frames(&path, usize::MAX).len(),
                want,
                "{}",
                path.display()
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 2 * frames.len());
    // The store agrees with the files: every done job's outputs exist with
    // the sizes it recorded, and nothing else is under a final name.
    let rows = status_rows(&out);
    assert_eq!(rows.as_array().unwrap().len(), 6);
    for row in rows.as_array().unwrap() {
        assert_eq!(row["state"], "done", "{row}");
        for (kind, path) in row["outputs"].as_object().unwrap() {
            let len = std::fs::metadata(path.as_str().unwrap()).unwrap().len();
            assert_eq!(row["output_bytes"][kind], len, "{row}");
        }
    }
    assert!(unexplained(&out).is_empty());
    let finals = list_dir(&out)
        .into_iter()
        .filter(|n| n.ends_with(".mp4"))
        .count();
    assert_eq!(finals, 2 * frames.len());
}
