//! Per-video logs: `OUTDIR/logs/<name>.log` for people and `<name>.jsonl`
//! for tools, one event per line. Reruns append, so a retried job keeps the
//! story of its earlier attempts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use vmatte_media::VideoInfo;

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
        let mut line = Map::new();
        line.insert("ts".into(), json!(ts));
        line.insert("event".into(), json!(event));
        if let Value::Object(f) = &fields {
            line.extend(f.clone());
        }
        let _ = writeln!(self.events, "{}", Value::Object(line));
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

    /// The hook GPU telemetry samples go through (utilisation, memory,
    /// temperature, power), once the GPU work lands.
    #[allow(dead_code)]
    pub fn telemetry(&mut self, sample: Value) {
        self.event("telemetry", sample);
    }
}

pub fn probe_fields(info: &VideoInfo) -> Value {
    json!({
        "container": info.container,
        "codec": info.codec,
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
