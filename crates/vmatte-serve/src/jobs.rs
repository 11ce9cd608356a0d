//! Jobs as handlers find and make them: a path's id, the row, a
//! server-side path confined to the allowed folders, and submission.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use vmatte_engine::spec::JobSpec;
use vmatte_jobs::queue::{NewJob, Submitted};
use vmatte_jobs::{JobRow, JobState};
use vmatte_pipeline::{Background, Rgb};

use crate::app::App;
use crate::error::ApiError;
use crate::view;

/// A job id from the path: a number, else 404 like any job that is not.
pub fn job_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job '{text}': job ids are numbers; GET /api/jobs lists them"),
        )
    })
}

/// The job `id`, or 404.
pub async fn row(app: &App, id: i64) -> Result<JobRow, ApiError> {
    app.db
        .run(move |q| q.job(id))
        .await?
        .ok_or_else(|| ApiError::not_found(id))
}

fn outside(roots: &[PathBuf], path: &Path) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        if roots.is_empty() {
            format!(
                "{}: server-side paths are off on this server (it takes uploads); \
                 its operator can allow folders",
                path.display()
            )
        } else {
            format!(
                "{}: outside the folders this server may read ({})",
                path.display(),
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    )
    .field("path")
}

/// `path` names a place under one of `roots` as written: absolute, no
/// `..`; 403 otherwise.
pub fn confine_lexically(roots: &[PathBuf], path: &Path) -> Result<(), ApiError> {
    let inside = path.is_absolute()
        && !path.components().any(|c| c == Component::ParentDir)
        && roots.iter().any(|r| path.starts_with(r));
    if inside {
        Ok(())
    } else {
        Err(outside(roots, path))
    }
}

/// `path` inside one of `roots`, resolved: no `..` out of it, no symbolic
/// link out of it; 403 otherwise. A path outside is refused before it is
/// looked at, so a refusal never tells whether a file exists there.
pub fn confine(roots: &[PathBuf], path: &Path) -> Result<PathBuf, ApiError> {
    confine_lexically(roots, path)?;
    match std::fs::canonicalize(path) {
        Ok(real) if roots.iter().any(|r| real.starts_with(r)) => Ok(real),
        Ok(_) => Err(outside(roots, path)),
        Err(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: not found; check the path", path.display()),
        )
        .field("path")),
    }
}

/// A request's options as the job they ask for: its background confined
/// first (a path is refused before it is looked at, so a refusal never
/// tells whether a file exists), then the front end's checks, off the
/// async threads (they may read the weights).
pub async fn resolve(app: &Arc<App>, options: &Map<String, Value>) -> Result<JobSpec, ApiError> {
    let background = |e: ApiError| ApiError {
        field: Some("background".into()),
        ..e
    };
    match options.get("background") {
        None | Some(Value::Null) => {}
        Some(Value::String(b)) => {
            if b.parse::<Rgb>().is_err() {
                confine_lexically(&app.config.allow_roots, Path::new(b)).map_err(background)?;
            }
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "background is a colour (#RRGGBB, R,G,B, a name) or a file's path, as a string",
            )
            .field("background"))
        }
    }
    // MatAnyone's masks are files on the server too: the same rule.
    for (field, path) in mask_paths(options) {
        confine_lexically(&app.config.allow_roots, Path::new(&path)).map_err(|e| ApiError {
            field: Some(field.into()),
            ..e
        })?;
    }
    let (app2, options2) = (app.clone(), options.clone());
    let spec = tokio::task::spawn_blocking(move || app2.resolver.resolve(&options2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    if let Some(m) = &spec.settings.matanyone {
        let named = [
            ("mask", m.mask.file.as_ref()),
            ("mask_dir", m.mask.dir.as_ref()),
        ]
        .into_iter()
        .filter_map(|(f, p)| Some((f, p?)))
        .chain(m.mask_at.iter().map(|at| ("mask_at", &at.file)));
        for (field, path) in named {
            if options.contains_key(field) {
                confine(&app.config.allow_roots, path).map_err(|e| ApiError {
                    field: Some(field.into()),
                    ..e
                })?;
            }
        }
    }
    // The server's own background is its operator's; one a request names
    // must lie under the allowed folders, links resolved.
    if options.contains_key("background") {
        if let Background::Media(path) = &spec.settings.background {
            confine(&app.config.allow_roots, path).map_err(background)?;
        }
    }
    Ok(spec)
}

/// The server paths a request's MatAnyone options name, by field: `mask`
/// (unless `auto`), `mask_dir`, and the files of `mask_at`'s `FRAME=FILE`s.
fn mask_paths(options: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(Value::String(m)) = options.get("mask") {
        if m != "auto" {
            out.push(("mask", m.clone()));
        }
    }
    if let Some(Value::String(d)) = options.get("mask_dir") {
        out.push(("mask_dir", d.clone()));
    }
    let at = match options.get("mask_at") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    for item in at {
        if let Some((_, file)) = item.split_once('=') {
            out.push(("mask_at", file.to_string()));
        }
    }
    out
}

/// Resolves the options, queues `input`, remembers the webhook: 201 with
/// the job when queued, 200 when the job was already there.
pub async fn submit(
    app: &Arc<App>,
    input: PathBuf,
    spec: JobSpec,
    webhook: Option<&str>,
) -> Result<Response, ApiError> {
    if let Some(url) = webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "webhook_url '{}' is not an http:// or https:// address",
                    crate::error::one_line(url)
                ),
            )
            .field("webhook_url"));
        }
    }
    let (settings_json, settings_id) = spec.stored();
    let outdir = app.config.outdir.clone();
    let max_attempts = app.config.max_attempts;
    let path = input.clone();
    let identity = spec.clone();
    let content = tokio::task::spawn_blocking(move || identity.content_id(&path))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{}: cannot read ({e}); check the file", input.display()),
            )
        })?;
    let sub = app
        .db
        .run(move |q| {
            q.submit(&NewJob {
                input: &input,
                outdir: &outdir,
                content_id: &content,
                settings_id: &settings_id,
                settings_json: &settings_json,
                max_attempts,
                retry_failed: false,
            })
        })
        .await?;
    // Past this point nothing fails: the job exists, and its upload (if
    // any) is its input.
    let view = view::job(&app.live, &sub.job);
    let mut warning = None;
    if let Some(url) = webhook {
        match app.webhooks.register(sub.job.id, url) {
            // A job that had already ended (known content) is told now.
            Ok(()) if matches!(sub.job.state, JobState::Done | JobState::Failed) => {
                app.webhooks.ended(sub.job.id, &view);
            }
            Ok(()) => {}
            Err(e) => warning = Some(format!("the webhook will not be called: {e}")),
        }
    }
    let status = match sub.submitted {
        Submitted::Queued | Submitted::Requeued => StatusCode::CREATED,
        Submitted::Known | Submitted::Copy => StatusCode::OK,
    };
    let body = json!({
        "submitted": sub.submitted,
        "copy": sub.copy.as_ref().map(|c| json!({"id": c.id, "name": c.safe_name})),
        "job": view,
        "warning": warning,
    });
    Ok((
        status,
        [(header::LOCATION, format!("/api/jobs/{}", sub.job.id))],
        Json(body),
    )
        .into_response())
}
