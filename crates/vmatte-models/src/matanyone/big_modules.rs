//! MatAnyone's encoders and decoder (upstream `model/big_modules.py`).
//! Single object: the mask encoder takes RGB + mask (4 channels) and the
//! sensory readout the sensory memory + the last mask.

use candle_core::Tensor;

use super::config::ModelConfig;
use super::modules::{conv, FeatureFusion, SensoryDeepUpdater, SensoryUpdater, UpsampleBlock};
use super::resnet::{conv_bn, Trunk};
use crate::ops::{self, Activation, Conv2d, ConvSpec};
use crate::weights::Weights;
use crate::Result;

/// The pixel encoder's features of a normalised image: f16, f8, f4, f2 and
/// the image itself (f1).
pub struct PixelFeatures {
    pub f16: Tensor,
    pub f8: Tensor,
    pub f4: Tensor,
    pub f2: Tensor,
    pub f1: Tensor,
}

/// `PixelEncoder`: a ResNet's stem and layer1..3 (`res2`, `layer2`,
/// `layer3`).
pub(super) struct PixelEncoder {
    stem: Conv2d,
    trunk: Trunk,
}

impl PixelEncoder {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        Ok(Self {
            stem: conv_bn(w, "conv1", "bn1", ConvSpec::new(3, 64, 7).stride(2))?
                .then(Activation::Relu),
            trunk: Trunk::load(w, c.pixel_encoder, ["res2", "layer2", "layer3"])?,
        })
    }

    pub(super) fn forward(&self, image: &Tensor) -> Result<PixelFeatures> {
        let f2 = self.stem.forward(image)?;
        let [f4, f8, f16] = self.trunk.forward(&ops::max_pool_3x3_s2(&f2)?)?;
        Ok(PixelFeatures {
            f16,
            f8,
            f4,
            f2,
            f1: image.clone(),
        })
    }
}

/// `KeyProjection`: the memory key, its shrinkage and selection terms.
pub(super) struct KeyProjection {
    pix_feat_proj: Conv2d,
    key_proj: Conv2d,
    d_proj: Conv2d,
    e_proj: Conv2d,
}

/// A frame's addressing terms for the memory: key `(1, CK, h, w)`,
/// shrinkage `(1, 1, h, w)` (`d² + 1`), selection `(1, CK, h, w)` (sigmoid).
#[derive(Clone)]
pub struct Key {
    pub key: Tensor,
    pub shrinkage: Tensor,
    pub selection: Tensor,
}

impl KeyProjection {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        let (p, k) = (c.pixel_dim, c.key_dim);
        Ok(Self {
            pix_feat_proj: conv(&w.pp("pix_feat_proj"), c.ms_dims[0], p, 1)?,
            key_proj: conv(&w.pp("key_proj"), p, k, 3)?,
            d_proj: conv(&w.pp("d_proj"), p, 1, 3)?,
            e_proj: conv(&w.pp("e_proj"), p, k, 3)?.then(Activation::Sigmoid),
        })
    }

    pub(super) fn forward(&self, f16: &Tensor) -> Result<Key> {
        let x = self.pix_feat_proj.forward(f16)?;
        Ok(Key {
            key: self.key_proj.forward(&x)?,
            shrinkage: (self.d_proj.forward(&x)?.sqr()? + 1.0)?,
            selection: self.e_proj.forward(&x)?,
        })
    }
}

/// `MaskEncoder`: a ResNet over `[image, mask]`, fused with the pixel
/// feature into the mask value, and the deep update of the sensory memory.
pub(super) struct MaskEncoder {
    stem: Conv2d,
    trunk: Trunk,
    fuser: FeatureFusion,
    sensory_update: SensoryDeepUpdater,
}

impl MaskEncoder {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        Ok(Self {
            // Upstream pools before its ReLU; the two commute (ReLU is
            // monotone), and after it zero padding equals -inf padding.
            stem: conv_bn(w, "conv1", "bn1", ConvSpec::new(4, 64, 7).stride(2))?
                .then(Activation::Relu),
            trunk: Trunk::load(w, c.mask_encoder, ["layer1", "layer2", "layer3"])?,
            fuser: FeatureFusion::load(&w.pp("fuser"), c.pixel_dim, c.mask_final_dim, c.value_dim)?,
            sensory_update: SensoryDeepUpdater::load(
                &w.pp("sensory_update"),
                c.value_dim,
                c.sensory_dim,
            )?,
        })
    }

    /// The mask value `(1, CV, h, w)`, and the updated sensory memory when
    /// `deep_update`.
    pub(super) fn forward(
        &self,
        image: &Tensor,
        pix_feat: &Tensor,
        sensory: &Tensor,
        mask: &Tensor,
        deep_update: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let g = ops::cat_channels(&[image, mask])?;
        let g = ops::max_pool_3x3_s2(&self.stem.forward(&g)?)?;
        let [_, _, g16] = self.trunk.forward(&g)?;
        let value = self.fuser.forward(pix_feat, &g16)?;
        let sensory = deep_update
            .then(|| self.sensory_update.forward(&value, sensory))
            .transpose()?;
        Ok((value, sensory))
    }
}

