//! `vmatte bench-gvm`: seconds per GVM window and peak memory, per
//! resolution, on synthetic frames, with the real weights or random ones at
//! the published sizes. The stages (resize and encode, denoise, decode and
//! resize back) are timed apart; each ends by reading a value back, so
//! asynchronous devices are waited for.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use vmatte_models::gvm::{frames, Geometry, Gvm, LoraChoice};
use vmatte_models::store::ModelStore;

use crate::cli::BenchGvmArgs;
use vmatte_engine::telemetry::Hub;

#[derive(Serialize)]
struct Row {
    max_resolution: usize,
    /// The size the model sees, WxH.
    model_sees: String,
    frames_per_window: usize,
    /// Medians over the timed windows.
    seconds_per_window: f64,
    encode_seconds: f64,
    denoise_seconds: f64,
    decode_seconds: f64,
    frames_per_second: f64,
    /// NVML's device memory in use, sampled every 500 ms: the most during
    /// this row, and before the model was loaded.
    gpu_mem_max_mib: Option<f64>,
    gpu_util_mean_pct: Option<f64>,
}

#[derive(Serialize)]
struct BenchGvmReport {
    weights: String,
    device: String,
    dtype: String,
    source: String,
    size: usize,
    denoise_steps: usize,
    decode_chunk: usize,
    windows: usize,
    gpu_mem_before_load_mib: Option<f64>,
    rows: Vec<Row>,
    peak_rss_mib: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits for `t` to be computed (reading one value back).
fn sync(t: &Tensor) -> Result<()> {
    t.flatten_all()?.narrow(0, 0, 1)?.to_vec1::<f32>()?;
    Ok(())
}

/// `n` frames `[n, 3, h, w]` in [0, 1]: a gradient with a disc that moves,
/// so neighbouring frames differ as video does.
fn synthetic(n: usize, h: usize, w: usize, device: &Device) -> Result<Tensor> {
    let mut v = Vec::with_capacity(n * 3 * h * w);
    for t in 0..n {
        let cx = w as f32 * (0.3 + 0.05 * t as f32);
        let cy = h as f32 * 0.5;
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt()
                        / (h as f32 * 0.3);
                    let inside = (1.0 - d).clamp(0.0, 1.0);
                    let bg = (x + c * y) as f32 / (w + 2 * h) as f32;
                    v.push(inside * 0.9 + (1.0 - inside) * bg);
                }
            }
        }
    }
    Ok(Tensor::from_vec(v, (n, 3, h, w), device)?)
}

pub fn run(args: BenchGvmArgs) -> Result<ExitCode> {
    check(&args)?;
    let device = vmatte_engine::load::open_device(args.device)?;
    let dtype = args.dtype.dtype();
    let (w, h) = args.source;
    let hub = Hub::start(
        &[args.device],
        |_| {},
        |info| eprintln!("vmatte: info: {info}"),
    );
    // NVML needs a moment for its first round.
    let before = hub.as_ref().and_then(|hub| {
        std::thread::sleep(std::time::Duration::from_millis(700));
        hub.series().last().and_then(|s| s.mem_used_mib)
    });
    let (model, weights) = if args.random_weights {
        (
            Gvm::random(&device, dtype)?,
            "random, published sizes".to_string(),
        )
    } else {
        let dir = match &args.weights {
            Some(d) => d.clone(),
            None => ModelStore::locate(args.model_dir.as_deref()).gvm_dir()?,
        };
        let label = dir.display().to_string();
        (Gvm::load(&dir, &LoraChoice::Auto, &device, dtype)?, label)
    };
    let n = args.frames_per_batch;
    let clip = synthetic(n, h, w, &device)?;
    let mut rows = Vec::new();
    for &max in &args.max_resolution {
        let size = args.size.min(max.saturating_sub(8)).max(32);
        let g = Geometry::new((h, w), size, max)?;
        let since = vmatte_gpu::telemetry::now_ms();
        let (mut total, mut enc, mut den, mut dec) = (vec![], vec![], vec![], vec![]);
        for i in 0..args.warmup + args.windows {
            let t0 = Instant::now();
            let rgb = model.encode(&frames::to_model_input(&clip, &g)?)?;
            sync(&rgb)?;
            let t1 = Instant::now();
            let latent = model.denoise(&rgb, args.denoise_steps)?;
            sync(&latent)?;
            let t2 = Instant::now();
            let padded = model.decode_alpha(&latent, args.decode_chunk, 1)?;
            let alpha = frames::threshold(&frames::to_source_size(&padded, &g)?)?;
            sync(&alpha)?;
            let t3 = Instant::now();
            if i >= args.warmup {
                total.push((t3 - t0).as_secs_f64());
                enc.push((t1 - t0).as_secs_f64());
                den.push((t2 - t1).as_secs_f64());
                dec.push((t3 - t2).as_secs_f64());
            }
        }
        let summary = hub.as_ref().and_then(|hub| {
            let recent: Vec<_> = hub
                .series()
                .into_iter()
                .filter(|s| s.t_ms >= since)
                .collect();
            vmatte_gpu::GpuSummary::of(&recent).into_iter().next()
        });
        let seconds = median(total);
        let row = Row {
            max_resolution: max,
            model_sees: format!("{}x{}", g.resized.1, g.resized.0),
            frames_per_window: n,
            seconds_per_window: seconds,
            encode_seconds: median(enc),
            denoise_seconds: median(den),
            decode_seconds: median(dec),
            frames_per_second: n as f64 / seconds,
            gpu_mem_max_mib: summary.as_ref().and_then(|s| s.mem_used_mib.map(|m| m.max)),
            gpu_util_mean_pct: summary.as_ref().and_then(|s| s.util_pct.map(|u| u.mean)),
        };
        if !args.json {
            println!(
                "max {max} ({}): {:.2} s per {n}-frame window (encode {:.2}, denoise {:.2}, decode {:.2}), {:.2} fps{}",
                row.model_sees,
                row.seconds_per_window,
                row.encode_seconds,
                row.denoise_seconds,
                row.decode_seconds,
                row.frames_per_second,
                row.gpu_mem_max_mib
                    .map_or(String::new(), |m| format!(", GPU memory up to {m:.0} MiB"))
            );
        }
        rows.push(row);
    }
    let report = BenchGvmReport {
        weights,
        device: args.device.to_string(),
        dtype: args.dtype.to_string(),
        source: format!("{w}x{h}"),
        size: args.size,
        denoise_steps: args.denoise_steps,
        decode_chunk: args.decode_chunk,
        windows: args.windows,
        gpu_mem_before_load_mib: before,
        rows,
        peak_rss_mib: crate::bench::peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if let Some(rss) = report.peak_rss_mib {
        println!("peak RSS {rss:.0} MiB");
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks made before anything is loaded.
fn check(args: &BenchGvmArgs) -> Result<()> {
    if args.windows == 0 {
        bail!("--windows must be at least 1");
    }
    if args.weights.is_some() && args.random_weights {
        bail!("--weights and --random-weights exclude each other");
    }
    Ok(())
}
