//! `GET /api/events`: Server-Sent Events. Each stream starts with a
//! `hello` (the jobs now and the GPU history), then follows `job`
//! (a job's state changed: the whole job), `progress` (a running job's
//! frames, fps, ETA), `deleted`, `gpu` (one sample per GPU) and `note`. A
//! client that falls behind gets `lagged` and should reload the list. The
//! stream ends when the server stops.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::error::ApiError;

pub async fn stream(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    let rx = app.live.subscribe();
    let jobs = app.db.run(|q| q.jobs()).await?;
    let views: Vec<_> = jobs
        .iter()
        .rev()
        .take(200)
        .map(|r| crate::view::job(&app.live, r))
        .collect();
    let hello = json!({
        "jobs": views,
        "gpu": app.live.gpu_samples(),
        "workers": app.workers,
    });
    let first = SseEvent::default().event("hello").data(hello.to_string());
    let state = (rx, app, Some(first));
    let events = stream::unfold(state, |(mut rx, app, first)| async move {
        if let Some(ev) = first {
            return Some((Ok::<_, Infallible>(ev), (rx, app, None)));
        }
        loop {
            if app.stop.load(Ordering::Relaxed) {
                return None;
            }
            match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                Err(_) => continue,
                Ok(Ok(ev)) => {
                    let out = SseEvent::default().event(ev.kind).data(ev.data);
                    return Some((Ok(out), (rx, app, None)));
                }
                Ok(Err(RecvError::Lagged(n))) => {
                    let out = SseEvent::default()
                        .event("lagged")
                        .data(json!({ "missed": n }).to_string());
                    return Some((Ok(out), (rx, app, None)));
                }
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /api/gpu`: the GPU samples of the last 15 minutes.
pub async fn gpu_history(State(app): State<Arc<App>>) -> impl IntoResponse {
    Json(json!({ "samples": app.live.gpu_samples() }))
}
