//! `vmatte serve`: the command line turned into the service's typed config
//! ([`vmatte_serve::ServeConfig`]), the in-process workers' engine plan,
//! and the [`Resolve`] that gives HTTP requests `vmatte matte`'s options
//! with its own checks and messages.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, FromArgMatches, Parser};
use serde_json::{Map, Value};
use vmatte_engine::spec::JobSpec;
use vmatte_gpu::FakeOom;
use vmatte_jobs::queue::{QueueUrl, WorkerInfo};
use vmatte_serve::{FieldError, Resolve, ServeConfig, Token, Workers};

use crate::batch::env_ms;
use crate::cli::{MatteOptions, ServeArgs};
use crate::config;
use crate::queue::worker::{open_devices, plan_lanes, queue_engine, Loading};
use crate::signals::Interrupt;

/// Options a request may set. The rest (weights, model folder, devices,
/// config file) name things on the server: its operator sets them on the
/// command line.
const REQUEST_OPTIONS: &[&str] = &[
    "preset",
    "model",
    "downsample_ratio",
    "seq_chunk",
    "outputs",
    "format",
    "background",
    "crf",
    "bitrate",
    "codec",
    "depth",
    "premultiplied",
    "invert_alpha",
    "exr_compression",
    "linear",
    "no_audio",
    "fps",
    "strict",
    "max_frames",
    "image_seq_only",
    "frames_per_batch",
    "overlap_frames",
    "interp_frames",
    "denoise_steps",
    "decode_chunk",
    "size",
    "max_resolution",
    "ensemble",
    "no_lora",
    "foreground",
    "matte_shrink",
    "matte_grow",
    "matte_feather",
    "matte_levels",
    "despeckle",
    "despill",
    "temporal_smooth",
    "mask",
    "mask_dir",
    "mask_at",
    "warmup",
    "mask_erode",
    "mask_dilate",
    "max_size",
    "mem_every",
    "max_mem_frames",
    "top_k",
];

/// `vmatte matte`'s options alone, to parse a request's into.
#[derive(Parser)]
#[command(name = "options", no_binary_name = true)]
struct RequestOptions {
    #[command(flatten)]
    options: MatteOptions,
}

/// The server's own options, overridden by each request's.
pub struct FromRequest {
    defaults: MatteOptions,
}

/// GVM's sizes past this would ask for more memory than any card has: a
/// request is refused rather than the server aborted.
const MAX_GVM_SIZE: u64 = 8192;

impl FromRequest {
    pub fn new(defaults: MatteOptions) -> Self {
        Self { defaults }
    }

    /// A request's options as the command-line words they stand for.
    fn words(options: &Map<String, Value>) -> Result<Vec<String>, FieldError> {
        let allowed: BTreeSet<&str> = REQUEST_OPTIONS.iter().copied().collect();
        let mut words = Vec::new();
        for (key, value) in options {
            if !allowed.contains(key.as_str()) {
                return Err(FieldError {
                    field: Some(key.clone()),
                    message: format!(
                        "'{}' is not an option a job may set here; the options are {}",
                        vmatte_engine::outcome::one_line(key),
                        REQUEST_OPTIONS.join(", ")
                    ),
                });
            }
            let flag = format!("--{}", key.replace('_', "-"));
            let scalar = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            match value {
                Value::Bool(true) => words.push(flag),
                Value::Bool(false) | Value::Null => {}
                // A repeatable option: one flag per item (its values may
                // hold commas: they are paths).
                Value::Array(items) if key == "mask_at" => {
                    for item in items {
                        match scalar(item) {
                            Some(v) => words.push(format!("{flag}={v}")),
                            None => return Err(wrong_type(key)),
                        }
                    }
                }
                Value::Array(items) => {
                    let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                    match parts {
                        Some(p) => words.push(format!("{flag}={}", p.join(","))),
                        None => return Err(wrong_type(key)),
                    }
                }
                other => match scalar(other) {
                    Some(v) => words.push(format!("{flag}={v}")),
                    None => return Err(wrong_type(key)),
                },
            }
        }
        Ok(words)
    }
}

