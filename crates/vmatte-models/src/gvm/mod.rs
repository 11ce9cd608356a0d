//! Generative Video Matting (Ge et al., SIGGRAPH 2025), native on candle:
//! Stable Video Diffusion's VAE and spatio-temporal UNet, fine-tuned to turn
//! a clip into its alpha matte in one step.
//!
//! ```text
//! frames ─► resize, pad to 32 ─► VAE encode ─► rgb_latent ─┐
//!            latent = 0 ─► [latent, rgb_latent] ─► UNet(t=999) ─► latent   (x denoise steps)
//! latent ─► VAE decode (in chunks of frames) ─► mean RGB ─► alpha ─► crop, resize back, thresholds
//! ```
//! Weights load from the published diffusers folder (`unet/`, `vae/`,
//! config.json files, safetensors in fp32 or fp16), with the peft LoRA
//! beside the UNet merged at load time. Loader paths are the checkpoint's
//! keys.

pub mod frames;
pub mod layers;
pub mod lora;
pub mod unet;
pub mod vae;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::weights::{read_tensors, Weights};
use crate::{Error, Result};
pub use frames::Geometry;
use lora::Lora;
use unet::{Unet, UnetConfig};
use vae::{Vae, VaeConfig};

/// The timestep GVM's one-step model was trained at.
pub const TIMESTEP: f32 = 999.0;

/// Whether to merge the LoRA found beside the UNet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LoraChoice {
    /// Merge `unet/adapter_config.json` + weights when they are there.
    #[default]
    Auto,
    /// Base weights only.
    Off,
    /// This folder's adapter (config plus weights), which must exist.
    From(PathBuf),
}

/// The files of a diffusers GVM folder.
#[derive(Clone, Debug)]
pub struct GvmFolder {
    pub root: PathBuf,
    pub unet_config: PathBuf,
    pub unet_weights: PathBuf,
    pub vae_config: PathBuf,
    pub vae_weights: PathBuf,
}

impl GvmFolder {
    /// Checks that `root` is GVM's diffusers layout and names its files.
    pub fn open(root: &Path) -> Result<Self> {
        let need = |rel: &str| -> Result<PathBuf> {
            let p = root.join(rel);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::Weights {
                    path: root.to_path_buf(),
                    reason: format!(
                        "has no {rel}; pass the folder downloaded from huggingface.co/geyongtao/gvm (with unet/ and vae/)"
                    ),
                })
            }
        };
        let weights = |sub: &str| -> Result<PathBuf> {
            for name in [
                "diffusion_pytorch_model.safetensors",
                "diffusion_pytorch_model.fp16.safetensors",
            ] {
                let p = root.join(sub).join(name);
                if p.is_file() {
                    return Ok(p);
                }
            }
            need(&format!("{sub}/diffusion_pytorch_model.safetensors"))
        };
        Ok(Self {
            root: root.to_path_buf(),
            unet_config: need("unet/config.json")?,
            unet_weights: weights("unet")?,
            vae_config: need("vae/config.json")?,
            vae_weights: weights("vae")?,
        })
    }

    pub fn unet_dir(&self) -> PathBuf {
        self.root.join("unet")
    }

    fn config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        serde_json::from_str(&text).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            reason: format!("not a config this model understands ({e}); re-download the folder"),
        })
    }

    pub fn unet(&self) -> Result<UnetConfig> {
        Self::config(&self.unet_config)
    }

    pub fn vae(&self) -> Result<VaeConfig> {
        Self::config(&self.vae_config)
    }

    /// The LoRA `choice` selects, if any.
    pub fn lora(&self, choice: &LoraChoice) -> Result<Option<Lora>> {
        match choice {
            LoraChoice::Off => Ok(None),
            LoraChoice::Auto => Lora::find(&self.unet_dir()),
            // A file is that adapter file, with the config beside it; a
            // folder is searched as the UNet's is.
            LoraChoice::From(file) if file.is_file() => Lora::open(file).map(Some),
            LoraChoice::From(dir) => Lora::find(dir)?.map(Some).ok_or_else(|| Error::Weights {
                path: dir.clone(),
                reason: format!(
                    "has no LoRA (adapter_config.json with one of {}); check the LoRA folder given",
                    lora::ADAPTER_FILES.join(", ")
                ),
            }),
        }
    }
}

/// GVM's networks, on one device and dtype.
pub struct Gvm {
    pub vae: Vae,
    pub unet: Unet,
    pub lora: Option<PathBuf>,
    device: Device,
    dtype: DType,
}

