//! `vmatte serve` over real HTTP on loopback: every endpoint, the
//! refusals (each one JSON line naming its field), the token, the upload
//! limits, a full disk, cancel and retry, webhooks, a kill -9 in the middle
//! of a job, and `vmatte watch`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::serve::{get, multipart, post_json, request, state_is, upload, wait_job, Server};
use support::{list_dir, make_clip};
use vmatte_media::Rational;

const MINUTE: Duration = Duration::from_secs(60);

fn clip(dir: &Path, name: &str, frames: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    make_clip(&path, 256, 144, frames, Rational::new(25, 1));
    path
}

/// Follows /api/events on a thread; the names of the events seen.
fn follow_events(url: String) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new().build();
        let Ok(resp) = agent.get(&url).call() else {
            return;
        };
        for line in BufReader::new(resp.into_reader())
            .lines()
            .map_while(Result::ok)
        {
            if let Some(name) = line.strip_prefix("event: ") {
                sink.lock().unwrap().push(name.to_string());
            }
        }
    });
    seen
}

#[test]
fn jobs_over_http_from_upload_to_delete() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let video = clip(&inputs, "interview.mp4", 16);
    let out = dir.path().join("out");
    let server = Server::start(
        &out,
        &[
            "--allow-root",
            inputs.to_str().unwrap(),
            "--max-frames",
            "12",
        ],
        &[],
    );

    // Probes, metrics, the document, the page.
    assert_eq!(get(&server.url("/healthz")).json()["status"], "ok");
    assert_eq!(get(&server.url("/readyz")).json()["status"], "ready");
    let doc = get(&server.url("/api/openapi.json")).json();
    assert_eq!(doc["openapi"], "3.1.0");
    let page = get(&server.url("/"));
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Drop videos here"));
    for asset in ["/assets/app.js", "/assets/app.css", "/assets/icon.svg"] {
        let r = get(&server.url(asset));
        assert_eq!(r.status, 200, "{asset}");
        // Nothing the page loads comes from elsewhere (an SVG names its
        // namespace by URL, which is not a request).
        let text = r.text().replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset}"
        );
    }
    assert!(!page.text().contains("http://") && !page.text().contains("https://"));

    let events = follow_events(server.url("/api/events"));
    std::thread::sleep(Duration::from_millis(300));

    // An upload, and the same video named on the server (a copy of it).
    let up = upload(&server, &video, "My Interview (final).mp4", "{}");
    assert_eq!(up.status, 201, "{}", up.text());
    let job = up.json()["job"].clone();
    let id = job["id"].as_i64().unwrap();
    assert_eq!(
        up.header("location"),
        Some(format!("/api/jobs/{id}").as_str())
    );
    let uploaded = list_dir(&out.join("uploads"));
    assert_eq!(uploaded.len(), 1, "{uploaded:?}");
    assert!(
        !uploaded[0].contains(' ') && !uploaded[0].contains('('),
        "{uploaded:?}"
    );
    let again = upload(&server, &video, "again.mp4", "{}");
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["job"]["id"], id);
    let by_path = post_json(
        &server.url("/api/jobs"),
        &json!({ "path": video, "options": {} }),
    );
    assert_eq!(by_path.status, 200, "{}", by_path.text());
    assert_eq!(by_path.json()["submitted"], "copy");

    // A PNG sequence job, by path.
    let png = post_json(
        &server.url("/api/jobs"),
        &json!({ "path": video, "options": { "format": "png", "max_frames": 5, "outputs": ["alpha"] } }),
    );
    assert_eq!(png.status, 201, "{}", png.text());
    let png_id = png.json()["job"]["id"].as_i64().unwrap();

    let done = wait_job(&server, id, 2 * MINUTE, state_is("done"));
    assert_eq!(done["frames_done"], 12, "{done}");
    assert_eq!(done["frames_total"], 12, "{done}");
    assert!(done["fps"].as_f64().unwrap() > 0.0);
    assert_eq!(
        done["links"]["preview_alpha"],
        format!("/api/jobs/{id}/preview/alpha")
    );
    wait_job(&server, png_id, 2 * MINUTE, state_is("done"));

    // Downloads: whole, a range, beyond the end.
    let alpha_file = out.join(format!("{}.alpha.mp4", done["name"].as_str().unwrap()));
    let on_disk = std::fs::read(&alpha_file).unwrap();
    let whole = get(&server.url(&format!("/api/jobs/{id}/outputs/alpha")));
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, on_disk);
    assert_eq!(whole.header("content-type"), Some("video/mp4"));
    let part = request(
        "GET",
        &server.url(&format!("/api/jobs/{id}/outputs/alpha")),
        &[("range", "bytes=10-109")],
        None,
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, on_disk[10..110]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-109/{}", on_disk.len()).as_str())
    );
    let beyond = request(
        "GET",
        &server.url(&format!("/api/jobs/{id}/outputs/alpha")),
        &[("range", &format!("bytes={}-", on_disk.len()))],
        None,
    );
    beyond.refused(416, None);
    // If-Range: the range of the file the client has, else all of it.
    let modified = whole
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    let alpha_url = server.url(&format!("/api/jobs/{id}/outputs/alpha"));
    let same = request(
        "GET",
        &alpha_url,
        &[("range", "bytes=0-9"), ("if-range", &modified)],
        None,
    );
    assert_eq!(same.status, 206);
    let changed = request(
        "GET",
        &alpha_url,
        &[
            ("range", "bytes=0-9"),
            ("if-range", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
        None,
    );
    assert_eq!((changed.status, changed.body.len()), (200, on_disk.len()));
    let several = request("GET", &alpha_url, &[("range", "bytes=0-1,5-9")], None);
    assert_eq!(several.status, 200, "several ranges: the whole file");
    let input = get(&server.url(&format!("/api/jobs/{id}/input")));
    assert_eq!(input.body, std::fs::read(&video).unwrap());
    let log = get(&server.url(&format!("/api/jobs/{id}/log")));
    assert!(log.text().contains("status=done"), "{}", log.text());
    get(&server.url(&format!("/api/jobs/{id}/outputs/foreground"))).refused(404, None);

    // The sequence as a zip: every frame, byte for byte.
    let zip = get(&server.url(&format!("/api/jobs/{png_id}/outputs/alpha")));
    assert_eq!(zip.status, 200);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.body)).unwrap();
    assert_eq!(archive.len(), 5);
    let png_job = get(&server.url(&format!("/api/jobs/{png_id}"))).json();
    let folder = out.join(png_job["outputs"][0]["file"].as_str().unwrap());
    let first_name = archive.by_index(0).unwrap().name().to_string();
    let mut first = Vec::new();
    archive
        .by_index(0)
        .unwrap()
        .read_to_end(&mut first)
        .unwrap();
    assert_eq!(first, std::fs::read(folder.join(first_name)).unwrap());

    // Previews: an mp4 output is its own; a sequence gets a small H.264.
    let own = get(&server.url(&format!("/api/jobs/{id}/preview/alpha")));
    assert_eq!(own.body, on_disk);
    let made = get(&server.url(&format!("/api/jobs/{png_id}/preview/alpha")));
    assert_eq!(made.status, 200, "{}", made.text());
    assert_eq!(made.header("content-type"), Some("video/mp4"));
    let preview = dir.path().join("preview.mp4");
    std::fs::write(&preview, &made.body).unwrap();
    assert_eq!(support::decode_frames(&preview, 100).len(), 5);

    // Listing: filters and pages.
    let all = get(&server.url("/api/jobs")).json();
    assert_eq!(all["total"], 2);
    assert_eq!(all["jobs"][0]["id"], png_id, "newest first");
    let page = get(&server.url("/api/jobs?state=done&limit=1&offset=1")).json();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["id"], id);
    assert_eq!(
        get(&server.url("/api/jobs?state=failed")).json()["total"],
        0
    );

    // Metrics count the jobs (as the store's poller last saw them).
    let started = Instant::now();
    loop {
        let metrics = get(&server.url("/metrics")).text();
        if metrics.contains("vmatte_jobs{state=\"done\"} 2") {
            assert!(metrics.contains("vmatte_store_up 1"), "{metrics}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // What the events told.
    let seen = events.lock().unwrap().clone();
    for name in ["hello", "job", "progress"] {
        assert!(
            seen.iter().any(|s| s == name),
            "no '{name}' event in {seen:?}"
        );
    }

    // A job submitted over HTTP is a job of the store.
    let rows = support::status_rows(&out);
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");

    // Delete: the job, its copy's outputs, logs and upload go.
    let deleted = request("DELETE", &server.url(&format!("/api/jobs/{id}")), &[], None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    get(&server.url(&format!("/api/jobs/{id}"))).refused(404, None);
    assert!(!alpha_file.exists());
    assert!(
        list_dir(&out.join("uploads")).is_empty(),
        "{:?}",
        list_dir(&out.join("uploads"))
    );
    assert!(video.exists(), "a server-side input is never deleted");
    assert!(server.stop().success());
}

#[test]
fn refusals_are_one_json_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let video = clip(&inputs, "a.mp4", 4);
    let secret = dir.path().join("secret.mp4");
    std::fs::write(&secret, b"not yours").unwrap();
    std::os::unix::fs::symlink(&secret, inputs.join("link.mp4")).unwrap();
    let out = dir.path().join("out");
    let server = Server::start(
        &out,
        &[
            "--allow-root",
            inputs.to_str().unwrap(),
            "--no-workers",
            "--invert-alpha",
            "--crf",
            "20",
        ],
        &[],
    );
    let jobs = server.url("/api/jobs");
    let with = |options: Value| post_json(&jobs, &json!({ "path": video, "options": options }));

    // The server's own options are every job's defaults; a request changes
    // only what it names (and may turn a switch back off).
    let first = with(json!({ "no_audio": true }));
    let settings = &first.json()["job"]["settings"]["settings"];
    assert_eq!(settings["invert_alpha"], true, "{settings}");
    assert_eq!(settings["crf"], 20, "{settings}");
    assert_eq!(settings["no_audio"], true, "{settings}");
    let off = with(json!({ "invert_alpha": false, "crf": 30 }));
    let settings = &off.json()["job"]["settings"]["settings"];
    assert!(settings["invert_alpha"] != true, "{settings}");
    assert_eq!(settings["crf"], 30, "{settings}");
    for id in [&first, &off].map(|r| r.json()["job"]["id"].as_i64().unwrap()) {
        let r = request("DELETE", &server.url(&format!("/api/jobs/{id}")), &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let e = with(json!({ "crf": 99 })).refused(422, Some("crf"));
    assert!(e.contains("0..=63"), "{e}");
    with(json!({ "format": "gif" })).refused(422, Some("format"));
    with(json!({ "weights": "/etc/passwd" })).refused(422, Some("weights"));
    with(json!({ "outputs": { "a": 1 } })).refused(422, Some("outputs"));
    let e = with(json!({ "frames_per_batch": 4 })).refused(422, Some("frames_per_batch"));
    assert!(e.contains("--model gvm"), "{e}");
    with(json!({ "background": secret })).refused(403, Some("background"));
    // Outside the roots whether it exists or not, and never probed.
    with(json!({ "background": "/nowhere/plate.png" })).refused(403, Some("background"));
    with(json!({ "background": [secret] })).refused(422, Some("background"));
    with(json!({ "size": "100000", "model": "gvm" })).refused(422, Some("size"));
    post_json(&jobs, &json!({ "path": secret })).refused(403, Some("path"));
    post_json(&jobs, &json!({ "path": inputs.join("../secret.mp4") })).refused(403, Some("path"));
    post_json(&jobs, &json!({ "path": inputs.join("link.mp4") })).refused(403, Some("path"));
    post_json(&jobs, &json!({ "path": "relative.mp4" })).refused(403, Some("path"));
    post_json(&jobs, &json!({ "path": inputs.join("missing.mp4") })).refused(422, Some("path"));
    post_json(&jobs, &json!({ "nope": 1 })).refused(422, None);
    post_json(&jobs, &json!({ "path": video, "webhook_url": "ftp://x" }))
        .refused(422, Some("webhook_url"));
    request("POST", &jobs, &[], Some(("text/plain", b"hi".to_vec()))).refused(415, None);
    let (kind, body) = multipart(&[("options", "{}")], &[]);
    request("POST", &jobs, &[], Some((&kind, body))).refused(400, Some("file"));
    let (kind, body) = multipart(&[("options", "{\"crf\": 99}")], &[("file", "a.mp4", b"x")]);
    request("POST", &jobs, &[], Some((&kind, body))).refused(422, Some("crf"));
    let (kind, body) = multipart(&[], &[("file", "a.mp4", b"")]);
    request("POST", &jobs, &[], Some((&kind, body))).refused(422, Some("file"));
    // Past 64 KiB the options field is refused, not held (the answer may
    // come before the body is all sent: read it from the socket).
    let huge = format!("{{\"preset\": \"{}\"}}", "x".repeat(100_000));
    let (kind, body) = multipart(&[("options", &huge)], &[("file", "a.mp4", b"x")]);
    let status = raw_post(&server, &kind, &body);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Another site's page may not post here, nor a rebound host name.
    request(
        "POST",
        &jobs,
        &[("origin", "http://evil.example")],
        Some(("application/json", b"{}".to_vec())),
    )
    .refused(403, None);
    request("GET", &jobs, &[("host", "evil.example:80")], None).refused(403, None);
    request("GET", &jobs, &[("sec-fetch-site", "cross-site")], None).refused(403, None);
    assert_eq!(
        request("GET", &jobs, &[("sec-fetch-site", "same-origin")], None).status,
        200
    );

    // A job of the store whose input lies outside the roots: listed, but
    // its input is not served.
    support::submit_sqlite(&secret, &out, &[]);
    let listed = get(&jobs).json();
    let outside = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["input"] == "secret.mp4")
        .unwrap_or_else(|| panic!("{listed}"))["id"]
        .as_i64()
        .unwrap();
    get(&server.url(&format!("/api/jobs/{outside}/input"))).refused(404, None);
    assert!(list_dir(&out.join("uploads")).is_empty());

    get(&server.url("/api/jobs/999")).refused(404, None);
    get(&server.url("/api/jobs/abc")).refused(404, None);
    get(&server.url("/api/jobs/999/outputs/alpha")).refused(404, None);
    request("POST", &server.url("/api/jobs/999/cancel"), &[], None).refused(404, None);
    request("DELETE", &server.url("/api/jobs/999"), &[], None).refused(404, None);
    get(&server.url("/api/nothing")).refused(404, None);
    get(&server.url("/api/jobs?state=lost")).refused(400, Some("state"));
    get(&server.url("/api/jobs?limit=x")).refused(400, Some("limit"));

    // With no workers the job stays queued: retry refuses, cancel fails it,
    // cancel again refuses, retry queues it again.
    let id = with(json!({})).json()["job"]["id"].as_i64().unwrap();
    request(
        "POST",
        &server.url(&format!("/api/jobs/{id}/retry")),
        &[],
        None,
    )
    .refused(409, None);
    let c = request(
        "POST",
        &server.url(&format!("/api/jobs/{id}/cancel")),
        &[],
        None,
    );
    assert_eq!(c.json()["state"], "failed");
    assert_eq!(c.json()["error"], "cancelled over HTTP");
    request(
        "POST",
        &server.url(&format!("/api/jobs/{id}/cancel")),
        &[],
        None,
    )
    .refused(409, None);
    let r = request(
        "POST",
        &server.url(&format!("/api/jobs/{id}/retry")),
        &[],
        None,
    );
    assert_eq!(r.json()["state"], "queued", "{}", r.text());
    assert!(server.stop().success());
}

#[test]
fn a_token_guards_all_but_the_probes_and_uploads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();

    // Beyond loopback without a token: refused at start, in one line.
    let refused = support::vmatte(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    support::fails_in_one_line(&refused, "serve on 0.0.0.0", &["token"]);

    let server = Server::start(
        &out,
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "--max-upload",
            "64KiB",
            "--no-workers",
        ],
        &[],
    );
    let jobs = server.url("/api/jobs");
    get(&jobs).refused(401, None);
    request("GET", &jobs, &[("authorization", "Bearer wrong")], None).refused(401, None);
    request("GET", &server.url("/metrics"), &[], None).refused(401, None);
    get(&server.url("/api/events")).refused(401, None);
    let ok = request(
        "GET",
        &jobs,
        &[("authorization", "Bearer s3cret-token")],
        None,
    );
    assert_eq!(ok.status, 200);
    assert_eq!(get(&format!("{jobs}?token=s3cret-token")).status, 200);
    // A link's token reads; it does not change jobs.
    request(
        "DELETE",
        &format!("{}/api/jobs/1?token=s3cret-token", server.base),
        &[],
        None,
    )
    .refused(401, None);
    assert_eq!(get(&server.url("/healthz")).status, 200);
    let ready = get(&server.url("/readyz"));
    assert_eq!(ready.status, 200);
    assert!(ready.json()["store"].is_null(), "{}", ready.text());
    assert_eq!(
        get(&server.url("/")).status,
        200,
        "the page asks for the token itself"
    );

    // Too big: refused by its declared length, and while streaming.
    let auth = [("authorization", "Bearer s3cret-token")];
    let head = raw_head(
        &server,
        "POST /api/jobs HTTP/1.1\r\nauthorization: Bearer s3cret-token\r\n\
         content-type: multipart/form-data; boundary=b\r\ncontent-length: 3000000000\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let just_over = vec![7u8; 64 * 1024 + 1];
    let (kind, body) = multipart(&[], &[("file", "over.mp4", &just_over)]);
    request("POST", &jobs, &auth, Some((&kind, body))).refused(413, Some("file"));
    assert!(
        list_dir(&out.join("uploads")).is_empty(),
        "{:?}",
        list_dir(&out.join("uploads"))
    );

    // An upload that breaks off half-way leaves no file and no job.
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    let (kind, body) = multipart(&[], &[("file", "half.mp4", &vec![1u8; 60_000])]);
    write!(
        sock,
        "POST /api/jobs HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer s3cret-token\r\n\
         content-type: {kind}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    sock.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(sock);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        list_dir(&out.join("uploads")).is_empty(),
        "{:?}",
        list_dir(&out.join("uploads"))
    );
    let listed = request("GET", &jobs, &auth, None).json();
    assert_eq!(listed["total"], 0, "{listed}");
    assert!(server.stop().success());
}

/// Sends `head` (a request without its body) and reads the answer's head:
/// what a server says before taking a body.
fn raw_head(server: &Server, head: &str) -> String {
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = head.replacen("\r\n", &format!("\r\nhost: {addr}\r\n"), 1);
    sock.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(sock);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    status
}

/// POSTs `body` to /api/jobs over a plain socket, carrying on if the
/// server stops reading; the answer as text (status line, headers, body).
fn raw_post(server: &Server, kind: &str, body: &[u8]) -> String {
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /api/jobs HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: {kind}\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes());
    let _ = sock.write_all(body);
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_full_disk_fails_the_upload_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let _disk = support::small_disk(&out.join("uploads"), "512k");
    let server = Server::start(&out, &["--no-workers"], &[]);
    let (kind, body) = multipart(&[], &[("file", "big.mp4", &vec![3u8; 2 << 20])]);
    let answer = raw_post(&server, &kind, &body);
    assert!(answer.starts_with("HTTP/1.1 507"), "{answer}");
    assert!(answer.contains("disk is full"), "{answer}");
    assert!(
        list_dir(&out.join("uploads")).is_empty(),
        "{:?}",
        list_dir(&out.join("uploads"))
    );
    assert_eq!(get(&server.url("/api/jobs")).json()["total"], 0);
    // The server goes on.
    assert_eq!(get(&server.url("/readyz")).status, 200);
    assert!(server.stop().success());
}

#[test]
fn cancel_stops_a_running_job_and_retry_runs_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "long.mp4", 400);
    let out = dir.path().join("out");
    let server = Server::start(&out, &[], &[("VMATTE_JOB_LEASE_MS", "1200")]);
    let id = upload(&server, &video, "long.mp4", "{}").json()["job"]["id"]
        .as_i64()
        .unwrap();
    wait_job(&server, id, MINUTE, |j| {
        j["frames_done"].as_u64().unwrap_or(0) > 0
    });
    let c = request(
        "POST",
        &server.url(&format!("/api/jobs/{id}/cancel")),
        &[],
        None,
    );
    assert_eq!(c.status, 200, "{}", c.text());
    // The worker notices within a lease renewal and deletes what it made.
    let started = Instant::now();
    loop {
        let partials: Vec<String> = list_dir(&out)
            .into_iter()
            .filter(|n| n.contains(".partial"))
            .collect();
        if partials.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still writing {partials:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let job = get(&server.url(&format!("/api/jobs/{id}"))).json();
    assert_eq!(job["state"], "failed");
    assert!(job["outputs"].as_array().unwrap().is_empty());
    let log = get(&server.url(&format!("/api/jobs/{id}/log"))).text();
    assert!(log.contains("cancelled"), "{log}");

    let r = request(
        "POST",
        &server.url(&format!("/api/jobs/{id}/retry")),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    let done = wait_job(&server, id, 3 * MINUTE, state_is("done"));
    assert_eq!(done["frames_done"], 400);
    assert!(server.stop().success());
}

#[test]
fn a_restart_in_the_middle_of_a_job_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "long.mp4", 300);
    let short = clip(dir.path(), "short.mp4", 10);
    let out = dir.path().join("out");
    let lease = [("VMATTE_JOB_LEASE_MS", "1500")];
    let server = Server::start(&out, &[], &lease);
    let id = upload(&server, &video, "long.mp4", "{}").json()["job"]["id"]
        .as_i64()
        .unwrap();
    let queued = upload(&server, &short, "short.mp4", "{}").json()["job"]["id"]
        .as_i64()
        .unwrap();
    wait_job(&server, id, MINUTE, |j| {
        j["frames_done"].as_u64().unwrap_or(0) > 0
    });
    server.kill9();
    // Nothing under a final name for the job that was cut off.
    assert!(!list_dir(&out)
        .iter()
        .any(|n| n.starts_with("long.") && !n.contains(".partial")));

    let server = Server::start(&out, &[], &lease);
    let done = wait_job(&server, id, 3 * MINUTE, state_is("done"));
    assert_eq!(done["frames_done"], 300);
    assert_eq!(done["attempts"], 2, "{done}");
    wait_job(&server, queued, MINUTE, state_is("done"));
    support::no_partials(&out);
    assert!(server.stop().success());
}

/// A webhook receiver that answers 500 to the first call and 200 after;
/// the calls it got (headers, body).
/// Each call a receiver got: its head and its body.
type Calls = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn receiver() -> (String, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let sink = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let n = {
                let mut calls = sink.lock().unwrap();
                calls.push((head, body));
                calls.len()
            };
            let status = if n == 1 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, calls)
}

