//! GPU telemetry for the CLI: one NVML sampler per process whose rounds go
//! to the progress bar, to the .jsonl log of every job running on each GPU,
//! and to the batch's own series; and `vmatte monitor`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use vmatte_gpu::telemetry::DEFAULT_INTERVAL;
use vmatte_gpu::{FrameCost, GpuSample, GpuSummary, Plan, Sampler, Telemetry, VramLimit};
use vmatte_pipeline::MatteSettings;

use crate::batch::joblog::JobLog;

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

/// The GPU index of a device spec (`cuda` is 0, `cuda:N` is N, `cpu` none).
pub fn gpu_index(device: &str) -> Option<u32> {
    match device {
        "cuda" => Some(0),
        d => d.strip_prefix("cuda:")?.parse().ok(),
    }
}

impl Hub {
    /// Starts sampling the GPUs among `devices`. No GPU among them: `None`,
    /// silently. NVML absent: `None` and one info line on stderr.
    pub fn start(
        devices: &[String],
        on_round: impl Fn(&[GpuSample]) + Send + 'static,
    ) -> Option<Self> {
        let mut gpus: Vec<u32> = devices.iter().filter_map(|d| gpu_index(d)).collect();
        gpus.sort_unstable();
        gpus.dedup();
        if gpus.is_empty() {
            return None;
        }
        let telemetry = match Telemetry::open() {
            Ok(t) => Arc::new(t),
            Err(why) => {
                eprintln!("vmatte: info: {why}");
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
    pub fn start(hub: Option<&Hub>, device: &str, log: &JobLog) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let guard = gpu_index(device).zip(hub).map(|(gpu, hub)| {
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
/// CPU or without NVML. Sized for 1080p frames: larger videos that do not
/// fit go down the out-of-memory ladder. Says the plan in one line.
pub fn plan(
    device: &str,
    hub: Option<&Hub>,
    limit: Option<VramLimit>,
    settings: &MatteSettings,
    dtype: &str,
    given: (Option<usize>, Option<usize>),
) -> Option<Plan> {
    // The cost model is RVM's. GVM runs one video at a time unless told
    // otherwise, and its own ladder fits its windows to the card.
    if settings.gvm.is_some() {
        return None;
    }
    let (free, total) = hub?.memory(gpu_index(device)?)?;
    let budget = limit.map_or(free, |l| l.bytes(total).min(free));
    let cost = FrameCost {
        width: 1920,
        height: 1080,
        downsample_ratio: settings.downsample_ratio.resolve(1080, 1920),
        dtype_bytes: if dtype == "f32" { 4 } else { 2 },
    };
    let plan = vmatte_gpu::plan(budget, 0, cost, given.0, given.1);
    eprintln!(
        "vmatte: {device}: {:.1} GiB free, planning for {:.1} GiB: {} videos at once, chunks of {} frames",
        free as f64 / GIB,
        budget as f64 / GIB,
        plan.streams,
        plan.seq_chunk
    );
    Some(plan)
}

/// `vmatte monitor`: samples every GPU and prints a line (or a JSON object)
/// per GPU per interval, `count` rounds or until stopped.
pub fn monitor(interval: Duration, count: Option<u64>, json: bool) -> Result<ExitCode> {
    let telemetry = match Telemetry::open() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("vmatte monitor: {why}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let gpus = telemetry.gpus();
    if gpus.is_empty() {
        eprintln!("vmatte monitor: NVML loaded but reports no GPU; check `nvidia-smi`");
        return Ok(ExitCode::FAILURE);
    }
    if !json {
        for g in &gpus {
            eprintln!(
                "GPU{}: {} ({:.1} GiB)",
                g.index,
                g.name,
                g.mem_total_bytes as f64 / (1u64 << 30) as f64
            );
        }
        println!(
            "{:<24} {:>4} {:>6} {:>18} {:>6} {:>8} {:>9}",
            "time", "gpu", "busy", "memory", "temp", "power", "SM clock"
        );
    }
    let mut round = 0u64;
    while count.is_none_or(|c| round < c) {
        if round > 0 {
            std::thread::sleep(interval);
        }
        round += 1;
        for g in &gpus {
            let Some(s) = telemetry.sample(g.index) else {
                continue;
            };
            if json {
                println!("{}", serde_json::to_string(&s)?);
                continue;
            }
            let opt = |v: Option<f64>, unit: &str| {
                v.map(|v| format!("{v:.0}{unit}"))
                    .unwrap_or_else(|| "-".into())
            };
            let memory = match (s.mem_used_mib, s.mem_total_mib) {
                (Some(u), Some(t)) => format!("{:.2}/{:.1} GiB", u / 1024.0, t / 1024.0),
                _ => "-".into(),
            };
            println!(
                "{:<24} {:>4} {:>6} {:>18} {:>6} {:>8} {:>9}",
                vmatte_jobs::rfc3339_ms(s.t_ms as i64),
                s.gpu,
                opt(s.util_pct, "%"),
                memory,
                opt(s.temp_c, "C"),
                opt(s.power_w, "W"),
                opt(s.sm_clock_mhz, "MHz"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_name_gpus() {
        assert_eq!(gpu_index("cuda"), Some(0));
        assert_eq!(gpu_index("cuda:3"), Some(3));
        assert_eq!(gpu_index("cpu"), None);
        assert_eq!(gpu_index("cuda:x"), None);
    }

    #[test]
    fn no_gpu_device_means_no_sampler() {
        assert!(Hub::start(&["cpu".to_string()], |_| {}).is_none());
    }
}
