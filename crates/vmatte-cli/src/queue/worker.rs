//! `vmatte worker`: claims jobs from a queue and mattes them, one thread
//! ("stream") per device and slot, until stopped or, with
//! `--exit-when-idle`, until nothing is queued or running.
//!
//! The main thread keeps the leases of every held job alive and watches for
//! SIGTERM/SIGINT, on which it hands those jobs back and exits: a worker
//! stopped by Kubernetes or Slurm costs the jobs nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use vmatte_jobs::queue::{self, JobQueue, QueueUrl, WorkerInfo};
use vmatte_jobs::JobRow;
use vmatte_pipeline::MatteReport;

use super::JobSpec;
use crate::batch::joblog::JobLog;
use crate::batch::{env_ms, lease};
use crate::cli::{ModelArgs, WorkerArgs};
use crate::gpu;
use crate::matte::parse_fps;
use crate::progress::Reporter;
use crate::runtime::{self, Loaded};

/// The first retry waits this long, doubling per attempt;
/// `VMATTE_RETRY_BACKOFF_MS` changes it.
fn backoff() -> Duration {
    env_ms("VMATTE_RETRY_BACKOFF_MS").unwrap_or(Duration::from_secs(30))
}

/// How often an idle stream asks for work; `VMATTE_POLL_MS` changes it.
fn poll() -> Duration {
    env_ms("VMATTE_POLL_MS").unwrap_or(Duration::from_secs(2))
}

/// What the streams and the lease keeper share.
#[derive(Default)]
struct Shared {
    /// Set by SIGTERM/SIGINT.
    stop: Arc<AtomicBool>,
    /// Job id to the stream (lease owner) working on it.
    held: Mutex<BTreeMap<i64, String>>,
    /// Held jobs whose lease another worker has taken over.
    lost: Mutex<BTreeSet<i64>>,
}

struct Stream {
    url: QueueUrl,
    owner: String,
    device: String,
    model_dir: Option<PathBuf>,
    exit_when_idle: bool,
    json: bool,
    shared: Arc<Shared>,
    hub: Option<Arc<gpu::Hub>>,
}

#[derive(Default)]
struct Tally {
    done: u64,
    failed: u64,
    lost: u64,
}

