//! MatAnyone in the pipeline: the subject's mask (a file, one found beside
//! the video, or made from RVM's matte of the first frame), its
//! re-anchoring masks at later frames, the internal resolution, and the
//! frame-by-frame run whose recurrent memory is the only state (frames are
//! decoded, matted and encoded as they come).
//!
//! ```text
//! mask file | <stem>.mask.png | RVM(frame 0) > 0.5 ─► gray ─► scale to the frame ─► dilate, erode
//! frame ─► [area down to --max-size] ─► Session (anchor at 0 and at each --mask-at; else next)
//!       ─► alpha ─► [bilinear back up] ─► encoder (colour: the finishing's estimate)
//! ```

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use vmatte_models::matanyone::{mask, MatAnyone, MemoryConfig, Session};
use vmatte_models::rvm::{MattingNetwork, RecurrentState};

use crate::setting::Setting;
use crate::{PipelineError, Result};

/// MatAnyone loaded, with the memory settings its config gives and RVM
/// for `--mask auto` when it is installed.
pub struct MatAnyoneNet {
    pub net: MatAnyone,
    pub memory: MemoryConfig,
    pub auto: Option<MattingNetwork>,
}

/// Where the first frame's mask comes from, in this order: `file`; else
/// `<stem>.mask.png` beside the video, else in `dir`; else RVM's matte when
/// `auto`; else the video fails with a line saying how to give one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskChoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
}

/// A mask that re-anchors the subject at a later frame (0-based).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskAt {
    pub frame: u64,
    pub file: PathBuf,
}

/// MatAnyone's settings; the memory knobs default to the model's config
/// (the release's: every 5 frames, 5 frames kept, top 30).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatAnyoneOptions {
    #[serde(default)]
    pub mask: MaskChoice,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask_at: Vec<MaskAt>,
    pub warmup: usize,
    pub erode: usize,
    pub dilate: usize,
    /// The shorter side the model sees at most (the output is scaled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_every: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mem_frames: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
}

impl Default for MatAnyoneOptions {
    /// The release's demo: 10 warm-up steps, erode and dilate 10.
    fn default() -> Self {
        Self {
            mask: MaskChoice::default(),
            mask_at: Vec::new(),
            warmup: 10,
            erode: 10,
            dilate: 10,
            max_size: None,
            mem_every: None,
            max_mem_frames: None,
            top_k: None,
        }
    }
}

impl MatAnyoneOptions {
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (setting, v) in [
            (Setting::MemEvery, self.mem_every),
            (Setting::MaxMemFrames, self.max_mem_frames),
            (Setting::TopK, self.top_k),
            (Setting::MaxSize, self.max_size),
        ] {
            if v == Some(0) {
                return Err(format!("{setting} must be at least 1"));
            }
        }
        if self.max_size.is_some_and(|s| s < 16) {
            return Err(format!(
                "{} is below 16 px; use e.g. 512 or 720",
                Setting::MaxSize
            ));
        }
        Ok(())
    }

    /// The memory settings of a run: these options over the model's.
    pub fn memory(&self, model: MemoryConfig) -> MemoryConfig {
        MemoryConfig {
            mem_every: self.mem_every.unwrap_or(model.mem_every),
            max_mem_frames: self.max_mem_frames.unwrap_or(model.max_mem_frames),
            top_k: self.top_k.unwrap_or(model.top_k),
            stagger_updates: model.stagger_updates,
        }
    }

    /// The first frame's mask file for `video`, if there is one.
    pub fn mask_file(&self, video: &Path) -> Option<PathBuf> {
        if let Some(f) = &self.mask.file {
            return Some(f.clone());
        }
        let stem = video.file_stem()?.to_string_lossy().into_owned();
        let name = format!("{stem}.mask.png");
        let beside = video.with_file_name(&name);
        std::iter::once(beside)
            .chain(self.mask.dir.as_ref().map(|d| d.join(&name)))
            .find(|p| p.is_file())
    }
}

/// The size the model sees: the release's `int(side / short * max_size)`
/// when the shorter side is over `max_size`.
pub fn internal_size((h, w): (usize, usize), max_size: Option<usize>) -> (usize, usize) {
    match max_size {
        Some(m) if h.min(w) > m => {
            let short = h.min(w) as f64;
            (
                ((h as f64 / short * m as f64) as usize).max(1),
                ((w as f64 / short * m as f64) as usize).max(1),
            )
        }
        _ => (h, w),
    }
}

