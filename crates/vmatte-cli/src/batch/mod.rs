//! `vmatte batch`: many videos into one output folder, resumable. Every
//! input becomes a job in `OUTDIR/.vmatte/jobs.db`; a rerun skips what is
//! done, redoes what was interrupted, and retries failures on request. Jobs
//! are leased, so several processes can share one OUTDIR.

pub mod discover;
pub mod joblog;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use vmatte_jobs::{Claim, JobRow, JobStore};
use vmatte_pipeline::MatteSettings;

use crate::cli::BatchArgs;
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
    let mut store = JobStore::open(outdir)?;
    let owner = vmatte_jobs::owner_id();

    // Enqueue everything first, in sorted order, so names are allocated the
    // same way on every run and by every process.
    let mut jobs: Vec<(PathBuf, Result<JobRow, String>)> = Vec::new();
    for input in inputs {
        let job = match vmatte_jobs::content_id(&input) {
            Ok(content) => Ok(store.enqueue(&input, &content, &settings_id, &settings_json)?),
            Err(e) => Err(unreadable(&input, &e)),
        };
        jobs.push((input, job));
    }

    let mut model: Option<Loaded> = None;
    let mut outcomes = Vec::new();
    // The first input of this run behind each job: a second file with the
    // same content is the same job.
    let mut seen: BTreeMap<i64, PathBuf> = BTreeMap::new();
    let total = jobs.len();
    let mut progress = BatchProgress::new(total, args.json);
    for (n, (input, job)) in jobs.into_iter().enumerate() {
        let row = match job {
            Ok(row) => row,
            Err(reason) => {
                let mut o = Outcome::new(&input, Status::Failed);
                o.error = Some(reason);
                outcomes.push(o);
                continue;
            }
        };
        if let Some(first) = seen.get(&row.id) {
            let mut o = Outcome::new(&input, Status::Skipped);
            o.name = Some(row.safe_name.clone());
            o.note = Some(format!("same content as {}", first.display()));
            outcomes.push(o);
            continue;
        }
        seen.insert(row.id, input.clone());
        let mut outcome = match store.claim(row.id, &owner, lease(), args.retry_failed)? {
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
                if model.is_none() {
                    model = Some(runtime::load(&model_args)?);
                }
                let loaded = model.as_ref().expect("loaded above");
                let label = format!("[{}/{total}] {}", n + 1, row.safe_name);
                let job = Job {
                    row: &row,
                    input: &input,
                    settings: &settings,
                    image_fps,
                    outdir,
                };
                let reporter = Reporter::within(progress.multi.as_ref(), &label, args.json);
                run_job(&mut store, &owner, loaded, &job, reporter)?
            }
        };
        progress.job_finished(if outcome.status == Status::Done {
            outcome.frames.unwrap_or(0)
        } else {
            0
        });
        // The store remembers where the content was last seen; the summary
        // speaks of the file this run was given.
        outcome.input = input;
        outcomes.push(outcome);
    }

    progress.finish();
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
    print_summary(&outcomes);
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

/// A claimed job and what it needs to run.
struct Job<'a> {
    row: &'a JobRow,
    input: &'a Path,
    settings: &'a MatteSettings,
    image_fps: Option<vmatte_media::Rational>,
    outdir: &'a Path,
}

/// Runs one claimed job, keeping its lease alive from a second connection,
/// and records the result (or the one-line reason) in the store and log.
fn run_job(
    store: &mut JobStore,
    owner: &str,
    loaded: &Loaded,
    job: &Job,
    mut reporter: Reporter,
) -> Result<Outcome> {
    let Job {
        row,
        input,
        settings,
        image_fps,
        outdir,
    } = *job;
    let mut log = JobLog::create(outdir, &row.safe_name).with_context(|| {
        format!(
            "{}: cannot write the job log; check the folder is writable",
            outdir.display()
        )
    })?;
    log.start(input, row, owner, settings);

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

    let result = log.matte(
        loaded,
        input,
        image_fps,
        (outdir, &row.safe_name),
        settings,
        &mut reporter,
    );
    stop.store(true, Ordering::Relaxed);
    let _ = heartbeat.join();

    if lost.load(Ordering::Relaxed) {
        let msg =
            "lost the job's lease to another process (this one stalled); its result is theirs";
        log.event("warning", json!({ "message": msg }));
        let mut o = Outcome::from_row(row, Status::Skipped);
        o.note = Some(msg.into());
        return Ok(o);
    }
    match result {
        Ok(report) => {
            let outputs = report.outputs_by_name();
            let done = store.complete(row.id, owner, report.frames, report.seconds, &outputs)?;
            reporter.finish(&format!(
                "{}: done, {} frames in {:.1}s ({:.1} fps)",
                row.safe_name, report.frames, report.seconds, report.fps
            ));
            let mut o = Outcome::from_row(&done, Status::Done);
            o.log = Some(log.path.clone());
            Ok(o)
        }
        Err(e) => {
            let reason = e.to_string();
            reporter.finish(&format!("{}: failed: {reason}", row.safe_name));
            // On a full disk the store may not take the failure either; the
            // job then stays claimed and is redone by the next run, and this
            // run still reports why it failed.
            let mut o = match store.fail(row.id, owner, &reason) {
                Ok(failed) => Outcome::from_row(&failed, Status::Failed),
                Err(store_error) => {
                    let mut o = Outcome::from_row(row, Status::Failed);
                    o.note = Some(format!("not recorded in the job store: {store_error}"));
                    o
                }
            };
            o.error = Some(reason);
            o.log = Some(log.path.clone());
            Ok(o)
        }
    }
}

fn count(outcomes: &[Outcome], status: Status) -> usize {
    outcomes.iter().filter(|o| o.status == status).count()
}

fn print_summary(outcomes: &[Outcome]) {
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
