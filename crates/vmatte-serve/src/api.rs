//! The router, and the job endpoints: create (by upload, see
//! [`upload`](crate::upload), or by a server-side path), list, get, cancel,
//! retry and delete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use vmatte_jobs::queue::JobQueue;
use vmatte_jobs::{JobRow, JobState};

use crate::app::App;
use crate::error::ApiError;
use crate::jobs::{confine, job_id, resolve, row, submit};
use crate::{auth, events, files, openapi, ops, page, preview, upload, view};

/// Bodies of requests other than uploads are small.
const JSON_LIMIT: usize = 1 << 20;

pub fn router(app: Arc<App>) -> Router {
    let upload_limit = usize::try_from(app.config.max_upload)
        .unwrap_or(usize::MAX)
        .saturating_add(JSON_LIMIT);
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{file}", get(page::asset))
        .route("/favicon.ico", get(page::favicon))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/events", get(events::stream))
        .route("/api/gpu", get(events::gpu_history))
        .route(
            "/api/jobs",
            get(list)
                .post(create)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/jobs/{id}", get(get_one).delete(delete))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/jobs/{id}/retry", post(retry))
        .route("/api/jobs/{id}/outputs/{kind}", get(files::output))
        .route("/api/jobs/{id}/preview/{kind}", get(preview::get))
        .route("/api/jobs/{id}/input", get(files::input))
        .route("/api/jobs/{id}/log", get(files::log))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), auth::check))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; GET /api/openapi.json lists them",
    )
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn number(name: &str, text: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match text {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::bad(format!(
                "{name} must be a whole number from 0 to {max}, not '{t}'"
            ))
            .field(name)),
        },
    }
}

async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let states: Vec<JobState> = match query.state.as_deref() {
        None | Some("") => vec![],
        Some(list) => list
            .split(',')
            .map(|s| {
                JobState::parse(s).ok_or_else(|| {
                    ApiError::bad(format!(
                        "state '{s}' is not one of queued, running, done, failed"
                    ))
                    .field("state")
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = number("limit", query.limit.as_deref(), 100, 1000)?;
    let offset = number("offset", query.offset.as_deref(), 0, u32::MAX as usize)?;
    let rows = app.db.run(|q| q.jobs()).await?;
    let matching: Vec<&JobRow> = rows
        .iter()
        .rev()
        .filter(|r| states.is_empty() || states.contains(&r.state))
        .collect();
    let jobs: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| view::job(&app.live, r))
        .collect();
    Ok(Json(json!({
        "jobs": jobs,
        "total": matching.len(),
        "offset": offset,
        "limit": limit,
    })))
}

async fn get_one(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = row(&app, job_id(&id)?).await?;
    Ok(Json(view::job(&app.live, &row)))
}

async fn cancel(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let refusal = |id, state| format!("job {id} is {state}; nothing to cancel (DELETE removes it)");
    transition(&app, &id, JobState::Failed, refusal, |q, id| {
        q.cancel(id, "cancelled over HTTP")
    })
    .await
}

async fn retry(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let refusal = |id, state| format!("job {id} is {state}; only failed jobs are retried");
    transition(&app, &id, JobState::Queued, refusal, |q, id| q.retry(id)).await
}

/// Applies `change` to job `id` (the store changes only a job in a state it
/// may leave); 409 with `refusal` when the job did not end up `to`.
async fn transition(
    app: &App,
    id: &str,
    to: JobState,
    refusal: impl Fn(i64, JobState) -> String,
    change: impl FnOnce(&mut dyn JobQueue, i64) -> vmatte_jobs::Result<Option<JobRow>> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(id)?;
    let before = row(app, id).await?;
    let after = app
        .db
        .run(move |q| change(q, id))
        .await?
        .ok_or_else(|| ApiError::not_found(id))?;
    if after.state != to || before.state == to {
        return Err(ApiError::conflict(refusal(id, before.state)));
    }
    Ok(Json(view::job(&app.live, &after)))
}

/// Removes the job, its copies, their outputs and logs, and its upload.
async fn delete(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let before = row(&app, id).await?;
    // A running job is cancelled first: its worker sees its lease refused
    // and deletes what it was making.
    if matches!(before.state, JobState::Queued | JobState::Running) {
        app.db
            .run(move |q| q.cancel(id, "deleted over HTTP"))
            .await?;
    }
    let copies = app.db.run(move |q| q.copies(Some(id))).await?;
    // The row as it was deleted: a job that ended meanwhile has its outputs.
    let gone = app
        .db
        .run(move |q| q.delete(id))
        .await?
        .ok_or_else(|| ApiError::not_found(id))?;
    if gone.state == JobState::Running {
        return Err(ApiError::conflict(format!(
            "job {id} was taken by a worker while being deleted; try again"
        )));
    }
    app.webhooks.forget(id);
    let uploads = upload::folder(&app.config.outdir);
    let outdir = app.outdir_of(&gone);
    let mut paths: Vec<PathBuf> = gone.outputs.values().cloned().collect();
    for c in &copies {
        paths.extend(c.outputs.values().cloned());
    }
    for kind in gone.outputs.keys() {
        paths.push(preview::cached(&outdir, id, kind));
    }
    for name in std::iter::once(&gone.safe_name).chain(copies.iter().map(|c| &c.safe_name)) {
        for ext in ["log", "jsonl"] {
            paths.push(outdir.join("logs").join(format!("{name}.{ext}")));
        }
    }
    for input in std::iter::once(&gone.input_path).chain(copies.iter().map(|c| &c.input_path)) {
        if input.starts_with(&uploads) {
            paths.push(input.clone());
        }
    }
    // Only what lies in the job's own folder is removed, whatever the
    // store says.
    paths.retain(|p| files::within(p, &outdir));
    let removed = tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        for p in paths {
            let gone = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if gone.is_ok() {
                removed.push(p.file_name().map(|n| n.to_string_lossy().into_owned()));
            }
        }
        removed
    })
    .await
    .unwrap_or_default();
    Ok(Json(json!({ "deleted": id, "removed": removed })))
}

/// `POST /api/jobs`: multipart (an upload) or JSON (a server-side path).
async fn create(State(app): State<Arc<App>>, headers: HeaderMap, request: Request) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let result = if content_type.starts_with("multipart/form-data") {
        upload::create(app, &headers, request).await
    } else if content_type.starts_with("application/json") {
        match axum::body::to_bytes(request.into_body(), JSON_LIMIT).await {
            Ok(body) => by_path(app, body).await,
            Err(_) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a JSON job request is at most 1 MiB; upload files as multipart/form-data",
            )),
        }
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send multipart/form-data (field 'file', optional 'options', 'webhook_url' and 'mask') \
             or application/json ({\"path\": ..., \"options\": {...}})",
        ))
    };
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathRequest {
    path: String,
    #[serde(default)]
    options: Map<String, Value>,
    webhook_url: Option<String>,
}

async fn by_path(app: Arc<App>, body: Bytes) -> Result<Response, ApiError> {
    let request: PathRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the request is not a job request ({e}); send {{\"path\": \"...\", \"options\": {{...}}}}"),
        )
    })?;
    let input = confine(&app.config.allow_roots, Path::new(&request.path))?;
    if !input.is_file() && !input.is_dir() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: not a file or folder of images", request.path),
        )
        .field("path"));
    }
    let spec = resolve(&app, &request.options).await?;
    submit(&app, input, spec, request.webhook_url.as_deref()).await
}
