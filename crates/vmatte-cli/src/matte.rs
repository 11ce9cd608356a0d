//! `vmatte matte`: every input through the pipeline, one after another,
//! continuing past a bad input and failing the exit status at the end.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use vmatte_media::Rational;
use vmatte_pipeline::{matte_source, DownsampleRatio, GvmOptions, MatteSettings, OutputFormat};

use crate::cli::{GvmArgs, MatteArgs, MatteOptions, ModelArgs};
use crate::gpu;
use crate::presets;
use crate::progress::Reporter;
use crate::runtime;

/// The pipeline settings and model the options describe: each option from
/// the command line, else from `--preset`, else its default.
pub fn settings(o: &MatteOptions) -> Result<(MatteSettings, ModelArgs)> {
    let preset = o
        .preset
        .as_deref()
        .map(|name| presets::find(name, o.config.as_deref()))
        .transpose()?;
    let p = preset.unwrap_or_default();
    let mut model = o.model.clone();
    model.model = o.model.model.clone().or_else(|| p.model.clone());
    let mut settings = MatteSettings::new(model.name());
    if let Some(w) = &model.weights {
        settings.model = w.display().to_string();
    }
    settings.downsample_ratio = o
        .downsample_ratio
        .or(p.downsample_ratio)
        .unwrap_or(DownsampleRatio::Auto);
    match o.seq_chunk {
        Some(n) => settings.seq_chunk = n as usize,
        None => presets::apply_chunks(&p, &mut settings),
    }
    if let Some(outputs) = o.outputs.clone().or(p.outputs) {
        settings.outputs = dedup(&outputs);
    }
    settings.format = o.format.or(p.format).unwrap_or(settings.format);
    settings.background = o
        .background
        .clone()
        .or(p.background)
        .unwrap_or(settings.background);
    settings.crf = o.crf.or(p.crf).unwrap_or(settings.crf);
    settings.bitrate = o.bitrate;
    settings.codec = o.codec.unwrap_or_default();
    settings.depth = o.depth;
    settings.premultiplied = o.premultiplied;
    settings.invert_alpha = o.invert_alpha;
    settings.no_audio = o.no_audio;
    settings.max_frames = o.max_frames.or(p.max_frames);
    if o.image_seq_only {
        if o.format.is_some_and(|f| f != OutputFormat::Png) {
            bail!("--image-seq-only writes PNG sequences; leave out --format");
        }
        settings.format = OutputFormat::Png;
    }
    if model.is_gvm() {
        settings.gvm = Some(gvm_options(&o.gvm, p.gvm.unwrap_or_default()));
    } else if o.gvm.is_set() {
        bail!(
            "--frames-per-batch, --overlap-frames, --interp-frames, --denoise-steps, --decode-chunk, --size, --max-resolution, --ensemble and --lora are GVM settings; add --model gvm"
        );
    }
    settings.validate().map_err(anyhow::Error::msg)?;
    settings.device = model.device.clone();
    settings.dtype = model.dtype.clone();
    let on_device = |choice: &str| match choice {
        "device" => Some(true),
        "cpu" => Some(false),
        _ => None,
    };
    settings.post_on_device = on_device(&model.postprocess);
    settings.pre_on_device = on_device(&model.preprocess);
    Ok((settings, model))
}

