//! `vmatte submit / worker / status --queue` against a real PostgreSQL
//! server on loopback (scripts/pg-scratch.sh), and the SQLite queue.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

fn vmatte_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmatte"));
    cmd.args(args)
        .env_remove("VMATTE_MODEL_DIR")
        .env_remove("VMATTE_QUEUE");
    cmd
}

fn run(args: &[&str]) -> Output {
    vmatte_cmd(args).output().expect("vmatte runs")
}

/// `vmatte submit --queue URL INPUT -o OUT --weights <ONNX> --outputs
/// alpha,composite EXTRA... --json`, checked for success.
fn submit(url: &str, input: &Path, out: &Path, extra: &[&str]) -> Value {
    let onnx = rvm_onnx();
    let mut args = vec![
        "submit",
        "--queue",
        url,
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--weights",
        onnx.to_str().unwrap(),
        "--outputs",
        "alpha,composite",
        "--json",
    ];
    args.extend_from_slice(extra);
    let done = run(&args);
    assert!(done.status.success(), "submit failed: {}", stderr(&done));
    serde_json::from_str(stdout(&done).trim()).expect("submit --json prints JSON")
}

/// A worker with short leases and polls, so takeovers happen in seconds.
fn spawn_worker(url: &str, extra: &[&str], lease_ms: u64) -> Child {
    let mut args = vec!["worker", "--queue", url, "--json"];
    args.extend_from_slice(extra);
    vmatte_cmd(&args)
        .env("VMATTE_JOB_LEASE_MS", lease_ms.to_string())
        .env("VMATTE_POLL_MS", "100")
        .env("VMATTE_RETRY_BACKOFF_MS", "300")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker starts")
}

