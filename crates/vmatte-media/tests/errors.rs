//! Broken inputs give one-line errors that name the file.

mod common;

use std::fs;
use std::path::Path;

use vmatte_media::{open_source, FrameSource, MediaError, Rational};

/// Runs a source to its end, returning the first error.
fn first_error(source: &mut dyn FrameSource) -> Option<MediaError> {
    loop {
        match source.next_frame() {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

/// The error of opening and then reading `path` to its end.
fn read_error(path: &Path) -> MediaError {
    match open_source(path, None) {
        Err(e) => e,
        Ok(mut source) => first_error(source.as_mut()).expect("reading succeeded"),
    }
}

fn assert_one_line_naming(err: &MediaError, name: &str) {
    eprintln!("MSG: {err}");
    let message = err.to_string();
    assert!(message.contains(name), "{message}");
    assert!(!message.contains('\n'), "{message:?}");
    assert!(err.path().ends_with(name), "{:?}", err.path());
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_error(&dir.path().join("clip.mp4"));
    assert!(matches!(err, MediaError::NotFound { .. }), "{err:?}");
    assert_one_line_naming(&err, "clip.mp4");
    assert!(err
        .to_string()
        .ends_with("clip.mp4: file not found; check the path"));
}

#[test]
fn text_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    fs::write(&path, "shopping list:\n- milk\n- eggs\n").unwrap();
    let err = read_error(&path);
    assert!(matches!(err, MediaError::Unreadable { .. }), "{err:?}");
    assert_one_line_naming(&err, "notes.txt");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mp4");
    fs::write(&path, b"").unwrap();
    let err = read_error(&path);
    assert!(matches!(err, MediaError::Corrupt { .. }), "{err:?}");
    assert_one_line_naming(&err, "empty.mp4");
}

#[test]
fn mp4_cut_in_half() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mp4");
    common::write_clip(&whole, 320, 240, common::NTSC, 48);
    let bytes = fs::read(&whole).unwrap();
    let half = dir.path().join("half.mp4");
    fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();

    // The index (written first) is intact; the data it points to is not.
    let mut source = open_source(&half, None).expect("header is readable");
    let err = first_error(source.as_mut()).expect("truncation went unnoticed");
    assert!(matches!(err, MediaError::Corrupt { .. }), "{err:?}");
    assert_one_line_naming(&err, "half.mp4");
    assert!(err.to_string().contains("truncated or corrupt"), "{err}");
}

#[test]
fn mp4_without_index() {
    // What an interrupted recording leaves: the moov box (written last
    // without faststart) is missing.
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mp4");
    common::write_clip(&whole, 320, 240, common::NTSC, 48);
    let bytes = fs::read(&whole).unwrap();
    let mut kept = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if &bytes[at + 4..at + 8] != b"moov" {
            kept.extend_from_slice(&bytes[at..at + size]);
        }
        at += size;
    }
    let broken = dir.path().join("broken.mp4");
    fs::write(&broken, &kept[..kept.len() * 3 / 4]).unwrap();

    let err = read_error(&broken);
    assert!(matches!(err, MediaError::Corrupt { .. }), "{err:?}");
    assert_one_line_naming(&err, "broken.mp4");
    assert!(err.to_string().contains("moov atom not found"), "{err}");
}

#[test]
fn folder_without_images() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("readme.md"), "nothing here").unwrap();
    let err = read_error(dir.path());
    assert!(matches!(err, MediaError::NoImages { .. }), "{err:?}");
}

#[test]
fn corrupt_image_in_folder() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("0001.png"),
        b"\x89PNG\r\n\x1a\nthis is not really a png",
    )
    .unwrap();
    let err = read_error(dir.path());
    assert!(matches!(err, MediaError::Corrupt { .. }), "{err:?}");
    assert_one_line_naming(&err, "0001.png");
}

#[test]
fn invalid_image_rate() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_source(dir.path(), Some(Rational::new(0, 1)))
        .err()
        .unwrap();
    assert!(err.to_string().contains("frame rate"), "{err}");
}

#[test]
fn mp4_cut_between_frames() {
    // Cut exactly where a frame's data ends: libav then sees a clean end of
    // file, and only the frame count the container declares reveals the loss.
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mp4");
    common::write_clip(&whole, 320, 240, common::NTSC, 48);
    let end_of_frame_20 = {
        let mut input = ffmpeg_next::format::input(&whole).unwrap();
        let mut ends: Vec<usize> = input
            .packets()
            .map(|(_, p)| p.position() as usize + p.size())
            .collect();
        ends.sort_unstable();
        ends[20]
    };
    let bytes = fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mp4");
    fs::write(&cut, &bytes[..end_of_frame_20]).unwrap();

    let err = read_error(&cut);
    assert!(matches!(err, MediaError::Corrupt { .. }), "{err:?}");
    assert_one_line_naming(&err, "cut.mp4");
}
