//! `vmatte bench`: model-only throughput on frames already in memory, and
//! end-to-end throughput of the whole pipeline on the same clip.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use vmatte_engine::telemetry::Hub;
use vmatte_models::matanyone::Session;
use vmatte_models::rvm::RecurrentState;
use vmatte_pipeline::frames::push_planar;
use vmatte_pipeline::matanyone::{load_mask, MaskChoice, MatAnyoneNet, MatAnyoneOptions};
use vmatte_pipeline::{
    matte_source, Chunks, MatteSettings, Model, Network, OutputKind, Precision, RunOptions,
};

use crate::cli::BenchArgs;
use crate::config;

#[derive(Clone, Serialize)]
struct Throughput {
    frames: u64,
    seconds: f64,
    fps: f64,
}

/// How far a lower precision's alpha is from f32's, over the timed frames.
#[derive(Clone, Serialize)]
struct Accuracy {
    alpha_max_abs_diff: f64,
    alpha_mean_abs_diff: f64,
}

/// The GPU while the model ran (NVML), when there is one.
#[derive(Clone, Serialize)]
struct GpuBusy {
    util_mean_pct: f64,
    util_max_pct: f64,
    mem_max_mib: f64,
}

/// One precision and chunk size.
#[derive(Clone, Serialize)]
struct Row {
    dtype: Precision,
    seq_chunk: usize,
    model_only: Throughput,
    end_to_end: Option<Throughput>,
    vs_f32: Option<Accuracy>,
    gpu: Option<GpuBusy>,
}

#[derive(Serialize)]
struct BenchReport {
    input: String,
    model: String,
    device: String,
    threads: usize,
    width: u32,
    height: u32,
    downsample_ratio: f64,
    /// The first row's, at the top for scripts that measure one.
    dtype: Precision,
    seq_chunk: usize,
    model_only: Throughput,
    end_to_end: Option<Throughput>,
    rows: Vec<Row>,
    peak_rss_mib: Option<f64>,
}

/// The decoded frames and what the rows share.
struct Clip {
    frames: Tensor,
    warmup: usize,
    timed: usize,
    ratio: f64,
    /// MatAnyone's first-frame mask `(1, 1, H, W)`, 0-255.
    mask: Tensor,
}

impl Clip {
    /// Runs `loaded` over the clip in chunks, carrying the state, and times
    /// the frames after the warm-up. Returns the timed frames' alphas.
    fn run(&self, loaded: &Network, chunk: usize) -> Result<(Throughput, Vec<f32>)> {
        if let Model::MatAnyone(net) = &loaded.model {
            return self.run_matanyone(net, &loaded.device);
        }
        let Some(model) = loaded.model.rvm() else {
            bail!("`vmatte bench` measures RVM models; for GVM use `vmatte bench-gvm`");
        };
        let mut state = RecurrentState::default();
        // Written before the clock starts: growing it inside the timed loop
        // timed the kernel's page faults, and the moves pushed the model's
        // own buffers onto fresh pages every frame.
        let (_, _, h, w) = self.frames.dims4()?;
        let mut alphas = vec![f32::NAN; self.timed * h * w];
        let mut kept = 0;
        let mut infer = |start: usize, count: usize, keep: bool| -> Result<()> {
            for s in (start..start + count).step_by(chunk) {
                let n = chunk.min(start + count - s);
                let src = self.frames.narrow(0, s, n)?.to_device(&loaded.device)?;
                let out = model.forward(&src, &mut state, self.ratio)?;
                // Reading the result back waits for asynchronous devices.
                let pha = out
                    .pha
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                if keep {
                    let at = &mut alphas[kept..kept + pha.len()];
                    at.copy_from_slice(&pha);
                    kept += pha.len();
                }
            }
            Ok(())
        };
        infer(0, self.warmup, false)?;
        let started = Instant::now();
        infer(self.warmup, self.timed, true)?;
        let seconds = started.elapsed().as_secs_f64();
        let throughput = Throughput {
            frames: self.timed as u64,
            seconds,
            fps: self.timed as f64 / seconds,
        };
        Ok((throughput, alphas))
    }
}

