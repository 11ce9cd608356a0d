//! `vmatte matte`: every input through the pipeline, one after another,
//! continuing past a bad input and failing the exit status at the end.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use vmatte_engine::load::{load, LoadAt};
use vmatte_engine::outcome::{one_line, rate, seconds};
use vmatte_engine::telemetry::{self, Hub};
use vmatte_pipeline::{matte_source, Chunks, MatteReport, Network, PipelineError, RunOptions};

use crate::cli::MatteArgs;
use crate::config::{self, MatteConfig};
use crate::progress::{Mode, Reporter};
use crate::signals::Interrupt;

pub fn run(args: MatteArgs) -> Result<ExitCode> {
    let config = config::resolve(&args.options)?;
    let interrupt = Interrupt::install()?;
    let mut run = config.run_options();
    run.fake_oom = vmatte_gpu::FakeOom::from_env().map_err(anyhow::Error::msg)?;
    run.cancel = vec![interrupt.flag()];
    let net = load(
        &config.model(),
        config.spec.settings.gvm.as_ref(),
        &LoadAt {
            model_dir: config.model_dir.as_deref(),
            device: config.device,
            precision: run.precision,
            hwdec: config.hwdec,
            hwenc: config.hwenc,
        },
    )?;
    let mode = Mode::detect(args.json);
    // Where the GPU readings go: the bar being drawn.
    let gpu_text: Arc<Mutex<Option<Arc<Mutex<String>>>>> = Arc::default();
    let hub = {
        let gpu_text = gpu_text.clone();
        Hub::start(
            &[config.device],
            move |round| {
                let lock = gpu_text.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = lock.as_ref() {
                    let brief: Vec<String> = round.iter().map(|s| s.brief()).collect();
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = brief.join("  ");
                }
            },
            |info| eprintln!("vmatte: info: {info}"),
        )
    };
    if config.spec.settings.gvm.is_none() {
        let given = (args.options.seq_chunk.map(|n| n as usize), Some(1));
        let plan = telemetry::plan(
            config.device,
            hub.as_ref(),
            args.vram_limit,
            (config.spec.settings.downsample_ratio, run.precision),
            given,
            |line| eprintln!("vmatte: {line}"),
        );
        if let Some(plan) = plan {
            run.chunks = Chunks::fixed(plan.seq_chunk);
        }
    }

    let mut stems = HashSet::new();
    let mut failed = 0;
    for input in &args.inputs {
        if interrupt.stopped() {
            break;
        }
        let stem = unique_stem(input, &mut stems);
        let one = One {
            net: &net,
            config: &config,
            run: &run,
            out: &args.output,
            mode,
            json: args.json,
        };
        match one.matte(input, &stem, &gpu_text, hub.as_ref())? {
            Ended::Done => {}
            Ended::Failed => failed += 1,
            Ended::Interrupted => break,
        }
    }
    if let Some(code) = interrupt.exit_code() {
        return Ok(code);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How one input ended.
enum Ended {
    Done,
    Failed,
    Interrupted,
}

/// What every input of a run shares.
struct One<'a> {
    net: &'a Network,
    config: &'a MatteConfig,
    run: &'a RunOptions,
    out: &'a Path,
    mode: Mode,
    json: bool,
}

impl One<'_> {
    /// Mattes `input` as `stem` and says how it went: a line for people (or
    /// a JSON object), GPU figures, lowered settings and warnings.
    fn matte(
        &self,
        input: &Path,
        stem: &str,
        gpu_text: &Mutex<Option<Arc<Mutex<String>>>>,
        hub: Option<&Hub>,
    ) -> Result<Ended> {
        let name = display_name(input);
        let mut reporter = Reporter::new(&name, self.mode);
        *gpu_text.lock().unwrap_or_else(|p| p.into_inner()) = Some(reporter.gpu_slot());
        let since = vmatte_gpu::telemetry::now_ms();
        // A bug met by one input fails that input with one line; the
        // others go on.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            vmatte_media::open_source(input, self.config.spec.fps)
                .map_err(PipelineError::from)
                .and_then(|source| {
                    matte_source(
                        self.net,
                        source,
                        (self.out, stem),
                        &self.config.spec.settings,
                        self.run,
                        &mut |p| {
                            // Lowered settings are never silent, and said at once.
                            if !self.json {
                                for step in &p.steps {
                                    reporter.note(&format!("{name}: {step}"));
                                }
                            }
                            reporter.update(p)
                        },
                    )
                })
                .and_then(|(report, staged)| staged.publish().map(|_| report))
        }));
        let result = caught
            .unwrap_or_else(|p| Err(PipelineError::Internal(vmatte_pipeline::panic_text(&*p))));
        *gpu_text.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let (Some(hub), false) = (hub, self.json) {
            let recent: Vec<_> = hub
                .series()
                .into_iter()
                .filter(|s| s.t_ms >= since)
                .collect();
            for g in vmatte_gpu::GpuSummary::of(&recent) {
                eprintln!("{}", g.line());
            }
        }
        match result {
            Ok(report) => {
                reporter.finish(&done_line(&name, &report));
                if self.json {
                    crate::host::json_line(&report)?;
                } else {
                    for w in &report.warnings {
                        eprintln!(
                            "vmatte: warning: {name}: frame {}: {}",
                            w.frame,
                            one_line(&w.message)
                        );
                    }
                }
                Ok(Ended::Done)
            }
            Err(PipelineError::Cancelled) => {
                reporter.finish(&format!("{name}: interrupted; nothing was written"));
                Ok(Ended::Interrupted)
            }
            Err(e) => {
                reporter.finish("");
                eprintln!("vmatte: {}", one_line(&e.to_string()));
                if self.json {
                    crate::host::json_failure(input, &e.to_string())?;
                }
                Ok(Ended::Failed)
            }
        }
    }
}

/// What a finished input says: `NAME: N frames in T (R fps) -> OUTPUTS`.
pub fn done_line(name: &str, report: &MatteReport) -> String {
    format!(
        "{name}: {} frames in {} ({} fps) -> {}",
        report.frames,
        seconds(report.seconds),
        rate(report.fps),
        report
            .outputs
            .values()
            .map(|p| one_line(&p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn display_name(path: &Path) -> String {
    one_line(
        &path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    )
}

/// The input's file stem (a folder's name), made unique within this run so
/// two `clip.mp4` from different folders do not overwrite each other:
/// `clip`, `clip_2`, ... as `vmatte batch` numbers them.
pub fn unique_stem(input: &Path, used: &mut HashSet<String>) -> String {
    let base = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| "input".into());
    let mut stem = base.clone();
    let mut n = 2;
    while !used.insert(stem.clone()) {
        stem = format!("{base}_{n}");
        n += 1;
    }
    stem
}
