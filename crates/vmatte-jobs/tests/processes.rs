//! Real processes on one store: this test binary re-runs itself as workers
//! (`worker_entry`, switched on by `ROLE`), so the contention and the
//! crashes are those of separate OS processes with their own connections.

use std::collections::BTreeSet;
use std::env;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use vmatte_jobs::{now_ms, owner_id, Claim, JobState, JobStore};

const ROLE: &str = "VMATTE_JOBS_TEST_ROLE";
const DIR: &str = "VMATTE_JOBS_TEST_DIR";
const NAME: &str = "VMATTE_JOBS_TEST_NAME";

const JOBS: usize = 20;
const HOLD_LEASE: Duration = Duration::from_secs(3);

/// A worker when `ROLE` is set; in an ordinary test run, nothing.
#[test]
fn worker_entry() {
    let Ok(role) = env::var(ROLE) else {
        return;
    };
    let dir = PathBuf::from(env::var(DIR).unwrap());
    match role.as_str() {
        "drain" => drain(&dir, &env::var(NAME).unwrap()),
        "hold" => hold(&dir),
        other => panic!("unknown worker role {other}"),
    }
}

/// Claims jobs until none is left, logging each completion.
fn drain(dir: &Path, name: &str) {
    let mut store = JobStore::open(&dir.join("out")).unwrap();
    let owner = owner_id();
    fs::write(dir.join(format!("ready-{name}")), b"").unwrap();
    wait_for(&dir.join("go"));
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("done-{name}.log")))
        .unwrap();
    while let Some(job) = store
        .claim_next(&owner, Duration::from_secs(30), false)
        .unwrap()
    {
        sleep(Duration::from_millis(5));
        store
            .complete(job.id, &owner, 1, 0.005, &Default::default())
            .unwrap();
        writeln!(log, "{}", job.id).unwrap();
    }
}

/// Claims the job, then writes to the store as fast as it can until killed.
fn hold(dir: &Path) {
    let mut store = JobStore::open(&dir.join("out")).unwrap();
    let owner = owner_id();
    let job = store
        .claim_next(&owner, HOLD_LEASE, false)
        .unwrap()
        .unwrap();
    fs::write(dir.join("claimed.tmp"), job.id.to_string()).unwrap();
    fs::rename(dir.join("claimed.tmp"), dir.join("claimed")).unwrap();
    for n in 0.. {
        assert!(store.heartbeat(job.id, &owner, HOLD_LEASE).unwrap());
        let input = PathBuf::from(format!("/in/extra {n}.mp4"));
        store
            .enqueue(
                &input,
                &format!("extra{n}"),
                "s",
                r#"{"padding":"........"}"#,
            )
            .unwrap();
    }
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        sleep(Duration::from_millis(1));
    }
}

fn spawn_worker(dir: &Path, role: &str, name: &str) -> Child {
    Command::new(env::current_exe().unwrap())
        .args(["worker_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .env(NAME, name)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn enqueue(out: &Path, count: usize) -> Vec<i64> {
    let mut store = JobStore::open(out).unwrap();
    (0..count)
        .map(|i| {
            let input = PathBuf::from(format!("/in/clip{i:02}.mp4"));
            store
                .enqueue(&input, &format!("content{i}"), "s", "{}")
                .unwrap()
                .id
        })
        .collect()
}

#[test]
fn two_processes_complete_every_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ids = enqueue(&dir.path().join("out"), JOBS);
    let workers = ["w1", "w2"].map(|name| (name, spawn_worker(dir.path(), "drain", name)));
    for (name, _) in &workers {
        wait_for(&dir.path().join(format!("ready-{name}")));
    }
    // Both start together, so the run really is contended.
    fs::write(dir.path().join("go"), b"").unwrap();

    let mut completed = Vec::new();
    for (name, child) in workers {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "worker {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let log = fs::read_to_string(dir.path().join(format!("done-{name}.log"))).unwrap();
        let mine: Vec<i64> = log.lines().map(|l| l.parse().unwrap()).collect();
        assert!(!mine.is_empty(), "worker {name} got no job at all");
        completed.extend(mine);
    }

    let unique: BTreeSet<i64> = completed.iter().copied().collect();
    assert_eq!(unique.len(), completed.len(), "a job was completed twice");
    assert_eq!(unique, ids.iter().copied().collect());
    let store = JobStore::open(&dir.path().join("out")).unwrap();
    for job in store.jobs().unwrap() {
        assert_eq!(job.state, JobState::Done, "{job:?}");
        assert_eq!(job.attempts, 1, "job {} was claimed twice", job.id);
    }
    store.check_integrity().unwrap();
}

#[test]
fn a_worker_killed_mid_lease_leaves_a_sound_store_and_a_reclaimable_job() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let id = enqueue(&out, 1)[0];
    let mut child = spawn_worker(dir.path(), "hold", "holder");
    wait_for(&dir.path().join("claimed"));
    // Let it write for a while, so the kill lands amid transactions.
    sleep(Duration::from_millis(200));
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());

    let mut store = JobStore::open(&out).unwrap();
    store.check_integrity().unwrap();
    let raw = rusqlite::Connection::open(vmatte_jobs::store_path(&out)).unwrap();
    let check: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert!(store.jobs().unwrap().len() > 1, "the holder was writing");

    // The holder's lease has not run out, but its process is gone from this
    // host: the job is taken over at once.
    let row = store.job(id).unwrap().unwrap();
    assert!(
        row.lease_live(now_ms()),
        "the dead holder's lease should still run"
    );
    let Claim::Claimed(row) = store.claim(id, "survivor", HOLD_LEASE, false).unwrap() else {
        panic!("a job whose holder died is reclaimable");
    };
    assert_eq!(
        (row.attempts, row.lease_owner.as_deref()),
        (2, Some("survivor"))
    );
    store
        .complete(id, "survivor", 1, 0.1, &Default::default())
        .unwrap();
    store.check_integrity().unwrap();
}