/// `F.interpolate(mode='area')` to any size (adaptive average pooling),
/// of `(C, H, W)` planes.
fn area_resize(
    planes: &[f32],
    c: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let spans = |n: usize, on: usize| -> Vec<(usize, usize)> {
        (0..on)
            .map(|i| ((i * n) / on, ((i + 1) * n).div_ceil(on)))
            .collect()
    };
    let (rows, cols) = (spans(h, oh), spans(w, ow));
    let mut out = Vec::with_capacity(c * oh * ow);
    let mut row_means = vec![0f32; w];
    for plane in planes.chunks(h * w) {
        for &(r0, r1) in &rows {
            row_means.iter_mut().for_each(|v| *v = 0.0);
            for r in r0..r1 {
                for (m, v) in row_means.iter_mut().zip(&plane[r * w..(r + 1) * w]) {
                    *m += v;
                }
            }
            let n = (r1 - r0) as f32;
            for &(c0, c1) in &cols {
                let s: f32 = row_means[c0..c1].iter().sum();
                out.push(s / (n * (c1 - c0) as f32));
            }
        }
    }
    out
}

/// `(1, C, h, w)` on `device` from host planes.
fn tensor(planes: Vec<f32>, (c, h, w): (usize, usize, usize), device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(planes, (1, c, h, w), &Device::Cpu)?.to_device(device)?)
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
}

/// `gray` (`from`, rows x columns) scaled to `to` as PyTorch's `nearest`
/// does: source index floor(dst · in / out).
fn nearest(gray: Vec<u8>, (fh, fw): (usize, usize), (h, w): (usize, usize)) -> Vec<u8> {
    if (fh, fw) == (h, w) {
        return gray;
    }
    (0..h * w)
        .map(|p| gray[(p / w * fh / h) * fw + (p % w) * fw / w])
        .collect()
}

