//! Per-video logs: `OUTDIR/logs/<name>.log` for people and `<name>.jsonl`
//! for tools, one event per line. Reruns append, so a retried job keeps the
//! story of its earlier attempts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
        let ts = rfc3339_now();
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

/// UTC now as RFC 3339 with milliseconds, without a date crate.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_millis() as i64)
}

pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-22T01:30:00.250Z
        assert_eq!(
            super::rfc3339(1_795_311_000_250),
            "2026-11-22T01:30:00.250Z"
        );
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
