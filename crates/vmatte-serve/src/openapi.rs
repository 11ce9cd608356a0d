//! `GET /api/openapi.json`: the API described as OpenAPI 3.1 (kept beside
//! the page's files; the conformance run checks the server against it).

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("../assets/openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    /// Every route the router serves is in the document, and it parses.
    #[test]
    fn document_parses_and_names_every_path() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/openapi.json",
            "/api/gpu",
            "/api/events",
            "/api/jobs",
            "/api/jobs/{id}",
            "/api/jobs/{id}/cancel",
            "/api/jobs/{id}/retry",
            "/api/jobs/{id}/outputs/{kind}",
            "/api/jobs/{id}/input",
            "/api/jobs/{id}/preview/{kind}",
            "/api/jobs/{id}/log",
        ] {
            assert!(paths.contains_key(p), "{p} missing from openapi.json");
        }
    }
}
