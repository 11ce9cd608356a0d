//! The peft LoRA that GVM ships beside its UNet (`adapter_config.json` +
//! `pytorch_lora_weights.pt`), merged into the base weights at load time:
//! `W += (alpha / r) · B·A`, with convolution factors flattened to matrices
//! and the product reshaped to the kernel's shape. Merged, the LoRA costs
//! nothing at run time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::{Error, Result};

/// The adapter file names seen in the wild: the HF repo's, GVM's own
/// loader's, and peft's `save_pretrained` output.
pub const ADAPTER_FILES: [&str; 3] = [
    "pytorch_lora_weights.pt",
    "unet_lora.pt",
    "adapter_model.safetensors",
];

#[derive(Debug, Deserialize)]
struct AdapterConfig {
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    rank_pattern: HashMap<String, serde_json::Value>,
    #[serde(default)]
    alpha_pattern: HashMap<String, serde_json::Value>,
}

/// A LoRA found in a folder, ready to merge.
pub struct Lora {
    pub path: PathBuf,
    scale: f64,
    /// Module path -> (A, B), in f32.
    pairs: HashMap<String, (Option<Tensor>, Option<Tensor>)>,
}

impl Lora {
    /// The adapter in `dir` (`adapter_config.json` and one of
    /// [`ADAPTER_FILES`]), or `None` when there is none.
    pub fn find(dir: &Path) -> Result<Option<Self>> {
        let Some(file) = ADAPTER_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        else {
            return Ok(None);
        };
        Self::open(&file).map(Some)
    }

    /// The adapter whose weights are `file`, its `adapter_config.json`
    /// beside it.
    pub fn open(file: &Path) -> Result<Self> {
        let config = file
            .parent()
            .unwrap_or(Path::new("."))
            .join("adapter_config.json");
        if !config.is_file() {
            return Err(Error::Weights {
                path: file.to_path_buf(),
                reason: "LoRA weights without adapter_config.json beside them; copy the adapter's config too, or run without the LoRA".into(),
            });
        }
        Self::read(&config, file)
    }

    pub fn read(config_path: &Path, file: &Path) -> Result<Self> {
        let bad = |path: &Path, reason: String| Error::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(config_path).map_err(Error::io(config_path))?;
        let cfg: AdapterConfig = serde_json::from_str(&text)
            .map_err(|e| bad(config_path, format!("not a peft LoRA config ({e})")))?;
        if cfg.use_dora || !cfg.rank_pattern.is_empty() || !cfg.alpha_pattern.is_empty() {
            return Err(bad(
                config_path,
                "DoRA and per-module rank/alpha patterns are not supported; merge the adapter with peft first, or run without the LoRA".into(),
            ));
        }
        if cfg.r == 0 {
            return Err(bad(config_path, "LoRA rank r is 0".into()));
        }
        let scale = if cfg.use_rslora {
            cfg.lora_alpha / (cfg.r as f64).sqrt()
        } else {
            cfg.lora_alpha / cfg.r as f64
        };
        let (tensors, _) = crate::weights::read_tensors(file)?;
        let mut pairs: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        for (key, t) in tensors {
            let Some((module, which)) = split_key(&key) else {
                continue;
            };
            let entry = pairs.entry(module).or_default();
            let t = t.to_dtype(DType::F32)?;
            if which == 'A' {
                entry.0 = Some(t);
            } else {
                entry.1 = Some(t);
            }
        }
        if pairs.is_empty() {
            return Err(bad(
                file,
                "holds no lora_A/lora_B tensors; is this the UNet's LoRA file?".into(),
            ));
        }
        Ok(Self {
            path: file.to_path_buf(),
            scale,
            pairs,
        })
    }

    pub fn modules(&self) -> usize {
        self.pairs.len()
    }

    /// Adds `scale · B·A` to every targeted `<module>.weight` in `weights`.
    pub fn merge_into(&self, weights: &mut HashMap<String, Tensor>) -> Result<()> {
        let bad = |reason: String| Error::Weights {
            path: self.path.clone(),
            reason,
        };
        for (module, pair) in &self.pairs {
            let (Some(a), Some(b)) = pair else {
                return Err(bad(format!("'{module}' has only one of lora_A and lora_B")));
            };
            let key = format!("{module}.weight");
            let base = weights.get(&key).ok_or_else(|| {
                bad(format!(
                    "targets '{key}', which the UNet does not have; is this GVM's UNet LoRA?"
                ))
            })?;
            let rank = a.dim(0)?;
            let delta = b
                .reshape((b.dim(0)?, rank))?
                .matmul(&a.reshape((rank, ()))?)?;
            if delta.elem_count() != base.elem_count() {
                return Err(bad(format!(
                    "'{module}' LoRA product has {} values, the weight {:?}",
                    delta.elem_count(),
                    base.dims()
                )));
            }
            let merged =
                (base.to_dtype(DType::F32)? + (delta.reshape(base.dims())? * self.scale)?)?;
            weights.insert(key, merged);
        }
        Ok(())
    }
}

/// `model.down_blocks.0...to_q.lora_A.weight` -> (`down_blocks.0...to_q`, 'A').
/// Accepts peft's prefixes (`base_model.model.`, `model.`) and adapter
/// names (`lora_A.default.weight`).
fn split_key(key: &str) -> Option<(String, char)> {
    let key = key
        .strip_prefix("base_model.model.")
        .or_else(|| key.strip_prefix("model."))
        .unwrap_or(key);
    for (marker, which) in [(".lora_A.", 'A'), (".lora_B.", 'B')] {
        if let Some(at) = key.find(marker) {
            return Some((key[..at].to_string(), which));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::split_key;

    #[test]
    fn keys_of_every_peft_layout() {
        for key in [
            "model.conv_in.lora_A.weight",
            "base_model.model.conv_in.lora_A.default.weight",
            "conv_in.lora_A.weight",
        ] {
            assert_eq!(split_key(key), Some(("conv_in".into(), 'A')), "{key}");
        }
        assert_eq!(split_key("model.conv_in.weight"), None);
    }
}
