//! A real `vmatte serve` on loopback, and a small HTTP client for it.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub out: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// `vmatte serve --listen 127.0.0.1:0 -o OUT --weights <ONNX> EXTRA...`,
    /// once it listens.
    pub fn start(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let onnx = super::rvm_onnx();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmatte"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "-o"])
            .arg(out)
            .arg("--weights")
            .arg(&onnx)
            .args(extra)
            .env_remove("VMATTE_MODEL_DIR")
            .env_remove("VMATTE_TOKEN")
            .env("VMATTE_NVML_LIB", "/nonexistent")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("vmatte serve starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "vmatte serve printed no address: {}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                )
            });
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in '{line}'"))
            .trim_end_matches('/')
            .to_string();
        Server {
            child: Some(child),
            base,
            out: out.to_path_buf(),
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Ctrl-C, and the exit status once it has stopped (within 30 s).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on a child we own.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("vmatte serve did not stop on Ctrl-C: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the server dies where it stands.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP answer.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A refusal: this status, a JSON body with a one-line `error` (and
    /// the `field`, when given).
    pub fn refused(&self, status: u16, field: Option<&str>) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let error = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {v}"));
        assert!(!error.contains('\n') && !error.is_empty(), "{error:?}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{v}");
        }
        error.to_string()
    }
}

pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Resp {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some((kind, bytes)) => req.set("content-type", kind).send_bytes(&bytes),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> Resp {
    request("GET", url, &[], None)
}

pub fn post_json(url: &str, body: &Value) -> Resp {
    request(
        "POST",
        url,
        &[],
        Some(("application/json", body.to_string().into_bytes())),
    )
}

/// A multipart/form-data body: text fields, then files (name, file name,
/// bytes).
pub fn multipart(texts: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "vmatte-test-boundary-7f3a9c";
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, file, bytes) in files {
        body.extend(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                 content-type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads `path` as `name` with `options` (a JSON object's text).
pub fn upload(server: &Server, path: &Path, name: &str, options: &str) -> Resp {
    let bytes = std::fs::read(path).unwrap();
    let (kind, body) = multipart(&[("options", options)], &[("file", name, &bytes)]);
    request("POST", &server.url("/api/jobs"), &[], Some((&kind, body)))
}

/// Polls job `id` until `done(job)` or `limit`.
pub fn wait_job(server: &Server, id: i64, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = get(&server.url(&format!("/api/jobs/{id}")));
        if r.status == 200 {
            let job = r.json();
            if done(&job) {
                return job;
            }
            if started.elapsed() > limit {
                panic!(
                    "job {id} is still {job} after {limit:?}: {}",
                    server.stderr()
                );
            }
        } else if started.elapsed() > limit {
            panic!("job {id}: {} {}", r.status, r.text());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |j| j["state"] == state
}
