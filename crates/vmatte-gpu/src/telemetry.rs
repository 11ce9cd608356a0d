//! GPU telemetry through NVML, opened at run time: a machine without the
//! NVIDIA driver gets `Err(reason)` from [`Telemetry::open`], and vmatte
//! carries on without telemetry.
//!
//! A [`Sampler`] thread reads every GPU each interval (500 ms by default)
//! into a [`GpuSample`]; the samples go to logs as they come, and a
//! [`GpuSummary`] condenses a job's series into start, end, min, mean, max.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

/// The sampling interval the issue tracker and users asked for.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// One reading of one GPU. A field is `None` where the GPU or driver does not
/// report it (power on some boards, clocks under virtualisation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    /// Milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// NVML's index of the GPU (the same order as `nvidia-smi`).
    pub gpu: u32,
    /// Percent of the last sample period with a kernel running.
    pub util_pct: Option<f64>,
    pub mem_used_mib: Option<f64>,
    pub mem_total_mib: Option<f64>,
    pub temp_c: Option<f64>,
    pub power_w: Option<f64>,
    pub sm_clock_mhz: Option<f64>,
}

impl GpuSample {
    /// A short status for a progress bar: `GPU0 97% 11.2/80.0 GiB 64C 312W`.
    pub fn brief(&self) -> String {
        let mut s = format!("GPU{}", self.gpu);
        if let Some(u) = self.util_pct {
            s += &format!(" {u:.0}%");
        }
        if let (Some(used), Some(total)) = (self.mem_used_mib, self.mem_total_mib) {
            s += &format!(" {:.1}/{:.1} GiB", used / 1024.0, total / 1024.0);
        }
        if let Some(t) = self.temp_c {
            s += &format!(" {t:.0}C");
        }
        if let Some(p) = self.power_w {
            s += &format!(" {p:.0}W");
        }
        s
    }
}

/// What NVML says of a GPU that does not change while vmatte runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub mem_total_bytes: u64,
}

/// An open NVML library.
pub struct Telemetry {
    nvml: Nvml,
}

/// The names NVML's library goes by: the versioned one ships with every
/// driver, the bare one only with development packages.
const NVML_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

impl Telemetry {
    /// Loads NVML: from `VMATTE_NVML_LIB` when set (a path, or a name for the
    /// loader to search), else the driver's usual names. The error is one
    /// sentence saying why there is no telemetry.
    pub fn open() -> Result<Self, String> {
        let from_env = std::env::var_os("VMATTE_NVML_LIB");
        let names: Vec<&OsStr> = match &from_env {
            Some(path) => vec![path.as_os_str()],
            None => NVML_NAMES.iter().map(OsStr::new).collect(),
        };
        let mut last = String::new();
        for name in names {
            match Nvml::builder().lib_path(name).init() {
                Ok(nvml) => return Ok(Self { nvml }),
                Err(e) => last = format!("{} ({e})", name.to_string_lossy()),
            }
        }
        Err(format!(
            "NVIDIA's management library could not be loaded: {last}; GPU telemetry is off \
             (install the NVIDIA driver, or set VMATTE_NVML_LIB to libnvidia-ml.so.1's path)"
        ))
    }

    pub fn gpus(&self) -> Vec<GpuInfo> {
        let count = self.nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|index| {
                let d = self.nvml.device_by_index(index).ok()?;
                Some(GpuInfo {
                    index,
                    name: d.name().unwrap_or_else(|_| "unknown GPU".into()),
                    mem_total_bytes: d.memory_info().map(|m| m.total).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Free and total memory of one GPU, in bytes.
    pub fn memory(&self, gpu: u32) -> Option<(u64, u64)> {
        let m = self.nvml.device_by_index(gpu).ok()?.memory_info().ok()?;
        Some((m.free, m.total))
    }

    /// Reads one GPU now. Each query that fails leaves its field empty.
    pub fn sample(&self, gpu: u32) -> Option<GpuSample> {
        let d = self.nvml.device_by_index(gpu).ok()?;
        const MIB: f64 = 1024.0 * 1024.0;
        let memory = d.memory_info().ok();
        Some(GpuSample {
            t_ms: now_ms(),
            gpu,
            util_pct: d.utilization_rates().ok().map(|u| f64::from(u.gpu)),
            mem_used_mib: memory.as_ref().map(|m| m.used as f64 / MIB),
            mem_total_mib: memory.as_ref().map(|m| m.total as f64 / MIB),
            temp_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
            sm_clock_mhz: d.clock_info(Clock::SM).ok().map(f64::from),
        })
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A background thread that samples `gpus` every interval and hands each
/// round to `sink`. The latest round is kept for progress bars. Dropping the
/// sampler stops the thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    latest: Arc<Mutex<Vec<GpuSample>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(
        telemetry: Arc<Telemetry>,
        gpus: Vec<u32>,
        interval: Duration,
        mut sink: impl FnMut(&[GpuSample]) + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, latest) = (stop.clone(), latest.clone());
            std::thread::spawn(move || {
                // Short naps, so that stopping never waits a whole interval.
                let nap = interval.min(Duration::from_millis(50));
                let mut next = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if std::time::Instant::now() >= next {
                        next += interval;
                        let round: Vec<_> =
                            gpus.iter().filter_map(|&g| telemetry.sample(g)).collect();
                        sink(&round);
                        *latest.lock().expect("latest samples") = round;
                    }
                    std::thread::sleep(nap);
                }
            })
        };
        Self {
            stop,
            latest,
            thread: Some(thread),
        }
    }

    pub fn latest(&self) -> Vec<GpuSample> {
        self.latest.lock().expect("latest samples").clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Minimum, mean and maximum of one quantity over a series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl Stat {
    fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        let (mut n, mut sum) = (0usize, 0.0);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        (n > 0).then(|| Self {
            min,
            mean: sum / n as f64,
            max,
        })
    }
}

/// One GPU's series condensed, as job logs and the batch summary show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSummary {
    pub gpu: u32,
    pub samples: usize,
    pub seconds: f64,
    pub start: GpuSample,
    pub end: GpuSample,
    pub util_pct: Option<Stat>,
    pub mem_used_mib: Option<Stat>,
    pub temp_c: Option<Stat>,
    pub power_w: Option<Stat>,
    pub sm_clock_mhz: Option<Stat>,
}

impl GpuSummary {
    /// One summary per GPU seen in `samples`, in GPU order.
    pub fn of(samples: &[GpuSample]) -> Vec<Self> {
        let mut by_gpu: BTreeMap<u32, Vec<&GpuSample>> = BTreeMap::new();
        for s in samples {
            by_gpu.entry(s.gpu).or_default().push(s);
        }
        by_gpu
            .into_iter()
            .map(|(gpu, mut series)| {
                series.sort_by_key(|s| s.t_ms);
                let (start, end) = (*series[0], *series[series.len() - 1]);
                let stat =
                    |f: fn(&GpuSample) -> Option<f64>| Stat::of(series.iter().filter_map(|s| f(s)));
                Self {
                    gpu,
                    samples: series.len(),
                    seconds: end.t_ms.saturating_sub(start.t_ms) as f64 / 1000.0,
                    start,
                    end,
                    util_pct: stat(|s| s.util_pct),
                    mem_used_mib: stat(|s| s.mem_used_mib),
                    temp_c: stat(|s| s.temp_c),
                    power_w: stat(|s| s.power_w),
                    sm_clock_mhz: stat(|s| s.sm_clock_mhz),
                }
            })
            .collect()
    }