fn status(url: &str) -> Value {
    let out = run(&["status", "--queue", url, "--json"]);
    assert!(out.status.success(), "status failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("status --json prints JSON")
}

/// Polls `status` until a job is running under a lease of the worker with
/// process id `pid`; returns that job's id.
fn wait_until_running(url: &str, pid: u32) -> i64 {
    let started = Instant::now();
    loop {
        let s = status(url);
        let held = s["workers"].as_array().unwrap().iter().find_map(|w| {
            (w["pid"] == pid && !w["running"].as_array().unwrap().is_empty())
                .then(|| w["running"][0].as_i64().unwrap())
        });
        if let Some(job) = held {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "worker {pid} never took a job: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Twenty different small clips; clip i has 20 + i frames, long enough
/// that a worker seen running a job is still inside it when killed.
fn make_clips(dir: &Path) -> BTreeMap<String, u32> {
    std::fs::create_dir_all(dir).unwrap();
    (0..20u32)
        .map(|i| {
            let name = format!("take_{i:02}.mp4");
            let frames = 20 + i;
            make_clip(&dir.join(&name), 64, 48, frames, Rational::new(25, 1));
            (format!("take_{i:02}"), frames)
        })
        .collect()
}

fn attempts(job: &Value) -> Vec<&Value> {
    job["attempt_log"].as_array().unwrap().iter().collect()
}

/// Three workers on twenty jobs, one of them killed with SIGKILL in the
/// middle of a video: every job ends done exactly once, with complete
/// outputs, no duplicates, and the password never shown.
#[test]
fn three_workers_finish_twenty_jobs_despite_a_kill_9() {
    let pg = PgServer::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let clips = make_clips(&tmp.path().join("in"));
    let out = tmp.path().join("out");

    let submitted = submit(&pg.url, &tmp.path().join("in"), &out, &[]);
    assert_eq!(submitted["queued"], 20, "{submitted:#}");
    // The same inputs and settings again add nothing.
    let again = submit(&pg.url, &tmp.path().join("in"), &out, &[]);
    assert_eq!(
        (again["queued"].clone(), again["known"].clone()),
        (0.into(), 20.into())
    );
    assert!(!again.to_string().contains(PG_PASSWORD));

    let lease_ms = 1500;
    // The third worker runs two streams: two jobs at once on one device.
    let workers: Vec<Child> = [&[][..], &[][..], &["--streams", "2"][..]]
        .into_iter()
        .map(|extra| spawn_worker(&pg.url, &[&["--exit-when-idle"], extra].concat(), lease_ms))
        .collect();
    let victim_pid = workers[0].id();
    let victim_job = wait_until_running(&pg.url, victim_pid);
    let mut workers = workers.into_iter();
    let mut victim = workers.next().unwrap();
    victim.kill().unwrap(); // SIGKILL: no chance to release anything
    let victim_out = victim.wait_with_output().unwrap();
    let survivors: Vec<Output> = workers
        .map(|w| wait_within(w, Duration::from_secs(600)))
        .collect();
    for s in &survivors {
        assert!(s.status.success(), "worker failed: {}", stderr(s));
    }

    // Completions reported by the workers: each job exactly once.
    let mut completions: BTreeMap<i64, usize> = BTreeMap::new();
    for o in survivors.iter().chain([&victim_out]) {
        for line in stdout(o).lines() {
            let v: Value = serde_json::from_str(line).expect("worker --json lines");
            if v["status"] == "done" {
                *completions.entry(v["job"].as_i64().unwrap()).or_default() += 1;
            }
        }
        let text = format!("{}{}", stdout(o), stderr(o));
        assert!(!text.contains(PG_PASSWORD), "password shown: {text}");
    }
    assert_eq!(completions.len(), 20, "{completions:?}");
    assert!(completions.values().all(|&n| n == 1), "{completions:?}");

    let s = status(&pg.url);
    assert!(!s.to_string().contains(PG_PASSWORD));
    let jobs = s["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 20);
    assert_eq!(s["counts"]["done"], 20, "{s:#}");
    assert_eq!(
        s["throughput"]["jobs"], 20,
        "all finished in the last 10 minutes"
    );
    let frames: u64 = clips.values().map(|&f| u64::from(f)).sum();
    assert_eq!(s["throughput"]["frames"], frames);
    for job in jobs {
        let log = attempts(job);
        let done: Vec<_> = log.iter().filter(|a| a["outcome"] == "done").collect();
        assert_eq!(done.len(), 1, "job {} attempts: {log:?}", job["id"]);
        if job["id"] == victim_job {
            // The killed worker's attempt is recorded as lost, and the
            // job was finished by another worker.
            assert_eq!(log[0]["outcome"], "lost", "{log:?}");
            assert!(log[0]["worker"]
                .as_str()
                .unwrap()
                .contains(&format!("-{victim_pid}-")));
            assert_ne!(done[0]["worker"], log[0]["worker"]);
        }
    }

    // Outputs: one alpha and one composite per input, complete, nothing
    // left under a temporary name, no second copies.
    let names = list_dir(&out);
    assert!(
        names.iter().all(|n| !n.ends_with(".partial")),
        "partial files left: {names:?}"
    );
    let videos: BTreeSet<&String> = names.iter().filter(|n| n.ends_with(".mp4")).collect();
    assert_eq!(videos.len(), 40, "{names:?}");
    for (stem, frames) in &clips {
        for kind in ["alpha", "composite"] {
            let path = out.join(format!("{stem}.{kind}.mp4"));
            assert!(path.is_file(), "{} missing: {names:?}", path.display());
            assert_eq!(
                decode_frames(&path, 1000).len(),
                *frames as usize,
                "{}",
                path.display()
            );
        }
        let log = out.join("logs").join(format!("{stem}.log"));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains(PG_PASSWORD), "{}", log.display());
    }
}

/// A job that cannot succeed is retried with growing delays and parked as
/// failed after --max-attempts, with every attempt's error kept.
#[test]
fn failing_jobs_are_retried_with_backoff_then_parked() {
    let pg = PgServer::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("broken.mp4");
    std::fs::write(&input, b"this is not a video").unwrap();
    let out = tmp.path().join("out");
    submit(&pg.url, &input, &out, &["--max-attempts", "3"]);

    let worker = spawn_worker(&pg.url, &["--exit-when-idle"], 5000);
    let done = wait_within(worker, Duration::from_secs(120));
    assert!(done.status.success(), "{}", stderr(&done));

    let s = status(&pg.url);
    let job = &s["jobs"][0];
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["attempts"], 3);
    assert!(job["error"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts"));
    let log = attempts(job);
    assert_eq!(log.len(), 3, "{log:?}");
    for a in &log {
        assert_eq!(a["outcome"], "failed");
        assert!(
            a["error"].as_str().unwrap().contains("broken.mp4"),
            "each attempt keeps its one-line error naming the file: {a}"
        );
    }
    // Backoff of 300 ms, then 600 ms, between the attempts.
    let time = |a: &Value, key: &str| {
        let t = a[key].as_str().unwrap();
        chrono_ms(t)
    };
    let gap1 = time(log[1], "started") - time(log[0], "finished");
    let gap2 = time(log[2], "started") - time(log[1], "finished");
    assert!(gap1 >= 290, "first retry after {gap1} ms");
    assert!(gap2 >= 590, "second retry after {gap2} ms");

    // Resubmitting does not retry a parked job; --retry-failed does.
    let again = submit(&pg.url, &input, &out, &[]);
    assert_eq!(again["known"], 1);
    let again = submit(&pg.url, &input, &out, &["--retry-failed"]);
    assert_eq!(again["requeued"], 1);
    assert_eq!(status(&pg.url)["jobs"][0]["state"], "queued");
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as vmatte prints
/// it (`2026-11-22T03:04:05.678Z`).
fn chrono_ms(t: &str) -> i64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + ms.parse::<i64>().unwrap()
}

/// SIGTERM (Kubernetes scale-down, Slurm preemption): the worker gives its
/// job back without spending an attempt and exits 0.
#[test]
fn sigterm_gives_the_job_back() {
    let pg = PgServer::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("long.mp4");
    make_clip(&input, 64, 48, 400, Rational::new(25, 1));
    let out = tmp.path().join("out");
    submit(&pg.url, &input, &out, &[]);

    let worker = spawn_worker(&pg.url, &[], 60_000);
    let job = wait_until_running(&pg.url, worker.id());
    let killed = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let done = wait_within(worker, Duration::from_secs(60));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stderr(&done).contains("goes back to the queue"));

    let s = status(&pg.url);
    let row = &s["jobs"][0];
    assert_eq!(row["id"], job);
    assert_eq!(row["state"], "queued", "{row:#}");
    assert_eq!(row["attempts"], 0, "a release spends no attempt");
    assert_eq!(attempts(row)[0]["outcome"], "released");
    assert!(s["workers"][0]["stopped"].is_string(), "{s:#}");
    assert!(!list_dir(&out).iter().any(|n| n.ends_with(".mp4")));
}

/// The URL's sslmode is honoured: a TLS-only server refuses sslmode=disable,
/// and verify-full checks the certificate against sslrootcert.
#[test]
fn tls_when_the_url_asks_for_it() {
    let pg = PgServer::start(true);
    let plain = format!("{}?sslmode=disable", pg.url);
    let refused = run(&["status", "--queue", &plain]);
    let err = fails_in_one_line(&refused, "status with sslmode=disable", &["no encryption"]);
    assert!(!err.contains(PG_PASSWORD), "{err}");

    // The URL may come from VMATTE_QUEUE instead of --queue.
    let required = format!("{}?sslmode=require", pg.url);
    let from_env = vmatte_cmd(&["status", "--json"])
        .env("VMATTE_QUEUE", &required)
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    let shown: Value = serde_json::from_slice(&from_env.stdout).unwrap();
    assert_eq!(shown["queue"], required.replace(PG_PASSWORD, "***"));

    let localhost = pg.url.replace("127.0.0.1", "localhost");
    let verified = format!(
        "{localhost}?sslmode=verify-full&sslrootcert={}",
        pg.ca().display()
    );
    let ok = run(&["status", "--queue", &verified]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let unverified = format!("{localhost}?sslmode=verify-full");
    let bad = run(&["status", "--queue", &unverified]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("certificate"), "{}", stderr(&bad));
}

/// The same commands on the embedded SQLite store of one folder.
#[test]
fn sqlite_queue_runs_the_same_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("clip.mp4");
    make_clip(&input, 64, 48, 8, Rational::new(25, 1));
    let out = tmp.path().join("out");
    let url = format!("sqlite:{}", out.display());
    assert_eq!(submit(&url, &input, &out, &[])["queued"], 1);

    let elsewhere = tmp.path().join("elsewhere");
    let onnx = rvm_onnx();
    let wrong = run(&[
        "submit",
        "--queue",
        &url,
        input.to_str().unwrap(),
        "-o",
        elsewhere.to_str().unwrap(),
        "--weights",
        onnx.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("own output folder"),
        "{}",
        stderr(&wrong)
    );

    let worker = spawn_worker(&url, &["--exit-when-idle"], 5000);
    let done = wait_within(worker, Duration::from_secs(120));
    assert!(done.status.success(), "{}", stderr(&done));
    let s = status(&url);
    assert_eq!(s["counts"]["done"], 1, "{s:#}");
    assert_eq!(decode_frames(&out.join("clip.alpha.mp4"), 100).len(), 8);

    // A failure stays failed until --retry-failed queues it again.
    let broken = tmp.path().join("broken.mp4");
    std::fs::write(&broken, b"not a video").unwrap();
    assert_eq!(submit(&url, &broken, &out, &[])["queued"], 1);
    let worker = spawn_worker(&url, &["--exit-when-idle"], 5000);
    assert!(wait_within(worker, Duration::from_secs(120))
        .status
        .success());
    assert_eq!(status(&url)["counts"]["failed"], 1);
    assert_eq!(submit(&url, &broken, &out, &[])["known"], 1);
    assert_eq!(
        submit(&url, &broken, &out, &["--retry-failed"])["requeued"],
        1
    );
    let s = status(&url);
    assert_eq!(
        (s["counts"]["failed"].clone(), s["counts"]["queued"].clone()),
        (0.into(), 1.into()),
        "{s:#}"
    );
}

#[test]
fn a_bad_queue_url_is_one_clear_line() {
    let out = run(&["status", "--queue", "mysql://u:hunter2@h/db"]);
    let err = fails_in_one_line(&out, "status --queue mysql://", &["postgres://"]);
    assert!(!err.contains("hunter2"), "{err}");
}

/// Malformed queue values, in every command that takes one: one line, and
/// never the password.
#[test]
fn malformed_queue_values_never_show_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("clip.mp4");
    make_clip(&input, 64, 48, 2, Rational::new(25, 1));
    let out = tmp.path().join("out");
    for given in [
        "postgres:/vmatte:S3cret@127.0.0.1:5432/postgres",
        "postgres//vmatte:S3cret@127.0.0.1:5432/postgres",
        "vmatte:S3cret@127.0.0.1:5432",
        "host=127.0.0.1 password=S3cret dbname=postgres",
    ] {
        for args in [
            vec!["status", "--queue", given],
            vec!["worker", "--queue", given, "--exit-when-idle"],
            vec![
                "submit",
                "--queue",
                given,
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
        ] {
            let done = run(&args);
            let text = format!("{}{}", stdout(&done), stderr(&done));
            assert!(!text.contains("S3cret"), "{args:?}: {text}");
            fails_in_one_line(&done, &format!("{args:?}"), &[]);
        }
    }
}

/// A worker whose database restarts under it waits for it and goes on:
/// it finishes every job and exits cleanly (issue 22's always-on worker).
#[test]
fn a_worker_outlives_a_database_restart() {
    let pg = PgServer::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    // Long enough that the worker is still matting when the server is back
    // (the restart takes seconds): the outage falls inside its work.
    for i in 0..3 {
        make_clip(
            &inputs.join(format!("c{i}.mp4")),
            256,
            144,
            200 + i,
            Rational::new(25, 1),
        );
    }
    let out = tmp.path().join("out");
    assert_eq!(submit(&pg.url, &inputs, &out, &[])["queued"], 3);
    let mut worker = spawn_worker(&pg.url, &["--exit-when-idle"], 8000);
    wait_until_running(&pg.url, worker.id());
    pg.restart(2);
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker ended before the server was back: no outage was tested"
    );
    let done = wait_within(worker, Duration::from_secs(300));
    assert!(done.status.success(), "{}", stderr(&done));
    let s = status(&pg.url);
    assert_eq!(s["counts"]["done"], 3, "{s:#}");
    for i in 0..3 {
        let alpha = out.join(format!("c{i}.alpha.mp4"));
        assert_eq!(decode_frames(&alpha, 1000).len(), 200 + i as usize);
    }
    assert!(!stderr(&done).contains(PG_PASSWORD));
}