impl Clip {
    /// MatAnyone frame by frame: the mask anchors the first frame (with
    /// the other warm-up frames, untimed), then the timed frames are read
    /// from its memory.
    fn run_matanyone(&self, net: &MatAnyoneNet, device: &Device) -> Result<(Throughput, Vec<f32>)> {
        if self.warmup == 0 {
            bail!(
                "MatAnyone's benchmark needs --warmup 1 or more: the first frame anchors the mask"
            );
        }
        let mut session = Session::new(&net.net, net.memory);
        let frame = |i: usize| self.frames.narrow(0, i, 1)?.to_device(device);
        session.anchor(&frame(0)?, &self.mask.to_device(device)?, 0)?;
        for i in 1..self.warmup {
            session.next(&frame(i)?)?;
        }
        let mut alphas = Vec::new();
        let started = Instant::now();
        for i in self.warmup..self.warmup + self.timed {
            let pha = session.next(&frame(i)?)?;
            alphas.extend(pha.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let seconds = started.elapsed().as_secs_f64();
        let throughput = Throughput {
            frames: self.timed as u64,
            seconds,
            fps: self.timed as f64 / seconds,
        };
        Ok((throughput, alphas))
    }
}

/// MatAnyone's mask for the benchmark: `--mask`, else the middle third.
fn bench_mask(args: &BenchArgs, (h, w): (usize, usize)) -> Result<Tensor> {
    let values = match &args.mask {
        Some(path) => load_mask(path, (h, w), 0, &MatAnyoneOptions::default())?,
        None => (0..h * w)
            .map(|p| {
                let (y, x) = (p / w, p % w);
                let inside = (h / 3..2 * h / 3).contains(&y) && (w / 3..2 * w / 3).contains(&x);
                if inside {
                    255.0
                } else {
                    0.0
                }
            })
            .collect(),
    };
    Ok(Tensor::from_vec(values, (1, 1, h, w), &Device::Cpu)?)
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let dtypes = args
        .dtypes
        .clone()
        .unwrap_or_else(|| vec![args.model.dtype]);
    let model = config::model_ref(&args.model)?;
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
    let clip = Clip {
        frames: Tensor::from_vec(planar, (wanted, 3, h, w), &Device::Cpu)?,
        warmup: args.warmup,
        timed: args.frames,
        ratio,
        mask: bench_mask(&args, (h, w))?,
    };
    let hub = Hub::start(
        &[args.model.device],
        |_| {},
        |info| eprintln!("vmatte: info: {info}"),
    );

    // What `vmatte matte` would run this clip with on this device.
    let defaults = Chunks {
        cpu_seq_chunk: Some(Chunks::CPU_DEFAULT),
        ..Chunks::default()
    };
    let default_chunk =
        defaults.for_video(info.height, info.width, args.model.device.is_cpu()) as u32;

    // f32's alphas, the reference for the other precisions.
    let mut reference: Option<Vec<f32>> = None;
    let mut rows = Vec::new();
    for &dtype in &dtypes {
        let loaded = config::load_model(&model, &args.model, dtype)?;
        for &chunk in args.seq_chunk.as_deref().unwrap_or(&[default_chunk]) {
            let chunk = chunk as usize;
            let since = vmatte_gpu::telemetry::now_ms();
            let (model_only, alphas) = clip.run(&loaded, chunk)?;
            let gpu = hub.as_ref().and_then(|h| busy(&h.series(), since));
            let vs_f32 = if dtype == Precision::F32 {
                reference.get_or_insert(alphas);
                None
            } else {
                let reference = match &reference {
                    Some(r) => r,
                    None => {
                        let f32_model = config::load_model(&model, &args.model, Precision::F32)?;
                        reference.insert(clip.run(&f32_model, chunk)?.1)
                    }
                };
                Some(accuracy(&alphas, reference))
            };
            let end_to_end = if args.model_only {
                None
            } else {
                Some(end_to_end(&args, &loaded, chunk)?)
            };
            rows.push(Row {
                dtype,
                seq_chunk: chunk,
                model_only,
                end_to_end,
                vs_f32,
                gpu,
            });
        }
    }

    let first = rows[0].clone();
    let report = BenchReport {
        input: args.input.display().to_string(),
        model: model.to_string(),
        device: args.model.device.to_string(),
        threads: candle_core::utils::get_num_threads(),
        width: info.width,
        height: info.height,
        downsample_ratio: ratio,
        dtype: first.dtype,
        seq_chunk: first.seq_chunk,
        model_only: first.model_only,
        end_to_end: first.end_to_end,
        rows,
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn end_to_end(args: &BenchArgs, loaded: &Network, chunk: usize) -> Result<Throughput> {
    let scratch = tempfile::tempdir()?;
    let mut settings = MatteSettings::new("bench");
    if let Model::MatAnyone(_) = &loaded.model {
        let Some(mask) = &args.mask else {
            bail!("MatAnyone's end-to-end run needs --mask FILE; or measure --model-only");
        };
        settings.matanyone = Some(MatAnyoneOptions {
            mask: MaskChoice {
                file: Some(mask.clone()),
                ..MaskChoice::default()
            },
            ..MatAnyoneOptions::default()
        });
    }
    settings.downsample_ratio = args.downsample_ratio;
    settings.outputs = vec![OutputKind::Composite, OutputKind::Alpha];
    let run = RunOptions {
        chunks: Chunks::fixed(chunk),
        preprocess: args.model.preprocess,
        postprocess: args.model.postprocess,
        ..RunOptions::default()
    };
    let source = vmatte_media::open_source(&args.input, None)?;
    let (report, staged) = matte_source(
        loaded,
        source,
        (scratch.path(), "bench"),
        &settings,
        &run,
        &mut |_| {},
    )?;
    staged.publish()?;
    Ok(Throughput {
        frames: report.frames,
        seconds: report.seconds,
        fps: report.fps,
    })
}

fn accuracy(alphas: &[f32], reference: &[f32]) -> Accuracy {
    let (mut max, mut sum) = (0f64, 0f64);
    for (a, r) in alphas.iter().zip(reference) {
        let d = f64::from((a - r).abs());
        max = max.max(d);
        sum += d;
    }
    Accuracy {
        alpha_max_abs_diff: max,
        alpha_mean_abs_diff: sum / reference.len().max(1) as f64,
    }
}

/// Utilisation and memory over the samples taken since `since_ms`.
fn busy(series: &[vmatte_gpu::GpuSample], since_ms: u64) -> Option<GpuBusy> {
    let recent: Vec<_> = series
        .iter()
        .filter(|s| s.t_ms >= since_ms)
        .copied()
        .collect();
    let summary = vmatte_gpu::GpuSummary::of(&recent).into_iter().next()?;
    let util = summary.util_pct?;
    Some(GpuBusy {
        util_mean_pct: util.mean,
        util_max_pct: util.max,
        mem_max_mib: summary.mem_used_mib.map_or(0.0, |m| m.max),
    })
}

fn print_report(report: &BenchReport) {
    println!(
        "{} {}x{} ratio {} on {} ({} threads)",
        report.model,
        report.width,
        report.height,
        report.downsample_ratio,
        report.device,
        report.threads
    );
    for row in &report.rows {
        println!("  {} chunk {}:", row.dtype, row.seq_chunk);
        println!(
            "    model only:  {:.2} fps ({} frames)",
            row.model_only.fps, row.model_only.frames
        );
        if let Some(e) = &row.end_to_end {
            println!(
                "    end to end:  {:.2} fps ({} frames, composite + alpha mp4)",
                e.fps, e.frames
            );
        }
        if let Some(a) = &row.vs_f32 {
            println!(
                "    alpha vs f32: max {:.2e}, mean {:.2e}",
                a.alpha_max_abs_diff, a.alpha_mean_abs_diff
            );
        }
        if let Some(g) = &row.gpu {
            println!(
                "    GPU busy:    {:.0}% mean, {:.0}% max, {:.0} MiB max",
                g.util_mean_pct, g.util_max_pct, g.mem_max_mib
            );
        }
    }
    if let Some(rss) = report.peak_rss_mib {
        println!("  peak RSS:    {rss:.0} MiB");
    }
}

/// The process's high-water resident set (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
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