    /// `GPU0: busy 91% (min 40, max 99), memory max 11.2 GiB, 64C max, 305W mean`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = self.util_pct {
            parts.push(format!(
                "busy {:.0}% (min {:.0}, max {:.0})",
                u.mean, u.min, u.max
            ));
        }
        if let Some(m) = self.mem_used_mib {
            parts.push(format!("memory max {:.1} GiB", m.max / 1024.0));
        }
        if let Some(t) = self.temp_c {
            parts.push(format!("{:.0}C max", t.max));
        }
        if let Some(p) = self.power_w {
            parts.push(format!("{:.0}W mean", p.mean));
        }
        if let Some(c) = self.sm_clock_mhz {
            parts.push(format!("SM {:.0} MHz mean", c.mean));
        }
        format!(
            "GPU{}: {} over {:.1}s ({} samples)",
            self.gpu,
            parts.join(", "),
            self.seconds,
            self.samples
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64, gpu: u32, util: f64, power: Option<f64>) -> GpuSample {
        GpuSample {
            t_ms,
            gpu,
            util_pct: Some(util),
            mem_used_mib: Some(1024.0 * util / 10.0),
            mem_total_mib: Some(81559.0),
            temp_c: Some(50.0 + util / 10.0),
            power_w: power,
            sm_clock_mhz: None,
        }
    }

    #[test]
    fn nvml_absent_is_one_sentence_not_a_failure() {
        std::env::set_var("VMATTE_NVML_LIB", "/nonexistent/libnvidia-ml.so.1");
        let err = Telemetry::open().err().expect("no NVML at that path");
        assert!(err.contains("/nonexistent/libnvidia-ml.so.1"), "{err}");
        assert!(err.contains("telemetry is off"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn summary_per_gpu_with_start_end_and_stats() {
        // Out of order on purpose: logs from two streams interleave.
        let samples = [
            sample(2000, 0, 90.0, Some(300.0)),
            sample(1000, 0, 30.0, Some(100.0)),
            sample(1500, 1, 50.0, None),
            sample(1500, 0, 60.0, Some(200.0)),
        ];
        let s = GpuSummary::of(&samples);
        assert_eq!(s.len(), 2);
        let g0 = &s[0];
        assert_eq!((g0.gpu, g0.samples, g0.seconds), (0, 3, 1.0));
        assert_eq!((g0.start.t_ms, g0.end.t_ms), (1000, 2000));
        let u = g0.util_pct.unwrap();
        assert_eq!((u.min, u.mean, u.max), (30.0, 60.0, 90.0));
        assert_eq!(g0.power_w.unwrap().mean, 200.0);
        assert_eq!(g0.sm_clock_mhz, None);
        // A GPU that never reports power has no power statistic.
        assert_eq!((s[1].gpu, s[1].power_w), (1, None));
        let line = g0.line();
        assert!(
            line.starts_with("GPU0: busy 60% (min 30, max 90)"),
            "{line}"
        );
        assert!(
            line.contains("200W mean") && line.contains("3 samples"),
            "{line}"
        );
    }

    #[test]
    fn samples_round_trip_through_json() {
        let s = sample(1234, 3, 75.5, None);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<GpuSample>(&text).unwrap(), s);
        assert_eq!(s.brief(), "GPU3 76% 7.5/79.6 GiB 58C");
    }

    #[test]
    fn empty_series_has_no_summary() {
        assert!(GpuSummary::of(&[]).is_empty());
    }
}
