//! manifest.csv: RFC 4180 quoting that survives a round trip.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmatte_jobs::{write_manifest, JobStore};

/// A strict RFC 4180 reader, so the test does not trust the writer's idea
/// of quoting.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => {
                assert!(c != '"', "stray quote in {text:?}");
                field.push(c);
            }
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "unterminated"
    );
    records
}

#[test]
fn paths_with_commas_quotes_and_newlines_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let tricky = "/in/Smith, \"Bob\"\nfinal.mp4";
    let mut store = JobStore::open(&out).unwrap();
    let done = store.enqueue(Path::new(tricky), "c1", "s", "{}").unwrap();
    let failed = store
        .enqueue(Path::new("/in/plain.mp4"), "c2", "s", "{}")
        .unwrap();
    store
        .enqueue(Path::new("/in/later.mp4"), "c3", "s", "{}")
        .unwrap();

    let lease = Duration::from_secs(60);
    store.claim(done.id, "me", lease, false).unwrap();
    let outputs = BTreeMap::from([
        ("alpha".to_string(), out.join("a,\"b\".alpha.mp4")),
        ("composite".to_string(), out.join("x.composite.mp4")),
    ]);
    store
        .complete(done.id, "me", 120, 4.25, &outputs.clone().into())
        .unwrap();
    store.claim(failed.id, "me", lease, false).unwrap();
    store
        .fail(failed.id, "me", "plain.mp4: truncated, \"moov\" missing")
        .unwrap();

    write_manifest(&out, &store.jobs().unwrap(), &[]).unwrap();
    assert!(!out.join("manifest.csv.partial").exists());
    let rows = parse_csv(&fs::read_to_string(out.join("manifest.csv")).unwrap());
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    assert_eq!(
        rows,
        vec![
            s(&[
                "input",
                "safe_name",
                "status",
                "kind",
                "output",
                "frames",
                "seconds",
                "error"
            ]),
            vec![
                tricky.into(),
                done.safe_name.clone(),
                "done".into(),
                "alpha".into(),
                path(outputs["alpha"].clone()),
                "120".into(),
                "4.250".into(),
                "".into(),
            ],
            vec![
                tricky.into(),
                done.safe_name.clone(),
                "done".into(),
                "composite".into(),
                path(outputs["composite"].clone()),
                "120".into(),
                "4.250".into(),
                "".into(),
            ],
            s(&[
                "/in/plain.mp4",
                "plain",
                "failed",
                "",
                "",
                "",
                "",
                "plain.mp4: truncated, \"moov\" missing",
            ]),
            s(&["/in/later.mp4", "later", "queued", "", "", "", "", ""]),
        ]
    );
}

#[test]
fn an_unwritable_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = write_manifest(&missing, &[], &[]).unwrap_err();
    assert!(err.to_string().contains("manifest.csv.partial"), "{err}");
}
