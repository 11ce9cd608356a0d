//! For the people who run the service: `/healthz` (the process answers),
//! `/readyz` (its store answers), `/metrics` (Prometheus text format).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::app::App;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    // Open to anyone (a probe carries no token): where the store is, and
    // why it fails, are told only by a server that needs no token.
    let open = app.config.token.is_none();
    let store = open.then(|| app.db.url().redacted());
    match app.db.run(|q| q.unfinished()).await {
        Ok(unfinished) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "store": store, "unfinished": unfinished })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not ready",
                "store": store,
                "error": open.then_some(e.message),
            })),
        ),
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut out = String::new();
    let counts = app.live.counts();
    let _ = writeln!(out, "# HELP vmatte_jobs Jobs in the store by state.");
    let _ = writeln!(out, "# TYPE vmatte_jobs gauge");
    for (state, n) in &counts {
        let _ = writeln!(out, "vmatte_jobs{{state=\"{state}\"}} {n}");
    }
    let running = app.live.running();
    let fps = running.iter().fold(0.0, |sum, p| sum + p.fps);
    let _ = writeln!(
        out,
        "# HELP vmatte_frames_per_second Frames per second of the jobs this process runs."
    );
    let _ = writeln!(out, "# TYPE vmatte_frames_per_second gauge");
    let _ = writeln!(out, "vmatte_frames_per_second {fps}");
    let _ = writeln!(
        out,
        "# HELP vmatte_jobs_in_process Jobs this process runs now."
    );
    let _ = writeln!(out, "# TYPE vmatte_jobs_in_process gauge");
    let _ = writeln!(out, "vmatte_jobs_in_process {}", running.len());
    let _ = writeln!(
        out,
        "# HELP vmatte_store_up Whether the last poll reached the job store."
    );
    let _ = writeln!(out, "# TYPE vmatte_store_up gauge");
    let _ = writeln!(out, "vmatte_store_up {}", u8::from(app.live.store_ok()));
    // The latest sample of each GPU.
    let mut latest = std::collections::BTreeMap::new();
    for s in app.live.gpu_samples() {
        latest.insert(s.gpu, s);
    }
    type Pick = fn(&vmatte_gpu::GpuSample) -> Option<f64>;
    let gauges: [(&str, &str, Pick); 5] = [
        (
            "vmatte_gpu_utilization_percent",
            "Percent of time a kernel ran.",
            |s| s.util_pct,
        ),
        ("vmatte_gpu_memory_used_bytes", "GPU memory in use.", |s| {
            s.mem_used_mib.map(|m| m * 1048576.0)
        }),
        ("vmatte_gpu_memory_total_bytes", "GPU memory in all.", |s| {
            s.mem_total_mib.map(|m| m * 1048576.0)
        }),
        ("vmatte_gpu_temperature_celsius", "GPU temperature.", |s| {
            s.temp_c
        }),
        ("vmatte_gpu_power_watts", "GPU power draw.", |s| s.power_w),
    ];
    for (name, help, pick) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in latest.values() {
            if let Some(v) = pick(s) {
                let _ = writeln!(out, "{name}{{gpu=\"{}\"}} {v}", s.gpu);
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
