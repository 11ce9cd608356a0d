//! `vmatte batch`: many videos into one output folder, resumable.
//!
//! ```text
//! inputs ─► discover ─► JobQueue::submit (OUTDIR/.vmatte/jobs.db) ─► tickets ─► Engine
//!                                   └─ same content, other name: a copy ─► linked once its job is done
//! ```
//! Every input becomes a job, or a copy of the job already covering its
//! content; the engine (the same one `vmatte worker` runs) claims each
//! ticket's job by id. A rerun skips what is done (after checking its
//! outputs are still there), redoes what was interrupted, and retries
//! failures on request. Jobs are leased, so several processes can share
//! one OUTDIR.

pub mod discover;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use vmatte_engine::load::open_device;
use vmatte_engine::observer::Observer;
use vmatte_engine::outcome::{one_line, rate, seconds, Outcome, Status};
use vmatte_engine::telemetry::{self, Hub};
use vmatte_engine::{settle_copy, Engine, EngineConfig, Feed, LanePlan, Ticket};
use vmatte_gpu::{FakeOom, GpuSummary};
use vmatte_jobs::queue::{JobQueue, NewJob};
use vmatte_jobs::{CopyRow, JobStore};

use crate::cli::BatchArgs;
use crate::config::{self, MatteConfig};
use crate::progress::{Mode, Screen};
use crate::signals::Interrupt;

/// How long a job stays ours without a heartbeat; a process that died
/// loses its jobs to the next one after this. `VMATTE_JOB_LEASE_MS`
/// shortens it (tests, or a farm that wants faster takeover).
pub(crate) fn lease() -> Duration {
    env_ms("VMATTE_JOB_LEASE_MS").unwrap_or(Duration::from_secs(60))
}

/// `VMATTE_FAKE_PANIC=FILE_NAME`: the input of that name panics (tests of
/// a bug failing only its own job).
pub(crate) fn fake_panic() -> Option<String> {
    std::env::var("VMATTE_FAKE_PANIC")
        .ok()
        .filter(|v| !v.is_empty())
}

/// A duration in milliseconds from the environment, if set and a number.
pub(crate) fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// An input whose content another input's job covers.
struct PendingCopy {
    n: usize,
    input: PathBuf,
    copy: CopyRow,
    job: i64,
}

/// What enqueueing a batch's inputs made of them.
struct Enqueued {
    /// Inputs that failed before they became jobs (unreadable).
    early: Vec<(usize, Outcome)>,
    /// The jobs to run, in input order.
    tickets: Vec<Ticket>,
    copies: Vec<PendingCopy>,
    /// Tickets run only for copies (their job's own input is not part of
    /// this run): their outcomes are the copies'.
    hidden: BTreeSet<usize>,
}

