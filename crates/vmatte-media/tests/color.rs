//! Tagged YUV decodes to the RGB the standards define.

mod common;

use common::{write_lossless_jpeg, write_tagged_yuv};
use ffmpeg_next::format::Pixel;
use ffmpeg_next::util::color::{Range, Space};
use vmatte_media::open_source;

const BT601: (f64, f64) = (0.299, 0.114);
const BT709: (f64, f64) = (0.2126, 0.0722);

/// RGB from 8-bit Y'CbCr by the textbook formula for matrix (Kr, Kb).
fn expected_rgb((y, u, v): (u8, u8, u8), (kr, kb): (f64, f64), full_range: bool) -> [f64; 3] {
    let (y, u, v) = (f64::from(y), f64::from(u) - 128.0, f64::from(v) - 128.0);
    let (luma, pb, pr) = if full_range {
        (y / 255.0, u / 255.0, v / 255.0)
    } else {
        ((y - 16.0) / 219.0, u / 224.0, v / 224.0)
    };
    let r = luma + 2.0 * (1.0 - kr) * pr;
    let b = luma + 2.0 * (1.0 - kb) * pb;
    let g = (luma - kr * r - kb * b) / (1.0 - kr - kb);
    [r * 255.0, g * 255.0, b * 255.0]
}

struct Case {
    name: &'static str,
    format: Pixel,
    height: u32,
    space: Space,
    range: Range,
    matrix: (f64, f64),
    full_range: bool,
    info_matrix: &'static str,
    info_range: &'static str,
}

fn check(case: &Case) {
    // Chroma off centre in both directions so every matrix and range gives
    // a different colour; values keep RGB clear of clipping.
    let yuv = (150, 100, 165);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.mkv", case.name));
    write_tagged_yuv(
        &path,
        case.format,
        (64, case.height),
        yuv,
        case.space,
        case.range,
    );

    let mut source = open_source(&path, None).unwrap();
    assert_eq!(
        source.info().color_matrix,
        case.info_matrix,
        "{}",
        case.name
    );
    assert_eq!(source.info().color_range, case.info_range, "{}", case.name);
    let frame = source.next_frame().unwrap().expect("a frame");
    let want = expected_rgb(yuv, case.matrix, case.full_range);
    for (i, px) in frame.rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            assert!(
                (f64::from(px[c]) - want[c]).abs() <= 2.0,
                "{}: pixel {i} is {px:?}, expected {want:?}",
                case.name
            );
        }
    }
}

#[test]
fn bt601_limited_tag_is_honoured_on_hd() {
    // 720 lines would default to BT.709: only the tag makes this BT.601.
    check(&Case {
        name: "bt601_limited",
        format: Pixel::YUV420P,
        height: 720,
        space: Space::SMPTE170M,
        range: Range::MPEG,
        matrix: BT601,
        full_range: false,
        info_matrix: "smpte170m",
        info_range: "limited",
    });
}

#[test]
fn bt709_limited_tag_is_honoured_on_sd() {
    check(&Case {
        name: "bt709_limited",
        format: Pixel::YUV420P,
        height: 240,
        space: Space::BT709,
        range: Range::MPEG,
        matrix: BT709,
        full_range: false,
        info_matrix: "bt709",
        info_range: "limited",
    });
}

#[test]
fn bt709_full_range_tag_is_honoured() {
    check(&Case {
        name: "bt709_full",
        format: Pixel::YUV420P,
        height: 240,
        space: Space::BT709,
        range: Range::JPEG,
        matrix: BT709,
        full_range: true,
        info_matrix: "bt709",
        info_range: "full",
    });
}

#[test]
fn jpeg_is_full_range_bt601() {
    // yuvj formats carry no range tag: full range is implied by the format.
    let yuv = (150, 100, 165);
    let dir = tempfile::tempdir().unwrap();
    write_lossless_jpeg(&dir.path().join("photo.jpg"), (64, 48), yuv);

    let mut source = open_source(dir.path(), None).unwrap();
    assert_eq!(source.info().pixel_format, "yuvj420p");
    assert_eq!(source.info().color_range, "full");
    let frame = source.next_frame().unwrap().expect("a frame");
    let want = expected_rgb(yuv, BT601, true);
    for px in frame.rgb.chunks_exact(3) {
        for c in 0..3 {
            assert!(
                (f64::from(px[c]) - want[c]).abs() <= 2.0,
                "{px:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn untagged_sd_is_bt601_limited() {
    check(&Case {
        name: "untagged_sd",
        format: Pixel::YUV420P,
        height: 480,
        space: Space::Unspecified,
        range: Range::Unspecified,
        matrix: BT601,
        full_range: false,
        info_matrix: "bt601 (assumed)",
        info_range: "limited",
    });
}

#[test]
fn untagged_hd_is_bt709_limited() {
    check(&Case {
        name: "untagged_hd",
        format: Pixel::YUV420P,
        height: 720,
        space: Space::Unspecified,
        range: Range::Unspecified,
        matrix: BT709,
        full_range: false,
        info_matrix: "bt709 (assumed)",
        info_range: "limited",
    });
}

#[test]
fn formula_distinguishes_the_cases() {
    // Guards the tolerance: each case must be > 2 away from the others, or
    // the tests above could pass with the wrong matrix or range.
    let yuv = (150, 100, 165);
    let all = [
        expected_rgb(yuv, BT601, false),
        expected_rgb(yuv, BT709, false),
        expected_rgb(yuv, BT601, true),
        expected_rgb(yuv, BT709, true),
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let max = (0..3).map(|c| (a[c] - b[c]).abs()).fold(0.0, f64::max);
            assert!(max > 4.0, "{a:?} vs {b:?}");
        }
    }
}
