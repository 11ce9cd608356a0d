//! `vmatte worker`: the job engine on a shared queue: claims jobs and
//! mattes them, several at once per device, until stopped or, with
//! `--exit-when-idle`, until nothing is queued or running.
//!
//! SIGTERM or Ctrl-C stops it cleanly: its running jobs stop at their next
//! chunk and go back to the queue without counting as failed attempts, so a
//! worker stopped by Kubernetes or Slurm costs the jobs nothing; a second
//! signal ends it at once (the jobs' leases then run out and another worker
//! takes them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use vmatte_engine::load::open_device;
use vmatte_engine::load::{HwDecode, HwEncode};
use vmatte_engine::outcome::{Outcome, Status};
use vmatte_engine::telemetry::{self, Hub};
use vmatte_engine::{Engine, EngineConfig, Feed, LanePlan};
use vmatte_gpu::FakeOom;
use vmatte_jobs::queue::{self, QueueUrl, WorkerInfo};
use vmatte_pipeline::{DownsampleRatio, Placement, Precision};

use crate::batch::{env_ms, fake_panic, lease};
use crate::cli::{LaneArgs, ModelArgs, WorkerArgs};
use crate::progress::{Mode, Screen};
use crate::signals::Interrupt;

/// The first retry waits this long, doubling per attempt;
/// `VMATTE_RETRY_BACKOFF_MS` changes it.
fn backoff() -> Duration {
    env_ms("VMATTE_RETRY_BACKOFF_MS").unwrap_or(Duration::from_secs(30))
}

/// How often an idle stream asks for work; `VMATTE_POLL_MS` changes it.
fn poll() -> Duration {
    env_ms("VMATTE_POLL_MS").unwrap_or(Duration::from_secs(2))
}

pub fn run(args: WorkerArgs) -> Result<ExitCode> {
    let url = QueueUrl::parse(&args.queue)?;
    open_devices(&args.lanes)?;
    let id = match &args.name {
        Some(name) => vmatte_jobs::owner_id_named(name),
        None => vmatte_jobs::owner_id(),
    };
    let devices: Vec<String> = args.lanes.devices.iter().map(ToString::to_string).collect();
    let info = WorkerInfo {
        id: id.clone(),
        host: vmatte_jobs::hostname(),
        pid: std::process::id(),
        devices: devices.join(","),
    };
    let mut registrar = queue::open(&url)?;
    registrar.worker_alive(&info)?;
    let interrupt = Interrupt::install()?;
    let fake_oom = FakeOom::from_env().map_err(anyhow::Error::msg)?;
    let screen = Arc::new(Screen::new(Mode::detect(args.json), None, args.json));
    let hub = Hub::start(
        &args.lanes.devices,
        |_| {},
        |info| eprintln!("vmatte: info: {info}"),
    );
    let lanes = plan_lanes(&args.lanes, hub.as_ref());
    eprintln!(
        "vmatte worker {id}: taking jobs from {} on {} ({} at a time)",
        url.redacted(),
        info.devices,
        lanes
            .iter()
            .map(|l| format!("{} on {}", l.streams, l.device))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let loading = Loading {
        model_dir: args.model_dir.clone(),
        hwdec: args.hwdec,
        hwenc: args.encoder,
        preprocess: Placement::Auto,
        postprocess: Placement::Auto,
    };
    let config = queue_engine(
        id.clone(),
        lanes,
        loading,
        args.strict,
        lease(),
        Some(info),
        fake_oom,
    );
    let connect = || queue::open(&url);
    let report = Engine::new(
        &config,
        &connect,
        screen.as_ref(),
        hub.as_ref(),
        interrupt.flag(),
    )
    .run(Feed::Queue {
        exit_when_idle: args.exit_when_idle,
        poll: poll(),
    });
    screen.finish();
    if let Err(e) = registrar.worker_stopped(&id) {
        eprintln!("vmatte: warning: {e}");
    }
    let outcomes: Vec<&Outcome> = report.outcomes.iter().map(|(_, o)| o).collect();
    for o in outcomes.iter().filter(|o| o.status == Status::Interrupted) {
        eprintln!(
            "vmatte worker {id}: stopping; job {} ({}) goes back to the queue",
            o.job.unwrap_or_default(),
            o.name.as_deref().unwrap_or("?")
        );
    }
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    let why_ended = if interrupt.stopped() {
        format!(
            "stopped; {} running jobs went back to the queue",
            count(Status::Interrupted)
        )
    } else {
        "queue idle".to_string()
    };
    eprintln!(
        "vmatte worker {id}: {} done, {} failed, {} lost to other workers; {why_ended}",
        count(Status::Done),
        count(Status::Failed),
        count(Status::Lost),
    );
    if let Some(fatal) = report.fatal {
        anyhow::bail!("{fatal}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How a process that takes jobs from a queue loads models and decodes.
pub(crate) struct Loading {
    pub model_dir: Option<PathBuf>,
    pub hwdec: HwDecode,
    pub hwenc: HwEncode,
    pub preprocess: Placement,
    pub postprocess: Placement,
}

impl Loading {
    pub(crate) fn of(model: &ModelArgs) -> Self {
        Self {
            model_dir: model.model_dir.clone(),
            hwdec: model.hwdec,
            hwenc: model.encoder,
            preprocess: model.preprocess,
            postprocess: model.postprocess,
        }
    }
}

/// The engine of a process that takes whatever jobs its queue hands out
/// (`worker`, `serve`, `watch`): each stream holds its leases under its
/// own name (streams sharing one could take over each other's expired
/// leases), a failed job waits out its backoff, and faults are injected
/// from the environment (tests).
pub(crate) fn queue_engine(
    owner: String,
    lanes: Vec<LanePlan>,
    loading: Loading,
    strict: bool,
    lease: Duration,
    worker: Option<WorkerInfo>,
    fake_oom: Option<FakeOom>,
) -> EngineConfig {
    EngineConfig {
        owner,
        per_stream_owners: true,
        lanes,
        model_dir: loading.model_dir,
        hwdec: loading.hwdec,
        hwenc: loading.hwenc,
        preprocess: loading.preprocess,
        postprocess: loading.postprocess,
        fake_oom,
        fake_panic: fake_panic(),
        strict,
        lease,
        backoff: backoff(),
        retry_failed: false,
        worker,
    }
}

/// Opens each device once, so a missing one stops the process before it
/// takes a job.
pub(crate) fn open_devices(args: &LaneArgs) -> Result<()> {
    for device in &args.devices {
        open_device(*device)?;
    }
    Ok(())
}

/// One lane per device: the streams given, or planned from the card's free
/// memory. Jobs bring their own settings; the plan sizes a typical one (RVM
/// at the authors' ratio, 1080p, f16) and the out-of-memory ladder fits the
/// rest.
pub(crate) fn plan_lanes(args: &LaneArgs, hub: Option<&Hub>) -> Vec<LanePlan> {
    args.devices
        .iter()
        .map(|&device| {
            let given = args.streams.map(|n| n as usize);
            let plan = telemetry::plan(
                device,
                hub,
                args.vram_limit,
                (DownsampleRatio::Auto, Precision::F16),
                (None, given),
                |line| eprintln!("vmatte: {line}"),
            );
            LanePlan::of(device, plan, given)
        })
        .collect()
}
