//! The worker pool: streams (one thread each, several per device) that take
//! jobs from a queue, run them through the pipeline, and record how they
//! ended.
//!
//! ```text
//!  Feed::Tickets (batch: these jobs)  ─┐                        ┌─► JobLog, Observer
//!  Feed::Queue (worker: any job)      ─┴─► stream ─claim─► job ─┤
//!                                             ▲                 └─► complete ─► publish ─► link copies
//!  lease keeper (one thread) ── renews ───────┘
//! ```
//! A stream holds one job at a time under a lease. Running out of GPU
//! memory one frame at a time takes the job-level rungs of the ladder here:
//! fewer videos at once on the device (the job goes back to the feed), then
//! the CPU. A panic inside a job fails that job, never the run. A store that
//! cannot be written stops the run cleanly: the outcomes so far are kept.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use vmatte_gpu::{FakeOom, Step};
use vmatte_jobs::outputs::{link_as, measure, verify, Outputs};
use vmatte_jobs::queue::{JobQueue, WorkerInfo};
use vmatte_jobs::{Claim, CopyRow, JobRow, JobState};
use vmatte_pipeline::{
    MatteReport, OutOfMemory, PipelineError, Placement, Precision, RunOptions, Staged,
};

use crate::joblog::{Attempt, JobLog};
use crate::lanes::{Lane, LanePlan};
use crate::lease::Leases;
use crate::load::{HwDecode, HwEncode};
use crate::observer::Observer;
use crate::outcome::{Outcome, Status};
use crate::spec::JobSpec;
use crate::sync::{into_inner, lock, sleep_unless, Connect};
use crate::telemetry::{Hub, JobTelemetry};

/// How a run executes its jobs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Who holds the leases: `host-pid-random`.
    pub owner: String,
    /// Each stream holds leases as `owner/device#slot` (queue workers, so
    /// that `vmatte status` tells the streams apart) rather than as `owner`.
    pub per_stream_owners: bool,
    pub lanes: Vec<LanePlan>,
    pub model_dir: Option<PathBuf>,
    pub hwdec: HwDecode,
    pub hwenc: HwEncode,
    pub preprocess: Placement,
    pub postprocess: Placement,
    pub fake_oom: Option<FakeOom>,
    /// `VMATTE_FAKE_PANIC`: the input of this file name panics (tests).
    pub fake_panic: Option<String>,
    pub strict: bool,
    pub lease: Duration,
    /// The first retry of a failed job waits this long (PostgreSQL queues).
    pub backoff: Duration,
    /// Claim jobs that failed in an earlier run (tickets only).
    pub retry_failed: bool,
    /// Registered with the queue and kept alive (queue workers).
    pub worker: Option<WorkerInfo>,
}

/// Where the streams take their jobs from.
pub enum Feed {
    /// These jobs, in order (a batch); each claimed by id.
    Tickets(Vec<Ticket>),
    /// Whatever the queue hands out, until stopped or, with
    /// `exit_when_idle`, until nothing is queued or running.
    Queue {
        exit_when_idle: bool,
        poll: Duration,
    },
}

/// A job of a batch: the `n`-th of `total` inputs.
#[derive(Clone, Debug)]
pub struct Ticket {
    pub n: usize,
    pub total: usize,
    pub job: i64,
    /// The input as the batch was given it.
    pub input: PathBuf,
}

/// What a run did.
pub struct Report {
    /// Tickets: by ticket number; queue: in the order the jobs ended.
    pub outcomes: Vec<(usize, Outcome)>,
    /// Why the run stopped early, when its store could not be used.
    pub fatal: Option<String>,
}

/// The pool and what its streams share.
pub struct Engine<'a> {
    config: &'a EngineConfig,
    connect: &'a Connect<'a>,
    observer: &'a dyn Observer,
    hub: Option<&'a Hub>,
    /// Set by an interrupt (the front end's flag, which this run only
    /// reads).
    interrupt: Arc<AtomicBool>,
    /// Set when the run's store cannot be used. Either flag stops the run:
    /// no new jobs, and running ones stop at their next chunk (their
    /// partial outputs deleted, the jobs queued again). Apart from
    /// `interrupt`, so that a stop of the run's own is not taken for a
    /// first Ctrl-C (which would make the user's first Ctrl-C a second).
    halt: Arc<AtomicBool>,
    lanes: Vec<Lane>,
    /// The bottom of the out-of-memory ladder, loaded on first use.
    cpu: Lane,
    leases: Leases,
    tickets: Mutex<VecDeque<Ticket>>,
    outcomes: Mutex<Vec<(usize, Outcome)>>,
    fatal: Mutex<Option<String>>,
}

