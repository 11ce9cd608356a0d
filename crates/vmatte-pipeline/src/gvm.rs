//! GVM over a stream of frames, in windows that never hold the whole video.
//!
//! ```text
//! frames ─► every k-th is a key ─► window of F keys ─► encode (cached per key) ─► denoise
//!   ─► blend the first O latents with the previous window's tail ─► decode the settled keys
//!   ─► alpha at source size ─► frames between keys interpolated ─► thresholds ─► out, in order
//! ```
//! A window of F key frames settles its first F - O; the last O wait for
//! the next window, which starts with them. Their latents are blended
//! linearly across the overlap, weight (i+1)/(O+1) for the new window's
//! i-th frame, so the seam moves gradually instead of jumping. With
//! O = 0 and k = 1 the windows are the reference's independent batches.
//!
//! Out of GPU memory while a window runs lowers, in order, the frames per
//! window, the decode chunk, then the resolution, and runs the same window
//! again; every step is a [`Step::Lower`].

use std::collections::VecDeque;
use std::ops::Deref;

use candle_core::Tensor;
use vmatte_gpu::{FakeOom, Step};
use vmatte_models::gvm::{frames, Geometry, Gvm};

use crate::setting::Setting;
use crate::settings::GvmOptions;
use crate::{OutOfMemory, PipelineError, Result};

/// A key frame waiting in the window buffer.
struct Key {
    index: u64,
    /// `[1, 3, H, W]` in [0, 1] at source size, kept so a lower resolution
    /// can be taken from it.
    frame: Tensor,
    /// The model's input at the current geometry.
    input: Tensor,
    /// The scaled VAE latent, once encoded (shared by overlapping windows).
    latent: Option<Tensor>,
}

/// A frame whose alpha is not out yet.
struct Pending {
    index: u64,
    alpha: Option<Tensor>,
}

/// The model is borrowed (`&Gvm`, the pipeline's) or shared (`Arc<Gvm>`,
/// a stream that outlives any one borrow, as the Python package's).
pub struct GvmStream<G: Deref<Target = Gvm> + Clone> {
    model: G,
    opts: GvmOptions,
    geometry: Geometry,
    keys: VecDeque<Key>,
    /// Latents of the first keys of the next window, from the last one.
    carried: Option<Tensor>,
    pending: VecDeque<Pending>,
    /// The last key's alpha at source size, before thresholds.
    prev_key: Option<(u64, Tensor)>,
    /// The newest frame when it is not a key: the last frame of a video
    /// always becomes one, so nothing after the last key is extrapolated.
    last_plain: Option<Tensor>,
    next_index: u64,
    fake_oom: Option<FakeOom>,
    /// Where the window being run is, for the ladder to lower what that
    /// phase needs.
    phase: Phase,
}

/// The phases of a window, by what their memory grows with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Keys through the VAE encoder: the decode chunk's frames at a time.
    Encode,
    /// The UNet over the window: frames per batch.
    Denoise,
    /// Latents through the VAE decoder: the decode chunk.
    Decode,
}

