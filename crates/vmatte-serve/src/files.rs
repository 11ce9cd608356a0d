//! Downloads: a job's outputs (files with HTTP Range, so players can seek;
//! image sequences as a zip streamed while it is made), its input and its
//! log.

use std::io::{SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

use crate::app::App;
use crate::error::ApiError;
use vmatte_jobs::JobRow;

use crate::jobs::{job_id, row};
use crate::zipstream::ZipStream;

type JobPath = axum::extract::Path<(String, String)>;

/// Job `id`'s output of `kind`, with the job and its folder: 404 when it
/// has none, or when the store names a file outside the job's folder.
pub async fn job_output(
    app: &App,
    id: &str,
    kind: &str,
) -> Result<(JobRow, PathBuf, PathBuf), ApiError> {
    let job = row(app, job_id(id)?).await?;
    let Some(path) = job.outputs.get(kind).cloned() else {
        let kinds: Vec<&str> = job.outputs.keys().map(String::as_str).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            if kinds.is_empty() {
                format!("job {} has no outputs yet (it is {})", job.id, job.state)
            } else {
                format!(
                    "job {} has no '{kind}' output; it has {}",
                    job.id,
                    kinds.join(", ")
                )
            },
        ));
    };
    let outdir = app.outdir_of(&job);
    if !within(&path, &outdir) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "job {}'s '{kind}' output is not in its output folder; not served",
                job.id
            ),
        ));
    }
    Ok((job, path, outdir))
}

pub async fn output(
    State(app): State<Arc<App>>,
    axum::extract::Path((id, kind)): JobPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (job, path, _) = job_output(&app, &id, &kind).await?;
    if path.is_dir() {
        let name = format!("{}.{kind}.zip", job.safe_name);
        return Ok(zip_folder(path, &name));
    }
    file(&path, &headers, None).await
}

pub async fn input(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = row(&app, job_id(&id)?).await?;
    // Only an upload, or a file under the folders this server may read,
    // whatever the store says the input is.
    let uploads = crate::upload::folder(&app.config.outdir);
    let readable = job.input_path.is_file()
        && (within(&job.input_path, &uploads)
            || crate::jobs::confine(&app.config.allow_roots, &job.input_path).is_ok());
    if !readable {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "job {}'s input is not a file this server serves (an upload, or under its \
                 allowed folders)",
                job.id
            ),
        ));
    }
    file(&job.input_path, &headers, None).await
}

pub async fn log(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = row(&app, job_id(&id)?).await?;
    let path = app
        .outdir_of(&job)
        .join("logs")
        .join(format!("{}.log", job.safe_name));
    // A job that has not started has an empty log, not a missing one.
    if !path.is_file() {
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            String::new(),
        )
            .into_response());
    }
    file(&path, &headers, Some("text/plain; charset=utf-8")).await
}

/// Whether `path` lies in `dir` as written and as resolved (no `..`, no
/// link out of it).
pub fn within(path: &Path, dir: &Path) -> bool {
    let lexical = path.starts_with(dir)
        && !path
            .components()
            .any(|c| c == std::path::Component::ParentDir);
    let real_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let resolved = match std::fs::canonicalize(path) {
        Ok(real) => real.starts_with(&real_dir),
        // Gone already: nothing to follow.
        Err(_) => true,
    };
    lexical && resolved
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("mp4" | "m4v") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mov") => "video/quicktime",
        Some("mkv") => "video/x-matroska",
        Some("png") => "image/png",
        Some("tif" | "tiff") => "image/tiff",
        Some("exr") => "image/x-exr",
        Some("log" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The byte range a `Range: bytes=...` header asks of `len` bytes, `Err`
/// when it cannot be satisfied. A list of ranges is answered with the
/// whole file (RFC 9110 lets a server ignore Range; players ask for one).
pub fn range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let first = spec.trim();
    let (a, b) = first.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Err(()),
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.checked_sub(1).ok_or(())?)
        }
        (s, "") => (s.parse().map_err(|_| ())?, len.checked_sub(1).ok_or(())?),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().map_err(|_| ())?, e.parse().map_err(|_| ())?);
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// A file, whole or the range asked for.
pub async fn file(
    path: &Path,
    headers: &HeaderMap,
    kind: Option<&'static str>,
) -> Result<Response, ApiError> {
    let mut f = tokio::fs::File::open(path).await.map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{}: cannot open ({e})",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
        )
    })?;
    let meta = f
        .metadata()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let len = meta.len();
    let modified = meta.modified().ok().map(httpdate::fmt_http_date);
    // `If-Range`: a range of the file the client has, else all of it.
    let same_file = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| Some(v) == modified.as_deref());
    let asked = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| same_file)
        .map(|v| range(v, len));
    let mut response = match asked {
        Some(Err(())) => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range asked for is not within the file's {len} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
        Some(Ok(Some((start, end)))) => {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            f.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let body = Body::from_stream(ReaderStream::new(f.take(end - start + 1)));
            let mut r = (StatusCode::PARTIAL_CONTENT, body).into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            r
        }
        _ => {
            let mut r = Body::from_stream(ReaderStream::new(f)).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
    };
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(v) = modified.and_then(|m| HeaderValue::from_str(&m).ok()) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.unwrap_or_else(|| content_type(path))),
    );
    if let Some(name) = path.file_name() {
        h.insert(
            header::CONTENT_DISPOSITION,
            disposition("inline", &name.to_string_lossy()),
        );
    }
    Ok(response)
}

/// Writes into the response body as it is made.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buf()
    }
}

/// The files of `dir` (an image sequence), stored (PNG and EXR are
/// compressed already) in a zip made while it is sent.
fn zip_folder(dir: PathBuf, name: &str) -> Response {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let made = (|| -> Result<(), String> {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let mut zip = ZipStream::new(writer);
            for f in files {
                let entry = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let mut src = std::fs::File::open(&f).map_err(|e| e.to_string())?;
                zip.add(&entry, &mut src).map_err(|e| e.to_string())?;
            }
            zip.finish().map(drop).map_err(|e| e.to_string())
        })();
        if let Err(e) = made {
            // The client sees a broken download rather than a short zip.
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition("attachment", name));
    r
}

/// `Content-Disposition` naming `name`: an ASCII fallback (quotes,
/// backslashes and anything else unsafe replaced) and the exact name
/// percent-encoded as UTF-8 (RFC 6266, RFC 8187).
fn disposition(kind: &str, name: &str) -> HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=5-1", 100), Err(()));
        assert_eq!(range("bytes=x-1", 100), Err(()));
        assert_eq!(range("bytes=0-0", 0), Err(()));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(
            range("bytes=0-1, 5-9", 100),
            Ok(None),
            "several: the whole file"
        );
    }
}
