//! From a job's model, device and precision to a loaded [`Network`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::Device;
use vmatte_gpu::DeviceSpec;
use vmatte_models::gvm::{Gvm, LoraChoice};
use vmatte_models::matanyone::MatAnyone;
use vmatte_models::rvm::MattingNetwork;
use vmatte_models::store::{ModelStore, DEFAULT_MODEL, GVM, MATANYONE};
use vmatte_pipeline::matanyone::MatAnyoneNet;
use vmatte_pipeline::{GvmOptions, MatteSettings, Model, Network, Precision, Setting};

/// Which decoder reads the videos.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HwDecode {
    /// NVDEC when the model runs on a GPU, else the CPU's.
    #[default]
    Auto,
    /// NVIDIA's hardware decoders, falling back to the CPU's where they
    /// cannot open.
    Nvdec,
    Cpu,
}

impl FromStr for HwDecode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "nvdec" => Ok(Self::Nvdec),
            "cpu" => Ok(Self::Cpu),
            _ => Err(format!("unknown decoder '{s}'; use auto, nvdec or cpu")),
        }
    }
}

/// Which encoder writes H.264 and H.265 outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HwEncode {
    /// NVENC when the model runs on a GPU, else the CPU's.
    #[default]
    Auto,
    /// NVIDIA's hardware encoders, falling back to the CPU's where they
    /// cannot open (no driver, a card without NVENC, a 10-bit output).
    Nvenc,
    Cpu,
}

impl FromStr for HwEncode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "nvenc" => Ok(Self::Nvenc),
            "cpu" => Ok(Self::Cpu),
            _ => Err(format!("unknown encoder '{s}'; use auto, nvenc or cpu")),
        }
    }
}

/// A model as a job names it: one installed in the model store, or weights
/// at a path (a file, or GVM's diffusers folder).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModelRef {
    Installed(String),
    Files(PathBuf),
}

impl ModelRef {
    /// The model `settings.model` names: a path when it has a separator
    /// (the CLI stores `--weights` as an absolute path), else a name.
    pub fn of(settings: &MatteSettings) -> Self {
        let m = &settings.model;
        if m.contains(std::path::MAIN_SEPARATOR) {
            Self::Files(PathBuf::from(m))
        } else {
            Self::Installed(m.clone())
        }
    }

    pub fn is_gvm(&self) -> bool {
        match self {
            Self::Installed(name) => name == GVM,
            Self::Files(path) => path.is_dir(),
        }
    }

    pub fn is_matanyone(&self) -> bool {
        matches!(self, Self::Installed(name) if name == MATANYONE)
    }
}

/// Why a model could not be loaded; each is one line with what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this vmatte was built without CUDA; run on the CPU ({}), or use the CUDA build \
         (scripts/build-cuda.sh, docs/gpu.md)",
        Setting::Device.with("cpu")
    )]
    NoCuda,
    #[error(
        "cannot open CUDA device {index} ({reason}); check the driver with nvidia-smi, or run \
         on the CPU ({})",
        Setting::Device.with("cpu")
    )]
    CudaOpen { index: u32, reason: String },
    #[error("bf16 runs on CUDA devices only; on the CPU use f32 (fastest) or f16")]
    Bf16OnCpu,
    #[error("{}: weights file not found; check the path", .0.display())]
    WeightsMissing(PathBuf),
    #[error(transparent)]
    Model(#[from] vmatte_models::Error),
}

/// Opens `spec` as a candle device.
pub fn open_device(spec: DeviceSpec) -> Result<Device, LoadError> {
    let DeviceSpec::Cuda(index) = spec else {
        return Ok(Device::Cpu);
    };
    if !cfg!(feature = "cuda") {
        return Err(LoadError::NoCuda);
    }
    Device::new_cuda(index as usize).map_err(|e| LoadError::CudaOpen {
        index,
        reason: e.to_string().lines().next().unwrap_or_default().to_string(),
    })
}

