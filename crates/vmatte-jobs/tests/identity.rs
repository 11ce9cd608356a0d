//! A job is (what the input contains, what the settings say).

use std::fs;
use std::path::Path;

use vmatte_jobs::{content_id, settings_id, JobStore};

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
}

/// Bytes that differ everywhere, so any sampled region tells files apart.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

#[test]
fn same_content_under_two_names_is_one_job_and_follows_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("take.mp4");
    let b = dir.path().join("copy of take.mp4");
    write(&a, &pattern(10_000, 1));
    write(&b, &pattern(10_000, 1));
    let (ca, cb) = (content_id(&a).unwrap(), content_id(&b).unwrap());
    assert_eq!(ca, cb);

    let settings = r#"{"model":"rvm-mobilenetv3","seq_chunk":4}"#;
    let sid = settings_id(settings);
    let mut store = JobStore::open(&dir.path().join("out")).unwrap();
    let first = store.enqueue(&a, &ca, &sid, settings).unwrap();
    let second = store.enqueue(&b, &cb, &sid, settings).unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(
        first.safe_name, second.safe_name,
        "the name stays the job's"
    );
    // A copy does not take the job over while the original is still there...
    assert_eq!(second.input_path, fs::canonicalize(&a).unwrap());
    // ...but once the original is gone, the job follows the content.
    fs::remove_file(&a).unwrap();
    let moved = store.enqueue(&b, &cb, &sid, settings).unwrap();
    assert_eq!(moved.id, first.id);
    assert_eq!(moved.input_path, fs::canonicalize(&b).unwrap());
    assert_eq!(store.jobs().unwrap().len(), 1);
}

#[test]
fn changed_settings_make_a_second_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("take.mp4");
    write(&input, &pattern(5000, 2));
    let cid = content_id(&input).unwrap();
    let mut store = JobStore::open(&dir.path().join("out")).unwrap();
    let s1 = r#"{"downsample_ratio":"auto"}"#;
    let s2 = r#"{"downsample_ratio":0.25}"#;
    let j1 = store.enqueue(&input, &cid, &settings_id(s1), s1).unwrap();
    let j2 = store.enqueue(&input, &cid, &settings_id(s2), s2).unwrap();
    assert_ne!(j1.id, j2.id);
    assert_ne!(j1.safe_name, j2.safe_name, "two jobs never share outputs");
    assert_eq!(store.jobs().unwrap().len(), 2);
}

#[test]
fn settings_id_ignores_key_order_and_formatting_only() {
    let a = r#"{"model":"m","outputs":["alpha","composite"],"bg":{"r":1,"g":2}}"#;
    let b = r#"{ "bg": {"g": 2, "r": 1}, "outputs": ["alpha", "composite"], "model": "m" }"#;
    assert_eq!(settings_id(a), settings_id(b));
    let reordered_list = r#"{"model":"m","outputs":["composite","alpha"],"bg":{"r":1,"g":2}}"#;
    assert_ne!(settings_id(a), settings_id(reordered_list));
    assert_eq!(settings_id(a).len(), 64);
}

#[test]
fn content_id_sees_a_byte_changed_in_the_middle_of_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mp4");
    let mut bytes = pattern(7 << 20, 3);
    write(&path, &bytes);
    let before = content_id(&path).unwrap();
    assert_eq!(before, content_id(&path).unwrap(), "stable");

    bytes[(7 << 20) / 2] ^= 0xff;
    write(&path, &bytes);
    assert_ne!(before, content_id(&path).unwrap());
}

#[test]
fn content_id_sees_head_tail_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let base = pattern(2 << 20, 4);
    write(&path, &base);
    let id = content_id(&path).unwrap();

    let mut tail = base.clone();
    *tail.last_mut().unwrap() ^= 1;
    write(&path, &tail);
    assert_ne!(id, content_id(&path).unwrap());

    let mut longer = base.clone();
    longer.push(0);
    write(&path, &longer);
    assert_ne!(id, content_id(&path).unwrap());
}

#[test]
fn image_folders_are_identified_by_their_frames() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    fs::create_dir(&frames).unwrap();
    for i in 0..5 {
        write(&frames.join(format!("{i:06}.png")), &pattern(100, i));
    }
    let id = content_id(&frames).unwrap();
    write(&frames.join("000005.png"), &pattern(100, 9));
    assert_ne!(id, content_id(&frames).unwrap());
}

#[test]
fn a_missing_input_names_the_file() {
    let err = content_id(Path::new("/no/such/clip.mp4")).unwrap_err();
    assert!(err.to_string().contains("/no/such/clip.mp4"), "{err}");
}
