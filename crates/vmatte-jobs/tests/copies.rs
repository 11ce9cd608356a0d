//! Inputs with the same content: the work is done once, and each input
//! gets outputs under its own name.

use std::fs;
use std::path::Path;
use std::time::Duration;

use vmatte_jobs::outputs::{link_as, measure, verify, Outputs};
use vmatte_jobs::queue::{JobQueue, NewJob, Submitted};
use vmatte_jobs::{Claim, JobState, JobStore};

fn new_job<'a>(input: &'a Path, outdir: &'a Path) -> NewJob<'a> {
    NewJob {
        input,
        outdir,
        content_id: "same bytes",
        settings_id: "s",
        settings_json: "{}",
        max_attempts: 1,
        retry_failed: false,
    }
}

#[test]
fn a_second_name_for_known_content_is_a_copy_with_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("take (export).mp4"),
        dir.path().join("take (export 2).mp4"),
    );
    fs::write(&a, b"video").unwrap();
    fs::write(&b, b"video").unwrap();
    let out = dir.path().join("out");
    let mut store = JobStore::open(&out).unwrap();

    let first = JobQueue::submit(&mut store, &new_job(&a, &out)).unwrap();
    assert_eq!(first.submitted, Submitted::Queued);
    let second = JobQueue::submit(&mut store, &new_job(&b, &out)).unwrap();
    assert_eq!(second.submitted, Submitted::Copy);
    assert_eq!(second.job.id, first.job.id, "computed once");
    let copy = second.copy.expect("a copy");
    assert_ne!(copy.safe_name, first.job.safe_name);
    // Submitting either again finds what is there.
    let again = JobQueue::submit(&mut store, &new_job(&b, &out)).unwrap();
    assert_eq!(
        (again.submitted, again.copy.map(|c| c.id)),
        (Submitted::Copy, Some(copy.id))
    );
    assert_eq!(
        JobQueue::submit(&mut store, &new_job(&a, &out))
            .unwrap()
            .submitted,
        Submitted::Known
    );
    assert_eq!(store.jobs().unwrap().len(), 1);

    // The job runs; its outputs are linked under the copy's name.
    let Claim::Claimed(row) = store
        .claim(first.job.id, "me", Duration::from_secs(60), false)
        .unwrap()
    else {
        panic!("claimable");
    };
    let alpha = out.join(format!("{}.alpha.mp4", row.safe_name));
    fs::write(&alpha, b"matte").unwrap();
    let mut made = Outputs::default();
    made.bytes.insert("alpha".into(), measure(&alpha).unwrap());
    made.paths.insert("alpha".into(), alpha);
    let done = store.complete(row.id, "me", 3, 0.1, &made).unwrap();
    assert_eq!(done.state, JobState::Done);
    assert_eq!(done.output_bytes["alpha"], 5);
    let linked = link_as(&done.outputs(), &done.safe_name, &copy.safe_name).unwrap();
    let copy = store.copy_linked(copy.id, &linked).unwrap();
    assert!(copy.linked_ms.is_some());
    verify(&copy.outputs()).unwrap();
    assert_eq!(
        fs::read(out.join(format!("{}.alpha.mp4", copy.safe_name))).unwrap(),
        b"matte"
    );

    // A done job whose output went missing is queued again by redo.
    fs::remove_file(&done.outputs["alpha"]).unwrap();
    assert!(verify(&done.outputs()).is_err());
    let redone = store.redo(done.id).unwrap();
    assert_eq!(redone.state, JobState::Queued);
    assert!(redone.outputs.is_empty());
}

#[test]
fn retrying_through_a_copy_retries_its_failed_job() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.mp4"), dir.path().join("b.mp4"));
    fs::write(&a, b"video").unwrap();
    fs::write(&b, b"video").unwrap();
    let out = dir.path().join("out");
    let mut store = JobStore::open(&out).unwrap();
    let first = JobQueue::submit(&mut store, &new_job(&a, &out)).unwrap();
    let Claim::Claimed(row) = store
        .claim(first.job.id, "me", Duration::from_secs(60), false)
        .unwrap()
    else {
        panic!("claimable");
    };
    assert_eq!(
        store.fail(row.id, "me", "broken").unwrap().state,
        JobState::Failed
    );
    // Without --retry-failed the copy finds the failure as it is ...
    let copy = JobQueue::submit(&mut store, &new_job(&b, &out)).unwrap();
    assert_eq!(
        (copy.submitted, copy.job.state),
        (Submitted::Copy, JobState::Failed)
    );
    // ... with it, the job is queued again, and the input stays a copy.
    let retry = NewJob {
        retry_failed: true,
        ..new_job(&b, &out)
    };
    let again = JobQueue::submit(&mut store, &retry).unwrap();
    assert_eq!(
        (again.submitted, again.job.state, again.job.id),
        (Submitted::Copy, JobState::Queued, first.job.id)
    );
}

#[test]
fn the_store_records_its_folder_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let here = std::env::current_dir().unwrap();
    let relative = pathdiff(dir.path(), &here).join("out");
    assert!(relative.is_relative());
    let store = JobStore::open(&relative).unwrap();
    assert!(store.outdir().is_absolute(), "{}", store.outdir().display());
    assert_eq!(
        store.outdir(),
        fs::canonicalize(dir.path().join("out")).unwrap()
    );
}

/// `to` as a path relative to `from` (both absolute).
fn pathdiff(to: &Path, from: &Path) -> std::path::PathBuf {
    let ups = from.components().count() - 1;
    let mut p: std::path::PathBuf = (0..ups).map(|_| "..").collect();
    p.extend(to.components().skip(1));
    p
}