/// Where and how a model is loaded.
#[derive(Clone, Debug)]
pub struct LoadAt<'a> {
    pub model_dir: Option<&'a Path>,
    pub device: DeviceSpec,
    pub precision: Precision,
    pub hwdec: HwDecode,
    pub hwenc: HwEncode,
}

/// The LoRA GVM merges, as `GvmOptions::lora` holds it.
fn lora_choice(spec: &str) -> LoraChoice {
    match spec {
        "auto" => LoraChoice::Auto,
        "off" => LoraChoice::Off,
        dir => LoraChoice::From(PathBuf::from(dir)),
    }
}

/// The weight file `model` names: the path itself, or the installed one.
pub fn weights_path(model: &ModelRef, model_dir: Option<&Path>) -> Result<PathBuf, LoadError> {
    match model {
        ModelRef::Files(path) if path.exists() => Ok(path.clone()),
        ModelRef::Files(path) => Err(LoadError::WeightsMissing(path.clone())),
        ModelRef::Installed(name) => Ok(ModelStore::locate(model_dir).find_checked(name)?),
    }
}

/// Loads `model` for `at`; `gvm` says which LoRA GVM merges.
pub fn load(
    model: &ModelRef,
    gvm: Option<&GvmOptions>,
    at: &LoadAt<'_>,
) -> Result<Network, LoadError> {
    let device = open_device(at.device)?;
    // Process-wide; `auto` on the CPU leaves it alone, so that a batch's
    // CPU fallback does not turn NVDEC off for the jobs still on the GPU.
    match at.hwdec {
        HwDecode::Nvdec => vmatte_media::prefer_nvdec(true),
        HwDecode::Cpu => vmatte_media::prefer_nvdec(false),
        HwDecode::Auto if !device.is_cpu() => vmatte_media::prefer_nvdec(true),
        HwDecode::Auto => {}
    }
    match at.hwenc {
        HwEncode::Nvenc => vmatte_media::prefer_nvenc(true),
        HwEncode::Cpu => vmatte_media::prefer_nvenc(false),
        HwEncode::Auto if !device.is_cpu() => vmatte_media::prefer_nvenc(true),
        HwEncode::Auto => {}
    }
    if device.is_cpu() && at.precision == Precision::Bf16 {
        // candle's CPU matmul has no bf16 kernel; say so before loading.
        return Err(LoadError::Bf16OnCpu);
    }
    let dtype = at.precision.dtype();
    if model.is_gvm() {
        let dir = match model {
            ModelRef::Files(dir) => dir.clone(),
            ModelRef::Installed(_) => ModelStore::locate(at.model_dir).gvm_dir()?,
        };
        let lora = lora_choice(gvm.map_or("auto", |g| g.lora.as_str()));
        let gvm = Gvm::load(&dir, &lora, &device, dtype)?;
        return Ok(Network {
            model: Model::Gvm(Box::new(gvm)),
            device,
        });
    }
    if model.is_matanyone() {
        let store = ModelStore::locate(at.model_dir);
        let (net, memory) = MatAnyone::from_store(&store.find_checked(MATANYONE)?, &device, dtype)?;
        // RVM makes `--mask auto`'s mask when it is installed; without it
        // only that option fails, and says how to install it.
        let auto = match store.find_checked(DEFAULT_MODEL) {
            Ok(path) => Some(MattingNetwork::from_file(&path, &device, dtype)?),
            Err(_) => None,
        };
        return Ok(Network {
            model: Model::MatAnyone(Box::new(MatAnyoneNet { net, memory, auto })),
            device,
        });
    }
    let path = weights_path(model, at.model_dir)?;
    let rvm = MattingNetwork::from_file(&path, &device, dtype)?;
    Ok(Network {
        model: Model::Rvm(Box::new(rvm)),
        device,
    })
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Installed(name) => f.write_str(name),
            Self::Files(path) => write!(f, "{}", path.display()),
        }
    }
}
