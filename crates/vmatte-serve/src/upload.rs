//! Uploads: a multipart body streamed to OUTDIR/uploads/.partial-N (never
//! held in memory), then given its final, sanitised name with a no-clobber
//! link, then queued. Too big (413), a full disk (507) or a dropped
//! connection leaves neither a file nor a job; partial files left by a
//! crash are removed when the service starts.
//!
//! ```text
//!  options ─► resolve (422 on a bad one) ─┐
//!  file ─► .partial-N ─(size ok)─► link as <safe name>.<ext> ─► submit ─► 201 job
//!  mask ─► .partial-N ─(size ok)─► renamed <safe name>.mask.png ─┘ (MatAnyone finds it beside)
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use vmatte_engine::spec::JobSpec;

use crate::app::App;
use crate::error::ApiError;
use crate::jobs;

const PARTIAL: &str = ".partial-";
/// Room for the multipart framing and the small fields around the file.
const FRAMING: u64 = 1 << 20;
/// The largest mask image taken (a 16-bit 8K PNG is well under it).
const MASK_MAX: u64 = 256 << 20;

static NEXT: AtomicU64 = AtomicU64::new(0);

pub fn folder(outdir: &Path) -> PathBuf {
    outdir.join("uploads")
}

/// Makes the uploads folder and removes partial files a crash left.
pub fn prepare(outdir: &Path) -> Result<(), String> {
    let dir = folder(outdir);
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "{}: cannot create ({e}); check that the output folder is writable",
            dir.display()
        )
    })?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(PARTIAL) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Uploads this old that no job or copy names are left from a crash
/// between naming an upload and queueing it: removed at start.
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes uploads that no job or copy names (older than [`ORPHAN_AGE`],
/// so another server's upload being queued right now is left alone).
pub fn sweep(app: &App) {
    let named = app.db.with(|q| {
        let mut named: std::collections::HashSet<PathBuf> =
            q.jobs()?.into_iter().map(|j| j.input_path).collect();
        named.extend(q.copies(None)?.into_iter().map(|c| c.input_path));
        Ok(named)
    });
    let (Ok(named), Ok(entries)) = (named, std::fs::read_dir(folder(&app.config.outdir))) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ORPHAN_AGE);
        if old && e.path().is_file() && !named.contains(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the partial file when dropped, however the request ends.
struct Partial {
    path: PathBuf,
}

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn too_big(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is larger than this server takes ({}); trim the video or ask for a \
             larger limit",
            bytes(max)
        ),
    )
    .field("file")
}

fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let f = n as f64;
    if f >= GIB {
        format!("{:.1} GiB", f / GIB)
    } else {
        format!("{:.1} MiB", f / MIB)
    }
}

fn write_failed(e: &std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the server's disk is full; nothing was kept; try again once space is freed",
        )
    } else {
        ApiError::internal(format!("cannot store the upload ({e}); nothing was kept"))
    }
}

pub async fn create(
    app: Arc<App>,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let max = app.config.max_upload;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max.saturating_add(FRAMING)) {
        return Err(too_big(max));
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad(format!("not a multipart upload: {}", e.body_text())))?;
    // The job the options ask for, resolved when they arrive (before the
    // file is stored, when they come first).
    let mut spec: Option<JobSpec> = None;
    let mut webhook: Option<String> = None;
    let mut file: Option<(Partial, String)> = None;
    let mut mask: Option<Partial> = None;
    let dir = folder(&app.config.outdir);
    let interrupted = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_big(max)
        } else {
            ApiError::bad(format!(
                "the upload broke off ({}); nothing was kept",
                e.body_text()
            ))
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(interrupted)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "options" => {
                let text = small_text(&mut field, "options").await?;
                let parsed: Map<String, Value> = if text.trim().is_empty() {
                    Map::new()
                } else {
                    serde_json::from_str(&text).map_err(|e| {
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("options must be a JSON object such as {{\"preset\": \"high\"}} ({e})"),
                        )
                        .field("options")
                    })?
                };
                spec = Some(jobs::resolve(&app, &parsed).await?);
            }
            "webhook_url" => {
                let url = small_text(&mut field, "webhook_url").await?;
                // A form's empty field is no webhook.
                webhook = (!url.trim().is_empty()).then(|| url.trim().to_string());
            }
            "file" => {
                if file.is_some() {
                    return Err(
                        ApiError::bad("one file per request; send the others separately")
                            .field("file"),
                    );
                }
                let original = field.file_name().unwrap_or("upload").to_string();
                let (partial, written) =
                    store_part(&mut field, &dir, max, || too_big(max), interrupted).await?;
                if written == 0 {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("{}: the file is empty", crate::error::one_line(&original)),
                    )
                    .field("file"));
                }
                file = Some((partial, original));
            }
            "mask" => {
                if mask.is_some() {
                    return Err(ApiError::bad(
                        "one mask per request; later masks go with --mask-at in the options",
                    )
                    .field("mask"));
                }
                let mask_too_big = || {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the mask is larger than {}; send a PNG", bytes(MASK_MAX)),
                    )
                    .field("mask")
                };
                let (partial, _) =
                    store_part(&mut field, &dir, MASK_MAX, mask_too_big, interrupted).await?;
                mask = Some(partial);
            }
            other => {
                return Err(ApiError::bad(format!(
                    "unknown field '{}': send 'file', 'options', 'webhook_url' and (MatAnyone) 'mask'",
                    crate::error::one_line(other)
                ))
                .field(other));
            }
        }
    }
    let Some((partial, original)) = file else {
        return Err(ApiError::bad("no 'file' field: attach the video as 'file'").field("file"));
    };
    let spec = match spec {
        Some(spec) => spec,
        None => jobs::resolve(&app, &Map::new()).await?,
    };
    if mask.is_some() {
        match &spec.settings.matanyone {
            None => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "a mask picks MatAnyone's subject; add \"model\": \"matanyone\" to the options",
                )
                .field("mask"))
            }
            Some(m) if m.mask.file.is_some() => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the options name a mask and one is attached; send one of them",
                )
                .field("mask"))
            }
            Some(_) => {}
        }
    }
    let dir2 = dir.clone();
    let from = partial.path.clone();
    let named = tokio::task::spawn_blocking(move || name_upload(&dir2, &from, &original))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| write_failed(&e))?;
    // The partial name goes; the final one (a second link) stays.
    drop(partial);
    // Beside the video under its name, where MatAnyone looks: the video's
    // name is new, so a file there is a stale one.
    let beside = mask.map(|m| {
        let stem = named
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let target = named.with_file_name(format!("{stem}.mask.png"));
        (m, target)
    });
    if let Some((m, target)) = &beside {
        if let Err(e) = std::fs::rename(&m.path, target) {
            let _ = std::fs::remove_file(&named);
            return Err(write_failed(&e));
        }
    }
    match jobs::submit(&app, named.clone(), spec, webhook.as_deref()).await {
        Ok(r) => Ok(r),
        Err(e) => {
            let _ = std::fs::remove_file(&named);
            if let Some((_, target)) = &beside {
                let _ = std::fs::remove_file(target);
            }
            Err(e)
        }
    }
}

