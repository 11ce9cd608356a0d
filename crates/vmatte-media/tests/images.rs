//! Image folders and the PNG writer.

mod common;

use std::fs;
use std::path::Path;

use vmatte_media::{open_source, MediaError, PixelLayout, PngSequenceWriter, Rational};

fn solid_rgb(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    rgb.repeat((width * height) as usize)
}

/// Writes one PNG with the writer, then renames it.
fn write_png(dir: &Path, name: &str, width: u32, height: u32, rgb: [u8; 3]) {
    let staging = dir.join(".staging");
    let mut writer =
        PngSequenceWriter::create(&staging, width, height, PixelLayout::Rgb24).unwrap();
    let written = writer.write(0, &solid_rgb(width, height, rgb)).unwrap();
    fs::rename(written, dir.join(name)).unwrap();
}

#[test]
fn folder_is_read_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    // Lexical order would be 1, 10, 2.
    write_png(dir.path(), "1.png", 32, 16, [10, 0, 0]);
    write_png(dir.path(), "2.png", 32, 16, [20, 0, 0]);
    write_png(dir.path(), "10.png", 32, 16, [100, 0, 0]);
    fs::write(dir.path().join("notes.txt"), "not an image").unwrap();

    let fps = Rational::new(24000, 1001);
    let mut source = open_source(dir.path(), Some(fps)).unwrap();
    let info = source.info().clone();
    assert_eq!((info.width, info.height), (32, 16));
    assert_eq!(info.frame_count, Some(3));
    assert_eq!(info.frame_rate, fps);
    assert_eq!(info.time_base, Rational::new(1001, 24000));
    assert_eq!(info.codec, "png");

    let mut reds = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        assert_eq!(frame.pts, Some(frame.index as i64));
        assert_eq!(frame.rgb.len(), 32 * 16 * 3);
        assert!(frame
            .rgb
            .chunks_exact(3)
            .all(|p| p == frame.rgb[..3].to_vec()));
        reds.push(frame.rgb[0]);
    }
    assert_eq!(reds, [10, 20, 100]);
}

#[test]
fn default_image_rate_is_25() {
    let dir = tempfile::tempdir().unwrap();
    write_png(dir.path(), "a.png", 8, 8, [1, 2, 3]);
    let source = open_source(dir.path(), None).unwrap();
    assert_eq!(source.info().frame_rate, Rational::new(25, 1));
    assert_eq!(source.info().time_base, Rational::new(1, 25));
}

#[test]
fn mixed_sizes_are_an_error_naming_the_odd_image() {
    let dir = tempfile::tempdir().unwrap();
    write_png(dir.path(), "frame1.png", 32, 16, [0, 0, 0]);
    write_png(dir.path(), "frame2.png", 32, 16, [0, 0, 0]);
    write_png(dir.path(), "frame3.png", 30, 16, [0, 0, 0]);

    let mut source = open_source(dir.path(), None).unwrap();
    let err = loop {
        match source.next_frame() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("mixed sizes were accepted"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, MediaError::ImageSizeMismatch { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("frame3.png") && message.contains("30x16"),
        "{message}"
    );
    assert!(
        message.contains("frame1.png") && message.contains("32x16"),
        "{message}"
    );
    // After an error the source is finished.
    assert!(source.next_frame().unwrap().is_none());
}

#[test]
fn gray_writer_writes_8bit_gray_png() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (20u32, 10u32);
    let gray: Vec<u8> = (0..w * h).map(|i| (i * 255 / (w * h - 1)) as u8).collect();
    let mut writer =
        PngSequenceWriter::create(&dir.path().join("alpha"), w, h, PixelLayout::Gray8).unwrap();
    let path = writer.write(7, &gray).unwrap();
    assert_eq!(path, dir.path().join("alpha").join("000007.png"));

    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(bytes[24], 8, "bit depth");
    assert_eq!(bytes[25], 0, "colour type 0 (gray)");

    let mut source = open_source(&dir.path().join("alpha"), None).unwrap();
    assert_eq!(source.info().pixel_format, "gray");
    let frame = source.next_frame().unwrap().unwrap();
    for (i, (px, &g)) in frame.rgb.chunks_exact(3).zip(&gray).enumerate() {
        assert_eq!(px, [g, g, g], "pixel {i}");
    }
}

#[test]
fn rgb_writer_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (33u32, 17u32);
    let rgb = common::synthetic_rgb(w, h, 3);
    let mut writer = PngSequenceWriter::create(dir.path(), w, h, PixelLayout::Rgb24).unwrap();
    assert_eq!(
        writer.write(0, &rgb).unwrap().file_name().unwrap(),
        "000000.png"
    );
    assert_eq!(
        writer.write(1_234_567, &rgb).unwrap().file_name().unwrap(),
        "1234567.png"
    );

    let mut source = open_source(dir.path(), None).unwrap();
    assert_eq!(source.info().frame_count, Some(2));
    while let Some(frame) = source.next_frame().unwrap() {
        assert!(frame.rgb == rgb, "frame {} differs", frame.index);
    }
}

#[test]
fn wrong_png_data_size_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PngSequenceWriter::create(dir.path(), 4, 4, PixelLayout::Gray8).unwrap();
    let err = writer.write(3, &[0; 15]).unwrap_err();
    assert!(err.to_string().contains("000003.png"), "{err}");
}
