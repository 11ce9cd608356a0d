//! Turning `--model/--weights/--device/--dtype` into a loaded network.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use vmatte_models::gvm::{Gvm, LoraChoice};
use vmatte_models::rvm::MattingNetwork;
use vmatte_models::store::{ModelStore, GVM};
use vmatte_pipeline::{GvmOptions, Model};

use crate::cli::ModelArgs;

pub fn device(spec: &str) -> Result<Device> {
    let cuda_index = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => bail!("unknown device '{spec}'; use cpu, cuda or cuda:N"),
        },
    };
    if !cfg!(feature = "cuda") {
        bail!(
            "this vmatte was built without CUDA; use --device cpu, or rebuild with `cargo build --release --features cuda` (see docs/gpu.md)"
        );
    }
    Device::new_cuda(cuda_index)
        .map_err(|e| anyhow::anyhow!("cannot open CUDA device {cuda_index} ({e}); check the driver with nvidia-smi, or use --device cpu"))
}

pub fn dtype(spec: &str) -> Result<DType> {
    Ok(match spec {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        _ => bail!("unknown dtype '{spec}'; use f32, f16 or bf16"),
    })
}

/// The weight file to load: `--weights`, else the installed `--model`.
pub fn weights_path(args: &ModelArgs) -> Result<PathBuf> {
    if let Some(path) = &args.weights {
        if !path.exists() {
            bail!("{}: weights file not found; check the path", path.display());
        }
        return Ok(path.clone());
    }
    Ok(ModelStore::locate(args.model_dir.as_deref()).find(args.name())?)
}

impl ModelArgs {
    /// The model's name, `rvm-mobilenetv3` unless chosen.
    pub fn name(&self) -> &str {
        self.model.as_deref().unwrap_or("rvm-mobilenetv3")
    }

    /// Whether these arguments select GVM (by name, or a diffusers folder).
    pub fn is_gvm(&self) -> bool {
        match &self.weights {
            Some(w) => w.is_dir(),
            None => self.name() == GVM,
        }
    }
}

pub struct Loaded {
    pub model: Model,
    pub device: Device,
}

impl Loaded {
    /// The RVM network, for the commands that only run RVM.
    pub fn rvm(&self) -> Result<&MattingNetwork> {
        self.model.rvm().ok_or_else(|| {
            anyhow::anyhow!("`vmatte bench` measures RVM models; for GVM use `vmatte bench-gvm`")
        })
    }
}

/// The LoRA `--lora`/`--no-lora` select (as `GvmOptions::lora` holds them).
fn lora_choice(spec: &str) -> LoraChoice {
    match spec {
        "auto" => LoraChoice::Auto,
        "off" => LoraChoice::Off,
        dir => LoraChoice::From(PathBuf::from(dir)),
    }
}

/// Loads the model `args` name; `gvm` says which LoRA GVM merges.
pub fn load(args: &ModelArgs) -> Result<Loaded> {
    load_with(args, None)
}

pub fn load_with(args: &ModelArgs, gvm: Option<&GvmOptions>) -> Result<Loaded> {
    let device = device(&args.device)?;
    // Process-wide; `auto` on the CPU leaves it alone, so that a batch's
    // CPU fallback does not turn NVDEC off for the jobs still on the GPU.
    match args.hwdec.as_str() {
        "nvdec" => vmatte_media::prefer_nvdec(true),
        "cpu" => vmatte_media::prefer_nvdec(false),
        _ if !device.is_cpu() => vmatte_media::prefer_nvdec(true),
        _ => {}
    }
    let dtype = dtype(&args.dtype)?;
    if device.is_cpu() && dtype == DType::BF16 {
        // candle's CPU matmul has no bf16 kernel; say so before loading.
        bail!("--dtype bf16 runs on CUDA devices only; on the CPU use f32 (fastest) or f16");
    }
    if args.is_gvm() {
        let dir = match &args.weights {
            Some(dir) => dir.clone(),
            None => ModelStore::locate(args.model_dir.as_deref()).gvm_dir()?,
        };
        let lora = lora_choice(gvm.map_or("auto", |g| g.lora.as_str()));
        let model = Gvm::load(&dir, &lora, &device, dtype)?;
        return Ok(Loaded {
            model: Model::Gvm(Box::new(model)),
            device,
        });
    }
    let path = weights_path(args)?;
    let model = MattingNetwork::from_file(&path, &device, dtype)?;
    Ok(Loaded {
        model: Model::Rvm(Box::new(model)),
        device,
    })
}

/// Keeps candle's element-wise ops on the thread that calls them. candle
/// runs them on a pool of its own whose workers spin for a while after each
/// op, at the very moments vmatte's kernels and gemm start on rayon's
/// workers; on a machine whose cores rayon already fills, the spinning
/// worker takes a core from them (RVM model-only on two cores: 6.4 against
/// 7.5 fps at 1080p, medians of six alternating runs; GVM within noise).
/// A CANDLE_NUM_THREADS of the user's own is kept. Called before any
/// thread starts, as setting the environment requires.
pub fn leave_cores_to_rayon() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Keeps freed frame-sized buffers in the process instead of handing them
/// back to the kernel. Every frame allocates and frees the same few dozen
/// multi-megabyte tensors; glibc serves blocks that large with mmap and
/// unmaps them on free, so each frame paid again for zeroed pages (a sixth
/// of CPU inference time in `perf`). The working set of one frame is what
/// stays, so peak memory is unchanged and still flat over a video.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        // One arena: the per-thread ones grow in heaps of at most 64 MiB,
        // so a chunk of 1080p frames (100 MB of f32) was still mapped and
        // unmapped by the decode thread every chunk, whatever the
        // threshold. The pipeline allocates a few large buffers per chunk,
        // so one lock costs nothing measurable.
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