/// What the attempts at a job came to.
enum Ran {
    /// The run ended (done, failed or interrupted) on this device.
    Finished {
        result: Box<vmatte_pipeline::Result<(MatteReport, Staged)>>,
        device: vmatte_gpu::DeviceSpec,
    },
    /// Out of memory with several videos at once: fewer now, and the job
    /// goes back to the feed.
    Requeue,
}

/// How an attempt ended for its stream.
enum End {
    Settled(Outcome),
    /// Out of memory with several videos at once: fewer now, and the job
    /// goes back to the feed.
    Requeue,
    /// The store refused to record the result: the run cannot go on.
    Fatal(Outcome, String),
}

impl<'a> Engine<'a> {
    pub fn new(
        config: &'a EngineConfig,
        connect: &'a Connect<'a>,
        observer: &'a dyn Observer,
        hub: Option<&'a Hub>,
        interrupt: Arc<AtomicBool>,
    ) -> Self {
        Self {
            config,
            connect,
            observer,
            hub,
            interrupt,
            halt: Arc::default(),
            lanes: config.lanes.iter().map(Lane::new).collect(),
            cpu: Lane::new(&LanePlan {
                device: vmatte_gpu::DeviceSpec::Cpu,
                streams: 1,
                chunks: None,
            }),
            leases: Leases::default(),
            tickets: Mutex::new(VecDeque::new()),
            outcomes: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
        }
    }

