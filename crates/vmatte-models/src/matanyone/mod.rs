//! MatAnyone (Yang et al., CVPR 2025; pq-yang/MatAnyone), native on
//! candle: video matting of the subject a first-frame mask picks, carried
//! through the video by a memory of past frames (after Cutie).
//!
//! ```text
//! frame ─► normalise ─► pixel encoder ─► f16 ─► key proj ─► key, shrinkage, selection
//!                                       └─► pix_feat ─┐
//! memory (keys, mask values) ─► top-k readout ─► uncertainty blend with the last mask value
//!          ─► pixel fuser (+ sensory, last mask) ─► object transformer (+ object memory)
//!          ─► decoder (+ f8, f4, f2, f1) ─► alpha ─┬─► output
//!                                                  └─► mask encoder ─► mask value, sensory,
//!                                                                      summaries ─► memory
//! ```
//! [`inference::Session`] is the release's `InferenceCore` for one object
//! and its warm-up loop; the modules below it are the network, named after
//! the upstream files, with loader paths that are the checkpoint's keys
//! (`matanyone.pth`, or the Hugging Face `model.safetensors`).

pub mod big_modules;
pub mod config;
pub mod inference;
pub mod mask;
pub mod memory;
mod modules;
mod resnet;
mod transformer;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::weights::Weights;
use crate::{ops, Error, Result};
use big_modules::{
    Key, KeyProjection, MaskDecoder, MaskEncoder, PixelEncoder, PixelFeatures, PixelFuser,
    UncertPred,
};
pub use config::{Backbone, Config, MemoryConfig, ModelConfig};
pub use inference::{Session, Steps};
use modules::conv;
use transformer::{ObjectSummarizer, QueryTransformer};

/// The Winograd algorithm of MatAnyone's padded 3x3 convolutions on the
/// CPU (see `cpu::winograd`): F(4x4, 3x3), 2.25 times fewer multiplications
/// than F(2x2, 3x3); its rounding keeps every intermediate of the parity
/// fixtures within 5e-5 of the release (F2: 2.5e-5), under the 1e-4 the
/// parity test holds.
const WINOGRAD: crate::cpu::Tile = crate::cpu::Tile::F4;

/// A key only MatAnyone's checkpoints have.
pub const SIGNATURE_KEY: &str = "temp_sparity.conv1x1_v2.weight";

/// The network.
pub struct MatAnyone {
    pub config: ModelConfig,
    pixel_encoder: PixelEncoder,
    pix_feat_proj: crate::ops::Conv2d,
    key_proj: KeyProjection,
    mask_encoder: MaskEncoder,
    mask_decoder: MaskDecoder,
    pixel_fuser: PixelFuser,
    object_transformer: QueryTransformer,
    object_summarizer: ObjectSummarizer,
    temp_sparity: UncertPred,
    mean: Tensor,
    std: Tensor,
}

/// What the mask encoder makes of a frame and its mask.
pub struct Encoded {
    /// `(1, CV, h, w)`.
    pub value: Tensor,
    /// The updated sensory memory (deep updates only).
    pub sensory: Option<Tensor>,
    /// `(Q, E + 1)`.
    pub summaries: Tensor,
}

