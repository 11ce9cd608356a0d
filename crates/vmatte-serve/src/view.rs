//! A job as the API shows it: the store's row, the live progress of a
//! running one, and the addresses of what can be fetched of it.

use std::path::Path;

use serde_json::{json, Value};
use vmatte_jobs::{JobRow, JobState};

use crate::live::Live;

/// Output kinds a browser can play as they are (H.264 mp4, VP9 webm), by
/// preference for the composite and matte previews.
pub fn playable(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("mp4" | "webm")
    )
}

pub fn job(live: &Live, row: &JobRow) -> Value {
    let base = format!("/api/jobs/{}", row.id);
    let outputs: Vec<Value> = row
        .outputs
        .iter()
        .map(|(kind, path)| {
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
            // A sequence is a folder, downloaded as a zip of that name.
            let sequence = path.is_dir();
            let download = if sequence {
                format!("{}.{kind}.zip", row.safe_name)
            } else {
                file.clone().unwrap_or_default()
            };
            json!({
                "kind": kind,
                "file": file,
                "bytes": row.output_bytes.get(kind),
                "url": format!("{base}/outputs/{kind}"),
                "sequence": sequence,
                "download": download,
            })
        })
        .collect();
    let preview = |kind: &str| {
        row.outputs
            .contains_key(kind)
            .then(|| format!("{base}/preview/{kind}"))
    };
    let settings: Value = serde_json::from_str(&row.settings_json).unwrap_or(Value::Null);
    let progress = live.progress(row.id);
    let (frames_done, frames_total, fps, eta_s) = match (&progress, row.state) {
        (Some(p), JobState::Running) => (Some(p.frames_done), p.frames_total, Some(p.fps), p.eta_s),
        (_, JobState::Done) => (
            row.frames,
            row.frames,
            row.frames
                .zip(row.seconds)
                .map(|(f, s)| if s > 0.0 { f as f64 / s } else { 0.0 }),
            Some(0.0),
        ),
        // Run by another process: as its worker last reported it.
        (None, JobState::Running) => match (row.progress, row.started_ms) {
            (Some(p), Some(started)) => {
                // The start is the store's clock, now is this machine's: a
                // rate over less than a second (or a clock ahead of ours)
                // would be noise, so none is given.
                let secs = (vmatte_jobs::now_ms() - started) as f64 / 1000.0;
                let fps = (secs >= 1.0).then(|| p.frames_done as f64 / secs);
                let eta = fps.filter(|f| *f > 0.0).and_then(|f| {
                    p.frames_total
                        .map(|t| t.saturating_sub(p.frames_done) as f64 / f)
                });
                (Some(p.frames_done), p.frames_total, fps, eta)
            }
            _ => (None, None, None, None),
        },
        _ => (None, None, None, None),
    };
    json!({
        "id": row.id,
        "name": row.safe_name,
        "input": row.input_path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "state": row.state,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "error": row.error,
        "created": vmatte_jobs::rfc3339_ms(row.created_ms),
        "started": row.started_ms.map(vmatte_jobs::rfc3339_ms),
        "finished": row.finished_ms.map(vmatte_jobs::rfc3339_ms),
        "frames_done": frames_done,
        "frames_total": frames_total,
        "fps": fps,
        "eta_s": eta_s,
        "seconds": row.seconds,
        "worker": row.lease_owner,
        "settings": settings,
        "outputs": outputs,
        "links": {
            "self": base,
            "input": format!("{base}/input"),
            "log": format!("{base}/log"),
            "preview_composite": preview("composite"),
            "preview_alpha": preview("alpha"),
        },
    })
}
