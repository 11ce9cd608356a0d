//! Robust Video Matting (Lin et al., WACV 2022), native on candle.
//!
//! ```text
//! src ─► downsample ─► backbone ─► LR-ASPP ─► recurrent decoder ─► project_mat ─► refiner ─► fgr, pha
//!                        f1..f3 ───────────────────┘      ▲ r1..r4 (carried across frames)
//! ```
//! Loader paths are the keys of the official checkpoints
//! (`rvm_mobilenetv3.pth`, `rvm_resnet50.pth`).

pub mod decoder;
pub mod lraspp;
pub mod mobilenetv3;
pub mod refiner;
pub mod resnet;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::cpu::Tile;
use crate::ops::{self, Conv2d, ConvSpec};
use crate::weights::{meta, Weights};
use crate::{Error, Result};
use decoder::{Recurrent, RecurrentDecoder};
use lraspp::LrAspp;
use mobilenetv3::MobileNetV3LargeEncoder;
use refiner::DeepGuidedFilterRefiner;
use resnet::ResNet50Encoder;

/// The Winograd algorithm of RVM's padded 3x3 convolutions on the CPU (the
/// decoder's and ResNet-50's): RVM's parity tolerance is 1e-3 and its
/// output 8-bit, and F(4x4, 3x3)'s rounding, a few millionths of the
/// largest sum, is far inside both.
const WINOGRAD: Tile = Tile::F4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    MobileNetV3,
    ResNet50,
}

impl Variant {
    /// Tells the backbone from the checkpoint's keys.
    pub fn detect(weights: &Weights) -> Result<Self> {
        if weights.contains("backbone.features.0.0.weight") {
            Ok(Self::MobileNetV3)
        } else if weights.contains("backbone.conv1.weight") {
            Ok(Self::ResNet50)
        } else {
            Err(Error::Weights {
                path: weights.path().to_path_buf(),
                reason: "not an RVM checkpoint (no 'backbone.features.0.0.weight' nor 'backbone.conv1.weight'); pass rvm_mobilenetv3.pth or rvm_resnet50.pth".into(),
            })
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::MobileNetV3 => "mobilenetv3",
            Self::ResNet50 => "resnet50",
        }
    }

    /// Channels of the ConvGRU states r1..r4.
    pub fn state_channels(self) -> [usize; 4] {
        let d = self.decoder_channels();
        [d[2] / 2, d[1] / 2, d[0] / 2, self.aspp_channels() / 2]
    }

    fn aspp_channels(self) -> usize {
        match self {
            Self::MobileNetV3 => 128,
            Self::ResNet50 => 256,
        }
    }

    fn decoder_channels(self) -> [usize; 4] {
        match self {
            Self::MobileNetV3 => [80, 40, 32, 16],
            Self::ResNet50 => [128, 64, 32, 16],
        }
    }
}

enum Backbone {
    MobileNetV3(MobileNetV3LargeEncoder),
    ResNet50(ResNet50Encoder),
}

impl Backbone {
    fn forward(&self, x: &Tensor) -> Result<[Tensor; 4]> {
        match self {
            Self::MobileNetV3(b) => b.forward(x),
            Self::ResNet50(b) => b.forward(x),
        }
    }
}

/// The ConvGRU states carried from one chunk of frames to the next. A new
/// video starts from `RecurrentState::default()` (zeros).
#[derive(Clone, Debug, Default)]
pub struct RecurrentState(Recurrent);