    /// Runs the feed to its end (or until stopped) and says how each job
    /// ended.
    pub fn run(self, feed: Feed) -> Report {
        let queue_mode = match feed {
            Feed::Tickets(t) => {
                let (tickets, twins) = one_per_job(t);
                *lock(&self.tickets) = tickets;
                for (n, o) in twins {
                    self.settle(n, o);
                }
                None
            }
            Feed::Queue {
                exit_when_idle,
                poll,
            } => Some((exit_when_idle, poll)),
        };
        let keeper_done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let keeper = scope.spawn(|| {
                self.leases.keep(
                    self.connect,
                    self.config.lease,
                    self.config.worker.as_ref(),
                    &keeper_done,
                    self.observer,
                )
            });
            let mut streams = Vec::new();
            for lane in &self.lanes {
                for slot in 0..lane.streams() {
                    let this = &self;
                    let thread = std::thread::Builder::new()
                        .name(format!("vmatte-stream-{}-{slot}", lane.device))
                        .spawn_scoped(scope, move || this.stream(lane, slot, queue_mode));
                    match thread {
                        Ok(t) => streams.push(t),
                        Err(e) => self.stop_with(format!("cannot start a stream: {e}")),
                    }
                }
            }
            for s in streams {
                if s.join().is_err() {
                    self.stop_with("a stream stopped unexpectedly".into());
                }
            }
            // A job requeued by the out-of-memory ladder after the other
            // streams had run out of work, by a stream the halving retired,
            // is still there: slot 0 of the first lane always stays.
            if queue_mode.is_none() && !lock(&self.tickets).is_empty() {
                if let Some(lane) = self.lanes.first() {
                    self.stream(lane, 0, None);
                }
            }
            keeper_done.store(true, Ordering::Relaxed);
            let _ = keeper.join();
        });
        let mut outcomes = into_inner(self.outcomes);
        let fatal = into_inner(self.fatal);
        // Tickets never reached (the run stopped) are said so.
        for t in into_inner(self.tickets) {
            let why = if fatal.is_some() {
                "not started: the run stopped"
            } else {
                "not started: interrupted"
            };
            let mut o = Outcome::new(&t.input, Status::Skipped).with_note(why);
            o.job = Some(t.job);
            outcomes.push((t.n, o));
        }
        outcomes.sort_by_key(|(n, _)| *n);
        Report { outcomes, fatal }
    }

    fn stopped(&self) -> bool {
        self.halt.load(Ordering::Relaxed) || self.interrupt.load(Ordering::Relaxed)
    }

    /// Stops the run because its store cannot be used.
    fn stop_with(&self, why: String) {
        lock(&self.fatal).get_or_insert(why);
        self.halt.store(true, Ordering::Relaxed);
    }

    fn settle(&self, n: usize, outcome: Outcome) {
        self.observer.settled(&outcome);
        lock(&self.outcomes).push((n, outcome));
    }

    /// One stream: takes jobs until none is left, the run is stopped, or
    /// the ladder lowers its lane's streams below its slot.
    fn stream(&self, lane: &Lane, slot: usize, queue_mode: Option<(bool, Duration)>) {
        let owner = if self.config.per_stream_owners {
            format!("{}/{}#{slot}", self.config.owner, lane.device)
        } else {
            self.config.owner.clone()
        };
        let mut queue = match (self.connect)() {
            Ok(q) => q,
            Err(e) => return self.stop_with(e.to_string()),
        };
        let mut ended = 0usize;
        while !self.stopped() && slot < lane.streams() {
            let (n, ticket, row) = match queue_mode {
                None => {
                    let Some(ticket) = lock(&self.tickets).pop_front() else {
                        return;
                    };
                    match self.take(queue.as_mut(), &ticket, &owner) {
                        Ok(Ok(row)) => (ticket.n, Some(ticket), row),
                        Ok(Err(outcome)) => {
                            self.settle(ticket.n, outcome);
                            continue;
                        }
                        Err(why) => {
                            lock(&self.tickets).push_front(ticket);
                            return self.stop_with(why);
                        }
                    }
                }
                Some((exit_when_idle, poll)) => {
                    match self.next_from_queue(&mut queue, &owner, exit_when_idle, poll) {
                        Some(row) => {
                            ended += 1;
                            (ended, None, row)
                        }
                        None => return,
                    }
                }
            };
            crash_point("claimed");
            let label = match &ticket {
                Some(t) => format!("[{}/{}] {}", t.n + 1, t.total, row.safe_name),
                None => format!("job {} {}", row.id, row.safe_name),
            };
            let input = ticket
                .as_ref()
                .map_or_else(|| row.input_path.clone(), |t| t.input.clone());
            match self.run_job(&mut queue, lane, &owner, row.clone(), &label) {
                End::Settled(mut o) => {
                    o.input = input;
                    self.settle(n, o);
                }
                End::Requeue => {
                    // Back to the queue for the streams that remain; a
                    // ticket is claimed again from the front of the feed.
                    if let Err(e) = self.persist(&mut queue, |q| q.release(row.id, &owner)) {
                        self.observer.note(&format!("warning: {e}"));
                    }
                    if let Some(t) = ticket {
                        lock(&self.tickets).push_front(t);
                    }
                }
                End::Fatal(mut o, why) => {
                    o.input = input;
                    self.settle(n, o);
                    if ticket.is_some() {
                        return self.stop_with(why);
                    }
                    // A shared queue that refused one write may take the
                    // next; the job is redone by whoever holds it next.
                    self.observer.note(&format!("warning: {why}"));
                }
            }
        }
    }

    /// The next job a queue hands this stream, waiting `poll` between
    /// asks; `None` once stopped or (with `exit_when_idle`) idle. A queue
    /// out of reach (a database restart) is asked again with growing
    /// pauses rather than ending the worker.
    fn next_from_queue(
        &self,
        queue: &mut Box<dyn JobQueue>,
        owner: &str,
        exit_when_idle: bool,
        poll: Duration,
    ) -> Option<JobRow> {
        let mut pause = poll;
        let mut said = false;
        while !self.stopped() {
            let asked = queue.claim_next(owner, self.config.lease).and_then(|row| {
                if row.is_none() && exit_when_idle && queue.unfinished()? == 0 {
                    return Ok(Some(None));
                }
                Ok(row.map(Some))
            });
            match asked {
                Ok(Some(Some(row))) => return Some(row),
                Ok(Some(None)) => return None,
                Ok(None) => {
                    pause = poll;
                    said = false;
                }
                Err(e) => {
                    if !said {
                        self.observer
                            .note(&format!("warning: {e}; trying again until it answers"));
                        said = true;
                    }
                    pause = (pause * 2).clamp(poll, Duration::from_secs(30));
                    if let Ok(q) = (self.connect)() {
                        *queue = q;
                    }
                }
            }
            sleep_unless(|| self.stopped(), pause);
        }
        None
    }

    /// Claims a ticket's job: the row to run, or the outcome when there is
    /// nothing to run. A done job whose outputs are gone or damaged is
    /// queued again and claimed. `Err` when the store cannot be used.
    fn take(
        &self,
        queue: &mut dyn JobQueue,
        ticket: &Ticket,
        owner: &str,
    ) -> Result<Result<JobRow, Outcome>, String> {
        let claim = |queue: &mut dyn JobQueue| {
            queue
                .claim(
                    ticket.job,
                    owner,
                    self.config.lease,
                    self.config.retry_failed,
                )
                .map_err(|e| e.to_string())
        };
        let input = &ticket.input;
        Ok(Err(match claim(queue)? {
            Claim::Claimed(row) => return Ok(Ok(row)),
            Claim::AlreadyDone(row) => match verify(&row.outputs()) {
                Ok(()) => Outcome::of_row(input, &row, Status::Skipped)
                    .with_note("done in an earlier run"),
                Err(why) => {
                    self.observer
                        .note(&format!("{}: {why}; matting it again", row.safe_name));
                    queue.redo(row.id).map_err(|e| e.to_string())?;
                    match claim(queue)? {
                        Claim::Claimed(row) => return Ok(Ok(row)),
                        other => Outcome::of_row(input, other.row(), Status::Skipped)
                            .with_note("being redone by another process"),
                    }
                }
            },
            Claim::Failed(row) => Outcome::of_row(input, &row, Status::Failed).with_note(format!(
                "failed in an earlier run; {} retries it",
                vmatte_pipeline::Setting::RetryFailed
            )),
            Claim::Busy(row) => {
                let who = row.lease_owner.as_deref().unwrap_or("another process");
                Outcome::of_row(input, &row, Status::Skipped)
                    .with_note(format!("being processed by {who}"))
            }
        }))
    }

    /// Runs one claimed job and records how it ended.
    fn run_job(
        &self,
        queue: &mut Box<dyn JobQueue>,
        lane: &Lane,
        owner: &str,
        row: JobRow,
        label: &str,
    ) -> End {
        let spec = match JobSpec::of(&row) {
            Ok(spec) => spec,
            Err(why) => return self.failed(queue, &row, owner, why),
        };
        let Some(outdir) = row.outdir.clone() else {
            return self.failed(queue, &row, owner, "the job has no output folder".into());
        };
        let mut log = match JobLog::create(&outdir, &row.safe_name) {
            Ok(log) => log,
            Err(e) => {
                let why = format!(
                    "{}: cannot write the job log ({e}); check that the folder is writable",
                    outdir.display()
                );
                return self.failed(queue, &row, owner, why);
            }
        };
        let held = self.leases.hold(row.id, owner);
        let options = RunOptions {
            chunks: lane
                .chunks
                .clone()
                .unwrap_or_else(|| spec.run.chunks.clone()),
            precision: spec.run.precision,
            preprocess: self.config.preprocess,
            postprocess: self.config.postprocess,
            fake_oom: self.config.fake_oom,
            fake_panic: self.config.fake_panic.clone(),
            strict: self.config.strict || spec.run.strict,
            cancel: vec![self.halt.clone(), self.interrupt.clone(), held.lost.clone()],
        };
        log.start(
            &row,
            owner,
            &Attempt {
                settings: &spec.settings,
                options: &options,
                device: lane.device,
            },
        );
        let telemetry = JobTelemetry::start(self.hub, lane.device, &log);
        let ran = self.attempts(
            lane,
            &row,
            &spec,
            (&outdir, &mut log, &held.progress),
            options,
            label,
        );
        let gpu = telemetry.finish(&mut log);
        let lost = self.leases.release(row.id);
        let (result, device) = match ran {
            Ran::Requeue => return End::Requeue,
            Ran::Finished { result, device } => (result, device),
        };
        let log_path = log.path.clone();
        let decorate = |mut o: Outcome| {
            o.log = Some(log_path.clone());
            o.device = Some(device.to_string());
            o.gpu = gpu.clone();
            o
        };
        if lost {
            let msg = match queue.job(row.id) {
                Ok(Some(j)) if j.state == JobState::Failed && j.lease_owner.is_none() => {
                    "cancelled while it ran; what it had made is deleted"
                }
                Ok(None) => "deleted while it ran; what it had made is deleted",
                _ => "lost the job's lease to another process (this one stalled); its result is theirs",
            };
            log.event("warning", json!({ "message": msg }));
            return End::Settled(decorate(
                Outcome::of_row(&row.input_path, &row, Status::Lost).with_note(msg),
            ));
        }
        let end = match *result {
            Ok((report, staged)) => {
                let note =
                    (device != lane.device).then_some("on the CPU after running out of GPU memory");
                self.record(queue, &row, owner, (&report, staged, note), &mut log)
            }
            Err(PipelineError::Cancelled) => {
                log.event("end", json!({ "status": "interrupted" }));
                End::Settled(match self.persist(queue, |q| q.release(row.id, owner)) {
                    Ok(row) => Outcome::of_row(&row.input_path, &row, Status::Interrupted)
                        .with_note("stopped; queued again"),
                    Err(e) => Outcome::of_row(&row.input_path, &row, Status::Interrupted)
                        .with_note(format!("stopped; not queued again ({e})")),
                })
            }
            Err(e) => {
                let reason = e.to_string();
                log.failed(&reason);
                self.failed(queue, &row, owner, reason)
            }
        };
        match end {
            End::Settled(o) => End::Settled(decorate(o)),
            End::Fatal(o, why) => End::Fatal(decorate(o), why),
            End::Requeue => End::Requeue,
        }
    }

    /// Runs the job until it ends one way or another, down the job-level
    /// rungs of the out-of-memory ladder: a GPU that cannot take even one
    /// frame halves the videos at once on it (the job goes back to the
    /// feed), and with one video at once the job is redone on the CPU.
    fn attempts(
        &self,
        lane: &Lane,
        row: &JobRow,
        spec: &JobSpec,
        (outdir, log, progress): (&Path, &mut JobLog, &Mutex<Option<vmatte_jobs::Progress>>),
        mut options: RunOptions,
        label: &str,
    ) -> Ran {
        let mut device = lane.device;
        let mut view = self.observer.started(label, row);
        let load_from = (
            self.config.model_dir.as_ref(),
            (self.config.hwdec, self.config.hwenc),
        );
        let mut model = lane.model(&spec.settings, options.precision, load_from);
        loop {
            let net = match &model {
                Ok(net) => Ok(net.clone()),
                // A model too big for what the device has left takes the
                // ladder like a frame too big.
                Err(reason) if vmatte_gpu::is_out_of_memory(reason) => {
                    Err(PipelineError::oom(OutOfMemory::Device(reason.clone())))
                }
                Err(reason) => {
                    let result = Box::new(Err(PipelineError::Input(reason.clone())));
                    return Ran::Finished { result, device };
                }
            };
            let attempt = Attempt {
                settings: &spec.settings,
                options: &options,
                device,
            };
            let ran = net.and_then(|net| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    log.matte(
                        &net,
                        (&row.input_path, spec.fps),
                        (outdir, &row.safe_name),
                        &attempt,
                        &mut |p| {
                            for step in &p.steps {
                                self.observer.note(&format!("{}: {step}", row.safe_name));
                            }
                            *lock(progress) = Some(vmatte_jobs::Progress {
                                frames_done: p.frames_done,
                                frames_total: p.frames_total,
                            });
                            view.progress(p)
                        },
                    )
                }))
                .unwrap_or_else(|p| Err(PipelineError::Internal(vmatte_pipeline::panic_text(&*p))))
            });
            match ran {
                Err(PipelineError::OutOfMemory { cause, message })
                    if !device.is_cpu() || cause == OutOfMemory::Injected =>
                {
                    let step = lane.step_down();
                    log.event("oom", json!({ "reason": message, "next": step }));
                    self.observer.note(&format!("{}: {step}", row.safe_name));
                    if let Step::HalveStreams { .. } = step {
                        return Ran::Requeue;
                    }
                    device = vmatte_gpu::DeviceSpec::Cpu;
                    options.fake_oom = None;
                    options.precision = Precision::F32;
                    options.chunks = spec.run.chunks.clone();
                    model = self.cpu.model(&spec.settings, Precision::F32, load_from);
                }
                result => {
                    return Ran::Finished {
                        result: Box::new(result),
                        device,
                    }
                }
            }
        }
    }

    /// Records a finished run: the result in the store first, the outputs
    /// under their final names after (so a file under a final name always
    /// belongs to a job recorded done), then the copies' links.
    fn record(
        &self,
        queue: &mut Box<dyn JobQueue>,
        row: &JobRow,
        owner: &str,
        (report, staged, note): (&MatteReport, Staged, Option<&str>),
        log: &mut JobLog,
    ) -> End {
        let mut outputs = Outputs::default();
        for o in staged.outputs() {
            outputs
                .paths
                .insert(o.kind().to_string(), o.path().to_path_buf());
            if let Ok(n) = measure(o.partial()) {
                outputs.bytes.insert(o.kind().to_string(), n);
            }
        }
        let recorded = self.persist(queue, |q| {
            q.complete(row.id, owner, report.frames, report.seconds, &outputs)
        });
        let done = match recorded {
            Ok(done) => {
                crash_point("recorded");
                done
            }
            // A write retried after its reply was lost may find its own
            // first try committed: the job done with these very outputs.
            // Then they are ours to publish (the same job's outputs in any
            // case: publishing them can only complete what is recorded).
            Err(e) if e.job_gone() => match queue.job(row.id) {
                Ok(Some(j)) if j.state == JobState::Done && j.outputs() == outputs => j,
                _ => {
                    let msg = "another process took the job over (this one stalled past its lease)";
                    let o = Outcome::of_row(&row.input_path, row, Status::Lost).with_note(msg);
                    return End::Settled(o);
                }
            },
            Err(e) => {
                let why = format!("cannot record the result in the job store ({e})");
                log.failed(&why);
                let o = Outcome::of_row(&row.input_path, row, Status::Failed).with_error(&why);
                return End::Fatal(o, why);
            }
        };
        let mut o = Outcome::of_row(&row.input_path, &done, Status::Done);
        if let Err(e) = staged.publish() {
            let why =
                format!("{e}; running the batch or submitting the input again makes it again");
            log.failed(&why);
            o.status = Status::Failed;
            o.error = Some(why);
            return End::Settled(o);
        }
        crash_point("published");
        log.done(report);
        o.ladder = report.ladder.iter().map(ToString::to_string).collect();
        o.warnings = report
            .warnings
            .iter()
            .map(|w| crate::outcome::Warning {
                frame: Some(w.frame),
                message: w.message.clone(),
            })
            .collect();
        o.note = note.map(str::to_string);
        self.link_copies(queue.as_mut(), &done);
        End::Settled(o)
    }

    /// A write to a shared queue, tried again over a fresh connection for
    /// up to half a lease while the database is out of reach (restarted,
    /// failed over), so a finished video is not thrown away for a blip. A
    /// SQLite store's failures (a full disk) are not passing: no retry.
    fn persist<T>(
        &self,
        queue: &mut Box<dyn JobQueue>,
        mut write: impl FnMut(&mut dyn JobQueue) -> vmatte_jobs::Result<T>,
    ) -> vmatte_jobs::Result<T> {
        let give_up = std::time::Instant::now() + self.config.lease / 2;
        let mut pause = Duration::from_millis(100);
        loop {
            match write(queue.as_mut()) {
                Err(vmatte_jobs::Error::Postgres { .. }) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                    if let Ok(q) = (self.connect)() {
                        *queue = q;
                    }
                }
                other => return other,
            }
        }
    }

    /// Records a failed attempt (a PostgreSQL queue retries it after a
    /// backoff while attempts remain).
    fn failed(
        &self,
        queue: &mut Box<dyn JobQueue>,
        row: &JobRow,
        owner: &str,
        reason: String,
    ) -> End {
        self.leases.release(row.id);
        match self.persist(queue, |q| {
            q.fail(row.id, owner, &reason, self.config.backoff)
        }) {
            Ok(failed) => End::Settled(
                Outcome::of_row(&row.input_path, &failed, Status::Failed).with_error(reason),
            ),
            Err(e) if e.job_gone() => {
                End::Settled(Outcome::of_row(&row.input_path, row, Status::Lost).with_error(reason))
            }
            Err(store) => {
                let why = format!("cannot record the failure in the job store ({store})");
                let o = Outcome::of_row(&row.input_path, row, Status::Failed)
                    .with_error(reason)
                    .with_note(why.clone());
                End::Fatal(o, why)
            }
        }
    }

    /// Gives every copy of a done job its outputs (each says so if it
    /// cannot; the next run or submission tries again).
    fn link_copies(&self, queue: &mut dyn JobQueue, job: &JobRow) {
        let copies = match queue.copies(Some(job.id)) {
            Ok(c) => c,
            Err(e) => return self.observer.note(&format!("warning: {e}")),
        };
        for copy in copies {
            if let Err(why) = ensure_linked(queue, job, &copy) {
                self.observer
                    .note(&format!("warning: {}: {why}", copy.safe_name));
            }
        }
    }
}

