//! `vmatte submit` and `vmatte status --queue`: a queue shared by workers on
//! many machines (PostgreSQL), or the SQLite store of one output folder.

pub mod worker;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;
use vmatte_jobs::queue::{self, JobQueue, NewJob, QueueUrl, Submitted};
use vmatte_jobs::JobRow;
use vmatte_pipeline::MatteSettings;

use crate::batch::discover;
use crate::cli::SubmitArgs;
use crate::matte::{parse_fps, settings};

/// What a queued job asks of its worker, as stored in the job's settings.
#[derive(Serialize, Deserialize)]
pub struct JobSpec {
    pub settings: MatteSettings,
    /// Frame rate of an image-folder input (`--fps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<String>,
    /// The chunk a worker runs on the CPU where the submitter gave none
    /// ([`MatteSettings::cpu_seq_chunk`], which the settings' own
    /// serialisation leaves out). Outside the job's identity, like it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seq_chunk: Option<usize>,
}

impl JobSpec {
    /// The spec as stored with the job, and the job's settings identity:
    /// that of the spec without the CPU chunk, so that the same video and
    /// settings stay one job whatever the chunk (and across versions that
    /// did not store it).
    pub fn stored(&self) -> Result<(String, String)> {
        let identity = JobSpec {
            settings: self.settings.clone(),
            fps: self.fps.clone(),
            cpu_seq_chunk: None,
        };
        let settings_id = vmatte_jobs::settings_id(&serde_json::to_string(&identity)?);
        Ok((serde_json::to_string(self)?, settings_id))
    }
}

/// Opens the queue a `--queue` value names.
pub fn connect(given: &str) -> Result<(QueueUrl, Box<dyn JobQueue>)> {
    let url = QueueUrl::parse(given)?;
    let queue = queue::open(&url)?;
    Ok((url, queue))
}

pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let outdir = &args.output;
    let inputs = discover::prepare(
        &args.inputs,
        args.list.as_deref(),
        outdir,
        " on storage every worker sees",
    )?;
    if let Some(fps) = args.options.fps.as_deref() {
        parse_fps(fps)?;
    }
    let (settings, _) = settings(&args.options)?;
    let spec = JobSpec {
        cpu_seq_chunk: settings.cpu_seq_chunk,
        settings,
        fps: args.options.fps.clone(),
    };
    let (spec_json, settings_id) = spec.stored()?;
    let (url, mut queue) = connect(&args.queue)?;

    let mut rows = Vec::new();
    let mut unreadable = 0;
    for input in &inputs {
        let content = match vmatte_jobs::content_id(input) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "vmatte: {}: cannot read ({e}); not queued, check the file",
                    input.display()
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
        let (row, submitted) = queue.submit(&job)?;
        if !args.json {
            println!(
                "{:<9} job {:<5} {:<40} {}",
                format!("{submitted:?}").to_lowercase(),
                row.id,
                row.safe_name,
                input.display()
            );
        }
        rows.push(json!({ "input": input, "submitted": submitted, "job": row }));
    }
    let count = |s: Submitted| rows.iter().filter(|r| r["submitted"] == json!(s)).count();
    let (queued, requeued, known) = (
        count(Submitted::Queued),
        count(Submitted::Requeued),
        count(Submitted::Known),
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
                "unreadable": unreadable,
            })
        );
    } else {
        eprintln!(
            "{queued} queued, {requeued} queued again, {known} already known, {unreadable} \
             unreadable on {}",
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
    let mut counts: BTreeMap<&str, usize> = ["queued", "running", "done", "failed"]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
    for j in &jobs {
        *counts.entry(j.state.as_str()).or_default() += 1;
    }
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
        println!("{}", serde_json::to_string_pretty(&report)?);
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
    print_jobs(&jobs);
    Ok(ExitCode::SUCCESS)
}

pub fn print_jobs(jobs: &[JobRow]) {
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
            j.frames
                .map(|f| f.to_string())
                .unwrap_or_else(|| "-".into()),
            j.seconds
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "-".into()),
            j.safe_name,
            j.input_path.display(),
            j.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_carries_the_cpu_chunk_outside_its_identity() {
        let spec = |chunk| JobSpec {
            settings: MatteSettings::new("rvm-mobilenetv3"),
            fps: None,
            cpu_seq_chunk: chunk,
        };
        let (plain_json, plain_id) = spec(None).stored().unwrap();
        let (json, id) = spec(Some(MatteSettings::CPU_SEQ_CHUNK)).stored().unwrap();
        assert_eq!(id, plain_id, "the chunk does not change what the job makes");
        assert!(!plain_json.contains("cpu_seq_chunk"), "{plain_json}");
        let read: JobSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(read.cpu_seq_chunk, Some(MatteSettings::CPU_SEQ_CHUNK));
        // A job stored before the field existed reads as no CPU chunk.
        let read: JobSpec = serde_json::from_str(&plain_json).unwrap();
        assert_eq!(read.cpu_seq_chunk, None);
    }
}
