//! The release's inference loop for one object (upstream
//! `inference/inference_core.py::InferenceCore.step` and the warm-up loop
//! of `hugging_face/matanyone_wrapper.py`).
//!
//! A [`Session`] is the recurrent state of one shot: the memory, the
//! sensory memory, the object memory (running sums of summaries) and the
//! last frame's mask, pixel feature and mask value. The step counters
//! follow the release exactly:
//!
//! - a frame with a mask is memorised (and its output is the mask);
//! - a first-frame prediction resets the counters, predicts from the last
//!   mask value (not from memory), clears the memory (sensory memory
//!   stays) and memorises its own prediction as the permanent frame;
//! - otherwise the frame reads the memory; every `mem_every` steps it is
//!   memorised, and at the staggered offsets its decoder updates the
//!   sensory memory; a frame not memorised still encodes its prediction,
//!   as the next frame's last mask value.

use candle_core::Tensor;

use super::config::MemoryConfig;
use super::memory::Memory;
use super::MatAnyone;
use crate::{Error, Result};

/// Receives named intermediates (`step{s}.{name}`, as the parity fixtures
/// record them).
pub type Probe<'n> = Box<dyn FnMut(&str, &Tensor) + 'n>;

/// What the last step left for the next.
struct Last {
    /// The prediction (or given mask) at the padded size, `(1, 1, H, W)`.
    mask: Tensor,
    pix_feat: Tensor,
    /// The mask encoder's value of `mask`.
    value: Tensor,
}

/// The steps one anchoring takes: the mask, then first-frame predictions.
pub struct Steps {
    /// The alpha after each first-frame prediction; the last is the
    /// frame's output, the others the release's warm-up frames.
    pub alphas: Vec<Tensor>,
}

pub struct Session<'n> {
    net: &'n MatAnyone,
    config: MemoryConfig,
    /// Offsets from the last memory frame at which the sensory memory is
    /// updated.
    stagger: Vec<i64>,
    curr_ti: i64,
    last_mem_ti: i64,
    memory: Memory,
    sensory: Option<Tensor>,
    summaries: Option<Tensor>,
    last: Option<Last>,
    /// Global step count, for probes.
    steps: usize,
    probe: Option<Probe<'n>>,
}

/// `pad_divide_by(x, 16)`: zero padding to multiples of 16, centred (the
/// odd pixel after).
fn pad16(x: &Tensor) -> Result<(Tensor, [usize; 4])> {
    let (_, _, h, w) = x.dims4()?;
    let (ph, pw) = (h.next_multiple_of(16) - h, w.next_multiple_of(16) - w);
    let pad = [ph / 2, ph - ph / 2, pw / 2, pw - pw / 2];
    if ph == 0 && pw == 0 {
        return Ok((x.clone(), pad));
    }
    let y = x
        .pad_with_zeros(2, pad[0], pad[1])?
        .pad_with_zeros(3, pad[2], pad[3])?;
    Ok((y, pad))
}

fn unpad(x: &Tensor, pad: [usize; 4]) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    Ok(x.narrow(2, pad[0], h - pad[0] - pad[1])?
        .narrow(3, pad[2], w - pad[2] - pad[3])?)
}

/// `round(linspace(1, mem_every, stagger_updates))` (NumPy rounds half to
/// even), or every offset when there are as many updates as steps.
fn stagger_offsets(c: &MemoryConfig) -> Vec<i64> {
    let (m, s) = (c.mem_every as i64, c.stagger_updates);
    if s as i64 >= m {
        return (1..=m).collect();
    }
    if s == 1 {
        return vec![1];
    }
    let step = (m - 1) as f64 / (s - 1) as f64;
    (0..s)
        .map(|i| {
            let v = if i == s - 1 {
                m as f64
            } else {
                1.0 + i as f64 * step
            };
            v.round_ties_even() as i64
        })
        .collect()
}