impl<G: Deref<Target = Gvm> + Clone> GvmStream<G> {
    pub fn new(
        model: G,
        opts: &GvmOptions,
        source: (usize, usize),
        fake_oom: Option<FakeOom>,
    ) -> Result<Self> {
        opts.validate().map_err(PipelineError::Input)?;
        Ok(Self {
            model,
            geometry: Geometry::new(source, opts.size, opts.max_resolution)?,
            opts: opts.clone(),
            keys: VecDeque::new(),
            carried: None,
            pending: VecDeque::new(),
            prev_key: None,
            last_plain: None,
            next_index: 0,
            fake_oom,
            phase: Phase::Encode,
        })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The settings in force now (the ladder may have lowered them).
    pub fn options(&self) -> &GvmOptions {
        &self.opts
    }

    /// Adds the next frame, `[1, 3, H, W]` in [0, 1]; returns the alphas now
    /// settled, in order, `[1, 1, H, W]` f32 after thresholds.
    ///
    /// Each out-of-memory step is told to `on_step` when taken.
    pub fn push(&mut self, frame: &Tensor, on_step: &mut dyn FnMut(&Step)) -> Result<Vec<Tensor>> {
        let index = self.next_index;
        self.next_index += 1;
        self.pending.push_back(Pending { index, alpha: None });
        if index.is_multiple_of(self.opts.interp_frames as u64) {
            self.add_key(index, frame.clone())?;
            self.last_plain = None;
        } else {
            self.last_plain = Some(frame.clone());
        }
        while self.keys.len() >= self.opts.frames_per_batch {
            self.run_window(false, on_step)?;
        }
        self.settled()
    }

    /// The video ended: runs what is left and returns the last alphas.
    pub fn finish(&mut self, on_step: &mut dyn FnMut(&Step)) -> Result<Vec<Tensor>> {
        if let Some(frame) = self.last_plain.take() {
            self.add_key(self.next_index - 1, frame)?;
        }
        // A loop, because the ladder may shrink the last window so that it
        // no longer takes every key.
        while !self.keys.is_empty() {
            while self.keys.len() > self.opts.frames_per_batch {
                self.run_window(false, on_step)?;
            }
            let carried = self.carried.as_ref().map_or(Ok(0), |c| c.dim(0))?;
            if self.keys.len() > carried {
                self.run_window(true, on_step)?;
                continue;
            }
            // Nothing new after the last window: its tail settles as it is,
            // down the same ladder as a window (a lower resolution drops
            // the carried latents, and the keys then run as a window).
            let latent = self.carried.clone().expect("carried latents");
            let n = self.keys.len();
            self.phase = Phase::Decode;
            let settled = self
                .injected(self.opts.decode_chunk.min(n))
                .and_then(|()| self.settle(&latent.narrow(0, 0, n)?, n));
            match settled {
                Ok(()) => self.carried = None,
                Err(PipelineError::OutOfMemory { cause, .. }) => self.step_down(cause, on_step)?,
                Err(e) => return Err(e),
            }
        }
        let out = self.settled()?;
        debug_assert!(self.pending.is_empty());
        Ok(out)
    }

    fn add_key(&mut self, index: u64, frame: Tensor) -> Result<()> {
        let input = frames::to_model_input(&frame, &self.geometry)?;
        self.keys.push_back(Key {
            index,
            frame,
            input,
            latent: None,
        });
        Ok(())
    }

    /// Runs the window at the front of the buffer, stepping down the ladder
    /// until it fits.
    fn run_window(&mut self, last: bool, on_step: &mut dyn FnMut(&Step)) -> Result<()> {
        loop {
            let n = self.keys.len().min(self.opts.frames_per_batch);
            let is_last = last && n == self.keys.len();
            match self.try_window(n, is_last) {
                Ok(()) => return Ok(()),
                Err(PipelineError::OutOfMemory { cause, .. }) => self.step_down(cause, on_step)?,
                Err(e) => return Err(e),
            }
        }
    }

    fn injected(&self, frames: usize) -> Result<()> {
        match self.fake_oom {
            Some(f) if f.fails(frames) => Err(PipelineError::oom(OutOfMemory::Injected)),
            _ => Ok(()),
        }
    }

    fn try_window(&mut self, n: usize, is_last: bool) -> Result<()> {
        let model = self.model.clone();
        self.phase = Phase::Encode;
        let missing: Vec<usize> = (0..n).filter(|&i| self.keys[i].latent.is_none()).collect();
        // The VAE encodes each frame on its own: chunks of the decode
        // chunk's size bound its memory whatever the window.
        for part in missing.chunks(self.opts.decode_chunk.max(1)) {
            let inputs: Vec<&Tensor> = part.iter().map(|&i| &self.keys[i].input).collect();
            let latents = model.encode(&Tensor::cat(&inputs, 0)?)?;
            for (j, &i) in part.iter().enumerate() {
                self.keys[i].latent = Some(latents.narrow(0, j, 1)?);
            }
        }
        let rgb: Vec<&Tensor> = (0..n)
            .map(|i| self.keys[i].latent.as_ref().expect("encoded"))
            .collect();
        let rgb = Tensor::cat(&rgb, 0)?;
        self.phase = Phase::Denoise;
        self.injected(n)?;
        let mut latent = model.denoise(&rgb, self.opts.denoise_steps)?;
        if let Some(old) = &self.carried {
            latent = blend(&latent, old)?;
        }
        let settle = if is_last {
            n
        } else {
            n - self.opts.overlap_frames.min(n - 1)
        };
        self.phase = Phase::Decode;
        self.injected(self.opts.decode_chunk.min(settle))?;
        self.settle(&latent.narrow(0, 0, settle)?, settle)?;
        self.carried = (settle < n)
            .then(|| latent.narrow(0, settle, n - settle))
            .transpose()?;
        Ok(())
    }

    /// Decodes the latents of the first `n` keys, hands their alphas out
    /// (with the frames interpolated between keys) and drops them from the
    /// buffer. Every alpha is computed before anything is changed, so an
    /// out-of-memory anywhere leaves the stream as it was, to be run again
    /// lower down the ladder.
    fn settle(&mut self, latent: &Tensor, n: usize) -> Result<()> {
        let padded = self
            .model
            .decode_alpha(latent, self.opts.decode_chunk, self.opts.ensemble)?;
        let alpha = frames::to_source_size(&padded, &self.geometry)?;
        let mut prev = self.prev_key.clone();
        let mut alphas: Vec<(u64, Tensor)> = Vec::new();
        for (i, key) in self.keys.iter().take(n).enumerate() {
            let key_alpha = alpha.narrow(0, i, 1)?;
            for p in &self.pending {
                if p.index == key.index {
                    alphas.push((p.index, key_alpha.clone()));
                } else if let Some((at, before)) = &prev {
                    if p.index > *at && p.index < key.index {
                        let t = (p.index - at) as f64 / (key.index - at) as f64;
                        let mixed = ((before * (1.0 - t))? + (&key_alpha * t)?)?;
                        alphas.push((p.index, mixed));
                    }
                }
            }
            prev = Some((key.index, key_alpha));
        }
        self.keys.drain(..n);
        self.prev_key = prev;
        for (index, a) in alphas {
            if let Some(p) = self.pending.iter_mut().find(|p| p.index == index) {
                p.alpha = Some(a);
            }
        }
        Ok(())
    }

    /// Pops the frames at the front whose alpha is known.
    fn settled(&mut self) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        while self.pending.front().is_some_and(|p| p.alpha.is_some()) {
            let p = self.pending.pop_front().expect("front");
            out.push(frames::threshold(&p.alpha.expect("settled"))?);
        }
        Ok(out)
    }