pub fn run(args: WorkerArgs) -> Result<ExitCode> {
    let url = QueueUrl::parse(&args.queue)?;
    for device in &args.devices {
        runtime::device(device)?;
    }
    let id = match &args.name {
        Some(name) => vmatte_jobs::owner_id_named(name),
        None => vmatte_jobs::owner_id(),
    };
    let info = WorkerInfo {
        id: id.clone(),
        host: vmatte_jobs::hostname(),
        pid: std::process::id(),
        devices: args.devices.join(","),
    };
    let mut keeper = queue::open(&url)?;
    keeper.worker_alive(&info)?;
    let shared = Arc::new(Shared::default());
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shared.stop.clone())
            .context("cannot install the SIGTERM/SIGINT handler")?;
    }
    eprintln!(
        "vmatte worker {id}: taking jobs from {} on {} ({} at a time per device)",
        url.redacted(),
        info.devices,
        args.streams
    );

    let hub = gpu::Hub::start(&args.devices, |_| {}).map(Arc::new);
    let mut streams = Vec::new();
    for device in &args.devices {
        for slot in 0..args.streams {
            let stream = Stream {
                url: url.clone(),
                owner: format!("{id}/{device}#{slot}"),
                device: device.clone(),
                model_dir: args.model_dir.clone(),
                exit_when_idle: args.exit_when_idle,
                json: args.json,
                shared: shared.clone(),
                hub: hub.clone(),
            };
            streams.push(thread::spawn(move || stream.run()));
        }
    }

    let lease = lease();
    let mut last_beat = Instant::now();
    while !streams.iter().all(|s| s.is_finished()) {
        thread::sleep(Duration::from_millis(50));
        if shared.stop.load(Ordering::Relaxed) {
            return stop(keeper.as_mut(), &info, &shared);
        }
        if last_beat.elapsed() >= lease / 6 {
            last_beat = Instant::now();
            keep_leases(keeper.as_mut(), &info, &shared, lease);
        }
    }
    let mut tally = Tally::default();
    let mut broken = Vec::new();
    for s in streams {
        match s.join().expect("a stream thread panicked") {
            Ok(t) => {
                tally.done += t.done;
                tally.failed += t.failed;
                tally.lost += t.lost;
            }
            Err(e) => broken.push(format!("{e:#}")),
        }
    }
    keeper.worker_stopped(&info.id)?;
    eprintln!(
        "vmatte worker {id}: {} done, {} failed, {} lost to other workers; queue idle",
        tally.done, tally.failed, tally.lost
    );
    if let Some(first) = broken.first() {
        anyhow::bail!("{first}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Renews this worker's presence and every lease it holds. A failed renewal
/// (the database briefly unreachable) is only reported: the lease has five
/// more chances before it runs out.
fn keep_leases(keeper: &mut dyn JobQueue, info: &WorkerInfo, shared: &Shared, lease: Duration) {
    if let Err(e) = keeper.worker_alive(info) {
        eprintln!("vmatte: warning: {e}");
    }
    let held = shared.held.lock().expect("held jobs").clone();
    for (job, owner) in held {
        match keeper.heartbeat(job, &owner, lease) {
            Ok(true) => {}
            Ok(false) => {
                shared.lost.lock().expect("lost jobs").insert(job);
            }
            Err(e) => eprintln!("vmatte: warning: job {job}: cannot renew its lease: {e}"),
        }
    }
}

/// Gives every held job back and exits without waiting for the streams;
/// their unfinished outputs stay under hidden partial names, which the next
/// holder of each job clears.
fn stop(keeper: &mut dyn JobQueue, info: &WorkerInfo, shared: &Shared) -> Result<ExitCode> {
    let held = shared.held.lock().expect("held jobs").clone();
    for (job, owner) in &held {
        match keeper.release(*job, owner) {
            Ok(row) => eprintln!(
                "vmatte worker {}: stopping; job {job} ({}) goes back to the queue",
                info.id, row.safe_name
            ),
            Err(e) => eprintln!("vmatte: warning: {e}"),
        }
    }
    keeper.worker_stopped(&info.id)?;
    // The streams may be deep inside a video; the process ends here.
    std::process::exit(0);
}

impl Stream {
    fn run(self) -> Result<Tally> {
        let mut queue = queue::open(&self.url)?;
        let mut models: HashMap<(String, String, Option<String>), Loaded> = HashMap::new();
        let mut tally = Tally::default();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let Some(row) = queue.claim_next(&self.owner, lease())? else {
                if self.exit_when_idle && queue.unfinished()? == 0 {
                    break;
                }
                thread::sleep(poll());
                continue;
            };
            self.shared
                .held
                .lock()
                .expect("held jobs")
                .insert(row.id, self.owner.clone());
            let result = self.run_job(&row, &mut models);
            self.shared.held.lock().expect("held jobs").remove(&row.id);
            let lost = self.shared.lost.lock().expect("lost jobs").remove(&row.id);
            let ended = if lost {
                Err(
                    "another worker took the job over (this one stalled past its lease)"
                        .to_string(),
                )
            } else {
                match result {
                    Ok(report) => queue
                        .complete(
                            row.id,
                            &self.owner,
                            report.frames,
                            report.seconds,
                            &report.outputs_by_name(),
                        )
                        .map(|_| ("done", None))
                        .map_err(|e| e.to_string()),
                    Err(e) => {
                        let reason = format!("{e:#}");
                        queue
                            .fail(row.id, &self.owner, &reason, backoff())
                            .map(|_| ("failed", Some(reason)))
                            .map_err(|e| e.to_string())
                    }
                }
            };
            // A result the queue would not take (the lease was lost, or the
            // database was out of reach) is not this worker's to record: the
            // job is redone by whoever holds it next.
            let (status, error) = ended.unwrap_or_else(|why| ("lost", Some(why)));
            match status {
                "done" => tally.done += 1,
                "failed" => tally.failed += 1,
                _ => tally.lost += 1,
            }
            if self.json {
                println!(
                    "{}",
                    json!({ "job": row.id, "name": row.safe_name, "status": status, "error": error })
                );
            } else {
                eprintln!(
                    "job {} {}: {status}{}",
                    row.id,
                    row.safe_name,
                    error.map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
        }
        Ok(tally)
    }

    fn run_job(
        &self,
        row: &JobRow,
        models: &mut HashMap<(String, String, Option<String>), Loaded>,
    ) -> Result<MatteReport> {
        let spec: JobSpec = serde_json::from_str(&row.settings_json).with_context(|| {
            format!(
                "job {}: its settings are not readable by this vmatte; submit it again \
                 with this version",
                row.id
            )
        })?;
        let mut settings = spec.settings;
        settings.cpu_seq_chunk = spec.cpu_seq_chunk;
        settings.device = self.device.clone();
        let outdir = row.outdir.clone().context("the job has no output folder")?;
        let mut log = JobLog::create(&outdir, &row.safe_name).with_context(|| {
            format!(
                "{}: cannot write the job log; check the folder is writable from this machine",
                outdir.display()
            )
        })?;
        log.start(&row.input_path, row, &self.owner, &settings);
        let lora = settings.gvm.as_ref().map(|g| g.lora.clone());
        let key = (settings.model.clone(), settings.dtype.clone(), lora);
        let prepared = (|| -> Result<_> {
            if !models.contains_key(&key) {
                let args = self.model_args(&settings);
                models.insert(
                    key.clone(),
                    runtime::load_with(&args, settings.gvm.as_ref())?,
                );
            }
            spec.fps.as_deref().map(parse_fps).transpose()
        })();
        let fps = prepared.inspect_err(|e| log.failed(&format!("{e:#}")))?;
        let mut reporter = Reporter::new(&row.safe_name, self.json);
        let telemetry = gpu::JobTelemetry::start(self.hub.as_deref(), &self.device, &log);
        let report = log.matte(
            &models[&key],
            &row.input_path,
            fps,
            (&outdir, &row.safe_name),
            &settings,
            &mut reporter,
        );
        telemetry.finish(&mut log);
        let report = report?;
        reporter.finish(&format!(
            "{}: {} frames in {:.1}s ({:.1} fps)",
            row.safe_name, report.frames, report.seconds, report.fps
        ));
        Ok(report)
    }

    /// The model a job names: an installed model, or a weights file (a path
    /// every worker sees) when it was submitted with `--weights`.
    fn model_args(&self, settings: &vmatte_pipeline::MatteSettings) -> ModelArgs {
        let is_file = settings.model.contains(std::path::MAIN_SEPARATOR);
        ModelArgs {
            model: (!is_file).then(|| settings.model.clone()),
            weights: is_file.then(|| PathBuf::from(&settings.model)),
            model_dir: self.model_dir.clone(),
            device: self.device.clone(),
            dtype: settings.dtype.clone(),
            hwdec: "auto".into(),
            postprocess: "auto".into(),
            preprocess: "auto".into(),
        }
    }
}
