//! Output names: readable, bounded, distinct and deterministic.

use std::fs;
use std::path::Path;

use vmatte_jobs::{
    ensure_output_is_not_input, names_on_disk, safe_stem, JobStore, NameAllocator, MAX_STEM,
};

fn stem(name: &str) -> String {
    safe_stem(Path::new(name))
}

fn is_portable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STEM
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('_')
        && !name.ends_with('_')
        && !name.contains("__")
}

#[test]
fn punctuation_and_spaces_become_single_underscores() {
    assert_eq!(stem("My Interview (final) v2.mp4"), "My_Interview_final_v2");
    assert_eq!(stem("/videos/a.b.c.mov"), "a_b_c");
    assert_eq!(stem("__odd  name__.mp4"), "odd_name");
}

#[test]
fn latin_accents_are_transliterated() {
    assert_eq!(stem("Café Ñandú.mov"), "Cafe_Nandu");
    assert_eq!(
        stem("Straße Øre Åsa Æble Çà.mp4"),
        "Strasse_Ore_Asa_AEble_Ca"
    );
    assert_eq!(stem("Łódź Šibenik Ţară.mp4"), "Lodz_Sibenik_Tara");
    // Decomposed (macOS) spelling reads the same.
    assert_eq!(stem("Cafe\u{301}.mp4"), "Cafe");
}

#[test]
fn non_latin_names_become_video_and_a_hash() {
    for name in ["Привет мир.mp4", "日本語の動画.mp4", "🎬🎥.mov", "---.mp4"] {
        let s = stem(name);
        assert!(s.starts_with("video_"), "{name} -> {s}");
        assert_eq!(s.len(), "video_".len() + 8, "{s}");
        assert!(is_portable(&s), "{s}");
    }
    assert_ne!(stem("Привет.mp4"), stem("Пока.mp4"));
    assert_eq!(
        stem("Привет.mp4"),
        stem("/elsewhere/Привет.mov"),
        "the stem decides"
    );
}

#[test]
fn partly_readable_names_keep_the_readable_part_and_stay_distinct() {
    let a = stem("Interview 日本.mp4");
    let b = stem("Interview 中国.mp4");
    assert!(
        a.starts_with("Interview_") && a.len() == "Interview_".len() + 6,
        "{a}"
    );
    assert_ne!(a, b);
}

#[test]
fn long_names_are_cut_to_the_limit_and_stay_distinct() {
    let long_a = format!("{}.mp4", "a".repeat(230));
    let long_b = format!("{}b.mp4", "a".repeat(229));
    let (a, b) = (stem(&long_a), stem(&long_b));
    assert!(a.len() <= MAX_STEM && is_portable(&a), "{a}");
    assert!(a.starts_with("aaaaaaaaaa"), "{a}");
    assert_ne!(a, b);
    let words = format!("{}.mp4", "word ".repeat(46));
    assert!(is_portable(&stem(&words)), "{}", stem(&words));
}

#[test]
fn never_empty_nor_a_windows_device() {
    assert!(is_portable(&stem("")));
    assert!(is_portable(&stem(".mp4")));
    assert_eq!(stem("con.mp4"), "con_video");
    assert_eq!(stem("NUL.mov"), "NUL_video");
    assert_eq!(stem("COM1.mp4"), "COM1_video");
    assert_eq!(stem("console.mp4"), "console");
}

#[test]
fn colliding_names_are_numbered_deterministically() {
    let inputs = ["/in/a b.mp4", "/in/a_b.mp4", "/in/a-b.mp4", "/in2/A B.mov"];
    let taken = ["manifest"];
    let allocate_all = || {
        let mut names = NameAllocator::new(taken);
        inputs
            .iter()
            .map(|i| names.allocate(Path::new(i)))
            .collect::<Vec<_>>()
    };
    let first = allocate_all();
    assert_eq!(first, ["a_b", "a_b_2", "a-b", "A_B_3"]);
    assert_eq!(allocate_all(), first, "a fresh allocator repeats itself");

    // What a rerun sees: everything taken already; a new input goes after.
    let mut again = NameAllocator::new(first.iter());
    assert!(again.is_taken("A_B"), "case-insensitive");
    assert_eq!(again.allocate(Path::new("/x/a b.mp4")), "a_b_4");
}

#[test]
fn numbered_names_respect_the_limit() {
    let long = format!("/in/{}.mp4", "x".repeat(MAX_STEM));
    let mut names = NameAllocator::default();
    let first = names.allocate(Path::new(&long));
    let second = names.allocate(Path::new(&long));
    assert_eq!(first.len(), MAX_STEM);
    assert!(
        second.len() <= MAX_STEM && second.ends_with("_2"),
        "{second}"
    );
    assert_ne!(first, second);
}

#[test]
fn files_already_in_the_output_folder_block_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("clip.alpha.mp4"), b"someone else's").unwrap();
    fs::create_dir(out.join("take.composite")).unwrap();
    let mut on_disk = names_on_disk(&out).unwrap();
    on_disk.sort();
    assert_eq!(on_disk, ["clip", "take"]);
    assert!(names_on_disk(&dir.path().join("missing"))
        .unwrap()
        .is_empty());

    let mut store = JobStore::open(&out).unwrap();
    let job = store
        .enqueue(Path::new("/in/clip.mp4"), "c1", "s", "{}")
        .unwrap();
    assert_eq!(job.safe_name, "clip_2");
    // An input inside OUTDIR never gets a name whose outputs could be it.
    fs::write(out.join("x.alpha.mp4"), b"input").unwrap();
    let job = store
        .enqueue(&out.join("x.alpha.mp4"), "c2", "s", "{}")
        .unwrap();
    assert_eq!(job.safe_name, "x_alpha");
    let job = store.enqueue(&out.join("x.mp4"), "c3", "s", "{}").unwrap();
    assert_eq!(job.safe_name, "x_2");
}

#[test]
fn store_keeps_names_across_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let inputs = ["/in/a b.mp4", "/in/a_b.mp4", "/in/a-b.mp4"];
    let run = || {
        let mut store = JobStore::open(&out).unwrap();
        inputs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                store
                    .enqueue(Path::new(p), &format!("c{i}"), "s", "{}")
                    .unwrap()
                    .safe_name
            })
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, ["a_b", "a_b_2", "a-b"]);
    // Outputs of the first run now sit in OUTDIR: still the same names.
    for name in &first {
        fs::write(out.join(format!("{name}.alpha.mp4")), b"done").unwrap();
    }
    assert_eq!(run(), first);
}

#[test]
fn an_output_never_overwrites_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    fs::write(&input, b"video").unwrap();
    let err = ensure_output_is_not_input(&input, &input).unwrap_err();
    assert!(
        err.to_string().contains("would overwrite the input"),
        "{err}"
    );

    let other_spelling = dir.path().join(".").join("clip.mp4");
    assert!(ensure_output_is_not_input(&other_spelling, &input).is_err());
    let hard_link = dir.path().join("link.mp4");
    fs::hard_link(&input, &hard_link).unwrap();
    assert!(ensure_output_is_not_input(&hard_link, &input).is_err());

    let fresh = dir.path().join("clip.alpha.mp4");
    assert!(ensure_output_is_not_input(&fresh, &input).is_ok());
}