/// Sets the option a request named from the request's parse (`false` or
/// `null` included: a request may turn off what the server turned on);
/// `false` for a name it does not know.
fn overlay(to: &mut MatteOptions, from: &MatteOptions, key: &str) -> bool {
    let (g, fg) = (&mut to.gvm, &from.gvm);
    let (f, ff) = (&mut to.output.finish, &from.output.finish);
    let (m, fm) = (&mut to.matanyone, &from.matanyone);
    match key {
        "preset" => to.preset.clone_from(&from.preset),
        // A request that names a model runs that installed model, not the
        // weights file the server was started with.
        "model" => {
            to.model.model.clone_from(&from.model.model);
            to.model.weights.clone_from(&from.model.weights);
        }
        "downsample_ratio" => to.downsample_ratio = from.downsample_ratio,
        "seq_chunk" => to.seq_chunk = from.seq_chunk,
        "outputs" => to.output.outputs.clone_from(&from.output.outputs),
        "format" => to.output.format = from.output.format,
        "background" => to.output.background.clone_from(&from.output.background),
        "crf" => to.output.crf = from.output.crf,
        "bitrate" => to.output.bitrate = from.output.bitrate,
        "codec" => to.output.codec = from.output.codec,
        "depth" => to.output.depth = from.output.depth,
        "premultiplied" => to.output.premultiplied = from.output.premultiplied,
        "invert_alpha" => to.output.invert_alpha = from.output.invert_alpha,
        "exr_compression" => to.output.exr_compression = from.output.exr_compression,
        "linear" => to.output.linear = from.output.linear,
        "no_audio" => to.output.no_audio = from.output.no_audio,
        "fps" => to.output.fps = from.output.fps,
        "strict" => to.output.strict = from.output.strict,
        "max_frames" => to.output.max_frames = from.output.max_frames,
        "image_seq_only" => to.output.image_seq_only = from.output.image_seq_only,
        "frames_per_batch" => g.frames_per_batch = fg.frames_per_batch,
        "overlap_frames" => g.overlap_frames = fg.overlap_frames,
        "interp_frames" => g.interp_frames = fg.interp_frames,
        "denoise_steps" => g.denoise_steps = fg.denoise_steps,
        "decode_chunk" => g.decode_chunk = fg.decode_chunk,
        "size" => g.size = fg.size,
        "max_resolution" => g.max_resolution = fg.max_resolution,
        "ensemble" => g.ensemble = fg.ensemble,
        "no_lora" => g.no_lora = fg.no_lora,
        "foreground" => f.foreground = ff.foreground,
        // One edge move: a request's grow replaces the server's shrink.
        "matte_shrink" | "matte_grow" => {
            f.matte_shrink = ff.matte_shrink;
            f.matte_grow = ff.matte_grow;
        }
        "matte_feather" => f.matte_feather = ff.matte_feather,
        "matte_levels" => f.matte_levels = ff.matte_levels,
        "despeckle" => f.despeckle = ff.despeckle,
        "despill" => f.despill = ff.despill,
        "temporal_smooth" => f.temporal_smooth = ff.temporal_smooth,
        "mask" => m.mask.clone_from(&fm.mask),
        "mask_dir" => m.mask_dir.clone_from(&fm.mask_dir),
        "mask_at" => m.mask_at.clone_from(&fm.mask_at),
        "warmup" => m.warmup = fm.warmup,
        "mask_erode" => m.mask_erode = fm.mask_erode,
        "mask_dilate" => m.mask_dilate = fm.mask_dilate,
        "max_size" => m.max_size = fm.max_size,
        "mem_every" => m.mem_every = fm.mem_every,
        "max_mem_frames" => m.max_mem_frames = fm.max_mem_frames,
        "top_k" => m.top_k = fm.top_k,
        _ => return false,
    }
    true
}

fn wrong_type(key: &str) -> FieldError {
    FieldError {
        field: Some(key.to_string()),
        message: format!("{key}: give a string, a number, true, or a list of strings"),
    }
}

/// The request field a message's first `--flag` names.
fn field_named(message: &str) -> Option<String> {
    let at = message.find("--")?;
    let flag: String = message[at + 2..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!flag.is_empty()).then(|| flag.replace('-', "_"))
}

impl Resolve for FromRequest {
    fn resolve(&self, options: &Map<String, Value>) -> Result<JobSpec, FieldError> {
        let words = Self::words(options)?;
        let parsed = RequestOptions::command()
            .try_get_matches_from(&words)
            .map_err(|e| {
                let field = match e.get(ContextKind::InvalidArg) {
                    Some(ContextValue::String(arg)) => field_named(arg),
                    _ => None,
                };
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                FieldError {
                    field,
                    message: first.trim_start_matches("error: ").to_string(),
                }
            })?;
        let asked = RequestOptions::from_arg_matches(&parsed).map_err(|e| FieldError {
            field: None,
            message: e.to_string(),
        })?;
        let mut merged = self.defaults.clone();
        for key in options.keys() {
            overlay(&mut merged, &asked.options, key);
        }
        for (key, size) in [
            ("size", merged.gvm.size),
            ("max_resolution", merged.gvm.max_resolution),
        ] {
            if options.contains_key(key) && size.is_some_and(|n| u64::from(n) > MAX_GVM_SIZE) {
                return Err(FieldError {
                    field: Some(key.to_string()),
                    message: format!("{key} is at most {MAX_GVM_SIZE} here"),
                });
            }
        }
        let config = config::resolve(&merged).map_err(|e| {
            let message = format!("{e:#}");
            FieldError {
                field: field_named(&message),
                message,
            }
        })?;
        Ok(config.spec)
    }
}