pub fn run(args: BatchArgs) -> Result<ExitCode> {
    let started_ms = vmatte_jobs::now_ms();
    let outdir = &args.output;
    let found = discover::prepare(&args.inputs, args.list.as_deref(), outdir, "")?;
    let config = config::resolve(&args.options)?;
    let devices = args
        .gpu
        .devices
        .clone()
        .unwrap_or_else(|| vec![config.device]);
    for device in &devices {
        open_device(*device)?;
    }
    let fake_oom = FakeOom::from_env().map_err(anyhow::Error::msg)?;
    let interrupt = Interrupt::install()?;
    let mut store = JobStore::open(outdir)?;
    let enqueued = enqueue(&mut store, &found.inputs, outdir, &config)?;

    let screen = Arc::new(Screen::new(
        Mode::detect(args.json),
        Some(found.inputs.len()),
        false,
    ));
    for w in &found.warnings {
        screen.note(&format!("warning: {w}"));
    }
    let hub = {
        let screen = screen.clone();
        Hub::start(
            &devices,
            move |round| {
                let brief: Vec<String> = round.iter().map(|s| s.brief()).collect();
                screen.set_gpu(&brief.join("  "));
            },
            |info| eprintln!("vmatte: info: {info}"),
        )
    };
    let engine_config = EngineConfig {
        owner: vmatte_jobs::owner_id(),
        per_stream_owners: false,
        lanes: devices
            .iter()
            .map(|d| lane(*d, &args, &config, hub.as_ref(), screen.as_ref()))
            .collect(),
        model_dir: config.model_dir.clone(),
        hwdec: config.hwdec,
        hwenc: config.hwenc,
        preprocess: config.preprocess,
        postprocess: config.postprocess,
        fake_oom,
        fake_panic: fake_panic(),
        strict: config.spec.run.strict,
        lease: lease(),
        backoff: Duration::ZERO,
        retry_failed: args.retry_failed,
        worker: None,
    };
    let connect = || JobStore::open_existing(outdir).map(|s| Box::new(s) as Box<dyn JobQueue>);
    let report = Engine::new(
        &engine_config,
        &connect,
        screen.as_ref(),
        hub.as_ref(),
        interrupt.flag(),
    )
    .run(Feed::Tickets(enqueued.tickets));

    let mut outcomes: Vec<(usize, Outcome)> = enqueued.early;
    outcomes.extend(
        report
            .outcomes
            .into_iter()
            .filter(|(n, _)| !enqueued.hidden.contains(n)),
    );
    for c in &enqueued.copies {
        let o = settle(&mut store, c, started_ms);
        screen.settled(&o);
        outcomes.push((c.n, o));
    }
    outcomes.sort_by_key(|(n, _)| *n);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    screen.finish();

    let mut warnings = found.warnings.clone();
    if let Err(e) = manifest(&mut store, outdir) {
        // The summary must reach the user even when the disk is full.
        warnings.push(e);
    }
    let gpu_summary = hub
        .as_ref()
        .map(|h| GpuSummary::of(&h.series()))
        .unwrap_or_default();
    print_summary(&outcomes, &gpu_summary);
    for w in warnings.iter().skip(found.warnings.len()) {
        eprintln!("vmatte: warning: {}", one_line(w));
    }
    if let Some(fatal) = &report.fatal {
        eprintln!(
            "vmatte: {}: the batch stopped: {}",
            outdir.display(),
            one_line(fatal)
        );
    }
    if args.json {
        let count = |s| count(&outcomes, s);
        let report = json!({
            "jobs": outcomes,
            "done": count(Status::Done),
            "failed": count(Status::Failed),
            "skipped": count(Status::Skipped),
            "interrupted": count(Status::Interrupted),
            "lost": count(Status::Lost),
            "outdir": outdir,
            "gpu": gpu_summary,
            "warnings": warnings,
            "error": report.fatal,
        });
        crate::host::json_line(&report)?;
    }
    if let Some(code) = interrupt.exit_code() {
        return Ok(code);
    }
    let all_ok = report.fatal.is_none()
        && outcomes
            .iter()
            .all(|o| matches!(o.status, Status::Done | Status::Skipped));
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Makes every input a job (or a copy of the job covering its content), in
/// sorted order, so names are allocated the same way on every run and by
/// every process.
fn enqueue(
    store: &mut JobStore,
    inputs: &[PathBuf],
    outdir: &Path,
    config: &MatteConfig,
) -> Result<Enqueued> {
    let (spec_json, settings_id) = config.spec.stored();
    let total = inputs.len();
    let mut e = Enqueued {
        early: Vec::new(),
        tickets: Vec::new(),
        copies: Vec::new(),
        hidden: BTreeSet::new(),
    };
    for (n, input) in inputs.iter().enumerate() {
        let content = match config.spec.content_id(input) {
            Ok(c) => c,
            Err(err) => {
                let o = Outcome::new(input, Status::Failed).with_error(unreadable(input, &err));
                e.early.push((n, o));
                continue;
            }
        };
        let submitted = JobQueue::submit(
            store,
            &NewJob {
                input,
                outdir,
                content_id: &content,
                settings_id: &settings_id,
                settings_json: &spec_json,
                max_attempts: 1,
                retry_failed: false,
            },
        )?;
        let job = submitted.job.id;
        let input = input.clone();
        match submitted.copy {
            Some(copy) => e.copies.push(PendingCopy {
                n,
                input,
                copy,
                job,
            }),
            None => e.tickets.push(Ticket {
                n,
                total,
                job,
                input,
            }),
        }
    }
    // A copy whose job no input of this run names still needs that job
    // done: it runs, reported through the copy.
    let mut ticketed: BTreeSet<i64> = e.tickets.iter().map(|t| t.job).collect();
    for c in &e.copies {
        if ticketed.insert(c.job) {
            let n = total + e.hidden.len();
            e.hidden.insert(n);
            let input = store
                .job(c.job)?
                .map_or_else(|| c.input.clone(), |j| j.input_path);
            e.tickets.push(Ticket {
                n,
                total,
                job: c.job,
                input,
            });
        }
    }
    Ok(e)
}

/// A copy's outcome once the run is over: linked if its job is done (the
/// engine links copies as their jobs finish; this links those whose job
/// was done before).
fn settle(store: &mut JobStore, c: &PendingCopy, started_ms: i64) -> Outcome {
    let copy = store
        .copies(Some(c.job))
        .ok()
        .and_then(|all| all.into_iter().find(|x| x.id == c.copy.id))
        .unwrap_or_else(|| c.copy.clone());
    match store.job(c.job) {
        Ok(Some(job)) => settle_copy(store, &c.input, (&job, &copy), started_ms),
        Ok(None) => Outcome::new(&c.input, Status::Failed)
            .with_error(format!("the job store lost job {}", c.job)),
        Err(e) => Outcome::new(&c.input, Status::Failed).with_error(e.to_string()),
    }
}

/// Writes manifest.csv from the store (a batch's, a watched folder's);
/// the reason, in one line, if not.
pub(crate) fn manifest(store: &mut dyn JobQueue, outdir: &Path) -> Result<(), String> {
    let written = store
        .jobs()
        .and_then(|jobs| Ok((jobs, store.copies(None)?)))
        .map_err(|e| e.to_string())
        .and_then(|(jobs, copies)| {
            vmatte_jobs::write_manifest(outdir, &jobs, &copies).map_err(|e| e.to_string())
        });
    written.map_err(|e| {
        format!(
            "{}: cannot write manifest.csv ({e}); `vmatte status {}` shows the same table",
            outdir.display(),
            outdir.display()
        )
    })
}

/// Streams and chunk size for `device`: what the user gave, the rest
/// planned from the GPU's free memory (within --vram-limit) when NVML
/// tells it, else one stream and each job's own chunk.
fn lane(
    device: vmatte_gpu::DeviceSpec,
    args: &BatchArgs,
    config: &MatteConfig,
    hub: Option<&Hub>,
    screen: &Screen,
) -> LanePlan {
    let given_streams = args.gpu.streams.map(|n| n as usize);
    let given_chunk = args.options.seq_chunk.map(|n| n as usize);
    // The cost model is RVM's. GVM runs one video at a time unless told
    // otherwise, and its own ladder fits its windows to the card.
    let plan = config.spec.settings.gvm.is_none().then(|| {
        telemetry::plan(
            device,
            hub,
            args.gpu.vram_limit,
            (
                config.spec.settings.downsample_ratio,
                config.spec.run.precision,
            ),
            (given_chunk, given_streams),
            |line| screen.note(line),
        )
    });
    LanePlan::of(device, plan.flatten(), given_streams)
}

fn unreadable(input: &Path, e: &std::io::Error) -> String {
    let name = one_line(&input.display().to_string());
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("{name}: file not found; check the path"),
        std::io::ErrorKind::PermissionDenied => {
            format!("{name}: permission denied; make the file readable")
        }
        std::io::ErrorKind::InvalidInput => {
            format!("{name}: not a regular file (a FIFO, socket or device); give a video file")
        }
        _ => format!("{name}: cannot read ({e}); check the file and the disk"),
    }
}