/// Streams a file part to a new partial file in `dir`, refusing it with
/// `too_big` past `limit` bytes; the partial (removed when dropped) and
/// the bytes written.
async fn store_part(
    field: &mut axum::extract::multipart::Field<'_>,
    dir: &Path,
    limit: u64,
    too_big: impl Fn() -> ApiError,
    interrupted: impl Fn(axum::extract::multipart::MultipartError) -> ApiError,
) -> Result<(Partial, u64), ApiError> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let partial = Partial {
        path: dir.join(format!("{PARTIAL}{}-{n}", std::process::id())),
    };
    let mut out = tokio::fs::File::create(&partial.path)
        .await
        .map_err(|e| write_failed(&e))?;
    let mut written: u64 = 0;
    while let Some(chunk) = field.chunk().await.map_err(&interrupted)? {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_big());
        }
        out.write_all(&chunk).await.map_err(|e| write_failed(&e))?;
    }
    out.sync_all().await.map_err(|e| write_failed(&e))?;
    Ok((partial, written))
}

/// The fields beside the file are small: read whole, but never past this.
const SMALL_FIELD: usize = 64 << 10;

/// A text field, refused (413) past [`SMALL_FIELD`] bytes rather than held.
async fn small_text(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad(format!("the upload broke off ({})", e.body_text())))?
    {
        if bytes.len() + chunk.len() > SMALL_FIELD {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the field '{name}' is larger than {} KiB",
                    SMALL_FIELD >> 10
                ),
            )
            .field(name));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad(format!("the field '{name}' is not UTF-8 text")).field(name))
}

/// Links `partial` under a free name `<safe stem>.<ext>` (`-2`, `-3`, ...
/// when taken) in `dir`; the final path.
fn name_upload(dir: &Path, partial: &Path, original: &str) -> std::io::Result<PathBuf> {
    // Only the last component of what the client called it, never a path.
    let base = original.rsplit(['/', '\\']).next().unwrap_or(original);
    let stem = vmatte_jobs::safe_stem(Path::new(base));
    let ext: String = Path::new(base)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    for n in 1u32..=100_000 {
        let name = if n == 1 {
            format!("{stem}{ext}")
        } else {
            format!("{stem}-{n}{ext}")
        };
        let target = dir.join(name);
        match std::fs::hard_link(partial, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("no free name for {stem}{ext} in {}", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_sanitised_and_never_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".partial-1");
        std::fs::write(&partial, b"x").unwrap();
        let a = name_upload(dir.path(), &partial, "../../etc/Pass wd.MP4").unwrap();
        let b = name_upload(dir.path(), &partial, "../../etc/Pass wd.MP4").unwrap();
        assert_eq!(a.parent().unwrap(), dir.path());
        assert!(
            a.file_name().unwrap().to_str().unwrap().ends_with(".mp4"),
            "{a:?}"
        );
        assert_ne!(a, b);
        let c = name_upload(dir.path(), &partial, "clip.m<p>4").unwrap();
        assert!(!c.to_string_lossy().contains('<'), "{c:?}");
    }
}
