//! A store that cannot be used says which file and what to do, in one line.

use std::fs;
use std::path::Path;
use std::time::Duration;

use vmatte_jobs::{store_path, Error, JobStore, SCHEMA_VERSION};

fn one_line_naming(err: &Error, path: &Path) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    msg
}

#[test]
fn a_damaged_database_says_to_move_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = JobStore::open(dir.path())
        .err()
        .expect("garbage is not a store");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(one_line_naming(&err, &path).contains("move it aside"));
}

#[test]
fn a_locked_database_says_to_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = JobStore::open(dir.path()).unwrap();
    let path = store_path(dir.path());
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    store.set_busy_timeout(Duration::from_millis(100)).unwrap();
    let err = store
        .enqueue(Path::new("/in/a.mp4"), "c", "s", "{}")
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    assert!(one_line_naming(&err, &path).contains("wait for it"));

    other.execute_batch("COMMIT").unwrap();
    store
        .enqueue(Path::new("/in/a.mp4"), "c", "s", "{}")
        .unwrap();
}

#[test]
fn a_newer_schema_is_refused_and_status_never_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = JobStore::open_existing(dir.path()).err().unwrap();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
    assert!(!store_path(dir.path()).exists());

    drop(JobStore::open(dir.path()).unwrap());
    let path = store_path(dir.path());
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(raw);
    let err = JobStore::open_existing(dir.path()).err().unwrap();
    assert!(matches!(err, Error::TooNew { .. }), "{err:?}");
    assert!(one_line_naming(&err, &path).contains("upgrade vmatte"));
}

#[test]
fn the_schema_enforces_its_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = JobStore::open(dir.path()).unwrap();
    store
        .enqueue(Path::new("/in/a.mp4"), "c", "s", "{}")
        .unwrap();
    let raw = rusqlite::Connection::open(store_path(dir.path())).unwrap();
    for bad in [
        "UPDATE jobs SET state = 'paused'",
        "UPDATE jobs SET state = 'running'",
        "INSERT INTO jobs (content_id, settings_id, input_path, safe_name, settings_json, \
         created_ms) VALUES ('c', 's', '/x', 'other', '{}', 0)",
        "INSERT INTO jobs (content_id, settings_id, input_path, safe_name, settings_json, \
         created_ms) VALUES ('c2', 's', '/x', 'A', '{}', 0)",
    ] {
        assert!(raw.execute(bad, []).is_err(), "accepted: {bad}");
    }
}

#[test]
fn an_empty_database_file_is_damage_not_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"").unwrap();
    let err = JobStore::open(dir.path()).err().expect("0 bytes is damage");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(one_line_naming(&err, &path).contains("empty"));
    assert_eq!(fs::metadata(&path).unwrap().len(), 0, "left as it was");
}

#[test]
fn processes_creating_one_store_at_once_all_get_it() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let ids: Vec<i64> = std::thread::scope(|s| {
            let openers: Vec<_> = (0..6)
                .map(|i| {
                    let out = out.clone();
                    s.spawn(move || {
                        let mut store = JobStore::open(&out).expect("every opener gets the store");
                        store
                            .enqueue(
                                Path::new(&format!("/in/{i}.mp4")),
                                &format!("c{i}"),
                                "s",
                                "{}",
                            )
                            .unwrap()
                            .id
                    })
                })
                .collect();
            openers.into_iter().map(|o| o.join().unwrap()).collect()
        });
        let store = JobStore::open_existing(&out).unwrap();
        assert_eq!(store.jobs().unwrap().len(), 6, "{ids:?}");
        let leftovers: Vec<_> = fs::read_dir(out.join(".vmatte"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".new"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