impl RecurrentState {
    /// r1..r4, once at least one frame has run.
    pub fn tensors(&self) -> Option<[&Tensor; 4]> {
        let [a, b, c, d] = &self.0;
        Some([a.as_ref()?, b.as_ref()?, c.as_ref()?, d.as_ref()?])
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Foreground and alpha of every frame, `[T, 3, H, W]` and `[T, 1, H, W]`.
pub struct Matte {
    pub fgr: Tensor,
    pub pha: Tensor,
}

pub struct MattingNetwork {
    variant: Variant,
    backbone: Backbone,
    aspp: LrAspp,
    decoder: RecurrentDecoder,
    project_mat: Conv2d,
    refiner: DeepGuidedFilterRefiner,
    /// Refine even at ratio 1, as the authors' ONNX export does.
    refine_always: bool,
    dtype: DType,
}

impl MattingNetwork {
    /// Loads RVM from any weight file vmatte reads (.pth, safetensors in the
    /// official or fused layout, the ONNX export); the variant comes from the
    /// keys.
    pub fn from_file(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load(&Weights::read(path, device, dtype)?)
    }

    pub fn load(w: &Weights) -> Result<Self> {
        let variant = Variant::detect(w)?;
        let (backbone, features) = match variant {
            Variant::MobileNetV3 => (
                Backbone::MobileNetV3(MobileNetV3LargeEncoder::load(&w.pp("backbone"))?),
                MobileNetV3LargeEncoder::CHANNELS,
            ),
            Variant::ResNet50 => (
                Backbone::ResNet50(ResNet50Encoder::load(&w.pp("backbone"))?),
                ResNet50Encoder::CHANNELS,
            ),
        };
        let aspp_out = variant.aspp_channels();
        let decoder_channels = variant.decoder_channels();
        let hidden = decoder_channels[3];
        Ok(Self {
            variant,
            backbone,
            aspp: LrAspp::load(&w.pp("aspp"), features[3], aspp_out)?,
            decoder: RecurrentDecoder::load(
                &w.pp("decoder"),
                [features[0], features[1], features[2], aspp_out],
                decoder_channels,
            )?,
            project_mat: Conv2d::load(
                &w.pp("project_mat.conv"),
                ConvSpec::new(hidden, 4, 1),
                None,
            )?,
            refiner: DeepGuidedFilterRefiner::load(&w.pp("refiner"), hidden)?,
            refine_always: w
                .metadata()
                .get(meta::REFINER)
                .is_some_and(|v| v == "always"),
            dtype: w.dtype(),
        })
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Mattes `src`, T frames `[T, 3, H, W]` in [0, 1], in order. The
    /// convolutions see all T frames at once; the ConvGRUs loop over them,
    /// starting from `state` and leaving it at the last frame.
    pub fn forward(
        &self,
        src: &Tensor,
        state: &mut RecurrentState,
        downsample_ratio: f64,
    ) -> Result<Matte> {
        // On the CPU the whole pass runs on one of the kernels' worker
        // threads, so each kernel starts on the thread that ran the glue
        // before it and the workers pass work between themselves. Called
        // from outside the pool, every kernel (~150 a frame) would wake the
        // pool and sleep until it finished.
        if src.device().is_cpu() {
            return rayon::scope(|_| self.forward_in_place(src, state, downsample_ratio));
        }
        self.forward_in_place(src, state, downsample_ratio)
    }

    /// [`Self::forward`] on the calling thread.
    fn forward_in_place(
        &self,
        src: &Tensor,
        state: &mut RecurrentState,
        downsample_ratio: f64,
    ) -> Result<Matte> {
        check_ratio(downsample_ratio)?;
        let src = src.to_dtype(self.dtype)?;
        let small = if downsample_ratio == 1.0 {
            src.clone()
        } else {
            ops::scale_bilinear(&src, downsample_ratio)?
        };
        let [f1, f2, f3, f4] = self.backbone.forward(&small)?;
        let f4 = self.aspp.forward(&f4)?;
        let hidden = self
            .decoder
            .forward(&small, &[f1, f2, f3, f4], &mut state.0)?;
        let out = self.project_mat.forward(&hidden)?;
        let matte = if downsample_ratio != 1.0 || self.refine_always {
            self.refiner.forward(&src, &small, &out, &hidden)?
        } else {
            ops::residual_matte(&out, &src)?
        };
        Ok(Matte {
            fgr: matte.narrow(1, 0, 3)?,
            pha: matte.narrow(1, 3, 1)?,
        })
    }
}

/// RVM accepts any ratio in (0, 1]; the smallest side must survive four
/// halvings, which `forward` checks through the shapes.
pub fn check_ratio(ratio: f64) -> Result<()> {
    if ratio.is_finite() && ratio > 0.0 && ratio <= 1.0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "downsample ratio {ratio} is outside (0, 1]; use e.g. 0.25 for 1080p, 0.375 for 720p, or 'auto'"
        )))
    }
}

/// The authors' rule: aim the long side of the downsampled frame at 512 px.
pub fn auto_downsample_ratio(height: usize, width: usize) -> f64 {
    (512.0 / height.max(width) as f64).min(1.0)
}