/// A mask image as the model takes it: turned `turn` degrees clockwise
/// (a mask drawn on the picture as players show a rotated video is turned
/// back to its stored frames), gray (PIL's weights), scaled to `size` by
/// nearest neighbour, dilated then eroded; refused in one line when it is
/// unreadable, empty, or white everywhere.
pub fn load_mask(
    path: &Path,
    (h, w): (usize, usize),
    turn: i32,
    opts: &MatAnyoneOptions,
) -> Result<Vec<f32>> {
    let bad = |what: String| PipelineError::Input(format!("{}: {what}", path.display()));
    let unreadable = |e: vmatte_media::MediaError| {
        bad(format!(
            "not a readable image ({e}); give a PNG mask (white = subject)"
        ))
    };
    if !path.is_file() {
        return Err(bad(format!(
            "mask not found; give a PNG mask (white = subject) with {}",
            Setting::Mask
        )));
    }
    let mut source = vmatte_media::open_source(path, None).map_err(unreadable)?;
    let frame = source
        .next_frame()
        .map_err(unreadable)?
        .ok_or_else(|| bad("holds no picture; give a PNG mask (white = subject)".into()))?;
    let step = if frame.deep { 6 } else { 3 };
    let mut turned = Vec::new();
    let (mw, mh, pixels) = if turn.rem_euclid(360) == 0 {
        (frame.width as usize, frame.height as usize, &frame.rgb)
    } else {
        let size = (frame.width as usize, frame.height as usize);
        let (tw, th) = crate::frames::rotate(&frame.rgb, size, step, turn, &mut turned);
        (tw, th, &turned)
    };
    let sample = |i: usize| -> u32 {
        if frame.deep {
            u32::from(u16::from_le_bytes([pixels[i], pixels[i + 1]]) >> 8)
        } else {
            u32::from(pixels[i])
        }
    };
    let gray: Vec<u8> = (0..mw * mh)
        .map(|p| {
            let i = p * step;
            let k = step / 3;
            let (r, g, b) = (sample(i), sample(i + k), sample(i + 2 * k));
            ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    if gray.iter().all(|&v| v == 0) {
        return Err(bad(
            "the mask is empty (all black); paint the subject white".into(),
        ));
    }
    if gray.iter().all(|&v| v == 255) {
        return Err(bad(
            "the mask is white everywhere, so it picks the whole frame; paint only the subject white"
                .into(),
        ));
    }
    let scaled = nearest(gray, (mh, mw), (h, w));
    let prepared = mask::prepare(&scaled, (w, h), opts.erode, opts.dilate);
    if prepared.iter().all(|&v| v == 0.0) {
        return Err(bad(format!(
            "nothing is left of the mask after {} {} at this size; lower it or draw a larger mask",
            Setting::MaskErode,
            opts.erode
        )));
    }
    Ok(prepared)
}

/// One video's run: the session and where its masks come from.
pub struct Run<'a> {
    net: &'a MatAnyoneNet,
    session: Session<'a>,
    opts: &'a MatAnyoneOptions,
    video: &'a Path,
    size: (usize, usize),
    inner: (usize, usize),
    ratio: f64,
    /// Clockwise degrees that bring a mask drawn upright to the frames.
    turn: i32,
    frame: u64,
}

impl<'a> Run<'a> {
    pub fn new(
        net: &'a MatAnyoneNet,
        opts: &'a MatAnyoneOptions,
        video: &'a Path,
        size: (usize, usize),
        ratio: f64,
        rotation: i32,
    ) -> Self {
        Self {
            session: Session::new(&net.net, opts.memory(net.memory)),
            net,
            opts,
            video,
            size,
            inner: internal_size(size, opts.max_size),
            ratio,
            turn: (-rotation).rem_euclid(360),
            frame: 0,
        }
    }

    /// The alpha `(1, 1, H, W)` of the next frame `(1, 3, H, W)`.
    pub fn next(&mut self, frame: &Tensor) -> Result<Tensor> {
        let device = frame.device().clone();
        let (h, w) = self.size;
        let small = if self.inner == self.size {
            frame.to_dtype(DType::F32)?
        } else {
            tensor(
                area_resize(&host(frame)?, 3, self.size, self.inner),
                (3, self.inner.0, self.inner.1),
                &device,
            )?
        };
        let at = self.frame;
        self.frame += 1;
        let anchor = if at == 0 {
            Some(self.first_mask(frame)?)
        } else {
            match self.opts.mask_at.iter().find(|m| m.frame == at) {
                Some(m) => Some(load_mask(&m.file, self.inner, self.turn, self.opts)?),
                None => None,
            }
        };
        let alpha = match anchor {
            Some(mask) => {
                let mask = tensor(mask, (1, self.inner.0, self.inner.1), &device)?;
                let mut steps = self.session.anchor(&small, &mask, self.opts.warmup)?;
                steps
                    .alphas
                    .pop()
                    .expect("at least one first-frame prediction")
            }
            None => self.session.next(&small)?,
        };
        let alpha = if self.inner == self.size {
            alpha
        } else {
            vmatte_models::ops::resize_bilinear(&alpha, h, w)?.clamp(0f32, 1f32)?
        };
        Ok(alpha.to_dtype(frame.dtype())?)
    }

    fn first_mask(&self, frame: &Tensor) -> Result<Vec<f32>> {
        if let Some(file) = self.opts.mask_file(self.video) {
            return load_mask(&file, self.inner, self.turn, self.opts);
        }
        if !self.opts.mask.auto {
            return Err(PipelineError::Input(format!(
                "{}: no mask for MatAnyone; give {} FILE (white = subject), put {}.mask.png beside \
                 it (or in {}), or use {}",
                self.video.display(),
                Setting::Mask,
                self.video.file_stem().unwrap_or_default().to_string_lossy(),
                Setting::MaskDir,
                Setting::Mask.with("auto")
            )));
        }
        let Some(rvm) = &self.net.auto else {
            return Err(PipelineError::Input(format!(
                "{}: {} makes the mask with RVM, which is not installed; run `vmatte models \
                 install rvm-mobilenetv3`, or give a mask file",
                self.video.display(),
                Setting::Mask.with("auto")
            )));
        };
        let out = rvm.forward(frame, &mut RecurrentState::default(), self.ratio)?;
        let pha = host(&out.pha)?;
        let gray: Vec<u8> = pha.iter().map(|&a| if a > 0.5 { 255 } else { 0 }).collect();
        if gray.iter().all(|&v| v == 0) {
            return Err(PipelineError::Input(format!(
                "{}: {} found no subject in the first frame; give a mask file",
                self.video.display(),
                Setting::Mask.with("auto")
            )));
        }
        let scaled = nearest(gray, self.size, self.inner);
        Ok(mask::prepare(
            &scaled,
            (self.inner.1, self.inner.0),
            self.opts.erode,
            self.opts.dilate,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_size_follows_the_release() {
        assert_eq!(internal_size((1080, 1920), Some(720)), (720, 1280));
        assert_eq!(internal_size((480, 854), Some(720)), (480, 854));
        assert_eq!(internal_size((1080, 1921), None), (1080, 1921));
    }

    #[test]
    fn area_resize_averages_cells() {
        let planes: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = area_resize(&planes, 1, (4, 4), (2, 2));
        assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
        // 3 → 2: spans [0, 2) and [1, 3), as adaptive pooling has them.
        let out = area_resize(&[0.0, 3.0, 6.0], 1, (1, 3), (1, 2));
        assert_eq!(out, vec![1.5, 4.5]);
    }
}