#[test]
fn webhooks_are_signed_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "a.mp4", 6);
    let out = dir.path().join("out");
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "hook-key").unwrap();
    let server = Server::start(
        &out,
        &["--webhook-secret-file", secret.to_str().unwrap()],
        &[],
    );
    let (url, calls) = receiver();
    let bytes = std::fs::read(&video).unwrap();
    let (kind, body) = multipart(
        &[("options", "{}"), ("webhook_url", &url)],
        &[("file", "a.mp4", &bytes)],
    );
    let r = request("POST", &server.url("/api/jobs"), &[], Some((&kind, body)));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["job"]["id"].as_i64().unwrap();
    wait_job(&server, id, 2 * MINUTE, state_is("done"));
    let started = Instant::now();
    while calls.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "webhook not retried: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "called again after it answered 200"
    );
    // The same video again with a webhook: the job is already done, so
    // the webhook is called at once.
    let (kind, body) = multipart(
        &[("options", "{}"), ("webhook_url", &url)],
        &[("file", "again.mp4", &bytes)],
    );
    let r = request("POST", &server.url("/api/jobs"), &[], Some((&kind, body)));
    assert_eq!(r.status, 200, "{}", r.text());
    let started = Instant::now();
    while calls.lock().unwrap().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not called for a done job"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls = calls.lock().unwrap().clone();
    for (head, body) in &calls {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-key").unwrap();
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("x-vmatte-signature: sha256={hex}")),
            "{head}"
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["event"], "job.done");
        assert_eq!(v["job"]["id"], id);
    }
    assert!(server.stop().success());
}