/// `PixelFeatureFuser`: the memory readout plus a projection of the
/// sensory memory and the last mask, fused with the pixel feature.
pub(super) struct PixelFuser {
    fuser: FeatureFusion,
    sensory_compress: Conv2d,
}

impl PixelFuser {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        Ok(Self {
            fuser: FeatureFusion::load(&w.pp("fuser"), c.pixel_dim, c.value_dim, c.embed_dim)?,
            sensory_compress: conv(&w.pp("sensory_compress"), c.sensory_dim + 1, c.value_dim, 1)?,
        })
    }

    /// `last_mask` already at stride 16.
    pub(super) fn forward(
        &self,
        pix_feat: &Tensor,
        readout: &Tensor,
        sensory: &Tensor,
        last_mask: &Tensor,
    ) -> Result<Tensor> {
        let compressed = self.sensory_compress.forward_cat(&[sensory, last_mask])?;
        self.fuser
            .forward(pix_feat, &ops::add(readout, &compressed)?)
    }
}

/// `MaskDecoder`: upsampling blocks from stride 16 to full size with the
/// pixel encoder's skips, the matting head, and the decoder's update of
/// the sensory memory.
pub(super) struct MaskDecoder {
    /// 1x1 projections of f8, f4, f2, f1.
    skips: [Conv2d; 4],
    /// 16→8, 8→4, 4→2, 2→1.
    ups: [UpsampleBlock; 4],
    pred_mat: Conv2d,
    sensory_update: SensoryUpdater,
}

impl MaskDecoder {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        let (ms, up) = (c.ms_dims, c.up_dims);
        let skip = |i: usize| {
            conv(
                &w.pp(format!("decoder_feat_proc.transforms.{i}")),
                ms[i + 1],
                up[i],
                1,
            )
        };
        let block = |name: &str, i: usize| UpsampleBlock::load(&w.pp(name), up[i], up[i + 1]);
        Ok(Self {
            skips: [skip(0)?, skip(1)?, skip(2)?, skip(3)?],
            ups: [
                block("up_16_8", 0)?,
                block("up_8_4", 1)?,
                block("up_4_2", 2)?,
                block("up_2_1", 3)?,
            ],
            // Of p1's ReLU, taken as it reads p1 (which the sensory update
            // takes as it is).
            pred_mat: conv(&w.pp("pred_mat"), up[4], 1, 3)?.after_relu(),
            sensory_update: SensoryUpdater::load(
                &w.pp("sensory_update"),
                [up[0], up[1], up[2], up[3], up[4] + 1],
                c.sensory_dim,
                c.sensory_dim,
            )?,
        })
    }

    /// The alpha logits `(1, 1, H, W)` (unclamped) and, when
    /// `update_sensory`, the new sensory memory.
    pub(super) fn forward(
        &self,
        feats: &PixelFeatures,
        readout: &Tensor,
        sensory: &Tensor,
        update_sensory: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let skips = [&feats.f8, &feats.f4, &feats.f2, &feats.f1];
        let mut maps = vec![readout.clone()];
        for ((proj, up), skip) in self.skips.iter().zip(&self.ups).zip(skips) {
            let last = maps.last().expect("starts with the readout");
            let next = up.forward(last, &proj.forward(skip)?)?;
            maps.push(next);
        }
        let p1 = &maps[4];
        let logits = self.pred_mat.forward(p1)?;
        let sensory = update_sensory
            .then(|| -> Result<Tensor> {
                let p1 = ops::cat_channels(&[p1, &logits])?;
                self.sensory_update
                    .forward([&maps[0], &maps[1], &maps[2], &maps[3], &p1], sensory)
            })
            .transpose()?;
        Ok((logits, sensory))
    }
}

/// `UncertPred` (`temp_sparity`): where the memory readout can be trusted
/// against the last frame's mask value, as logits `(1, 1, h, w)`.
pub(super) struct UncertPred {
    conv1: Conv2d,
    conv2: Conv2d,
    out: Conv2d,
}

impl UncertPred {
    pub(super) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        let input = c.pixel_dim * 2 + 1 + c.value_dim;
        Ok(Self {
            conv1: conv_bn(w, "conv1x1_v2", "bn1", ConvSpec::new(input, 64, 1))?
                .then(Activation::Relu),
            conv2: conv_bn(w, "conv3x3", "bn2", ConvSpec::new(64, 32, 3))?.then(Activation::Relu),
            out: Conv2d::load_unbiased(&w.pp("conv3x3_out"), ConvSpec::new(32, 1, 3))?,
        })
    }

    /// `last_mask` at full size.
    pub(super) fn forward(
        &self,
        last_pix_feat: &Tensor,
        pix_feat: &Tensor,
        last_mask: &Tensor,
        value_diff: &Tensor,
    ) -> Result<Tensor> {
        let last_mask = ops::area_down(last_mask, 16)?;
        let x = self
            .conv1
            .forward_cat(&[last_pix_feat, pix_feat, &last_mask, value_diff])?;
        self.out.forward(&self.conv2.forward(&x)?)
    }
}