impl MatAnyone {
    /// Loads the network from a weight file whose dimensions `config`
    /// gives.
    pub fn load(path: &Path, config: ModelConfig, device: &Device, dtype: DType) -> Result<Self> {
        let w = Weights::read(path, device, dtype)?;
        if !w.contains(SIGNATURE_KEY) {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                reason: format!(
                    "not a MatAnyone checkpoint (no '{SIGNATURE_KEY}'); pass matanyone.pth or the Hugging Face folder's model.safetensors"
                ),
            });
        }
        Self::from_weights(&w, config)
    }

    /// Loads the model vmatte's store holds (`models import matanyone`),
    /// with the config recorded in its metadata; returns the memory
    /// settings that config gives too.
    pub fn from_store(path: &Path, device: &Device, dtype: DType) -> Result<(Self, MemoryConfig)> {
        let config =
            match crate::weights::safetensors_metadata(path)?.get(crate::weights::meta::CONFIG) {
                Some(text) => {
                    let json: serde_json::Value =
                        serde_json::from_str(text).map_err(|e| Error::Weights {
                            path: path.to_path_buf(),
                            reason: format!(
                                "its recorded config is not JSON ({e}); import MatAnyone again"
                            ),
                        })?;
                    Config::from_json(&json).map_err(|reason| Error::Weights {
                        path: path.to_path_buf(),
                        reason: format!("{reason}; import MatAnyone again"),
                    })?
                }
                None => Config::default(),
            };
        Ok((
            Self::load(path, config.model, device, dtype)?,
            config.memory,
        ))
    }

    pub fn from_weights(w: &Weights, c: ModelConfig) -> Result<Self> {
        let column = |v: [f32; 3]| -> Result<Tensor> {
            Ok(Tensor::from_vec(v.to_vec(), (1, 3, 1, 1), w.device())?.to_dtype(w.dtype())?)
        };
        Ok(Self {
            pixel_encoder: PixelEncoder::load(&w.pp("pixel_encoder"), &c)?,
            pix_feat_proj: conv(&w.pp("pix_feat_proj"), c.ms_dims[0], c.pixel_dim, 1)?,
            key_proj: KeyProjection::load(&w.pp("key_proj"), &c)?,
            mask_encoder: MaskEncoder::load(&w.pp("mask_encoder"), &c)?,
            mask_decoder: MaskDecoder::load(&w.pp("mask_decoder"), &c)?,
            pixel_fuser: PixelFuser::load(&w.pp("pixel_fuser"), &c)?,
            object_transformer: QueryTransformer::load(&w.pp("object_transformer"), &c)?,
            object_summarizer: ObjectSummarizer::load(&w.pp("object_summarizer"), &c)?,
            temp_sparity: UncertPred::load(&w.pp("temp_sparity"), &c)?,
            mean: column(c.pixel_mean)?,
            std: column(c.pixel_std)?,
            config: c,
        })
    }

    /// `(image - mean) / std` of an RGB image in [0, 1], `(1, 3, H, W)`.
    pub fn normalise(&self, image: &Tensor) -> Result<Tensor> {
        Ok(image.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?)
    }

    /// `encode_image`: the multi-scale features and `pix_feat` of a
    /// normalised image.
    pub fn encode_image(&self, image: &Tensor) -> Result<(PixelFeatures, Tensor)> {
        let feats = self.pixel_encoder.forward(image)?;
        let pix_feat = self.pix_feat_proj.forward(&feats.f16)?;
        Ok((feats, pix_feat))
    }

    pub fn transform_key(&self, f16: &Tensor) -> Result<Key> {
        self.key_proj.forward(f16)
    }

    /// `encode_mask`: `mask (1, 1, H, W)` in [0, 1] at the image's size.
    pub fn encode_mask(
        &self,
        image: &Tensor,
        pix_feat: &Tensor,
        sensory: &Tensor,
        mask: &Tensor,
        deep_update: bool,
    ) -> Result<Encoded> {
        let (value, sensory) =
            self.mask_encoder
                .forward(image, pix_feat, sensory, mask, deep_update)?;
        let small = ops::area_down(mask, 16)?;
        let summaries = self.object_summarizer.forward(&small, &value)?;
        Ok(Encoded {
            value,
            sensory,
            summaries,
        })
    }

    /// `pixel_fusion` then `readout_query`: the memory readout `(1, CV,
    /// h, w)` made into the decoder's input `(1, E, h, w)`.
    pub fn read_out(
        &self,
        pix_feat: &Tensor,
        readout: &Tensor,
        sensory: &Tensor,
        last_mask: &Tensor,
        summaries: &Tensor,
    ) -> Result<Tensor> {
        let last_mask = ops::area_down(last_mask, 16)?;
        let fused = self
            .pixel_fuser
            .forward(pix_feat, readout, sensory, &last_mask)?;
        self.object_transformer.forward(&fused, summaries)
    }

    /// `pred_uncertainty`'s probability `(1, 1, h, w)`.
    pub fn uncertainty(
        &self,
        last_pix_feat: &Tensor,
        pix_feat: &Tensor,
        last_mask: &Tensor,
        value_diff: &Tensor,
    ) -> Result<Tensor> {
        let logits = self
            .temp_sparity
            .forward(last_pix_feat, pix_feat, last_mask, value_diff)?;
        Ok(candle_nn::ops::sigmoid(&logits)?)
    }

    /// `segment` in matting mode: the alpha `clamp(logits, 0, 1)` `(1, 1,
    /// H, W)`, and the new sensory memory when `update_sensory`.
    pub fn segment(
        &self,
        feats: &PixelFeatures,
        readout: &Tensor,
        sensory: &Tensor,
        update_sensory: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (logits, sensory) =
            self.mask_decoder
                .forward(feats, readout, sensory, update_sensory)?;
        Ok((logits.clamp(0f32, 1f32)?, sensory))
    }
}
