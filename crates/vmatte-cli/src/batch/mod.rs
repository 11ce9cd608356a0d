//! `vmatte batch`: many videos into one output folder, resumable. Every
//! input becomes a job in `OUTDIR/.vmatte/jobs.db`; a rerun skips what is
//! done, redoes what was interrupted, and retries failures on request. Jobs
//! are leased, so several processes can share one OUTDIR.

pub mod discover;
pub mod joblog;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use vmatte_gpu::{ladder, FakeOom, GpuSummary, Step};
use vmatte_jobs::{Claim, JobRow, JobStore};
use vmatte_pipeline::{MatteSettings, PipelineError};

use crate::cli::{BatchArgs, ModelArgs};
use crate::gpu;
use crate::matte::{parse_fps, settings};
use crate::progress::{BatchProgress, Reporter};
use crate::runtime::{self, Loaded};
use joblog::JobLog;

/// How long a job stays ours without a heartbeat; a process that died
/// loses its jobs to the next one after this. `VMATTE_JOB_LEASE_MS`
/// shortens it (tests, or a farm that wants faster takeover).
pub(crate) fn lease() -> Duration {
    env_ms("VMATTE_JOB_LEASE_MS").unwrap_or(Duration::from_secs(60))
}

/// A duration in milliseconds from the environment, if set and a number.
pub(crate) fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Done,
    Failed,
    Skipped,
}

/// One line of the summary and one entry of `--json`.
#[derive(Debug, Serialize)]
struct Outcome {
    input: PathBuf,
    status: Status,
    error: Option<String>,
    /// Why a job was skipped: finished earlier, or held by another process.
    note: Option<String>,
    name: Option<String>,
    frames: Option<u64>,
    seconds: Option<f64>,
    fps: Option<f64>,
    outputs: BTreeMap<String, PathBuf>,
    log: Option<PathBuf>,
    /// Where the video was matted (the CPU after the out-of-memory ladder).
    device: Option<String>,
    /// Out-of-memory steps taken within the video.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ladder: Vec<String>,
    /// GPU telemetry over the job, per GPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gpu: Vec<GpuSummary>,
}

impl Outcome {
    fn new(input: &Path, status: Status) -> Self {
        Self {
            input: input.to_path_buf(),
            status,
            error: None,
            note: None,
            name: None,
            frames: None,
            seconds: None,
            fps: None,
            outputs: BTreeMap::new(),
            log: None,
            device: None,
            ladder: Vec::new(),
            gpu: Vec::new(),
        }
    }

    fn from_row(row: &JobRow, status: Status) -> Self {
        let mut o = Self::new(&row.input_path, status);
        o.name = Some(row.safe_name.clone());
        o.error = row.error.clone();
        o.frames = row.frames;
        o.seconds = row.seconds;
        o.fps = row
            .frames
            .zip(row.seconds)
            .map(|(f, s)| f as f64 / s.max(1e-9));
        o.outputs = row.outputs.clone();
        o
    }
}

