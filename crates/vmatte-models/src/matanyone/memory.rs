//! The working memory of one object (upstream `inference/memory_manager.py`,
//! `kv_memory_store.py`, `model/utils/memory_utils.py`), long-term memory
//! off as the release runs it.
//!
//! Invariants: the first frame added after a clear is permanent; later
//! frames are kept first in, first out, at most `max_mem_frames - 1` of
//! them. A pixel's readout is a softmax over its `top_k` most similar
//! memory tokens only (anisotropic L2 similarity with shrinkage and
//! selection, over `sqrt(key_dim)`).

use std::collections::VecDeque;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::big_modules::Key;
use crate::Result;

/// One frame's memory.
struct Frame {
    /// `[-key², 2·key]` `(2·CK, hw)`: the similarity's memory side, so that
    /// one matrix product gives `-a² + 2ab` (XMem's appendix).
    terms: Tensor,
    /// Shrinkage, per token.
    shrinkage: Vec<f32>,
    /// Mask values token-major `(hw, CV)`, for the readout's gathers.
    values: Vec<f32>,
}

pub struct Memory {
    permanent: Option<Frame>,
    recent: VecDeque<Frame>,
    max_recent: usize,
    top_k: usize,
    value_dim: usize,
}

/// Query rows × memory tokens of similarities made at once (32 MB).
const BLOCK_ELEMENTS: usize = 8 << 20;

impl Memory {
    pub fn new(max_mem_frames: usize, top_k: usize, value_dim: usize) -> Self {
        Self {
            permanent: None,
            recent: VecDeque::new(),
            max_recent: max_mem_frames.saturating_sub(1),
            top_k,
            value_dim,
        }
    }

    pub fn engaged(&self) -> bool {
        self.permanent.is_some()
    }

    /// Frames held, the permanent one included.
    pub fn frames(&self) -> usize {
        usize::from(self.permanent.is_some()) + self.recent.len()
    }

    /// Forgets every frame (a first-frame prediction re-seeds it).
    pub fn clear(&mut self) {
        self.permanent = None;
        self.recent.clear();
    }

    /// Adds a frame: permanent if the memory is empty, else the newest of
    /// the recent frames, the oldest dropped past the limit.
    pub fn add(&mut self, key: &Key, value: &Tensor) -> Result<()> {
        let (_, ck, h, w) = key.key.dims4()?;
        let k = key.key.reshape((ck, h * w))?;
        let terms = Tensor::cat(&[k.sqr()?.neg()?, (&k * 2.0)?], 0)?;
        let shrinkage = key
            .shrinkage
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        let cv = value.dim(1)?;
        let values = value
            .reshape((cv, h * w))?
            .t()?
            .contiguous()?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let frame = Frame {
            terms,
            shrinkage,
            values,
        };
        if self.permanent.is_none() {
            self.permanent = Some(frame);
        } else {
            self.recent.push_back(frame);
            while self.recent.len() > self.max_recent {
                self.recent.pop_front();
            }
        }
        Ok(())
    }

    /// The readout `(1, CV, h, w)` for a frame's key and selection.
    pub fn read(&self, query: &Key) -> Result<Tensor> {
        let frames: Vec<&Frame> = self.permanent.iter().chain(&self.recent).collect();
        let (_, ck, h, w) = query.key.dims4()?;
        let hw = h * w;
        let terms = Tensor::cat(&frames.iter().map(|f| &f.terms).collect::<Vec<_>>(), 1)?;
        let n = terms.dim(1)?;
        let shrinkage: Vec<f32> = frames
            .iter()
            .flat_map(|f| f.shrinkage.iter().copied())
            .collect();
        let values: Vec<f32> = frames
            .iter()
            .flat_map(|f| f.values.iter().copied())
            .collect();
        let qk = query.key.reshape((ck, hw))?;
        let qe = query.selection.reshape((ck, hw))?;
        // The query side: [selection; key·selection], and b² per pixel.
        let q = Tensor::cat(&[qe.clone(), (&qk * &qe)?], 0)?
            .t()?
            .contiguous()?;
        let b_sq: Vec<f32> = (qk.sqr()? * &qe)?.sum(0)?.to_dtype(DType::F32)?.to_vec1()?;
        let scale = 1.0 / (ck as f32).sqrt();
        let k = self.top_k.min(n);
        let cv = self.value_dim;
        let mut out = vec![0f32; hw * cv];
        let rows = (BLOCK_ELEMENTS / n).clamp(1, hw);
        for start in (0..hw).step_by(rows) {
            let len = rows.min(hw - start);
            let sim = q
                .narrow(0, start, len)?
                .matmul(&terms)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            out[start * cv..(start + len) * cv]
                .par_chunks_mut(cv)
                .zip(sim.par_chunks(n))
                .enumerate()
                .for_each_init(
                    || Vec::with_capacity(n),
                    |order, (j, (dst, row))| {
                        let b = b_sq[start + j];
                        order.clear();
                        order.extend(
                            row.iter()
                                .zip(&shrinkage)
                                .enumerate()
                                .map(|(i, (&ab, &s))| ((ab - b) * s * scale, i as u32)),
                        );
                        let top = if k < n {
                            order.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
                            &order[..k]
                        } else {
                            &order[..]
                        };
                        // The release exponentiates without subtracting the
                        // maximum; subtracting it is the same softmax, and
                        // cannot underflow to 0/0 far from every memory.
                        let max = top.iter().map(|t| t.0).fold(f32::NEG_INFINITY, f32::max);
                        let mut total = 0f32;
                        for &(s, i) in top {
                            let a = (s - max).exp();
                            total += a;
                            let v = &values[i as usize * cv..][..cv];
                            for (d, x) in dst.iter_mut().zip(v) {
                                *d += a * x;
                            }
                        }
                        dst.iter_mut().for_each(|d| *d /= total);
                    },
                );
        }
        let out = Tensor::from_vec(out, (hw, cv), &candle_core::Device::Cpu)?
            .t()?
            .reshape((1, cv, h, w))?
            .to_device(query.key.device())?
            .to_dtype(query.key.dtype())?;
        Ok(out)
    }
}
