//! `vmatte watch IN -o OUT` (and `vmatte serve --watch IN`): a watched
//! folder. Every video that appears under IN is queued once its size and
//! time have held still for two polls (a copy in progress is not taken);
//! the job engine mattes it like a batch's, and manifest.csv follows.
//!
//! ```text
//!  IN ─ poll (1 s) ─► (size, mtime) held twice ─► content id ─► submit ─► store
//!                                                                 │
//!  engine (Feed::Queue) ◄─────────────────────────────────────────┘ ─► OUT
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use vmatte_engine::outcome::one_line;
use vmatte_engine::spec::JobSpec;
use vmatte_engine::telemetry::Hub;
use vmatte_engine::{sleep_unless, Engine, Feed};
use vmatte_gpu::FakeOom;
use vmatte_jobs::queue::{self, JobQueue, NewJob, QueueUrl, Submitted};
use vmatte_jobs::JobState;

use crate::batch::discover::named_like_video;
use crate::batch::{env_ms, lease};
use crate::cli::{MatteOptions, WatchArgs};
use crate::config;
use crate::progress::{Mode, Screen};
use crate::queue::worker::{open_devices, plan_lanes, queue_engine, Loading};
use crate::signals::Interrupt;

/// Polls a file's size must hold still for before it is queued.
const STILL_POLLS: u32 = 2;

fn poll() -> Duration {
    env_ms("VMATTE_WATCH_POLL_MS").unwrap_or(Duration::from_secs(1))
}

/// What was last seen of a file.
struct Seen {
    size: u64,
    modified: Option<SystemTime>,
    still: u32,
}

/// Starts watching `dir` for the store `queue`, with `options`, until
/// `stop`.
pub fn start(
    dir: &Path,
    outdir: &Path,
    queue: QueueUrl,
    options: &MatteOptions,
    max_attempts: u32,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("{}: the folder to watch is not there", dir.display()))?;
    if !dir.is_dir() {
        anyhow::bail!("{}: watch a folder, not a file", dir.display());
    }
    if std::fs::canonicalize(outdir).is_ok_and(|o| o == dir) {
        anyhow::bail!(
            "{}: the watched folder is the output folder, so outputs would be matted again; \
             write the outputs elsewhere",
            dir.display()
        );
    }
    let outdir = outdir.to_path_buf();
    let spec = config::resolve(options)?.spec;
    let (settings_json, settings_id) = spec.stored();
    Ok(std::thread::spawn(move || {
        let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
        let mut queued: HashSet<(PathBuf, u64, Option<SystemTime>)> = HashSet::new();
        let mut store: Option<Box<dyn JobQueue>> = None;
        let mut ended = usize::MAX;
        let mut told_trouble = false;
        while !stop.load(Ordering::Relaxed) {
            let mut found = Vec::new();
            walk(&dir, &outdir, &mut found);
            let mut ready = Vec::new();
            let mut present = HashSet::new();
            for (path, size, modified) in found {
                present.insert(path.clone());
                let key = (path.clone(), size, modified);
                if queued.contains(&key) {
                    continue;
                }
                let s = seen.entry(path.clone()).or_insert(Seen {
                    size,
                    modified,
                    still: 0,
                });
                if s.size == size && s.modified == modified && size > 0 {
                    s.still += 1;
                } else {
                    *s = Seen {
                        size,
                        modified,
                        still: 0,
                    };
                }
                if s.still >= STILL_POLLS {
                    ready.push(key);
                }
            }
            seen.retain(|p, _| present.contains(p));
            if store.is_none() {
                store = queue::open(&queue).ok();
            }
            if let Some(q) = store.as_mut() {
                let mut trouble = None;
                for key in ready {
                    match submit(
                        q.as_mut(),
                        &key.0,
                        &outdir,
                        (&spec, &settings_json, &settings_id),
                        max_attempts,
                    ) {
                        Ok(line) => {
                            eprintln!("vmatte watch: {line}");
                            queued.insert(key);
                        }
                        Err(Trouble::File(why)) => {
                            eprintln!("vmatte watch: {why}");
                            queued.insert(key);
                        }
                        Err(Trouble::Store(why)) => {
                            trouble = Some(why);
                            break;
                        }
                    }
                }
                if let QueueUrl::Sqlite { .. } = queue {
                    ended = manifest(q.as_mut(), &outdir, ended);
                }
                match trouble {
                    Some(why) => {
                        if !told_trouble {
                            eprintln!("vmatte watch: warning: {why}; trying again");
                        }
                        told_trouble = true;
                        store = None;
                    }
                    None => told_trouble = false,
                }
            }
            sleep_unless(|| stop.load(Ordering::Relaxed), poll());
        }
    }))
}