pub fn run(args: BatchArgs) -> Result<ExitCode> {
    let outdir = &args.output;
    let inputs = discover::prepare(&args.inputs, args.list.as_deref(), outdir, "")?;
    let image_fps = args.options.fps.as_deref().map(parse_fps).transpose()?;
    let (settings, model_args) = settings(&args.options)?;
    let settings_json = serde_json::to_string(&settings)?;
    let settings_id = vmatte_jobs::settings_id(&settings_json);
    let devices = args
        .gpu
        .devices
        .clone()
        .unwrap_or_else(|| vec![model_args.device.clone()]);
    for device in &devices {
        runtime::device(device)?;
    }
    let fake_oom = FakeOom::from_env().map_err(anyhow::Error::msg)?;
    let mut store = JobStore::open(outdir)?;
    let owner = vmatte_jobs::owner_id();

    // Enqueue everything first, in sorted order, so names are allocated the
    // same way on every run and by every process.
    let mut outcomes: Vec<Option<Outcome>> = Vec::new();
    let mut work = VecDeque::new();
    // The first input of this run behind each job: a second file with the
    // same content is the same job.
    let mut seen: BTreeMap<i64, PathBuf> = BTreeMap::new();
    for (n, input) in inputs.into_iter().enumerate() {
        let row = match vmatte_jobs::content_id(&input) {
            Ok(content) => store.enqueue(&input, &content, &settings_id, &settings_json)?,
            Err(e) => {
                let mut o = Outcome::new(&input, Status::Failed);
                o.error = Some(unreadable(&input, &e));
                outcomes.push(Some(o));
                continue;
            }
        };
        if let Some(first) = seen.get(&row.id) {
            let mut o = Outcome::new(&input, Status::Skipped);
            o.name = Some(row.safe_name.clone());
            o.note = Some(format!("same content as {}", first.display()));
            outcomes.push(Some(o));
            continue;
        }
        seen.insert(row.id, input.clone());
        outcomes.push(None);
        work.push_back(Work { n, input, row });
    }
    let total = outcomes.len();

    let progress = Arc::new(Mutex::new(BatchProgress::new(total, args.json)));
    let hub = {
        let progress = progress.clone();
        gpu::Hub::start(&devices, move |round| {
            let brief: Vec<String> = round.iter().map(|s| s.brief()).collect();
            progress
                .lock()
                .expect("progress")
                .set_gpu(&brief.join("  "));
        })
    };
    let lanes = devices
        .iter()
        .map(|device| Lane::plan(device, &args, &settings, &model_args, hub.as_ref()))
        .collect::<Vec<_>>();
    let ctx = Batch {
        outdir,
        owner: &owner,
        settings: &settings,
        model_args: &model_args,
        image_fps,
        fake_oom,
        total,
        json: args.json,
        retry_failed: args.retry_failed,
        work: Mutex::new(work),
        outcomes: Mutex::new(outcomes),
        progress: progress.clone(),
        hub: hub.as_ref(),
        cpu: OnceLock::new(),
    };
    std::thread::scope(|scope| -> Result<()> {
        let mut streams = Vec::new();
        for lane in &lanes {
            for slot in 0..lane.streams.load(Ordering::Relaxed) {
                let ctx = &ctx;
                streams.push(scope.spawn(move || ctx.stream(lane, slot)));
            }
        }
        for s in streams {
            s.join().expect("a stream thread panicked")?;
        }
        Ok(())
    })?;
    // A job requeued by the out-of-memory ladder after the other streams had
    // run out of work, by a stream the halving retired, is still queued:
    // slot 0 of a lane always stays, so it finishes the queue.
    ctx.stream(&lanes[0], 0)?;
    let outcomes: Vec<Outcome> = ctx
        .outcomes
        .into_inner()
        .expect("outcomes")
        .into_iter()
        .map(|o| o.expect("every job ran"))
        .collect();

    progress.lock().expect("progress").finish();
    // The summary must reach the user even when the disk is full, so a
    // manifest that cannot be written is a warning, not the end.
    let mut warnings = Vec::new();
    if let Err(e) = vmatte_jobs::write_manifest(outdir, &store.jobs()?) {
        warnings.push(format!(
            "{}: cannot write manifest.csv ({e}); `vmatte status {}` shows the same table",
            outdir.display(),
            outdir.display()
        ));
    }
    let gpu_summary = hub
        .as_ref()
        .map(|h| GpuSummary::of(&h.series()))
        .unwrap_or_default();
    print_summary(&outcomes, &gpu_summary);
    for w in &warnings {
        eprintln!("vmatte: warning: {w}");
    }
    if args.json {
        let count = |s| count(&outcomes, s);
        let report = json!({
            "jobs": outcomes,
            "done": count(Status::Done),
            "failed": count(Status::Failed),
            "skipped": count(Status::Skipped),
            "outdir": outdir,
            "gpu": gpu_summary,
            "warnings": warnings,
        });
        println!("{report}");
    }
    let all_ok = outcomes.iter().all(|o| o.status != Status::Failed);
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// An input waiting for a stream.
struct Work {
    n: usize,
    input: PathBuf,
    row: JobRow,
}

/// One device's share of the batch: its model (loaded by the first stream
/// that needs it), how many videos it runs at once (lowered by the
/// out-of-memory ladder) and its chunk size.
struct Lane {
    device: String,
    streams: AtomicUsize,
    seq_chunk: Option<usize>,
    model: OnceLock<Result<Loaded, String>>,
}

impl Lane {
    /// Streams and chunk size for `device`: what the user gave, the rest
    /// planned from the GPU's free memory (within --vram-limit) when NVML
    /// tells it, else one stream and the settings' chunk.
    fn plan(
        device: &str,
        args: &BatchArgs,
        settings: &MatteSettings,
        model_args: &ModelArgs,
        hub: Option<&gpu::Hub>,
    ) -> Self {
        let given_streams = args.gpu.streams.map(|n| n as usize);
        let given_chunk = args.options.seq_chunk.map(|n| n as usize);
        let plan = gpu::plan(
            device,
            hub,
            args.gpu.vram_limit,
            settings,
            &model_args.dtype,
            (given_chunk, given_streams),
        );
        let (streams, seq_chunk) = match plan {
            Some(plan) => (plan.streams, Some(plan.seq_chunk)),
            None => (given_streams.unwrap_or(1), None),
        };
        Self {
            device: device.to_string(),
            streams: AtomicUsize::new(streams),
            seq_chunk,
            model: OnceLock::new(),
        }
    }
}

impl Lane {
    /// The ladder's next step for a job of this lane that ran out of memory
    /// one frame at a time. Taken atomically: of two jobs failing together,
    /// one halves the streams and the other, seeing the halved count, goes
    /// on to the CPU.
    fn step_down(&self) -> Step {
        let mut step = Step::Cpu;
        let _ = self
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                step = ladder::next_for_job(n);
                match step {
                    Step::HalveStreams { to, .. } => Some(to),
                    _ => None,
                }
            });
        step
    }
}