fn loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn read_secret(path: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the {what}", path.display()))?;
    if text.trim().is_empty() {
        bail!(
            "{}: the {what} file is empty; put the {what} in it",
            path.display()
        );
    }
    Ok(text.trim().to_string())
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let token_text = match (&args.token_file, std::env::var("VMATTE_TOKEN")) {
        (Some(file), _) => Some(read_secret(file, "token")?),
        (None, Ok(t)) if !t.trim().is_empty() => Some(t),
        _ => None,
    };
    let token = token_text.as_deref().and_then(Token::new);
    if token.is_none() && !loopback(&args.listen) {
        bail!(
            "--listen {} is reachable from other machines: give a token with --token-file FILE \
             or VMATTE_TOKEN, or listen on 127.0.0.1",
            args.listen
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("{}: cannot create the output folder", args.output.display()))?;
    let outdir = std::fs::canonicalize(&args.output).with_context(|| {
        format!(
            "{}: cannot resolve the output folder",
            args.output.display()
        )
    })?;
    let queue = match &args.queue {
        Some(url) => QueueUrl::parse(url)?,
        None => QueueUrl::Sqlite {
            outdir: outdir.clone(),
        },
    };
    let mut allow_roots = Vec::new();
    for root in &args.allow_root {
        let real = std::fs::canonicalize(root).with_context(|| {
            format!(
                "{}: --allow-root folder not found; check the path",
                root.display()
            )
        })?;
        if !real.is_dir() {
            bail!("{}: --allow-root takes a folder", root.display());
        }
        allow_roots.push(real);
    }
    // A watched folder's videos are played on the page like uploads.
    if let Some(dir) = &args.watch {
        if let Ok(real) = std::fs::canonicalize(dir) {
            allow_roots.push(real);
        }
    }
    let webhook_secret = match &args.webhook_secret_file {
        Some(f) => Some(read_secret(f, "webhook secret")?.into_bytes()),
        None => None,
    };
    let resolver = FromRequest::new(args.options.clone());
    // The server's own defaults must make a job: a bad flag stops it here.
    resolver
        .resolve(&Map::new())
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let workers = if args.no_workers {
        None
    } else {
        open_devices(&args.lanes)?;
        Some(workers(&args)?)
    };
    let interrupt = Interrupt::install()?;
    let watcher = match &args.watch {
        Some(dir) => Some(crate::watch::start(
            dir,
            &outdir,
            queue.clone(),
            &args.options,
            args.max_attempts,
            interrupt.flag(),
        )?),
        None => None,
    };
    let config = ServeConfig {
        listen: args.listen,
        outdir: outdir.clone(),
        queue: queue.clone(),
        allow_roots,
        token,
        max_upload: args.max_upload,
        max_attempts: args.max_attempts,
        webhook_secret,
    };
    let store = queue.redacted();
    let running = vmatte_serve::run(
        config,
        Box::new(resolver),
        workers,
        interrupt.flag(),
        |addr| {
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                addr.ip().to_string()
            };
            let host = if addr.is_ipv6() && !addr.ip().is_unspecified() {
                format!("[{host}]")
            } else {
                host
            };
            println!("vmatte serve: open http://{host}:{}/", addr.port());
            eprintln!(
                "vmatte serve: jobs in {store}, outputs in {}; Ctrl-C stops (running jobs go back \
                 to the queue)",
                outdir.display()
            );
        },
    );
    if let Some(w) = watcher {
        let _ = w.join();
    }
    running.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

/// The in-process workers: one lane per device, planned once the GPUs'
/// telemetry is up.
fn workers(args: &ServeArgs) -> Result<Workers> {
    let id = vmatte_jobs::owner_id();
    let info = WorkerInfo {
        id: id.clone(),
        host: vmatte_jobs::hostname(),
        pid: std::process::id(),
        devices: args
            .lanes
            .devices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    let fake_oom = FakeOom::from_env().map_err(anyhow::Error::msg)?;
    let lanes = args.lanes.clone();
    let model = args.options.model.clone();
    let engine = move |hub: Option<&vmatte_engine::telemetry::Hub>| {
        // The server's --strict is each job's own (in its spec).
        let strict = false;
        queue_engine(
            id,
            plan_lanes(&lanes, hub),
            Loading::of(&model),
            strict,
            lease(),
            Some(info),
            fake_oom,
        )
    };
    Ok(Workers {
        devices: args.lanes.devices.clone(),
        engine: Box::new(engine),
    })
}

/// A served job's lease is short, so that a cancel stops it within a few
/// seconds (leases are renewed every sixth of it);
/// `VMATTE_JOB_LEASE_MS` changes it.
fn lease() -> std::time::Duration {
    env_ms("VMATTE_JOB_LEASE_MS").unwrap_or(std::time::Duration::from_secs(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option a request may set is carried from the request.
    #[test]
    fn every_request_option_is_overlaid() {
        let defaults = RequestOptions::try_parse_from(Vec::<String>::new())
            .unwrap()
            .options;
        for key in REQUEST_OPTIONS {
            let mut to = defaults.clone();
            assert!(overlay(&mut to, &defaults, key), "{key} is not carried");
        }
    }
}