impl Gvm {
    pub fn load(root: &Path, lora: &LoraChoice, device: &Device, dtype: DType) -> Result<Self> {
        let folder = GvmFolder::open(root)?;
        let (unet_cfg, vae_cfg) = (folder.unet()?, folder.vae()?);
        let lora = folder.lora(lora)?;
        let (mut unet_tensors, _) = read_tensors(&folder.unet_weights)?;
        if let Some(l) = &lora {
            l.merge_into(&mut unet_tensors)?;
        }
        let unet = Unet::load(
            &Weights::new(unet_tensors, &folder.unet_weights, device, dtype),
            &unet_cfg,
        )?;
        let (vae_tensors, _) = read_tensors(&folder.vae_weights)?;
        let vae = Vae::load(
            &Weights::new(vae_tensors, &folder.vae_weights, device, dtype),
            &vae_cfg,
        )?;
        Ok(Self {
            vae,
            unet,
            lora: lora.map(|l| l.path),
            device: device.clone(),
            dtype,
        })
    }

    /// GVM at the published sizes with random weights, for timing and
    /// memory measurements without the 6.5 GB download.
    pub fn random(device: &Device, dtype: DType) -> Result<Self> {
        let w = Weights::random("random GVM weights", device, dtype);
        Ok(Self {
            vae: Vae::load(&w, &VaeConfig::published())?,
            unet: Unet::load(&w, &UnetConfig::published())?,
            lora: None,
            device: device.clone(),
            dtype,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Model inputs `[N, 3, H, W]` in [-1, 1] -> scaled latents `[N, 4, H/8, W/8]`.
    /// The encoder is 2-D: frames are independent, so a window may reuse
    /// the latents of frames it shares with the previous one.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.vae.encode(&x.to_dtype(self.dtype)?)
    }

    /// `steps` UNet passes from a zero latent, conditioned on `rgb_latent`
    /// `[F, 4, h, w]` (one clip) -> the matte latent `[F, 4, h, w]`. Every
    /// pass sees t = 999; its output is the next latent, no scheduler step.
    pub fn denoise(&self, rgb_latent: &Tensor, steps: usize) -> Result<Tensor> {
        let mut latent = rgb_latent.zeros_like()?;
        for _ in 0..steps.max(1) {
            let input = Tensor::cat(&[&latent, rgb_latent], 1)?.unsqueeze(0)?;
            latent = self.unet.forward(&input, TIMESTEP)?.squeeze(0)?;
        }
        Ok(latent)
    }

    /// Decodes scaled latents `[F, 4, h, w]` of one clip to padded alpha
    /// `[F, 1, H, W]` (f32) in slices of `chunk` frames, each slice decoded
    /// as a clip of its own, as the reference decodes.
    ///
    /// `ensemble` reproduces the reference's result with its ensemble of
    /// identical copies, without its cost: the reference decodes the
    /// copies' frames end to end (copy-major) in slices, and a slice that
    /// straddles two copies decodes some frames beside different
    /// neighbours, so the copies differ and it keeps the maximum. Only the
    /// distinct slices are decoded here: with `F` a multiple of `chunk`
    /// every copy is the same slice and this is one decode, as with
    /// `ensemble` 1.
    pub fn decode_alpha(&self, latent: &Tensor, chunk: usize, ensemble: usize) -> Result<Tensor> {
        let frames = latent.dim(0)?;
        let chunk = chunk.max(1);
        let ensemble = ensemble.max(1);
        let z = (latent / self.vae.scaling_factor)?;
        let total = frames * ensemble;
        // Decoded alpha of a slice, keyed by (first frame, length): slices
        // with the same key hold the same latents in the same order.
        let mut decoded: HashMap<(usize, usize), Tensor> = HashMap::new();
        let mut best: Vec<Option<Tensor>> = vec![None; frames];
        for start in (0..total).step_by(chunk) {
            let len = chunk.min(total - start);
            let key = (start % frames, len);
            if let std::collections::hash_map::Entry::Vacant(slot) = decoded.entry(key) {
                let idx: Vec<u32> = (0..len).map(|i| ((start + i) % frames) as u32).collect();
                let idx = Tensor::from_vec(idx, len, z.device())?;
                let rgb = self.vae.decode(&z.index_select(&idx, 0)?)?;
                slot.insert(frames::mean_rgb(&rgb)?);
            }
            let slice = &decoded[&key];
            for i in 0..len {
                let f = (start + i) % frames;
                let a = slice.narrow(0, i, 1)?;
                best[f] = Some(match best[f].take() {
                    Some(b) => b.maximum(&a)?,
                    None => a,
                });
            }
        }
        let parts: Vec<Tensor> = best
            .into_iter()
            .map(|b| b.expect("every frame decoded"))
            .collect();
        let mean = Tensor::cat(&parts, 0)?;
        Ok(((mean * 0.5)? + 0.5)?.clamp(0f32, 1f32)?)
    }
}
