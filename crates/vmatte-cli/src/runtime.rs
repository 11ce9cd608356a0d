//! Turning `--model/--weights/--device/--dtype` into a loaded network.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use vmatte_models::rvm::MattingNetwork;
use vmatte_models::store::ModelStore;

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
        if !path.is_file() {
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
}

pub struct Loaded {
    pub model: MattingNetwork,
    pub device: Device,
}

pub fn load(args: &ModelArgs) -> Result<Loaded> {
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
    let path = weights_path(args)?;
    let model = MattingNetwork::from_file(&path, &device, dtype)?;
    Ok(Loaded { model, device })
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
    }
}
