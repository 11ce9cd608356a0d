//! Encode with VideoEncoder, decode with open_source.

mod common;

use common::{fps_time_base, mean_abs_diff, synthetic_rgb, write_clip, NTSC};
use vmatte_media::{
    open_source, EncoderSettings, FrameSource, PixelLayout, PngSequenceWriter, Rational,
    VideoEncoder,
};

fn decode_all(source: &mut dyn FrameSource) -> Vec<vmatte_media::Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = source.next_frame().expect("decode") {
        frames.push(frame);
    }
    frames
}

#[test]
fn rgb_clip_round_trips_with_exact_timing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    write_clip(&path, 320, 240, NTSC, 48);

    let mut source = open_source(&path, None).unwrap();
    let info = source.info().clone();
    assert_eq!((info.width, info.height), (320, 240));
    assert_eq!(info.frame_rate, NTSC);
    assert_eq!(info.frame_count, Some(48));
    assert_eq!(info.codec, "h264");
    assert_eq!(info.pixel_format, "yuv420p");
    assert_eq!(info.color_matrix, "bt709");
    assert_eq!(info.color_range, "limited");
    assert_eq!(info.rotation, 0);
    let duration = info.duration_s.expect("duration");
    assert!(
        (duration - 48.0 * 1001.0 / 30000.0).abs() < 1e-3,
        "{duration}"
    );
    assert!(info.container.contains("mp4"), "{}", info.container);

    let frames = decode_all(source.as_mut());
    assert_eq!(frames.len(), 48);
    let tb = info.time_base;
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.index, i as u64);
        assert_eq!((frame.width, frame.height), (320, 240));
        assert_eq!(frame.rgb.len(), 320 * 240 * 3);
        // pts * tb == i * 1001/30000, compared exactly.
        let pts = i128::from(frame.pts.expect("pts"));
        assert_eq!(
            pts * i128::from(tb.num) * 30000,
            i as i128 * 1001 * i128::from(tb.den),
            "frame {i}: pts {pts} in {}/{}",
            tb.num,
            tb.den
        );
        let diff = mean_abs_diff(&frame.rgb, &synthetic_rgb(320, 240, i as u32));
        assert!(diff < 3.0, "frame {i}: mean abs diff {diff}");
    }
}

#[test]
fn variable_frame_rate_timestamps_survive() {
    // mp4, because Matroska stores timestamps in milliseconds.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vfr.mp4");
    let tb = Rational::new(1, 90000);
    let settings = EncoderSettings::new(64, 48, NTSC, tb, PixelLayout::Rgb24);
    let pts = [0i64, 3003, 9009, 12012, 21021, 24024];
    let mut encoder = VideoEncoder::create(&path, "mp4", &settings).unwrap();
    for (i, &p) in pts.iter().enumerate() {
        encoder
            .write(&synthetic_rgb(64, 48, i as u32), Some(p))
            .unwrap();
    }
    encoder.finish().unwrap();

    let mut source = open_source(&path, None).unwrap();
    let got_tb = source.info().time_base;
    let frames = decode_all(source.as_mut());
    let got: Vec<i128> = frames
        .iter()
        .map(|f| {
            i128::from(f.pts.unwrap()) * i128::from(got_tb.num) * 90000 / i128::from(got_tb.den)
        })
        .collect();
    let want: Vec<i128> = pts.iter().map(|&p| i128::from(p)).collect();
    assert_eq!(got, want);
}

#[test]
fn missing_pts_means_frame_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfr.mp4");
    let fps = Rational::new(25, 1);
    let settings = EncoderSettings::new(64, 48, fps, Rational::new(1, 1000), PixelLayout::Rgb24);
    let mut encoder = VideoEncoder::create(&path, "mp4", &settings).unwrap();
    for i in 0..5 {
        encoder.write(&synthetic_rgb(64, 48, i), None).unwrap();
    }
    encoder.finish().unwrap();

    let mut source = open_source(&path, None).unwrap();
    let tb = source.info().time_base;
    let ms: Vec<i64> = decode_all(source.as_mut())
        .iter()
        .map(|f| f.pts.unwrap() * 1000 * i64::from(tb.num) / i64::from(tb.den))
        .collect();
    assert_eq!(ms, [0, 40, 80, 120, 160]);
}

