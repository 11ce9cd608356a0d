//! Test media made in-process: the crate's own writers, or libav directly
//! for inputs the crate never writes (tagged YUV).

#![allow(dead_code)]

use std::path::Path;

use ffmpeg::codec::{self, Id};
use ffmpeg::format::Pixel;
use ffmpeg::util::color::{Range, Space};
use ffmpeg::{frame, Packet};
use ffmpeg_next as ffmpeg;
use vmatte_media::{EncoderSettings, PixelLayout, Rational, VideoEncoder};

pub const NTSC: Rational = Rational::new(30000, 1001);

/// A smooth gradient with a square moving across it, different per frame.
pub fn synthetic_rgb(width: u32, height: u32, index: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let square = (index as usize * 4) % w.max(1);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let in_square = x >= square && x < square + w / 6 && y >= h / 3 && y < h / 3 + h / 4;
            if in_square {
                rgb.extend_from_slice(&[230, 40, 60]);
            } else {
                rgb.push((x * 255 / w.max(2)) as u8);
                rgb.push((y * 255 / h.max(2)) as u8);
                rgb.push(((x + y) * 255 / (w + h)) as u8);
            }
        }
    }
    rgb
}

/// Writes `frames` synthetic frames with pts 0, 1, 2... in 1/fps.
pub fn write_clip(path: &Path, width: u32, height: u32, fps: Rational, frames: u32) {
    let settings = EncoderSettings::new(width, height, fps, fps_time_base(fps), PixelLayout::Rgb24);
    let mut encoder = VideoEncoder::create(path, "mp4", &settings).expect("create encoder");
    for i in 0..frames {
        encoder
            .write(&synthetic_rgb(width, height, i), Some(i64::from(i)))
            .expect("write frame");
    }
    encoder.finish().expect("finish");
}

pub fn fps_time_base(fps: Rational) -> Rational {
    Rational::new(fps.den, fps.num)
}

pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.len() as f64
}

/// A lossless (FFV1) Matroska clip whose every pixel has the given Y, U, V,
/// with the colour tags set on the stream.
pub fn write_tagged_yuv(
    path: &Path,
    format: Pixel,
    (width, height): (u32, u32),
    (y, u, v): (u8, u8, u8),
    space: Space,
    range: Range,
) {
    vmatte_media::init();
    let mut output = ffmpeg::format::output_as(path, "matroska").expect("matroska muxer");
    let codec = ffmpeg::encoder::find(Id::FFV1).expect("ffv1 encoder");
    let mut encoder = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .unwrap();
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(format);
    encoder.set_time_base(ffmpeg::Rational::new(1, 25));
    encoder.set_colorspace(space);
    encoder.set_color_range(range);
    if output
        .format()
        .flags()
        .contains(ffmpeg::format::Flags::GLOBAL_HEADER)
    {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut encoder = encoder.open_as(codec).expect("open ffv1");
    let mut stream = output.add_stream(codec).unwrap();
    stream.set_parameters(&encoder);
    stream.set_time_base(ffmpeg::Rational::new(1, 25));
    output.write_header().unwrap();
    let stream_tb = output.stream(0).unwrap().time_base();

    let mut frame = frame::Video::new(format, width, height);
    for (plane, value) in [(0, y), (1, u), (2, v)] {
        frame.data_mut(plane).fill(value);
    }
    let write_packets = |encoder: &mut ffmpeg::encoder::Video, output: &mut _| {
        let mut packet = Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(ffmpeg::Rational::new(1, 25), stream_tb);
            packet.write_interleaved(output).unwrap();
        }
    };
    for pts in 0..3 {
        frame.set_pts(Some(pts));
        encoder.send_frame(&frame).unwrap();
        write_packets(&mut encoder, &mut output);
    }
    encoder.send_eof().unwrap();
    write_packets(&mut encoder, &mut output);
    output.write_trailer().unwrap();
}

/// A lossless JPEG (yuvj420p, so full range by definition) whose every
/// pixel has the given Y, U, V. libav's ljpeg encoder output is a complete
/// JPEG file, which the image reader decodes with the mjpeg decoder.
pub fn write_lossless_jpeg(path: &Path, (width, height): (u32, u32), (y, u, v): (u8, u8, u8)) {
    vmatte_media::init();
    let codec = ffmpeg::encoder::find(Id::LJPEG).expect("ljpeg encoder");
    let mut encoder = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .unwrap();
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(Pixel::YUVJ420P);
    encoder.set_time_base(ffmpeg::Rational::new(1, 25));
    let mut encoder = encoder.open_as(codec).expect("open ljpeg");
    let mut frame = frame::Video::new(Pixel::YUVJ420P, width, height);
    for (plane, value) in [(0, y), (1, u), (2, v)] {
        frame.data_mut(plane).fill(value);
    }
    frame.set_pts(Some(0));
    encoder.send_frame(&frame).unwrap();
    let mut packet = Packet::empty();
    encoder.receive_packet(&mut packet).unwrap();
    std::fs::write(path, packet.data().unwrap()).unwrap();
}
