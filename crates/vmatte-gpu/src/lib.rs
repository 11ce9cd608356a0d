//! GPU awareness that does not need a GPU to build or test: NVML telemetry
//! opened at run time ([`telemetry`]), memory budgets and the chunk size and
//! stream count that fit them ([`budget`]), and the out-of-memory ladder
//! ([`ladder`]). The CUDA kernels themselves come from candle's `cuda`
//! feature, in vmatte-models.

pub mod budget;
pub mod device;
pub mod ladder;
pub mod telemetry;

pub use budget::{plan, FrameCost, Plan, VramLimit};
pub use device::DeviceSpec;
pub use ladder::{is_out_of_memory, FakeOom, Step};
pub use telemetry::{GpuInfo, GpuSample, GpuSummary, Sampler, Stat, Telemetry};
