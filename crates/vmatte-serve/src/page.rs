//! The web page: one HTML file, its script and its styles, embedded in the
//! binary (no Node.js, no external requests).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../assets/index.html");
/// (name, content type, content)
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../assets/icon.svg"),
    ),
];

fn with_policy(response: Response) -> Response {
    let mut response = response;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; \
             style-src 'self'; script-src 'self'; connect-src 'self'",
        ),
    );
    response
}

pub async fn index() -> Response {
    with_policy(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response())
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => with_policy(
            (
                [
                    (header::CONTENT_TYPE, *kind),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                *body,
            )
                .into_response(),
        ),
        None => crate::error::ApiError::new(StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

pub async fn favicon() -> Response {
    let icon = ASSETS[2].2;
    ([(header::CONTENT_TYPE, "image/svg+xml")], icon).into_response()
}