enum Trouble {
    /// This file cannot be queued (unreadable): said once, not retried.
    File(String),
    /// The store failed: tried again next poll.
    Store(String),
}

fn submit(
    q: &mut dyn JobQueue,
    input: &Path,
    outdir: &Path,
    (spec, settings_json, settings_id): (&JobSpec, &str, &str),
    max_attempts: u32,
) -> Result<String, Trouble> {
    let shown = one_line(&input.display().to_string());
    let content = spec.content_id(input).map_err(|e| {
        Trouble::File(format!(
            "{shown}: cannot read ({e}); not queued, check the file"
        ))
    })?;
    let sub = q
        .submit(&NewJob {
            input,
            outdir,
            content_id: &content,
            settings_id,
            settings_json,
            max_attempts,
            retry_failed: false,
        })
        .map_err(|e| Trouble::Store(e.to_string()))?;
    let what = match sub.submitted {
        Submitted::Queued | Submitted::Requeued => "queued",
        Submitted::Known => "already known",
        Submitted::Copy => "same content as",
    };
    Ok(format!(
        "{what} job {} ({}) {shown}",
        sub.job.id, sub.job.safe_name
    ))
}

/// Rewrites manifest.csv when the number of ended jobs changed; that
/// number.
fn manifest(q: &mut dyn JobQueue, outdir: &Path, before: usize) -> usize {
    let Ok(jobs) = q.jobs() else {
        return before;
    };
    let now = jobs
        .iter()
        .filter(|j| matches!(j.state, JobState::Done | JobState::Failed))
        .count();
    if now != before {
        if let Err(e) = crate::batch::manifest(q, outdir) {
            eprintln!("vmatte watch: warning: {e}");
        }
    }
    now
}

/// The video files under `dir` (not hidden ones, not under `skip`), with
/// their size and time.
fn walk(dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with('.') || path == skip {
            continue;
        }
        // Not following links: a link to a folder above would loop.
        let Ok(meta) = e.file_type() else { continue };
        if meta.is_dir() {
            walk(&path, skip, out);
        } else if meta.is_file() && named_like_video(&path) {
            if let Ok(m) = e.metadata() {
                out.push((path, m.len(), m.modified().ok()));
            }
        }
    }
}

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    open_devices(&args.lanes)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("{}: cannot create the output folder", args.output.display()))?;
    let outdir = std::fs::canonicalize(&args.output)?;
    let url = QueueUrl::Sqlite {
        outdir: outdir.clone(),
    };
    queue::open(&url)?;
    let interrupt = Interrupt::install()?;
    let watcher = start(
        &args.input,
        &outdir,
        url.clone(),
        &args.options,
        1,
        interrupt.flag(),
    )?;
    let screen = Screen::new(Mode::detect(args.json), None, args.json);
    let hub = Hub::start(
        &args.lanes.devices,
        |_| {},
        |info| eprintln!("vmatte: info: {info}"),
    );
    let config = queue_engine(
        vmatte_jobs::owner_id(),
        plan_lanes(&args.lanes, hub.as_ref()),
        Loading::of(&args.options.model),
        args.options.output.strict,
        lease(),
        None,
        FakeOom::from_env().map_err(anyhow::Error::msg)?,
    );
    eprintln!(
        "vmatte watch: watching {} for videos; outputs in {}; Ctrl-C stops",
        args.input.display(),
        outdir.display()
    );
    let connect = || queue::open(&url);
    let report =
        Engine::new(&config, &connect, &screen, hub.as_ref(), interrupt.flag()).run(Feed::Queue {
            exit_when_idle: false,
            poll: Duration::from_millis(500),
        });
    screen.finish();
    let _ = watcher.join();
    if let Some(fatal) = report.fatal {
        anyhow::bail!("{fatal}");
    }
    Ok(ExitCode::SUCCESS)
}
