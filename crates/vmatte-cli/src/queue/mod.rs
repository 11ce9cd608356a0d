//! `vmatte submit` and `vmatte status --queue`: a queue shared by workers on
//! many machines (PostgreSQL), or the SQLite store of one output folder.

pub mod worker;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use vmatte_engine::ensure_linked;
use vmatte_engine::outcome::one_line;
use vmatte_jobs::outputs::verify;
use vmatte_jobs::queue::{self, JobQueue, NewJob, QueueUrl, Submitted};
use vmatte_jobs::{CopyRow, JobRow, JobState};

use crate::batch::discover;
use crate::cli::SubmitArgs;
use crate::config;

/// Opens the queue a `--queue` value names.
pub fn connect(given: &str) -> Result<(QueueUrl, Box<dyn JobQueue>)> {
    let url = QueueUrl::parse(given)?;
    let queue = queue::open(&url)?;
    Ok((url, queue))
}

pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let outdir = &args.output;
    let found = discover::prepare(
        &args.inputs,
        args.list.as_deref(),
        outdir,
        " on storage every worker sees",
    )?;
    for w in &found.warnings {
        eprintln!("vmatte: warning: {w}");
    }
    let config = config::resolve(&args.options)?;
    let (spec_json, settings_id) = config.spec.stored();
    let (url, mut queue) = connect(&args.queue)?;

    let mut rows = Vec::new();
    let mut unreadable = 0;
    for input in &found.inputs {
        let content = match config.spec.content_id(input) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "vmatte: {}: cannot read ({e}); not queued, check the file",
                    one_line(&input.display().to_string())
                );
                unreadable += 1;
                continue;
            }
        };
        let job = NewJob {
            input,
            outdir,
            content_id: &content,
            settings_id: &settings_id,
            settings_json: &spec_json,
            max_attempts: args.max_attempts,
            retry_failed: args.retry_failed,
        };
        let mut sub = queue.submit(&job)?;
        // A done job whose outputs went missing is queued again; a copy of
        // a done job gets its outputs now (OUTDIR is reachable from here:
        // it was just made).
        if sub.job.state == JobState::Done {
            if let Err(why) = verify(&sub.job.outputs()) {
                eprintln!("vmatte: {}: {why}; queued again", sub.job.safe_name);
                sub.job = queue.redo(sub.job.id)?;
                if sub.submitted == Submitted::Known {
                    sub.submitted = Submitted::Requeued;
                }
            } else if let Some(copy) = &sub.copy {
                match ensure_linked(queue.as_mut(), &sub.job, copy) {
                    Ok(c) => sub.copy = Some(c),
                    Err(why) => eprintln!("vmatte: warning: {}: {why}", copy.safe_name),
                }
            }
        }
        if !args.json {
            let (name, what) = match &sub.copy {
                Some(c) => (
                    c.safe_name.as_str(),
                    format!(" (same content as job {})", sub.job.id),
                ),
                None => (sub.job.safe_name.as_str(), String::new()),
            };
            println!(
                "{:<9} job {:<5} {:<40} {}{what}",
                format!("{:?}", sub.submitted).to_lowercase(),
                sub.job.id,
                name,
                one_line(&input.display().to_string())
            );
        }
        rows.push(json!({
            "input": input,
            "submitted": sub.submitted,
            "job": sub.job,
            "copy": sub.copy,
        }));
    }
    let count = |s: Submitted| rows.iter().filter(|r| r["submitted"] == json!(s)).count();
    let (queued, requeued, known, copies) = (
        count(Submitted::Queued),
        count(Submitted::Requeued),
        count(Submitted::Known),
        count(Submitted::Copy),
    );
    if args.json {
        println!(
            "{}",
            json!({
                "queue": url.redacted(),
                "jobs": rows,
                "queued": queued,
                "requeued": requeued,
                "known": known,
                "copies": copies,
                "unreadable": unreadable,
                "warnings": found.warnings,
            })
        );
    } else {
        eprintln!(
            "{queued} queued, {requeued} queued again, {known} already known, {copies} copies \
             of other inputs, {unreadable} unreadable on {}",
            url.redacted()
        );
    }
    Ok(if unreadable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How far back `status` measures throughput.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(600);

/// `vmatte status --queue URL`.
pub fn status(given: &str, json_out: bool) -> Result<ExitCode> {
    let (url, mut queue) = connect(given)?;
    let jobs = queue.jobs()?;
    let workers = queue.workers()?;
    let attempts = queue.attempts()?;
    let throughput = queue.throughput(THROUGHPUT_WINDOW)?;
    let counts = JobState::counts(&jobs);
    if json_out {
        let mut by_job: BTreeMap<i64, Vec<&queue::Attempt>> = BTreeMap::new();
        for a in &attempts {
            by_job.entry(a.job_id).or_default().push(a);
        }
        let jobs: Vec<_> = jobs
            .iter()
            .map(|j| {
                let mut v = serde_json::to_value(j).expect("rows serialise");
                v["attempt_log"] = json!(by_job.get(&j.id).cloned().unwrap_or_default());
                v
            })
            .collect();
        let report = json!({
            "queue": url.redacted(),
            "counts": counts,
            "throughput": throughput,
            "workers": workers,
            "jobs": jobs,
        });
        crate::host::json_document(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("queue    {}", url.redacted());
    println!(
        "jobs     {} queued, {} running, {} done, {} failed",
        counts["queued"], counts["running"], counts["done"], counts["failed"]
    );
    println!(
        "last {}m  {} jobs, {} frames ({:.1} jobs/h, {:.1} frames/s)",
        throughput.window_s / 60,
        throughput.jobs,
        throughput.frames,
        throughput.jobs_per_hour,
        throughput.frames_per_s
    );
    let now = vmatte_jobs::now_ms();
    println!();
    println!(
        "{:<40} {:<10} {:>6} {:>9}  running",
        "worker", "devices", "done", "seen"
    );
    for w in &workers {
        let seen = match w.stopped_ms {
            Some(_) => "stopped".to_string(),
            None => format!("{:.0}s ago", (now - w.last_seen_ms).max(0) as f64 / 1000.0),
        };
        let running: Vec<String> = w.running.iter().map(|id| format!("job {id}")).collect();
        println!(
            "{:<40} {:<10} {:>6} {:>9}  {}",
            w.id,
            w.devices,
            w.jobs_done,
            seen,
            running.join(", ")
        );
    }
    println!();
    print_jobs(&jobs, &queue.copies(None)?);
    Ok(ExitCode::SUCCESS)
}

/// The job table, each job followed by its copies.
pub fn print_jobs(jobs: &[JobRow], copies: &[CopyRow]) {
    println!(
        "{:<4} {:<8} {:>8} {:>7} {:>8}  {:<40} input",
        "id", "state", "attempts", "frames", "time", "name"
    );
    for j in jobs {
        println!(
            "{:<4} {:<8} {:>8} {:>7} {:>8}  {:<40} {}{}",
            j.id,
            j.state.as_str(),
            j.attempts,
            // A running job's own progress, not an earlier run's count.
            match (j.state, j.progress, j.frames) {
                (JobState::Running, Some(p), _) => match p.frames_total {
                    Some(t) => format!("{}/{t}", p.frames_done),
                    None => p.frames_done.to_string(),
                },
                (JobState::Running, None, _) => "-".into(),
                (_, _, Some(f)) => f.to_string(),
                _ => "-".into(),
            },
            j.seconds
                .map(vmatte_engine::outcome::seconds)
                .unwrap_or_else(|| "-".into()),
            j.safe_name,
            one_line(&j.input_path.display().to_string()),
            j.error
                .as_deref()
                .map(|e| format!("  ({})", one_line(e)))
                .unwrap_or_default()
        );
        for c in copies.iter().filter(|c| c.job_id == j.id) {
            let state = if c.linked_ms.is_some() {
                "done"
            } else {
                j.state.as_str()
            };
            println!(
                "{:<4} {:<8} {:>8} {:>7} {:>8}  {:<40} {}  (same content as job {})",
                "",
                state,
                "-",
                "-",
                "-",
                c.safe_name,
                one_line(&c.input_path.display().to_string()),
                j.id
            );
        }
    }
}