pub fn run(args: MatteArgs) -> Result<ExitCode> {
    let image_fps = args.options.fps.as_deref().map(parse_fps).transpose()?;
    let (mut settings, model) = settings(&args.options)?;
    settings.fake_oom = vmatte_gpu::FakeOom::from_env().map_err(anyhow::Error::msg)?;
    let loaded = runtime::load_with(&model, settings.gvm.as_ref())?;
    // The bar being drawn, for the GPU readings to appear on.
    let bar: Arc<Mutex<Option<ProgressBar>>> = Arc::default();
    let hub = {
        let bar = bar.clone();
        gpu::Hub::start(std::slice::from_ref(&model.device), move |round| {
            if let Some(bar) = bar.lock().expect("bar").as_ref() {
                let brief: Vec<String> = round.iter().map(|s| s.brief()).collect();
                bar.set_message(brief.join("  "));
            }
        })
    };

    let given_chunk = args.options.seq_chunk.map(|n| n as usize);
    let fixed = (given_chunk, Some(1));
    if let Some(plan) = gpu::plan(
        &model.device,
        hub.as_ref(),
        args.vram_limit,
        &settings,
        &model.dtype,
        fixed,
    ) {
        settings.seq_chunk = plan.seq_chunk;
        settings.seq_chunk_large = None;
    }

    let mut stems = HashSet::new();
    let mut failed = 0;
    for input in &args.inputs {
        let stem = unique_stem(input, &mut stems);
        let mut reporter = Reporter::new(&display_name(input), args.json);
        *bar.lock().expect("bar") = reporter.bar();
        let since = vmatte_gpu::telemetry::now_ms();
        let result = vmatte_media::open_source(input, image_fps)
            .map_err(Into::into)
            .and_then(|source| {
                matte_source(
                    &loaded.model,
                    &loaded.device,
                    source,
                    &args.output,
                    &stem,
                    &settings,
                    &mut |p| reporter.update(p),
                )
            });
        *bar.lock().expect("bar") = None;
        if let Some(hub) = &hub {
            let recent: Vec<_> = hub
                .series()
                .into_iter()
                .filter(|s| s.t_ms >= since)
                .collect();
            for g in vmatte_gpu::GpuSummary::of(&recent) {
                if !args.json {
                    eprintln!("{}", g.line());
                }
            }
        }
        match result {
            Ok(report) => {
                reporter.finish(&format!(
                    "{}: {} frames in {:.1}s ({:.1} fps) -> {}",
                    display_name(input),
                    report.frames,
                    report.seconds,
                    report.fps,
                    report
                        .outputs
                        .values()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                // Lowered settings are never silent.
                if !args.json {
                    for step in &report.ladder {
                        eprintln!("{}: {step}", display_name(input));
                    }
                }
                if args.json {
                    println!("{}", serde_json::to_string(&report)?);
                }
            }
            Err(e) => {
                failed += 1;
                reporter.finish("");
                eprintln!("vmatte: {e}");
                if args.json {
                    let line = serde_json::json!({ "input": input, "error": e.to_string() });
                    println!("{line}");
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// GVM's settings: each flag, else the preset's (or the defaults) `base`.
fn gvm_options(a: &GvmArgs, base: GvmOptions) -> GvmOptions {
    let pick = |flag: Option<u32>, preset: usize| flag.map_or(preset, |v| v as usize);
    GvmOptions {
        frames_per_batch: pick(a.frames_per_batch, base.frames_per_batch),
        overlap_frames: pick(a.overlap_frames, base.overlap_frames),
        interp_frames: pick(a.interp_frames, base.interp_frames),
        denoise_steps: pick(a.denoise_steps, base.denoise_steps),
        decode_chunk: pick(a.decode_chunk, base.decode_chunk),
        size: pick(a.size, base.size),
        max_resolution: pick(a.max_resolution, base.max_resolution),
        ensemble: pick(a.ensemble, base.ensemble),
        lora: match (&a.lora, a.no_lora) {
            (_, true) => "off".into(),
            (Some(dir), _) => dir.display().to_string(),
            (None, false) => base.lora,
        },
    }
}

impl GvmArgs {
    fn is_set(&self) -> bool {
        [
            self.frames_per_batch,
            self.overlap_frames,
            self.interp_frames,
            self.denoise_steps,
            self.decode_chunk,
            self.size,
            self.max_resolution,
            self.ensemble,
        ]
        .iter()
        .any(Option::is_some)
            || self.lora.is_some()
            || self.no_lora
    }
}

fn dedup<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The input's file stem (a folder's name), made unique within this run so
/// two `clip.mp4` from different folders do not overwrite each other.
fn unique_stem(input: &Path, used: &mut HashSet<String>) -> String {
    let base = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| "input".into());
    let mut stem = base.clone();
    let mut n = 2;
    while !used.insert(stem.clone()) {
        stem = format!("{base}-{n}");
        n += 1;
    }
    stem
}

/// `25`, `29.97` or `30000/1001`.
pub fn parse_fps(s: &str) -> Result<Rational> {
    let bad =
        || anyhow::anyhow!("--fps '{s}' is not a frame rate; use e.g. 25, 29.97 or 30000/1001");
    let rate = if let Some((n, d)) = s.split_once('/') {
        Rational::new(
            n.trim().parse().map_err(|_| bad())?,
            d.trim().parse().map_err(|_| bad())?,
        )
    } else if let Ok(n) = s.parse::<i32>() {
        Rational::new(n, 1)
    } else {
        let f: f64 = s.parse().map_err(|_| bad())?;
        // 23.976, 29.97 and 59.94 mean the NTSC rates, exactly.
        [24000, 30000, 60000]
            .into_iter()
            .map(|n| Rational::new(n, 1001))
            .find(|r| (r.as_f64() - f).abs() < 0.005)
            .unwrap_or_else(|| Rational::new((f * 1000.0).round() as i32, 1000))
    };
    if rate.num <= 0 || rate.den <= 0 {
        bail!(bad());
    }
    Ok(rate)
}
