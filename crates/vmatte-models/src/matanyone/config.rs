//! MatAnyone's settings: the network's dimensions (the release's
//! `config/model/base.yaml`, or the `cfg.model` of a Hugging Face
//! `config.json`) and the inference loop's memory knobs
//! (`eval_matanyone_config.yaml`).

use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

/// The ResNet a pixel or mask encoder is cut from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backbone {
    Resnet18,
    Resnet50,
}

impl Backbone {
    /// Output channels per `planes` of a block.
    pub fn expansion(self) -> usize {
        match self {
            Self::Resnet18 => 1,
            Self::Resnet50 => 4,
        }
    }

    /// Blocks in layer1..layer3.
    pub fn blocks_per_layer(self) -> [usize; 3] {
        match self {
            Self::Resnet18 => [2, 2, 2],
            Self::Resnet50 => [3, 4, 6],
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "resnet18" => Some(Self::Resnet18),
            "resnet50" => Some(Self::Resnet50),
            _ => None,
        }
    }
}

/// The network's dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub pixel_mean: [f32; 3],
    pub pixel_std: [f32; 3],
    pub pixel_dim: usize,
    pub key_dim: usize,
    pub value_dim: usize,
    pub sensory_dim: usize,
    pub embed_dim: usize,
    pub pixel_encoder: Backbone,
    /// Channels of f16, f8, f4, f2, f1.
    pub ms_dims: [usize; 5],
    pub mask_encoder: Backbone,
    pub mask_final_dim: usize,
    pub pe_scale: f32,
    pub pe_temperature: f32,
    pub ff_dim: usize,
    pub num_heads: usize,
    pub num_blocks: usize,
    pub num_queries: usize,
    pub num_summaries: usize,
    /// Decoder channels at strides 16, 8, 4, 2, 1.
    pub up_dims: [usize; 5],
}

impl Default for ModelConfig {
    /// The release (`matanyone.pth`).
    fn default() -> Self {
        Self {
            pixel_mean: [0.485, 0.456, 0.406],
            pixel_std: [0.229, 0.224, 0.225],
            pixel_dim: 256,
            key_dim: 64,
            value_dim: 256,
            sensory_dim: 256,
            embed_dim: 256,
            pixel_encoder: Backbone::Resnet50,
            ms_dims: [1024, 512, 256, 64, 3],
            mask_encoder: Backbone::Resnet18,
            mask_final_dim: 256,
            pe_scale: 32.0,
            pe_temperature: 128.0,
            ff_dim: 2048,
            num_heads: 8,
            num_blocks: 3,
            num_queries: 16,
            num_summaries: 16,
            up_dims: [256, 128, 128, 64, 16],
        }
    }
}

/// The memory knobs of the inference loop, with the release's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryConfig {
    /// A frame becomes memory every this many steps.
    pub mem_every: usize,
    /// Memory frames kept, the permanent first one included.
    pub max_mem_frames: usize,
    /// How many of the steps between memory frames update the sensory
    /// memory (spread evenly).
    pub stagger_updates: usize,
    /// Memory tokens each pixel reads from.
    pub top_k: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            mem_every: 5,
            max_mem_frames: 5,
            stagger_updates: 5,
            top_k: 30,
        }
    }
}

impl MemoryConfig {
    /// Why these settings cannot run, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.mem_every == 0 {
            return Some("mem-every must be at least 1".into());
        }
        if self.max_mem_frames == 0 {
            return Some("max-mem-frames must be at least 1 (the first frame's memory)".into());
        }
        if self.top_k == 0 {
            return Some("top-k must be at least 1".into());
        }
        if self.stagger_updates == 0 {
            return Some("stagger-updates must be at least 1".into());
        }
        None
    }
}

/// Both halves of a `config.json` (`{"cfg": {...}}` as PyTorchModelHubMixin
/// saves it, or the composed config itself).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub model: ModelConfig,
    pub memory: MemoryConfig,
}

