//! GPU telemetry for a run: one NVML sampler per process whose rounds go to
//! whoever listens (a progress bar), to the .jsonl log of every job running
//! on each GPU, and to the run's own series; and the chunk and stream plan
//! from a card's free memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vmatte_gpu::telemetry::DEFAULT_INTERVAL;
use vmatte_gpu::{
    DeviceSpec, FrameCost, GpuSample, GpuSummary, Plan, Sampler, Telemetry, VramLimit,
};
use vmatte_pipeline::{DownsampleRatio, Precision};

use crate::joblog::JobLog;

type Listener = Box<dyn FnMut(&GpuSample) + Send>;

#[derive(Default)]
struct Listeners {
    next: AtomicU64,
    by_id: Mutex<BTreeMap<u64, (u32, Listener)>>,
}

/// The process's telemetry: present only when NVML loaded and a CUDA
/// device is in use.
pub struct Hub {
    telemetry: Arc<Telemetry>,
    /// Samples until the hub is dropped.
    _sampler: Sampler,
    listeners: Arc<Listeners>,
    series: Arc<Mutex<Vec<GpuSample>>>,
}

impl Hub {
    /// Starts sampling the GPUs among `devices`. No GPU among them: `None`,
    /// silently. NVML absent: `None` and one info line on stderr.
    pub fn start(
        devices: &[DeviceSpec],
        on_round: impl Fn(&[GpuSample]) + Send + 'static,
        on_info: impl Fn(&str),
    ) -> Option<Self> {
        let mut gpus: Vec<u32> = devices.iter().filter_map(|d| d.gpu_index()).collect();
        gpus.sort_unstable();
        gpus.dedup();
        if gpus.is_empty() {
            return None;
        }
        let telemetry = match Telemetry::open() {
            Ok(t) => Arc::new(t),
            Err(why) => {
                on_info(&why);
                return None;
            }
        };
        let listeners = Arc::new(Listeners::default());
        let series = Arc::new(Mutex::new(Vec::new()));
        let sampler = {
            let (listeners, series) = (listeners.clone(), series.clone());
            Sampler::start(telemetry.clone(), gpus, DEFAULT_INTERVAL, move |round| {
                series.lock().expect("series").extend_from_slice(round);
                for (gpu, listener) in listeners.by_id.lock().expect("listeners").values_mut() {
                    for s in round.iter().filter(|s| s.gpu == *gpu) {
                        listener(s);
                    }
                }
                on_round(round);
            })
        };
        Some(Self {
            telemetry,
            _sampler: sampler,
            listeners,
            series,
        })
    }

    /// Calls `f` with every sample of `gpu` until the guard is dropped.
    pub fn listen(&self, gpu: u32, f: impl FnMut(&GpuSample) + Send + 'static) -> ListenGuard {
        let id = self.listeners.next.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .by_id
            .lock()
            .expect("listeners")
            .insert(id, (gpu, Box::new(f)));
        ListenGuard {
            id,
            listeners: self.listeners.clone(),
        }
    }

    /// Every sample so far, all GPUs.
    pub fn series(&self) -> Vec<GpuSample> {
        self.series.lock().expect("series").clone()
    }

    /// Free and total bytes of `gpu`, for sizing chunks and streams.
    pub fn memory(&self, gpu: u32) -> Option<(u64, u64)> {
        self.telemetry.memory(gpu)
    }
}

/// A job's share of the telemetry: its GPU's samples go to its .jsonl log
/// as they come, and are condensed when it ends.
pub struct JobTelemetry {
    samples: Arc<Mutex<Vec<GpuSample>>>,
    _guard: Option<ListenGuard>,
}

impl JobTelemetry {
    /// Starts recording for a job on `device` (nothing on the CPU or without
    /// NVML).
    pub fn start(hub: Option<&Hub>, device: DeviceSpec, log: &JobLog) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let guard = device.gpu_index().zip(hub).map(|(gpu, hub)| {
            let mut writer = log.telemetry_writer();
            let samples = samples.clone();
            hub.listen(gpu, move |s| {
                if let Some(w) = writer.as_mut() {
                    w.sample(s);
                }
                samples.lock().expect("samples").push(*s);
            })
        });
        Self {
            samples,
            _guard: guard,
        }
    }

    /// Stops recording and logs a `gpu_summary` event per GPU.
    pub fn finish(self, log: &mut JobLog) -> Vec<GpuSummary> {
        drop(self._guard);
        let summary = GpuSummary::of(&self.samples.lock().expect("samples"));
        for g in &summary {
            log.event("gpu_summary", serde_json::json!(g));
        }
        summary
    }
}

pub struct ListenGuard {
    id: u64,
    listeners: Arc<Listeners>,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        self.listeners
            .by_id
            .lock()
            .expect("listeners")
            .remove(&self.id);
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// Chunk size and streams for `device` from its free memory (NVML), within
/// `limit`, keeping what the user `given` (chunk, streams); `None` on the
/// CPU or without NVML. Sized for 1080p frames at `ratio`: larger videos
/// that do not fit go down the out-of-memory ladder. The plan, in one line
/// for people, goes to `say`.
pub fn plan(
    device: DeviceSpec,
    hub: Option<&Hub>,
    limit: Option<VramLimit>,
    (ratio, precision): (DownsampleRatio, Precision),
    given: (Option<usize>, Option<usize>),
    say: impl Fn(&str),
) -> Option<Plan> {
    let (free, total) = hub?.memory(device.gpu_index()?)?;
    let budget = limit.map_or(free, |l| l.bytes(total).min(free));
    let cost = FrameCost {
        width: 1920,
        height: 1080,
        downsample_ratio: ratio.resolve(1080, 1920),
        dtype_bytes: precision.bytes() as u32,
    };
    let plan = vmatte_gpu::plan(budget, 0, cost, given.0, given.1);
    say(&format!(
        "{device}: {:.1} GiB free, planning for {:.1} GiB: {} videos at once, chunks of {} frames",
        free as f64 / GIB,
        budget as f64 / GIB,
        plan.streams,
        plan.seq_chunk
    ));
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_gpu_device_means_no_sampler() {
        assert!(Hub::start(&[DeviceSpec::Cpu], |_| {}, |_| {}).is_none());
    }
}