#[test]
fn watch_queues_each_video_once_its_copy_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("drop");
    std::fs::create_dir_all(watched.join("day1")).unwrap();
    let source = clip(dir.path(), "a.mp4", 8);
    let out = dir.path().join("out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmatte"));
    cmd.args(["watch"])
        .arg(&watched)
        .arg("-o")
        .arg(&out)
        .arg("--weights")
        .arg(support::rvm_onnx())
        .env("VMATTE_WATCH_POLL_MS", "300")
        .env("VMATTE_NVML_LIB", "/nonexistent")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // A copy that takes a while: half now, the rest later.
    let bytes = std::fs::read(&source).unwrap();
    let target = watched.join("day1").join("take 1.mp4");
    let mut f = std::fs::File::create(&target).unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(250));
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    std::fs::write(watched.join("notes.txt"), "not a video").unwrap();
    let started = Instant::now();
    loop {
        let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap_or_default();
        if manifest.contains("done") {
            break;
        }
        assert!(started.elapsed() < 2 * MINUTE, "not matted: {manifest}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // SAFETY: kill(2) on a child we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = support::wait_within(child, MINUTE);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(err.matches("queued job").count(), 1, "{err}");
    let rows = support::status_rows(&out);
    let jobs = rows.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{rows}");
    assert_eq!(jobs[0]["state"], "done");
    assert_eq!(
        jobs[0]["frames"], 8,
        "the whole file, not the half seen first"
    );
}

#[test]
fn a_page_for_a_postgres_queue_shows_remote_workers_jobs_and_no_password() {
    let pg = support::PgServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "a.mp4", 300);
    let out = dir.path().join("out");
    let server = Server::start(&out, &["--queue", &pg.url, "--no-workers"], &[]);
    let r = upload(&server, &video, "a.mp4", "{}");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["job"]["id"].as_i64().unwrap();
    assert_eq!(r.json()["job"]["state"], "queued");
    // A worker elsewhere (another process) runs it, reporting its frames
    // with its lease renewals (every 200 ms here).
    let worker = std::process::Command::new(env!("CARGO_BIN_EXE_vmatte"))
        .args(["worker", "--queue", &pg.url, "--exit-when-idle"])
        .env("VMATTE_NVML_LIB", "/nonexistent")
        .env("VMATTE_JOB_LEASE_MS", "1200")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // (A rate is given once the job has run for a second.)
    let running = wait_job(&server, id, MINUTE, |j| {
        j["state"] == "running" && j["frames_done"].as_u64().unwrap_or(0) > 0 && j["fps"].is_f64()
    });
    assert_eq!(running["frames_total"], 300, "{running}");
    assert!(running["fps"].as_f64().unwrap() > 0.0, "{running}");
    let worker = support::wait_within(worker, 2 * MINUTE);
    assert!(worker.status.success(), "{}", support::stderr(&worker));
    let done = wait_job(&server, id, MINUTE, state_is("done"));
    assert_eq!(done["frames_done"], 300);
    assert!(done["worker"].is_null());
    let alpha = get(&server.url(&format!("/api/jobs/{id}/outputs/alpha")));
    assert_eq!(alpha.status, 200);
    // The password is nowhere a person or a client sees.
    let ready = get(&server.url("/readyz")).text();
    assert!(ready.contains("postgres://"), "{ready}");
    for seen in [
        ready,
        get(&server.url("/api/jobs")).text(),
        get(&server.url("/metrics")).text(),
        get(&server.url(&format!("/api/jobs/{id}/log"))).text(),
        get(&server.url("/")).text(),
    ] {
        assert!(!seen.contains(support::PG_PASSWORD), "{seen}");
    }
    let err = server.stderr();
    assert!(
        err.contains("postgres://") && !err.contains(support::PG_PASSWORD),
        "{err}"
    );
    let stopped = server.stop();
    assert!(stopped.success());
}