/// What the streams share.
struct Batch<'a> {
    outdir: &'a Path,
    owner: &'a str,
    settings: &'a MatteSettings,
    model_args: &'a ModelArgs,
    image_fps: Option<vmatte_media::Rational>,
    fake_oom: Option<FakeOom>,
    total: usize,
    json: bool,
    retry_failed: bool,
    work: Mutex<VecDeque<Work>>,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    progress: Arc<Mutex<BatchProgress>>,
    hub: Option<&'a gpu::Hub>,
    /// The bottom of the out-of-memory ladder, loaded on first use.
    cpu: OnceLock<Result<Loaded, String>>,
}

/// How a claimed job ended for its stream.
enum JobEnd {
    Finished(Box<Outcome>),
    /// Out of memory with several videos at once: fewer now, the job goes
    /// back to the front of the queue.
    Requeue,
}

impl Batch<'_> {
    /// One stream: takes inputs until none is left, or until the ladder
    /// lowers its lane's streams below its slot.
    fn stream(&self, lane: &Lane, slot: usize) -> Result<()> {
        let mut store = JobStore::open(self.outdir)?;
        while slot < lane.streams.load(Ordering::Relaxed) {
            let Some(work) = self.work.lock().expect("work").pop_front() else {
                return Ok(());
            };
            let Work { n, input, row } = &work;
            let outcome = match store.claim(row.id, self.owner, lease(), self.retry_failed)? {
                Claim::AlreadyDone(row) => {
                    let mut o = Outcome::from_row(&row, Status::Skipped);
                    o.note = Some("done in an earlier run".into());
                    o
                }
                Claim::Failed(row) => {
                    let mut o = Outcome::from_row(&row, Status::Failed);
                    o.note = Some("failed in an earlier run; --retry-failed retries it".into());
                    o
                }
                Claim::Busy(row) => {
                    let mut o = Outcome::from_row(&row, Status::Skipped);
                    o.note = Some(format!(
                        "being processed by {}",
                        row.lease_owner.as_deref().unwrap_or("another process")
                    ));
                    o
                }
                Claim::Claimed(row) => {
                    let label = format!("[{}/{}] {}", n + 1, self.total, row.safe_name);
                    let reporter = {
                        let progress = self.progress.lock().expect("progress");
                        Reporter::within(progress.multi.as_ref(), &label, self.json)
                    };
                    match self.run_job(&mut store, lane, &row, input, reporter)? {
                        JobEnd::Finished(o) => *o,
                        JobEnd::Requeue => {
                            self.work.lock().expect("work").push_front(work);
                            continue;
                        }
                    }
                }
            };
            self.finish(*n, input, outcome);
        }
        Ok(())
    }

    fn finish(&self, n: usize, input: &Path, mut outcome: Outcome) {
        self.progress
            .lock()
            .expect("progress")
            .job_finished(if outcome.status == Status::Done {
                outcome.frames.unwrap_or(0)
            } else {
                0
            });
        // The store remembers where the content was last seen; the summary
        // speaks of the file this run was given.
        outcome.input = input.to_path_buf();
        self.outcomes.lock().expect("outcomes")[n] = Some(outcome);
    }

    /// The lane's model, loaded once; a load failure fails each job with
    /// its reason.
    fn model<'l>(&self, lane: &'l Lane) -> Result<&'l Loaded, String> {
        let loaded = lane.model.get_or_init(|| {
            let mut args = self.model_args.clone();
            args.device = lane.device.clone();
            runtime::load_with(&args, self.settings.gvm.as_ref()).map_err(|e| format!("{e:#}"))
        });
        loaded.as_ref().map_err(Clone::clone)
    }

    fn cpu_model(&self) -> Result<&Loaded, String> {
        let loaded = self.cpu.get_or_init(|| {
            let mut args = self.model_args.clone();
            args.device = "cpu".into();
            args.dtype = "f32".into();
            runtime::load_with(&args, self.settings.gvm.as_ref()).map_err(|e| format!("{e:#}"))
        });
        loaded.as_ref().map_err(Clone::clone)
    }

    /// Runs one claimed job, keeping its lease alive from a second
    /// connection, and records the result (or the one-line reason) in the
    /// store and log. Out of memory takes the next step down the ladder.
    fn run_job(
        &self,
        store: &mut JobStore,
        lane: &Lane,
        row: &JobRow,
        input: &Path,
        mut reporter: Reporter,
    ) -> Result<JobEnd> {
        let (outdir, owner) = (self.outdir, self.owner);
        let mut log = JobLog::create(outdir, &row.safe_name).with_context(|| {
            format!(
                "{}: cannot write the job log; check the folder is writable",
                outdir.display()
            )
        })?;
        let mut settings = self.settings.clone();
        settings.device = lane.device.clone();
        if let Some(n) = lane.seq_chunk {
            settings.seq_chunk = n;
            settings.seq_chunk_large = None;
        }
        settings.fake_oom = self.fake_oom;
        log.start(input, row, owner, &settings);

        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (lost, stop) = (lost.clone(), stop.clone());
            let (outdir, owner, id) = (outdir.to_path_buf(), owner.to_string(), row.id);
            std::thread::spawn(move || -> Result<()> {
                let mut beat_store = JobStore::open(&outdir)?;
                let (lease, step) = (lease(), Duration::from_millis(50));
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(step);
                    waited += step;
                    if waited >= lease / 6 {
                        waited = Duration::ZERO;
                        if !beat_store.heartbeat(id, &owner, lease)? {
                            lost.store(true, Ordering::Relaxed);
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })
        };

        let telemetry = gpu::JobTelemetry::start(self.hub, &lane.device, &log);
        let mut attempt = self.model(lane);
        let result = loop {
            let loaded = match &attempt {
                Ok(loaded) => *loaded,
                Err(reason) => {
                    log.failed(reason);
                    break Err(reason.clone());
                }
            };
            let result = log.matte(
                loaded,
                input,
                self.image_fps,
                (outdir, &row.safe_name),
                &settings,
                &mut reporter,
            );
            match result {
                Err(PipelineError::OutOfMemory(why))
                    if settings.device != "cpu" || settings.fake_oom.is_some() =>
                {
                    let step = lane.step_down();
                    log.event("oom", json!({ "reason": why, "next": step }));
                    if let Step::HalveStreams { .. } = step {
                        stop.store(true, Ordering::Relaxed);
                        let _ = heartbeat.join();
                        reporter.finish(&format!("{}: {step}", row.safe_name));
                        return Ok(JobEnd::Requeue);
                    }
                    if !self.json {
                        eprintln!("vmatte: {}: {step}", row.safe_name);
                    }
                    settings.device = "cpu".into();
                    settings.dtype = "f32".into();
                    settings.fake_oom = None;
                    attempt = self.cpu_model();
                }
                other => break other.map_err(|e| e.to_string()),
            }
        };
        stop.store(true, Ordering::Relaxed);
        let _ = heartbeat.join();
        let gpu = telemetry.finish(&mut log);

        if lost.load(Ordering::Relaxed) {
            let msg =
                "lost the job's lease to another process (this one stalled); its result is theirs";
            log.event("warning", json!({ "message": msg }));
            let mut o = Outcome::from_row(row, Status::Skipped);
            o.note = Some(msg.into());
            return Ok(JobEnd::Finished(Box::new(o)));
        }
        let mut o = match result {
            Ok(report) => {
                let outputs = report.outputs_by_name();
                let done =
                    store.complete(row.id, owner, report.frames, report.seconds, &outputs)?;
                reporter.finish(&format!(
                    "{}: done, {} frames in {:.1}s ({:.1} fps){}",
                    row.safe_name,
                    report.frames,
                    report.seconds,
                    report.fps,
                    if settings.device == lane.device {
                        String::new()
                    } else {
                        " on the CPU after running out of GPU memory".into()
                    }
                ));
                let mut o = Outcome::from_row(&done, Status::Done);
                o.ladder = report.ladder.iter().map(ToString::to_string).collect();
                o
            }
            Err(reason) => {
                reporter.finish(&format!("{}: failed: {reason}", row.safe_name));
                // On a full disk the store may not take the failure either;
                // the job then stays claimed and is redone by the next run,
                // and this run still reports why it failed.
                let mut o = match store.fail(row.id, owner, &reason) {
                    Ok(failed) => Outcome::from_row(&failed, Status::Failed),
                    Err(store_error) => {
                        let mut o = Outcome::from_row(row, Status::Failed);
                        o.note = Some(format!("not recorded in the job store: {store_error}"));
                        o
                    }
                };
                o.error = Some(reason);
                o
            }
        };
        o.log = Some(log.path.clone());
        o.device = Some(settings.device.clone());
        o.gpu = gpu;
        Ok(JobEnd::Finished(Box::new(o)))
    }
}