fn count(outcomes: &[Outcome], status: Status) -> usize {
    outcomes.iter().filter(|o| o.status == status).count()
}

fn print_summary(outcomes: &[Outcome], gpu: &[GpuSummary]) {
    let ran = |o: &&Outcome| o.status == Status::Done && o.copy_of.is_none();
    let frames: u64 = outcomes.iter().filter(ran).filter_map(|o| o.frames).sum();
    let secs: f64 = outcomes.iter().filter(ran).filter_map(|o| o.seconds).sum();
    eprintln!();
    eprintln!(
        "{:<11} {:>7} {:>8} {:>7}  input",
        "status", "frames", "time", "fps"
    );
    for o in outcomes {
        let num = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let why = o
            .error
            .as_deref()
            .or(o.note.as_deref())
            .map(|w| format!("  ({})", one_line(w)))
            .unwrap_or_default();
        eprintln!(
            "{:<11} {:>7} {:>8} {:>7}  {}{why}",
            o.status.as_str(),
            num(o.frames.map(|f| f.to_string())),
            num(o.seconds.map(seconds)),
            num(o.fps.map(rate)),
            one_line(&o.input.display().to_string())
        );
    }
    let mut counts = vec![
        format!("{} done", count(outcomes, Status::Done)),
        format!("{} failed", count(outcomes, Status::Failed)),
        format!("{} skipped", count(outcomes, Status::Skipped)),
    ];
    for status in [Status::Interrupted, Status::Lost] {
        let n = count(outcomes, status);
        if n > 0 {
            counts.push(format!("{n} {}", status.as_str()));
        }
    }
    eprintln!(
        "{}; {frames} frames in {}",
        counts.join(", "),
        seconds(secs)
    );
    for o in outcomes {
        for step in &o.ladder {
            eprintln!("  {}: {step}", one_line(&o.input.display().to_string()));
        }
        for w in &o.warnings {
            let at = w.frame.map(|f| format!(" frame {f}")).unwrap_or_default();
            eprintln!(
                "  {}:{at}: {}",
                one_line(&o.input.display().to_string()),
                one_line(&w.message)
            );
        }
    }
    for g in gpu {
        eprintln!("{}", g.line());
    }
}

/// `vmatte status OUTDIR`: the job table without running anything.
pub fn status(outdir: &Path, json_out: bool) -> Result<ExitCode> {
    let store = JobStore::open_existing(outdir)?;
    let jobs = store.jobs()?;
    let copies = store.copies(None)?;
    if json_out {
        // Each job with its copies (inputs of the same content, with
        // outputs of their own).
        let rows: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                let mut row = serde_json::to_value(j)?;
                let mine: Vec<_> = copies.iter().filter(|c| c.job_id == j.id).collect();
                if !mine.is_empty() {
                    row["copies"] = serde_json::to_value(mine)?;
                }
                Ok(row)
            })
            .collect::<serde_json::Result<_>>()?;
        crate::host::json_document(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::queue::print_jobs(&jobs, &copies);
    Ok(ExitCode::SUCCESS)
}