#[test]
fn gray_matte_round_trips_as_luma() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alpha.mp4");
    let (w, h) = (128u32, 64u32);
    // Flat blocks of 0, 64, 128, 192, 255 so compression keeps them.
    let levels = [0u8, 64, 128, 192, 255];
    let gray: Vec<u8> = (0..h)
        .flat_map(|_| (0..w).map(|x| levels[(x as usize * levels.len()) / w as usize]))
        .collect();
    let settings = EncoderSettings::new(
        w,
        h,
        Rational::new(25, 1),
        Rational::new(1, 25),
        PixelLayout::Gray8,
    );
    let mut encoder = VideoEncoder::create(&path, "mp4", &settings).unwrap();
    for i in 0..3 {
        encoder.write(&gray, Some(i)).unwrap();
    }
    encoder.finish().unwrap();

    let mut source = open_source(&path, None).unwrap();
    let frames = decode_all(source.as_mut());
    assert_eq!(frames.len(), 3);
    for frame in &frames {
        for (i, &g) in gray.iter().enumerate() {
            let x = i % w as usize;
            // Block edges may ring a little; judge block interiors.
            let block = w as usize / levels.len();
            if x % block < 3 || x % block > block - 3 {
                continue;
            }
            let px = &frame.rgb[i * 3..i * 3 + 3];
            for &c in px {
                assert!(c.abs_diff(g) <= 3, "pixel {i}: {px:?} for gray {g}");
            }
        }
    }
}

#[test]
fn odd_size_keeps_exact_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.mp4");
    write_clip(&path, 321, 241, Rational::new(24, 1), 4);

    let mut source = open_source(&path, None).unwrap();
    assert_eq!((source.info().width, source.info().height), (321, 241));
    let frames = decode_all(source.as_mut());
    assert_eq!(frames.len(), 4);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!((frame.width, frame.height), (321, 241));
        let diff = mean_abs_diff(&frame.rgb, &synthetic_rgb(321, 241, i as u32));
        assert!(diff < 3.0, "frame {i}: mean abs diff {diff}");
    }
}

#[test]
fn wrong_frame_size_is_rejected_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4.partial");
    let settings = EncoderSettings::new(64, 48, NTSC, fps_time_base(NTSC), PixelLayout::Rgb24);
    let mut encoder = VideoEncoder::create(&path, "mp4", &settings).unwrap();
    let err = encoder.write(&[0; 10], None).unwrap_err();
    assert!(err.to_string().contains("out.mp4.partial"), "{err}");
}

#[test]
fn readers_and_writers_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Box<dyn FrameSource>>();
    assert_send::<VideoEncoder>();
    assert_send::<PngSequenceWriter>();
}

#[test]
fn repeated_timestamps_do_not_break_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("glitch.mp4");
    let settings = EncoderSettings::new(
        64,
        48,
        Rational::new(25, 1),
        Rational::new(1, 25),
        PixelLayout::Rgb24,
    );
    let mut encoder = VideoEncoder::create(&path, "mp4", &settings).unwrap();
    for (i, pts) in [0, 1, 1, 2, 4].into_iter().enumerate() {
        encoder
            .write(&synthetic_rgb(64, 48, i as u32), Some(pts))
            .unwrap();
    }
    encoder.finish().unwrap();
    let mut source = open_source(&path, None).unwrap();
    assert_eq!(decode_all(source.as_mut()).len(), 5);
}

#[test]
fn single_image_file_is_a_one_frame_video() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = synthetic_rgb(40, 30, 0);
    let mut writer = PngSequenceWriter::create(dir.path(), 40, 30, PixelLayout::Rgb24).unwrap();
    let path = writer.write(0, &rgb).unwrap();

    let mut source = open_source(&path, None).unwrap();
    assert_eq!((source.info().width, source.info().height), (40, 30));
    let frames = decode_all(source.as_mut());
    assert_eq!(frames.len(), 1);
    assert!(frames[0].rgb == rgb);
}