fn unreadable(input: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{}: file not found; check the path", input.display())
        }
        std::io::ErrorKind::PermissionDenied => {
            format!(
                "{}: permission denied; make the file readable",
                input.display()
            )
        }
        _ => format!(
            "{}: cannot read ({e}); check the file and the disk",
            input.display()
        ),
    }
}

fn count(outcomes: &[Outcome], status: Status) -> usize {
    outcomes.iter().filter(|o| o.status == status).count()
}

fn print_summary(outcomes: &[Outcome], gpu: &[GpuSummary]) {
    let count = |s| count(outcomes, s);
    let frames: u64 = outcomes
        .iter()
        .filter(|o| o.status == Status::Done)
        .filter_map(|o| o.frames)
        .sum();
    let seconds: f64 = outcomes
        .iter()
        .filter(|o| o.status == Status::Done)
        .filter_map(|o| o.seconds)
        .sum();
    eprintln!();
    eprintln!(
        "{:<8} {:>7} {:>8} {:>7}  input",
        "status", "frames", "time", "fps"
    );
    for o in outcomes {
        let status = match o.status {
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        };
        let num = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let why = o
            .error
            .as_deref()
            .or(o.note.as_deref())
            .map(|w| format!("  ({w})"))
            .unwrap_or_default();
        eprintln!(
            "{status:<8} {:>7} {:>8} {:>7}  {}{why}",
            num(o.frames.map(|f| f.to_string())),
            num(o.seconds.map(|s| format!("{s:.1}s"))),
            num(o.fps.map(|f| format!("{f:.1}"))),
            o.input.display()
        );
    }
    eprintln!(
        "{} done, {} failed, {} skipped; {frames} frames in {seconds:.1}s",
        count(Status::Done),
        count(Status::Failed),
        count(Status::Skipped)
    );
    for o in outcomes {
        for step in &o.ladder {
            eprintln!("  {}: {step}", o.input.display());
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
    if json_out {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    crate::queue::print_jobs(&jobs);
    Ok(ExitCode::SUCCESS)
}