/// Makes sure `copy` has its own outputs of done `job` (linking them when
/// missing or damaged); the copy as it now is.
pub fn ensure_linked(
    queue: &mut dyn JobQueue,
    job: &JobRow,
    copy: &CopyRow,
) -> Result<CopyRow, String> {
    if job.state != JobState::Done {
        return Err(format!("job {} is not done", job.id));
    }
    if copy.linked_ms.is_some() && verify(&copy.outputs()).is_ok() {
        return Ok(copy.clone());
    }
    verify(&job.outputs())?;
    let linked =
        link_as(&job.outputs(), &job.safe_name, &copy.safe_name).map_err(|e| e.to_string())?;
    queue
        .copy_linked(copy.id, &linked)
        .map_err(|e| e.to_string())
}

/// A copy's outcome for a batch that started at `run_started_ms`: linked
/// when its job is done (if the engine has not linked it already).
pub fn settle_copy(
    queue: &mut dyn JobQueue,
    input: &Path,
    (job, copy): (&JobRow, &CopyRow),
    run_started_ms: i64,
) -> Outcome {
    let same = format!("same content as {}", job.input_path.display());
    match job.state {
        JobState::Done => {
            let earlier = copy.linked_ms.is_some_and(|t| t < run_started_ms)
                && verify(&copy.outputs()).is_ok();
            match ensure_linked(queue, job, copy) {
                Ok(c) if earlier => Outcome::of_copy(input, &c, job, Status::Skipped)
                    .with_note(format!("done in an earlier run ({same})")),
                Ok(c) => Outcome::of_copy(input, &c, job, Status::Done)
                    .with_note(format!("{same}: outputs linked")),
                Err(why) => Outcome::of_copy(input, copy, job, Status::Failed).with_error(format!(
                    "{same}, but its outputs could not be linked: {why}"
                )),
            }
        }
        JobState::Failed => Outcome::of_copy(input, copy, job, Status::Failed).with_error(format!(
            "{same}, which failed: {}",
            job.error.as_deref().unwrap_or("no reason recorded")
        )),
        JobState::Running => Outcome::of_copy(input, copy, job, Status::Skipped)
            .with_note(format!("{same}, which another process is matting")),
        JobState::Queued => Outcome::of_copy(input, copy, job, Status::Skipped)
            .with_note(format!("{same}, which is still queued")),
    }
}

