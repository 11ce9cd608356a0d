//! Lease semantics between two connections, as two processes would see them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use vmatte_jobs::{Claim, Error, JobState, JobStore, Progress};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(50);

fn store_with_job(out: &Path) -> (JobStore, i64) {
    let mut store = JobStore::open(out).unwrap();
    let job = store
        .enqueue(Path::new("/in/clip.mp4"), "content", "settings", "{}")
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    (store, job.id)
}

fn outputs() -> BTreeMap<String, PathBuf> {
    BTreeMap::from([("alpha".to_string(), PathBuf::from("/out/clip.alpha.mp4"))])
}

#[test]
fn a_live_lease_makes_others_wait_and_an_expired_one_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, id) = store_with_job(dir.path());
    let mut second = JobStore::open(dir.path()).unwrap();

    let Claim::Claimed(row) = first.claim(id, "first", SHORT, false).unwrap() else {
        panic!("a queued job is claimable");
    };
    assert_eq!(
        (row.attempts, row.lease_owner.as_deref()),
        (1, Some("first"))
    );
    match second.claim(id, "second", LONG, false).unwrap() {
        Claim::Busy(row) => assert_eq!(row.lease_owner.as_deref(), Some("first")),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(second.claim_next("second", LONG, false).unwrap(), None);

    sleep(SHORT * 2);
    let Claim::Claimed(row) = second.claim(id, "second", LONG, false).unwrap() else {
        panic!("an expired lease is taken over");
    };
    assert_eq!(
        (row.attempts, row.lease_owner.as_deref()),
        (2, Some("second"))
    );

    assert!(
        !first.heartbeat(id, "first", LONG).unwrap(),
        "first lost it"
    );
    assert!(second.heartbeat(id, "second", LONG).unwrap());
    match first.complete(id, "first", 10, 1.0, &outputs().into()) {
        Err(Error::LeaseLost { id: lost, .. }) => assert_eq!(lost, id),
        other => panic!("a non-holder must not complete: {other:?}"),
    }
    assert!(matches!(
        first.fail(id, "first", "boom"),
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(first.job(id).unwrap().unwrap().state, JobState::Running);

    let done = second
        .complete(id, "second", 10, 1.5, &outputs().into())
        .unwrap();
    assert_eq!(done.state, JobState::Done);
    assert_eq!((done.frames, done.seconds), (Some(10), Some(1.5)));
    assert_eq!(done.outputs, outputs());
    assert_eq!((done.lease_owner, done.lease_expires_ms), (None, None));
    assert!(matches!(
        first.claim(id, "third", LONG, true).unwrap(),
        Claim::AlreadyDone(_)
    ));
}

#[test]
fn a_slow_holder_keeps_an_expired_lease_nobody_took() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, id) = store_with_job(dir.path());
    assert!(matches!(
        store.claim(id, "me", SHORT, false).unwrap(),
        Claim::Claimed(_)
    ));
    sleep(SHORT * 2);
    assert!(store.heartbeat(id, "me", LONG).unwrap());
    let mut other = JobStore::open(dir.path()).unwrap();
    assert!(matches!(
        other.claim(id, "other", LONG, false).unwrap(),
        Claim::Busy(_)
    ));
    // Claiming one's own job again renews the lease without a new attempt.
    let Claim::Claimed(row) = store.claim(id, "me", LONG, false).unwrap() else {
        panic!("own job");
    };
    assert_eq!(row.attempts, 1);
}

#[test]
fn failed_jobs_are_retried_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, id) = store_with_job(dir.path());
    store.claim(id, "me", LONG, false).unwrap();
    let failed = store.fail(id, "me", "input.mp4: truncated").unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error.as_deref(), Some("input.mp4: truncated"));

    assert!(matches!(
        store.claim(id, "me", LONG, false).unwrap(),
        Claim::Failed(_)
    ));
    assert_eq!(store.claim_next("me", LONG, false).unwrap(), None);
    let row = store.claim_next("me", LONG, true).unwrap().expect("retry");
    assert_eq!((row.id, row.attempts, row.error), (id, 2, None));
}

#[test]
fn release_requeues_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, id) = store_with_job(dir.path());
    store.claim(id, "me", LONG, false).unwrap();
    assert!(matches!(
        store.release(id, "you"),
        Err(Error::LeaseLost { .. })
    ));
    let row = store.release(id, "me").unwrap();
    assert_eq!((row.state, row.lease_owner), (JobState::Queued, None));
    assert_eq!(
        store.claim_next("you", LONG, false).unwrap().unwrap().id,
        id
    );
}

#[test]
fn unknown_jobs_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = store_with_job(dir.path());
    let err = store.claim(999, "me", LONG, false).unwrap_err();
    assert!(matches!(err, Error::NoSuchJob { id: 999, .. }), "{err}");
    assert!(err.to_string().contains("jobs.db"), "{err}");
    assert!(!store.heartbeat(999, "me", LONG).unwrap());
}

#[test]
fn status_json_has_readable_times_and_inline_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = JobStore::open(dir.path()).unwrap();
    store
        .enqueue(
            Path::new("/in/clip.mp4"),
            "c",
            "s",
            r#"{"model":"rvm-mobilenetv3"}"#,
        )
        .unwrap();
    let json = serde_json::to_value(store.jobs().unwrap()).unwrap();
    let job = &json[0];
    assert_eq!(job["state"], "queued");
    assert_eq!(job["settings"]["model"], "rvm-mobilenetv3");
    let created = job["created"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    assert!(job["started"].is_null());
}

#[test]
fn progress_is_its_holders_to_report_and_starts_afresh_with_each_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, id) = store_with_job(dir.path());
    let at = |done, total| Progress {
        frames_done: done,
        frames_total: total,
    };
    assert!(matches!(
        store.claim(id, "me", SHORT, false).unwrap(),
        Claim::Claimed(_)
    ));
    assert!(store.report(id, "me", at(12, Some(300))).unwrap());
    assert!(!store.report(id, "someone else", at(99, None)).unwrap());
    assert_eq!(
        store.job(id).unwrap().unwrap().progress,
        Some(at(12, Some(300)))
    );
    // Its lease runs out; the next holder's attempt starts with no report.
    sleep(SHORT * 2);
    let mut other = JobStore::open(dir.path()).unwrap();
    let Claim::Claimed(row) = other.claim(id, "other", LONG, false).unwrap() else {
        panic!("an expired lease is taken over");
    };
    assert_eq!(row.progress, None);
    assert!(!store.report(id, "me", at(13, Some(300))).unwrap());
}
