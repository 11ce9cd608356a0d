//! `vmatte bench`: model-only throughput on frames already in memory, and
//! end-to-end throughput of the whole pipeline on the same clip.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use vmatte_models::rvm::RecurrentState;
use vmatte_pipeline::frames::push_planar;
use vmatte_pipeline::{matte_source, MatteSettings, OutputKind};

use crate::cli::BenchArgs;
use crate::runtime;

#[derive(Serialize)]
struct Throughput {
    frames: u64,
    seconds: f64,
    fps: f64,
}

#[derive(Serialize)]
struct BenchReport {
    input: String,
    model: String,
    device: String,
    dtype: String,
    threads: usize,
    width: u32,
    height: u32,
    downsample_ratio: f64,
    seq_chunk: usize,
    model_only: Throughput,
    end_to_end: Option<Throughput>,
    peak_rss_mib: Option<f64>,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let loaded = runtime::load(&args.model)?;
    let chunk = args.seq_chunk.max(1) as usize;
    let mut source = vmatte_media::open_source(&args.input, None)?;
    let info = source.info().clone();
    let ratio = args.downsample_ratio.resolve(info.height, info.width);
    let wanted = args.warmup + args.frames;
    let mut planar = Vec::new();
    let mut have = 0;
    while have < wanted {
        match source.next_frame()? {
            Some(frame) => push_planar(&frame, &mut planar),
            None => break,
        }
        have += 1;
    }
    drop(source);
    if have < wanted {
        bail!(
            "{}: has {have} frames, the benchmark needs {wanted} (--warmup + --frames); use a longer clip or fewer --frames",
            args.input.display()
        );
    }
    let (h, w) = (info.height as usize, info.width as usize);
    let frames = Tensor::from_vec(planar, (wanted, 3, h, w), &Device::Cpu)?;
    let mut state = RecurrentState::default();
    let mut infer = |start: usize, count: usize| -> Result<()> {
        for s in (start..start + count).step_by(chunk) {
            let n = chunk.min(start + count - s);
            let src = frames.narrow(0, s, n)?.to_device(&loaded.device)?;
            let out = loaded.model.forward(&src, &mut state, ratio)?;
            // Reading the result back waits for asynchronous devices.
            out.pha.flatten_all()?.to_vec1::<f32>()?;
        }
        Ok(())
    };
    infer(0, args.warmup)?;
    let started = Instant::now();
    infer(args.warmup, args.frames)?;
    let seconds = started.elapsed().as_secs_f64();
    let model_only = Throughput {
        frames: args.frames as u64,
        seconds,
        fps: args.frames as f64 / seconds,
    };

    let end_to_end = if args.model_only {
        None
    } else {
        let scratch = tempfile::tempdir()?;
        let mut settings = MatteSettings::new(args.model.name());
        settings.downsample_ratio = args.downsample_ratio;
        settings.seq_chunk = chunk;
        settings.outputs = vec![OutputKind::Composite, OutputKind::Alpha];
        let source = vmatte_media::open_source(&args.input, None)?;
        let report = matte_source(
            &loaded.model,
            &loaded.device,
            source,
            scratch.path(),
            "bench",
            &settings,
            &mut |_| {},
        )?;
        Some(Throughput {
            frames: report.frames,
            seconds: report.seconds,
            fps: report.fps,
        })
    };

    let report = BenchReport {
        input: args.input.display().to_string(),
        model: args.model.name().to_string(),
        device: args.model.device.clone(),
        dtype: args.model.dtype.clone(),
        threads: candle_core::utils::get_num_threads(),
        width: info.width,
        height: info.height,
        downsample_ratio: ratio,
        seq_chunk: chunk,
        model_only,
        end_to_end,
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} {}x{} ratio {} chunk {} on {} ({} threads)",
            report.model,
            report.width,
            report.height,
            report.downsample_ratio,
            report.seq_chunk,
            report.device,
            report.threads
        );
        println!(
            "  model only:  {:.2} fps ({} frames)",
            report.model_only.fps, report.model_only.frames
        );
        if let Some(e) = &report.end_to_end {
            println!(
                "  end to end:  {:.2} fps ({} frames, composite + alpha mp4)",
                e.fps, e.frames
            );
        }
        if let Some(rss) = report.peak_rss_mib {
            println!("  peak RSS:    {rss:.0} MiB");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The process's high-water resident set (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
