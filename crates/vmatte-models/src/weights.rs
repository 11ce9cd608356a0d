//! Named weight tensors, read from the files users have, and the BatchNorm
//! folding that every RVM convolution goes through at load time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// The weight file formats vmatte reads, told apart by content, not by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// `torch.save` zip pickle (`rvm_mobilenetv3.pth`, `rvm_resnet50.pth`).
    PyTorch,
    /// safetensors with the official key names, or vmatte's own fused form.
    SafeTensors,
    /// The authors' ONNX export, read by graph position.
    Onnx,
}

impl WeightFormat {
    pub fn detect(path: &Path) -> Result<Self> {
        let mut head = [0u8; 16];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
            f.read(&mut head).map_err(Error::io(path))?
        };
        let head = &head[..n];
        if head.starts_with(b"PK\x03\x04") {
            return Ok(Self::PyTorch);
        }
        // safetensors: little-endian u64 header length, then a JSON object.
        if n >= 9 && head[8] == b'{' {
            return Ok(Self::SafeTensors);
        }
        // ONNX ModelProto starts with field 1 (ir_version, varint): tag 0x08.
        if head.first() == Some(&0x08) {
            return Ok(Self::Onnx);
        }
        Err(Error::Weights {
            path: path.to_path_buf(),
            reason: "not a PyTorch .pth, safetensors or ONNX file; pass an RVM checkpoint such as rvm_mobilenetv3.pth".into(),
        })
    }
}

/// A flat map of named tensors plus a key prefix, in the spirit of candle-nn's
/// `VarBuilder`, but with errors that name the file, and with everything kept
/// in f32 on the CPU until a layer has been folded and is moved to its device.
#[derive(Clone)]
pub struct Weights {
    tensors: Arc<HashMap<String, Tensor>>,
    path: Arc<PathBuf>,
    metadata: Arc<HashMap<String, String>>,
    prefix: String,
    device: Device,
    dtype: DType,
    /// Every name exists and is drawn at random (benchmarks at a model's
    /// real sizes without its files).
    random: bool,
}

impl Weights {
    /// Weights that make up any tensor asked for: Gaussian matrices and
    /// kernels with PyTorch's default scale (1/sqrt(fan-in)), norm scales 1,
    /// biases and blend factors 0. Timings match the real model's; the
    /// outputs mean nothing.
    pub fn random(label: &str, device: &Device, dtype: DType) -> Self {
        let mut w = Self::new(HashMap::new(), Path::new(label), device, dtype);
        w.random = true;
        w
    }

    pub fn new(
        tensors: HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
        dtype: DType,
    ) -> Self {
        Self {
            tensors: Arc::new(tensors),
            path: Arc::new(path.to_path_buf()),
            metadata: Arc::default(),
            prefix: String::new(),
            device: device.clone(),
            dtype,
            random: false,
        }
    }

    /// Reads any supported weight file into f32 CPU tensors.
    pub fn read(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let (tensors, metadata) = read_tensors(path)?;
        Ok(Self::new(tensors, path, device, dtype).with_metadata(metadata))
    }

    pub fn with_metadata(mut self, metadata: HashMap<String, String>) -> Self {
        self.metadata = Arc::new(metadata);
        self
    }

    /// vmatte's own `vmatte.*` facts about the weights (see [`meta`]).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        let mut w = self.clone();
        w.prefix = self.key(name.as_ref());
        w
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        // Random weights have biases but no BatchNorm statistics.
        (self.random && !name.starts_with("running_")) || self.tensors.contains_key(&self.key(name))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The tensor `name` under the current prefix, in f32 on the CPU, checked
    /// against the expected shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let key = self.key(name);
        if self.random {
            return Ok(random_tensor(name, shape, &self.device)?);
        }
        let t = self.tensors.get(&key).ok_or_else(|| Error::Weights {
            path: self.path.to_path_buf(),
            reason: format!(
                "missing weight '{key}'; is this a checkpoint of the model you selected?"
            ),
        })?;
        if t.dims() != shape {
            return Err(Error::Weights {
                path: self.path.to_path_buf(),
                reason: format!(
                    "weight '{key}' has shape {:?}, expected {shape:?}; is this a checkpoint of the model you selected?",
                    t.dims()
                ),
            });
        }
        if !all_finite(t)? {
            return Err(Error::Weights {
                path: self.path.to_path_buf(),
                reason: format!(
                    "weight '{key}' holds NaN or infinite values; the file is damaged: re-download or re-import it"
                ),
            });
        }
        Ok(t.clone())
    }

    /// Moves a finished (folded) parameter to the inference device and dtype.
    pub fn finish(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.to_device(&self.device)?.to_dtype(self.dtype)?)
    }
}