impl Config {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            reason: format!("cannot read it ({e})"),
        })?;
        Self::parse(path, &text)
    }

    /// The config in `text`, read from `path` (which errors name).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = |reason: String| Error::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let json: Value = serde_json::from_str(text)
            .map_err(|e| bad(format!("not JSON ({e}); pass MatAnyone's config.json")))?;
        Self::from_json(&json).map_err(|what| {
            bad(format!(
                "{what}; pass the config.json of MatAnyone's Hugging Face folder"
            ))
        })
    }

    /// Reads what the release's config holds; what it lacks keeps the
    /// release's default.
    pub fn from_json(json: &Value) -> std::result::Result<Self, String> {
        let cfg = json.get("cfg").unwrap_or(json);
        let mut out = Self::default();
        let m = &mut out.model;
        if let Some(model) = cfg.get("model") {
            let at =
                |path: &str| -> Option<&Value> { path.split('.').try_fold(model, |v, k| v.get(k)) };
            let uint = |path: &str, into: &mut usize| -> std::result::Result<(), String> {
                if let Some(v) = at(path) {
                    *into = v
                        .as_u64()
                        .filter(|&n| n > 0)
                        .ok_or(format!("model.{path} is {v}, not a positive integer"))?
                        as usize;
                }
                Ok(())
            };
            uint("pixel_dim", &mut m.pixel_dim)?;
            uint("key_dim", &mut m.key_dim)?;
            uint("value_dim", &mut m.value_dim)?;
            uint("sensory_dim", &mut m.sensory_dim)?;
            uint("embed_dim", &mut m.embed_dim)?;
            uint("mask_encoder.final_dim", &mut m.mask_final_dim)?;
            uint("object_transformer.ff_dim", &mut m.ff_dim)?;
            uint("object_transformer.num_heads", &mut m.num_heads)?;
            uint("object_transformer.num_blocks", &mut m.num_blocks)?;
            uint("object_transformer.num_queries", &mut m.num_queries)?;
            m.num_summaries = m.num_queries;
            uint("object_summarizer.num_summaries", &mut m.num_summaries)?;
            let backbone = |path: &str, into: &mut Backbone| -> std::result::Result<(), String> {
                if let Some(v) = at(path) {
                    *into = v
                        .as_str()
                        .and_then(Backbone::parse)
                        .ok_or(format!("model.{path} is {v}, not resnet18 or resnet50"))?;
                }
                Ok(())
            };
            backbone("pixel_encoder.type", &mut m.pixel_encoder)?;
            backbone("mask_encoder.type", &mut m.mask_encoder)?;
            let list = |path: &str, into: &mut [usize]| -> std::result::Result<(), String> {
                if let Some(v) = at(path) {
                    let items: Vec<usize> = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_u64())
                                .map(|x| x as usize)
                                .collect()
                        })
                        .unwrap_or_default();
                    if items.len() != into.len() || items.contains(&0) {
                        return Err(format!(
                            "model.{path} is {v}, not {} positive integers",
                            into.len()
                        ));
                    }
                    into.copy_from_slice(&items);
                }
                Ok(())
            };
            list("pixel_encoder.ms_dims", &mut m.ms_dims)?;
            list("mask_decoder.up_dims", &mut m.up_dims)?;
            let float = |path: &str, into: &mut f32| -> std::result::Result<(), String> {
                if let Some(v) = at(path) {
                    *into = v
                        .as_f64()
                        .ok_or(format!("model.{path} is {v}, not a number"))?
                        as f32;
                }
                Ok(())
            };
            float("pixel_pe_scale", &mut m.pe_scale)?;
            float("pixel_pe_temperature", &mut m.pe_temperature)?;
            for (path, into) in [
                ("pixel_mean", &mut m.pixel_mean),
                ("pixel_std", &mut m.pixel_std),
            ] {
                if let Some(v) = at(path) {
                    let items: Vec<f32> = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_f64())
                                .map(|x| x as f32)
                                .collect()
                        })
                        .unwrap_or_default();
                    if items.len() != 3 {
                        return Err(format!("model.{path} is {v}, not 3 numbers"));
                    }
                    into.copy_from_slice(&items);
                }
            }
        }
        if m.up_dims[0] != m.embed_dim {
            return Err(format!(
                "model.mask_decoder.up_dims starts with {} but embed_dim is {}; they must match",
                m.up_dims[0], m.embed_dim
            ));
        }
        if m.embed_dim % m.num_heads != 0 || m.embed_dim % 4 != 0 {
            return Err(format!(
                "embed_dim {} must be a multiple of 4 and of num_heads {}",
                m.embed_dim, m.num_heads
            ));
        }
        if m.num_summaries != m.num_queries || m.num_queries % 2 != 0 {
            return Err("num_summaries must equal num_queries, an even number".into());
        }
        let mem = &mut out.memory;
        for (key, into) in [
            ("mem_every", &mut mem.mem_every),
            ("max_mem_frames", &mut mem.max_mem_frames),
            ("stagger_updates", &mut mem.stagger_updates),
            ("top_k", &mut mem.top_k),
        ] {
            if let Some(v) = cfg.get(key) {
                *into = v
                    .as_u64()
                    .filter(|&n| n > 0)
                    .ok_or(format!("{key} is {v}, not a positive integer"))?
                    as usize;
            }
        }
        Ok(out)
    }
}
