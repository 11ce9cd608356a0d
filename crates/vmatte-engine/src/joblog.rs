//! Per-video logs: `OUTDIR/logs/<name>.log` for people and `<name>.jsonl`
//! for tools, one event per line. Reruns append, so a retried job keeps the
//! story of its earlier attempts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use vmatte_gpu::DeviceSpec;
use vmatte_jobs::JobRow;
use vmatte_media::{Rational, VideoInfo};
use vmatte_pipeline::{
    matte_source, MatteReport, MatteSettings, Network, PipelineError, Progress, RunOptions, Staged,
};

pub struct JobLog {
    human: File,
    events: File,
    pub path: PathBuf,
}

impl JobLog {
    pub fn create(outdir: &Path, name: &str) -> std::io::Result<Self> {
        let dir = outdir.join("logs");
        std::fs::create_dir_all(&dir)?;
        let open = |ext: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{name}.{ext}")))
        };
        Ok(Self {
            human: open("log")?,
            events: open("jsonl")?,
            path: dir.join(format!("{name}.log")),
        })
    }

    /// Writes one event to both files. Logging must never fail a job, so
    /// write errors (a full disk) are dropped here and surface elsewhere.
    pub fn event(&mut self, event: &str, fields: Value) {
        let ts = vmatte_jobs::rfc3339_ms(vmatte_jobs::now_ms());
        let _ = self
            .events
            .write_all(event_line(&ts, event, &fields).as_bytes());
        let human = match &fields {
            Value::Object(f) if !f.is_empty() => f
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let _ = writeln!(self.human, "{ts} {event:<9} {human}");
    }

    /// A second handle on the .jsonl file for GPU samples, which arrive on
    /// the sampler's thread. Each event is one `write` to a file opened for
    /// appending, so lines from the two handles never interleave.
    pub fn telemetry_writer(&self) -> Option<TelemetryWriter> {
        self.events
            .try_clone()
            .ok()
            .map(|events| TelemetryWriter { events })
    }

    /// The first event of an attempt: what runs, for whom, and how.
    pub fn start(&mut self, row: &JobRow, owner: &str, run: &Attempt<'_>) {
        self.event(
            "start",
            json!({
                "input": row.input_path,
                "name": row.safe_name,
                "attempt": row.attempts,
                "owner": owner,
                "model": run.settings.model,
                "device": run.device,
                "settings": run.settings,
                "run": run.options,
            }),
        );
    }

    /// Opens `input`, logs its probe, and runs it through the pipeline
    /// into `outdir` as `name`; the outputs come back staged, and the end
    /// of the attempt is logged by [`JobLog::done`] or [`JobLog::failed`].
    pub fn matte(
        &mut self,
        net: &Network,
        (input, fps): (&Path, Option<Rational>),
        (outdir, name): (&Path, &str),
        run: &Attempt<'_>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<(MatteReport, Staged), PipelineError> {
        let result = vmatte_media::open_source(input, fps)
            .map_err(PipelineError::from)
            .and_then(|source| {
                self.event("probe", probe_fields(source.info()));
                matte_source(
                    net,
                    source,
                    (outdir, name),
                    run.settings,
                    run.options,
                    on_progress,
                )
            });
        if let Ok((report, _)) = &result {
            for step in &report.ladder {
                self.event("oom", json!(step));
            }
            for w in &report.warnings {
                self.event("warning", json!(w));
            }
        }
        result
    }

    /// The end of an attempt whose result was recorded.
    pub fn done(&mut self, report: &MatteReport) {
        self.event(
            "end",
            json!({
                "status": "done",
                "frames": report.frames,
                "seconds": report.seconds,
                "fps": report.fps,
                "downsample_ratio": report.downsample_ratio,
                "outputs": report.outputs,
            }),
        )
    }

    /// The end of an attempt that failed, with its one-line reason.
    pub fn failed(&mut self, reason: &str) {
        self.event("end", json!({ "status": "failed", "error": reason }));
    }
}

/// What one attempt runs: the job's settings, with this run's options on
/// this device.
pub struct Attempt<'a> {
    pub settings: &'a MatteSettings,
    pub options: &'a RunOptions,
    pub device: DeviceSpec,
}

/// One JSON line: `ts`, `event`, then the fields.
fn event_line(ts: &str, event: &str, fields: &Value) -> String {
    let mut line = Map::new();
    line.insert("ts".into(), json!(ts));
    line.insert("event".into(), json!(event));
    if let Value::Object(f) = fields {
        line.extend(f.clone());
    }
    format!("{}\n", Value::Object(line))
}

/// Writes `telemetry` events (one GPU sample each) into a job's .jsonl.
pub struct TelemetryWriter {
    events: File,
}

impl TelemetryWriter {
    pub fn sample(&mut self, s: &vmatte_gpu::GpuSample) {
        let ts = vmatte_jobs::rfc3339_ms(s.t_ms as i64);
        let fields = serde_json::to_value(s).unwrap_or(Value::Null);
        let _ = self
            .events
            .write_all(event_line(&ts, "telemetry", &fields).as_bytes());
    }
}

pub fn probe_fields(info: &VideoInfo) -> Value {
    json!({
        "container": info.container,
        "codec": info.codec,
        "decoder": info.decoder,
        "width": info.width,
        "height": info.height,
        "fps": info.frame_rate.to_string(),
        "frames": info.frame_count,
        "duration_s": info.duration_s,
        "rotation": info.rotation,
        "pixel_format": info.pixel_format,
        "color_matrix": info.color_matrix,
        "color_range": info.color_range,
    })
}