    /// One rung down: frames per window, then decode chunk, then resolution;
    /// the decode chunk first when the decoder (or the encoder, which runs
    /// in decode-chunk pieces) ran out. A rung that would change nothing is
    /// skipped: once the settled keys are one frame, each decode slice is
    /// already one frame whatever the chunk, and so is each encode piece
    /// once one key waits.
    fn step_down(&mut self, cause: OutOfMemory, on_step: &mut dyn FnMut(&Step)) -> Result<()> {
        let frame = self.keys.front().map_or(0, |k| k.index);
        // The encoder's pieces are the waiting keys in decode-chunk slices:
        // with one key waiting, a smaller chunk changes nothing there.
        let waiting = self.keys.iter().filter(|k| k.latent.is_none()).count();
        let chunk_matters = self.opts.decode_chunk > 1
            && match self.phase {
                Phase::Encode => waiting > 1,
                _ => self.opts.frames_per_batch > 1,
            };
        // The decode chunk first where the VAE ran out; in the UNet, only
        // once the windows are one frame.
        let chunk_first = self.phase != Phase::Denoise || self.opts.frames_per_batch <= 1;
        let o = &mut self.opts;
        let (setting, from, to) = if chunk_matters && chunk_first {
            let from = o.decode_chunk;
            o.decode_chunk = from / 2;
            ("decode chunk", from.to_string(), o.decode_chunk.to_string())
        } else if o.frames_per_batch > 1 {
            let from = o.frames_per_batch;
            o.frames_per_batch = from / 2;
            o.overlap_frames = o.overlap_frames.min(o.frames_per_batch - 1);
            if self
                .carried
                .as_ref()
                .is_some_and(|c| c.dim(0).is_ok_and(|d| d >= o.frames_per_batch))
            {
                // The next window would be all overlap: start it afresh.
                self.carried = None;
            }
            (
                "frames per batch",
                from.to_string(),
                o.frames_per_batch.to_string(),
            )
        } else if o.size > 64 {
            let old = self.geometry;
            o.size = (o.size * 3 / 4 / 8 * 8).max(64);
            o.max_resolution = (o.max_resolution * 3 / 4).max(o.size + 8);
            self.geometry = Geometry::new(old.source, o.size, o.max_resolution)?;
            // New latent sizes: re-encode the waiting keys; the overlap with
            // the previous window cannot be blended across the change.
            for key in self.keys.iter_mut() {
                key.input = frames::to_model_input(&key.frame, &self.geometry)?;
                key.latent = None;
            }
            self.carried = None;
            let size = |g: Geometry| format!("{}x{}", g.resized.1, g.resized.0);
            ("resolution", size(old), size(self.geometry))
        } else {
            return Err(PipelineError::OutOfMemory {
                message: format!(
                    "out of GPU memory at frame {frame} even with 1-frame windows at the \
                     smallest size, {} px ({cause}); use {}",
                    o.size,
                    Setting::Device.with("cpu")
                ),
                cause,
            });
        };
        let step = Step::Lower {
            setting: setting.into(),
            from,
            to,
            frame,
        };
        on_step(&step);
        Ok(())
    }
}

/// The new window's first frames blended with the previous window's
/// latents for them: weight (i+1)/(O+1) on the new one.
fn blend(new: &Tensor, old: &Tensor) -> Result<Tensor> {
    let n = new.dim(0)?;
    let o = old.dim(0)?.min(n);
    if o == 0 {
        return Ok(new.clone());
    }
    let weights: Vec<f32> = (0..o).map(|i| (i + 1) as f32 / (o + 1) as f32).collect();
    let w = Tensor::from_vec(weights, (o, 1, 1, 1), new.device())?.to_dtype(new.dtype())?;
    let head = new.narrow(0, 0, o)?;
    let mixed =
        (head.broadcast_mul(&w)? + old.narrow(0, 0, o)?.broadcast_mul(&w.affine(-1.0, 1.0)?)?)?;
    if o == n {
        return Ok(mixed);
    }
    Ok(Tensor::cat(&[&mixed, &new.narrow(0, o, n - o)?], 0)?)
}
