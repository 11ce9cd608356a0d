//! `GET /api/jobs/{id}/preview/{kind}`: a video a browser plays of an
//! output. An H.264 mp4 or VP9 webm output is its own preview; any other
//! (ProRes, QuickTime Animation, PNG/TIFF sequences) is made once into a
//! small H.264 mp4 (at most 640 pixels wide, colour only) under
//! OUTDIR/.vmatte-serve/previews/, on first request, and kept until the job
//! is deleted.
//!
//! ```text
//!  output ─► open_source ─► CoverScaler (<= 640 px) ─► H.264 .partial ─► rename ─► served with Range
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tokio::sync::Semaphore;
use vmatte_media::{CoverScaler, EncoderSettings, PixelLayout, VideoEncoder};

use crate::app::App;
use crate::error::ApiError;
use crate::files;
use crate::view::playable;

/// Widest preview made.
const MAX_WIDTH: u32 = 640;

/// One preview made at a time: each takes a core for a while, and two
/// requests for the same one must not both make it. Waited for without a
/// thread (waiting requests hold none), and held by the blocking task
/// itself, so a client that goes away does not release it early.
static MAKING: Semaphore = Semaphore::const_new(1);

/// Where job `id`'s preview of `kind` is kept.
pub fn cached(outdir: &Path, id: i64, kind: &str) -> PathBuf {
    outdir
        .join(".vmatte-serve")
        .join("previews")
        .join(format!("{id}.{kind}.mp4"))
}

pub async fn get(
    State(app): State<Arc<App>>,
    axum::extract::Path((id, kind)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (job, output, outdir) = files::job_output(&app, &id, &kind).await?;
    if playable(&output) {
        return files::file(&output, &headers, None).await;
    }
    let preview = cached(&outdir, job.id, &kind);
    if !preview.is_file() {
        let (from, to) = (output.clone(), preview.clone());
        let one = MAKING
            .acquire()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _one = one;
            if to.is_file() {
                return Ok(());
            }
            make(&from, &to)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("cannot make a preview of {}: {e}", output.display()),
            )
        })?;
    }
    files::file(&preview, &headers, Some("video/mp4")).await
}

/// Makes `to` (H.264, colour only, at most [`MAX_WIDTH`] wide) from the
/// video or image sequence `from`; nothing under `to` unless whole.
pub fn make(from: &Path, to: &Path) -> Result<(), String> {
    let mut src = vmatte_media::open_source(from, None).map_err(|e| e.to_string())?;
    src.set_deep(false);
    let info = src.info().clone();
    let width = info.width.min(MAX_WIDTH) & !1;
    let height =
        ((u64::from(info.height) * u64::from(width) / u64::from(info.width.max(1))) as u32).max(2)
            & !1;
    let mut scaler = CoverScaler::new(width, height);
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let partial = to.with_extension("partial.mp4");
    let mut settings = EncoderSettings::new(
        width,
        height,
        info.frame_rate,
        info.time_base,
        PixelLayout::Rgb24,
    );
    settings.crf = 26;
    let made = (|| -> Result<(), String> {
        let mut enc =
            VideoEncoder::create(&partial, "mp4", &settings).map_err(|e| e.to_string())?;
        let mut n = 0i64;
        while let Some(frame) = src.next_frame().map_err(|e| e.to_string())? {
            let rgb = scaler.apply(&frame)?;
            enc.write(&rgb, Some(frame.pts.unwrap_or(n)))
                .map_err(|e| e.to_string())?;
            n += 1;
        }
        enc.finish().map_err(|e| e.to_string())?;
        std::fs::rename(&partial, to).map_err(|e| e.to_string())
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    made
}