/// Whether every value of a weight (f32 on the CPU, as read) is finite:
/// one pass over memory at load, against a model that would otherwise
/// run and make empty mattes. Across the cores: GVM's weights are over
/// 6 GB as read.
fn all_finite(t: &Tensor) -> Result<bool> {
    use rayon::prelude::*;
    let (storage, layout) = t.storage_and_layout();
    if let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) =
        (&*storage, layout.contiguous_offsets())
    {
        return Ok(v[a..b]
            .par_chunks(1 << 16)
            .all(|c| c.iter().all(|x| x.is_finite())));
    }
    drop(storage);
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.iter().all(|x| x.is_finite()))
}

/// A made-up parameter for [`Weights::random`], made on `device` (in f32:
/// it is cast with the rest at `finish`).
fn random_tensor(name: &str, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        return Tensor::randn(0f32, (1.0 / (fan_in as f64).sqrt()) as f32, shape, device);
    }
    if name == "weight" {
        Tensor::ones(shape, DType::F32, device)
    } else {
        Tensor::zeros(shape, DType::F32, device)
    }
}

/// Keys of the metadata vmatte stores in its own safetensors files.
pub mod meta {
    /// `"always"` when the weights come from the authors' ONNX export, which
    /// traced the refiner branch as taken, so it refines even at ratio 1.
    pub const REFINER: &str = "vmatte.refiner";
    pub const SOURCE: &str = "vmatte.source";
    pub const SOURCE_SHA256: &str = "vmatte.source_sha256";
    pub const VARIANT: &str = "vmatte.variant";
    /// MatAnyone's `config.json`, as imported.
    pub const CONFIG: &str = "vmatte.config";
}

/// Reads every tensor of a weight file as f32 on the CPU, with the file's
/// vmatte metadata.
pub fn read_tensors(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bad = |reason: String| Error::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let format = WeightFormat::detect(path)?;
    let mut metadata = HashMap::new();
    let raw: Vec<(String, Tensor)> = match format {
        WeightFormat::PyTorch => candle_core::pickle::read_all(path)
            .map_err(|e| bad(format!("cannot read this PyTorch checkpoint ({e}); re-download it or convert it to safetensors")))?,
        WeightFormat::SafeTensors => {
            metadata = safetensors_metadata(path)?;
            candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read this safetensors file ({e}); re-download it")))?
            .into_iter()
            .collect()
        }
        WeightFormat::Onnx => {
            metadata.insert(meta::REFINER.into(), "always".into());
            crate::onnx::import_rvm_mobilenetv3(path)?.into_iter().collect()
        }
    };
    let tensors = raw
        .into_iter()
        .filter(|(_, t)| t.dtype().is_float())
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    Ok((tensors, metadata))
}

/// A safetensors file's JSON header (tensor names to their entries, and
/// `__metadata__`), read without the tensors.
pub fn safetensors_header(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    use std::io::Read;
    let bad = |reason: String| Error::Weights {
        path: path.to_path_buf(),
        reason: format!("cannot read safetensors header ({reason}); re-download or re-import it"),
    };
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(Error::io(path))?;
    let len = u64::from_le_bytes(len);
    // The format caps headers at 100 MB; anything larger is not one.
    if len > 100_000_000 {
        return Err(bad(format!("header length {len}")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(Error::io(path))?;
    serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))
}

/// Reads vmatte's metadata from a safetensors file's header, without
/// reading the tensors.
pub fn safetensors_metadata(path: &Path) -> Result<HashMap<String, String>> {
    Ok(safetensors_header(path)?
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}
