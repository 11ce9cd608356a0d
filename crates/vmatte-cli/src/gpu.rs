//! `vmatte monitor`: what NVML says of every GPU, as a table or JSON lines.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use vmatte_gpu::Telemetry;

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
