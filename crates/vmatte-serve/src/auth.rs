//! The token check. With a token set, every request but the health probes
//! and the page's static files carries it: `Authorization: Bearer TOKEN`,
//! or `?token=TOKEN` where a browser cannot set headers (event streams,
//! `<video src>`, download links).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::error::ApiError;

/// Paths anyone may fetch: probes, and the page (which holds no data and
/// asks for the token itself).
fn open_path(path: &str) -> bool {
    matches!(path, "/" | "/healthz" | "/readyz" | "/favicon.ico") || path.starts_with("/assets/")
}

/// Without a token the server listens on loopback only; then a request
/// must name a loopback host (a page on another site that rebinds its DNS
/// name to 127.0.0.1 names its own), and a request that changes something
/// must come from a page of this server when it comes from a page at all
/// (a browser sends `Origin`), so another site cannot post to it.
fn local_request(request: &Request) -> Result<(), ApiError> {
    let host_of = |h: &str| -> String {
        let h = h.trim();
        match h.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => h.rsplit_once(':').map_or(h, |(host, _)| host).to_string(),
        }
    };
    let loopback = |h: &str| {
        let host = host_of(h).to_ascii_lowercase();
        host == "localhost"
            || host.ends_with(".localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !host.is_empty() && !loopback(host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this server answers requests for this machine only, not for '{}'; \
                 give it a token to serve other hosts",
                crate::error::one_line(host)
            ),
        ));
    }
    // A browser says when a page of another site asks (even for a video
    // or a link): nothing here is for other sites.
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if cross_site {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a page of another site may not use this server",
        ));
    }
    let changes = !matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if changes && (origin_host != host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a page of another site may not change jobs here",
            ));
        }
    }
    Ok(())
}

pub async fn check(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(token) = &app.config.token else {
        return match local_request(&request) {
            Ok(()) => next.run(request).await,
            Err(e) => e.into_response(),
        };
    };
    if open_path(request.uri().path()) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
        .map(|t| t.trim().as_bytes().to_vec());
    // A link carries the token for reading only: a leaked download link
    // must not change jobs.
    let reads = matches!(request.method().as_str(), "GET" | "HEAD");
    let query = request.uri().query().filter(|_| reads).and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(|t| percent_decode(t.as_bytes()))
    });
    let given = bearer.or(query);
    if given.as_deref().is_some_and(|g| token.matches(g)) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this server needs its token: send 'Authorization: Bearer TOKEN' (or ?token=TOKEN)",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// A query value decoded: `+` is a space, `%XX` a byte (a `+` written as
/// `%2B` stays a `+`, since spaces are replaced first).
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = s
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    vmatte_jobs::queue::percent_decode(&spaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode(b"a%2Fb+c"), b"a/b c");
        assert_eq!(percent_decode(b"%zz%"), b"%zz%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"a%2Bb"), b"a+b");
    }
}
