//! A folder of images read as a video.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg::codec::{self, Id};
use ffmpeg::util::color::{Range, Space};
use ffmpeg::{frame, Packet};
use ffmpeg_next as ffmpeg;

use crate::color::{self, ColorTags, Colorimetry};
use crate::error::{self, MediaError};
use crate::formats::image_codec;
use crate::frame::{Frame, FrameSource, VideoInfo};
use crate::log;
use crate::scale::RgbConverter;
use crate::Rational;

pub(crate) struct ImageSequence {
    info: VideoInfo,
    files: Vec<PathBuf>,
    next: usize,
    /// The first image, decoded while opening to learn the size.
    first: Option<frame::Video>,
    converter: RgbConverter,
    done: bool,
}

impl ImageSequence {
    pub fn open(dir: &Path, fps: Rational) -> Result<Self, MediaError> {
        crate::init();
        log::clear();
        if !fps.is_positive() {
            return Err(MediaError::Invalid {
                path: dir.to_path_buf(),
                problem: format!("invalid frame rate {fps} for an image sequence"),
                hint: "pass a positive frame rate such as 25/1".into(),
            });
        }
        let files = list_images(dir)?;
        let Some(first_file) = files.first() else {
            return Err(MediaError::NoImages {
                path: dir.to_path_buf(),
            });
        };
        let (first, codec) = decode_image(first_file)?;
        let colour = Colorimetry::resolve(
            first.format(),
            first.color_space(),
            first.color_range(),
            first.height(),
        );
        let count = files.len() as u64;
        let info = VideoInfo {
            path: dir.to_path_buf(),
            width: first.width(),
            height: first.height(),
            frame_rate: fps,
            // One tick per image, so pts equals the index.
            time_base: fps.inverse(),
            frame_count: Some(count),
            duration_s: Some(count as f64 / fps.as_f64()),
            container: "image sequence".into(),
            codec: codec.name().to_owned(),
            pixel_format: color::pixel_name(first.format()),
            color_matrix: colour.matrix_name(),
            color_range: colour.range_name().to_owned(),
            rotation: 0,
            color_tags: ColorTags::bt709(),
            bit_depth: color::bit_depth(first.format()),
            decoder: codec.name().to_owned(),
        };
        Ok(ImageSequence {
            converter: RgbConverter::new(info.width, info.height),
            info,
            files,
            next: 0,
            first: Some(first),
            done: false,
        })
    }

    fn next(&mut self) -> Result<Option<Frame>, MediaError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        let decoded = match self.first.take() {
            Some(first) => first,
            None => decode_image(path)?.0,
        };
        if (decoded.width(), decoded.height()) != (self.info.width, self.info.height) {
            return Err(MediaError::ImageSizeMismatch {
                path: path.clone(),
                width: decoded.width(),
                height: decoded.height(),
                first: self.files[0].clone(),
                first_width: self.info.width,
                first_height: self.info.height,
            });
        }
        let rgb = self
            .converter
            .convert(&decoded, (Space::Unspecified, Range::Unspecified))
            .map_err(|problem| MediaError::Unsupported {
                path: path.clone(),
                problem,
            })?;
        let index = self.next as u64;
        self.next += 1;
        Ok(Some(Frame {
            width: self.info.width,
            height: self.info.height,
            rgb,
            yuv: None,
            deep: self.converter.is_deep(),
            pts: Some(index as i64),
            index,
        }))
    }
}

impl FrameSource for ImageSequence {
    fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        if self.done {
            return Ok(None);
        }
        log::clear();
        let result = self.next();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn set_deep(&mut self, deep: bool) {
        self.converter.set_deep(deep);
    }
}

/// Image files of the folder in natural order (img2 before img10). Hidden
/// files are skipped: macOS litters folders with `._0001.png` metadata.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, MediaError> {
    let entries = fs::read_dir(dir).map_err(|e| MediaError::from_io(dir, &e, false))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| MediaError::from_io(dir, &e, false))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with('.') && image_codec(&path).is_some() && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| natural_cmp(&file_name(a), &file_name(b)));
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Decodes a whole image file as a single packet. No demuxer: libav's image
/// demuxer would read `%d` in a file name as a sequence pattern.
fn decode_image(path: &Path) -> Result<(frame::Video, Id), MediaError> {
    let id = image_codec(path).expect("listed files have image extensions");
    let bytes = fs::read(path).map_err(|e| MediaError::from_io(path, &e, false))?;
    let unsupported = || MediaError::UnsupportedCodec {
        path: path.to_path_buf(),
        codec: id.name().to_owned(),
    };
    let codec = ffmpeg::decoder::find(id).ok_or_else(unsupported)?;
    let mut decoder = codec::Context::new_with_codec(codec)
        .decoder()
        .video()
        .map_err(|_| unsupported())?;
    let corrupt = |e| MediaError::Corrupt {
        path: path.to_path_buf(),
        reason: if bytes.is_empty() {
            "the file is empty".into()
        } else {
            error::reason(e)
        },
    };
    decoder
        .send_packet(&Packet::copy(&bytes))
        .map_err(corrupt)?;
    decoder.send_eof().map_err(corrupt)?;
    let mut frame = frame::Video::empty();
    decoder.receive_frame(&mut frame).map_err(corrupt)?;
    Ok((frame, id))
}

/// Orders names by their digit runs as numbers, the rest as text.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut ra, mut rb) = (Runs(a), Runs(b));
    loop {
        match (ra.next(), rb.next()) {
            // Equal by value ("01" vs "1"): any fixed order will do.
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = if is_digits(x) && is_digits(y) {
                    let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                    // Longer without leading zeros is larger; no overflow.
                    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                } else {
                    x.cmp(y)
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

fn is_digits(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// Maximal runs of ASCII digits and of everything else.
struct Runs<'a>(&'a str);

impl<'a> Iterator for Runs<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let first = self.0.bytes().next()?;
        let digits = first.is_ascii_digit();
        let end = self
            .0
            .bytes()
            .position(|b| b.is_ascii_digit() != digits)
            .unwrap_or(self.0.len());
        let (run, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;

    #[test]
    fn natural_order() {
        let mut names = vec!["img10.png", "img2.png", "img1.png", "img02.png", "a.png"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            ["a.png", "img1.png", "img02.png", "img2.png", "img10.png"]
        );
    }
}