impl<'n> Session<'n> {
    pub fn new(net: &'n MatAnyone, config: MemoryConfig) -> Self {
        Self {
            net,
            stagger: stagger_offsets(&config),
            memory: Memory::new(config.max_mem_frames, config.top_k, net.config.value_dim),
            config,
            curr_ti: -1,
            last_mem_ti: 0,
            sensory: None,
            summaries: None,
            last: None,
            steps: 0,
            probe: None,
        }
    }

    /// Hands every intermediate of the steps to come to `probe`.
    pub fn with_probe(mut self, probe: Probe<'n>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Whether a mask has anchored the subject.
    pub fn anchored(&self) -> bool {
        self.memory.engaged()
    }

    /// Anchors the subject on `image` with `mask` (`(1, 1, H, W)`, 0-255),
    /// then runs `1 + warmup` first-frame predictions on the same image,
    /// as the release does with its first frame repeated.
    pub fn anchor(&mut self, image: &Tensor, mask: &Tensor, warmup: usize) -> Result<Steps> {
        self.step(image, Some(mask), false)?;
        let mut alphas = Vec::with_capacity(warmup + 1);
        for _ in 0..=warmup {
            alphas.push(self.step(image, None, true)?);
        }
        Ok(Steps { alphas })
    }

    /// The alpha `(1, 1, H, W)` of the next frame of the shot.
    pub fn next(&mut self, image: &Tensor) -> Result<Tensor> {
        if !self.anchored() {
            return Err(Error::Invalid(
                "MatAnyone needs a mask before its first frame".into(),
            ));
        }
        self.step(image, None, false)
    }

    /// `InferenceCore.step` for `image` `(1, 3, H, W)` in [0, 1].
    fn step(
        &mut self,
        image: &Tensor,
        mask: Option<&Tensor>,
        first_frame_pred: bool,
    ) -> Result<Tensor> {
        let mut probe = self.probe.take();
        let out = self.step_probed(image, mask, first_frame_pred, &mut probe);
        self.probe = probe;
        out
    }

    fn step_probed(
        &mut self,
        image: &Tensor,
        mask: Option<&Tensor>,
        first_frame_pred: bool,
        probe: &mut Option<Probe<'n>>,
    ) -> Result<Tensor> {
        let s = self.steps;
        self.steps += 1;
        let probing = probe.is_some();
        let mut record = |name: &str, t: &Tensor| {
            if let Some(p) = probe.as_mut() {
                p(&format!("step{s}.{name}"), t);
            }
        };
        let net = self.net;
        self.curr_ti += 1;
        let (padded, pad) = pad16(image)?;
        let image = net.normalise(&padded)?;
        let since = self.curr_ti - self.last_mem_ti;
        let mut is_mem = since >= self.config.mem_every as i64 || mask.is_some();
        // One object: a mask always covers every object there is.
        let mut need_segment = mask.is_none();
        let mut update_sensory = self.stagger.contains(&since);
        if first_frame_pred {
            self.curr_ti = 0;
            self.last_mem_ti = 0;
            is_mem = true;
            need_segment = true;
            update_sensory = true;
        }
        let (feats, pix_feat) = net.encode_image(&image)?;
        let key = net.transform_key(&feats.f16)?;
        for (i, f) in [&feats.f16, &feats.f8, &feats.f4, &feats.f2, &feats.f1]
            .into_iter()
            .enumerate()
        {
            record(&format!("encode_image.0.{i}"), f);
        }
        record("encode_image.1", &pix_feat);
        record("transform_key.0", &key.key);
        record("transform_key.1", &key.shrinkage);
        record("transform_key.2", &key.selection);

        let mut pred = None;
        if need_segment {
            let (Some(last), Some(sensory), Some(summaries)) =
                (&self.last, &self.sensory, &self.summaries)
            else {
                return Err(Error::Invalid(
                    "MatAnyone needs a mask before its first frame".into(),
                ));
            };
            let readout = if self.curr_ti == 0 {
                let r = net.read_out(&pix_feat, &last.value, sensory, &last.mask, summaries)?;
                record("memory_read_first_frame.0", &r);
                r
            } else {
                let visual = self.memory.read(&key)?;
                let diff = (&visual - &last.value)?;
                let p = net.uncertainty(&last.pix_feat, &pix_feat, &last.mask, &diff)?;
                record("uncert_prob", &p);
                let blended = (visual.broadcast_mul(&p)?
                    + last.value.broadcast_mul(&p.affine(-1.0, 1.0)?)?)?;
                let r = net.read_out(&pix_feat, &blended, sensory, &last.mask, summaries)?;
                record("memory_read.0", &r);
                r
            };
            let (alpha, new_sensory) = net.segment(&feats, &readout, sensory, update_sensory)?;
            if probing {
                record("segment.0", new_sensory.as_ref().unwrap_or(sensory));
                let with_bg = Tensor::cat(&[&alpha.affine(-1.0, 1.0)?, &alpha], 1)?;
                record("segment.1", &with_bg);
                record("segment.2", &with_bg);
            }
            if let Some(new) = new_sensory {
                self.sensory = Some(new);
            }
            pred = Some(alpha);
        }
        if let Some(mask) = mask {
            let (m, _) = pad16(mask)?;
            pred = Some((m / 255.0)?);
        }
        let pred =
            pred.ok_or_else(|| Error::Invalid("a step with neither mask nor memory".into()))?;

        let (_, _, h16, w16) = key.key.dims4()?;
        let sensory = match &self.sensory {
            Some(s) => s.clone(),
            None => Tensor::zeros(
                (1, net.config.sensory_dim, h16, w16),
                pix_feat.dtype(),
                pix_feat.device(),
            )?,
        };
        let encoded = if is_mem {
            if first_frame_pred {
                self.memory.clear();
                self.summaries = None;
            }
            let e = net.encode_mask(&image, &pix_feat, &sensory, &pred, true)?;
            self.summaries = Some(match self.summaries.take() {
                Some(sum) => (sum + &e.summaries)?,
                None => e.summaries.clone(),
            });
            self.memory.add(&key, &e.value)?;
            self.last_mem_ti = self.curr_ti;
            self.sensory = Some(e.sensory.clone().unwrap_or(sensory));
            e
        } else {
            net.encode_mask(&image, &pix_feat, &sensory, &pred, false)?
        };
        if probing {
            record("encode_mask.0", &encoded.value);
            let sensory_now = encoded.sensory.as_ref().or(self.sensory.as_ref());
            if let Some(sn) = sensory_now {
                record("encode_mask.1", sn);
            }
            record("encode_mask.2", &encoded.summaries);
        }
        let alpha = unpad(&pred, pad)?;
        self.last = Some(Last {
            mask: pred,
            pix_feat,
            value: encoded.value,
        });
        Ok(alpha)
    }

    /// Memory frames held now (for tests of the bound).
    pub fn memory_frames(&self) -> usize {
        self.memory.frames()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stagger_follows_numpy() {
        let c = |m, s| MemoryConfig {
            mem_every: m,
            stagger_updates: s,
            ..MemoryConfig::default()
        };
        assert_eq!(stagger_offsets(&c(5, 5)), vec![1, 2, 3, 4, 5]);
        assert_eq!(stagger_offsets(&c(5, 2)), vec![1, 5]);
        // linspace(1, 10, 3) = [1, 5.5, 10]: 5.5 rounds to 6 (even).
        assert_eq!(stagger_offsets(&c(10, 3)), vec![1, 6, 10]);
        // linspace(1, 6, 3) = [1, 3.5, 6]: 3.5 rounds to 4.
        assert_eq!(stagger_offsets(&c(6, 3)), vec![1, 4, 6]);
    }

    #[test]
    fn padding_is_centred() {
        let x = Tensor::ones(
            (1, 1, 17, 30),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let (p, pad) = pad16(&x).unwrap();
        assert_eq!(p.dims(), &[1, 1, 32, 32]);
        assert_eq!(pad, [7, 8, 1, 1]);
        assert_eq!(unpad(&p, pad).unwrap().dims(), &[1, 1, 17, 30]);
    }
}