/// One ticket per job. A file given twice (`a.mp4` and `a/../a.mp4`) is
/// one job; since a batch's streams share one owner, the store would hand
/// it to two streams at once. The first ticket runs it; the others end
/// here, naming that first input.
fn one_per_job(tickets: Vec<Ticket>) -> (VecDeque<Ticket>, Vec<(usize, Outcome)>) {
    let mut first: std::collections::HashMap<i64, PathBuf> = std::collections::HashMap::new();
    let mut keep = VecDeque::new();
    let mut twins = Vec::new();
    for t in tickets {
        match first.get(&t.job) {
            Some(input) => {
                let note = format!("the same file as {}", Path::display(input));
                let mut o = Outcome::new(&t.input, Status::Skipped).with_note(note);
                o.job = Some(t.job);
                twins.push((t.n, o));
            }
            None => {
                first.insert(t.job, t.input.clone());
                keep.push_back(t);
            }
        }
    }
    (keep, twins)
}

/// `VMATTE_CRASH_AT=POINT` ends the process at once (no destructors, as
/// `kill -9` would) when a job reaches POINT: `claimed`, `recorded` (its
/// result is in the store, its outputs not yet under their names),
/// `published` (they are, its copies not yet linked). For the kill tests.
fn crash_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("VMATTE_CRASH_AT").ok());
    if at.as_deref() == Some(point) {
        std::process::abort();
    }
}
