//! The web page in a real browser (Debian's Chromium, driven through
//! ChromeDriver's WebDriver protocol; scripts/deps.sh installs both): a
//! clip uploaded through the page's file field, followed live to done,
//! opened with the keyboard, its previews played (the video elements'
//! clocks advance), its matte downloaded through the page's link, and a
//! screenshot saved for a person to look at
//! (target/tmp/serve-page.png).

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::serve::Server;

/// The W3C name of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let req = agent.request(method, url);
    let resp = match body {
        Some(b) => req.send_string(&b.to_string()),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let v: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    if v["value"]["error"].is_string() {
        panic!("{method} {url}: {}", v["value"]);
    }
    v["value"].clone()
}

struct Session {
    url: String,
}

impl Session {
    fn start(driver: &Driver, downloads: &std::path::Path) -> Session {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1500",
                         "--autoplay-policy=no-user-gesture-required"],
                "prefs": { "download.default_directory": downloads }
            }
        }}});
        let v = call("POST", &format!("{}/session", driver.base), Some(caps));
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        Session {
            url: format!("{}/session/{id}", driver.base),
        }
    }

    fn go(&self, url: &str) {
        call(
            "POST",
            &format!("{}/url", self.url),
            Some(json!({ "url": url })),
        );
    }

    fn find(&self, css: &str) -> String {
        let v = call(
            "POST",
            &format!("{}/element", self.url),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn keys(&self, element: &str, text: &str) {
        call(
            "POST",
            &format!("{}/element/{element}/value", self.url),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, element: &str) {
        call(
            "POST",
            &format!("{}/element/{element}/click", self.url),
            Some(json!({})),
        );
    }

    fn run(&self, script: &str) -> Value {
        call(
            "POST",
            &format!("{}/execute/sync", self.url),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn run_async(&self, script: &str) -> Value {
        call(
            "POST",
            &format!("{}/execute/async", self.url),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Polls `script` until it returns true.
    fn wait(&self, what: &str, limit: Duration, script: &str) {
        let started = Instant::now();
        while self.run(script) != json!(true) {
            assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        let v = call("GET", &format!("{}/screenshot", self.url), None);
        base64_decode(v.as_str().unwrap())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.url).call();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(value(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A script that applies `then` (`every(...)`, `map(...)`) to the page's
/// three players: original, matte, composite.
fn players(then: &str) -> String {
    format!(
        "return ['#v-input','#v-alpha','#v-composite'].map(id => document.querySelector(id)).{then}"
    )
}

#[test]
fn a_clip_through_the_page_from_drop_to_download() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let server = Server::start(&out, &["--max-frames", "30"], &[]);
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver, installed by scripts/deps.sh)");
    let driver = Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while ureq::get(&format!("{}/status", driver.base))
        .call()
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let s = Session::start(&driver, &downloads);
    s.go(&server.url("/"));
    s.wait(
        "the page to go live",
        Duration::from_secs(20),
        "return document.querySelector('#connection').textContent.startsWith('live')",
    );

    // Choose the clip in the file field and submit, as a person would.
    // ChromeDriver takes only canonical paths for a file field.
    let clip = std::fs::canonicalize(support::sample_clip()).unwrap();
    let field = s.find("#files");
    s.keys(&field, clip.to_str().unwrap());
    // The edge colour, estimated: the page's select, as a person picks it.
    s.run(
        "const f = document.querySelector('#foreground'); f.value = 'estimate'; \
         f.dispatchEvent(new Event('change')); return true;",
    );
    s.click(&s.find("#submit"));
    s.wait(
        "a running job with frames counted",
        Duration::from_secs(60),
        "return [...document.querySelectorAll('#jobs .bar span')].some(e => / frames$/.test(e.textContent) && !e.textContent.startsWith('0 '))",
    );
    s.wait(
        "the job to show done",
        Duration::from_secs(120),
        "return [...document.querySelectorAll('#jobs .badge')].some(b => b.textContent === 'done')",
    );

    // The job is the one the page asked for.
    let rows = support::status_rows(&out);
    assert_eq!(
        rows[0]["settings"]["settings"]["finish"]["foreground"], "estimate",
        "{rows}"
    );

    // Open it with the keyboard, and play the three players together.
    let row = s.find("#jobs tbody tr[data-id]");
    s.keys(&row, "\u{E007}");
    s.wait(
        "the job's panel",
        Duration::from_secs(10),
        "return !document.querySelector('#detail').hidden && document.querySelectorAll('#downloads a').length === 2",
    );
    s.wait(
        "the previews to load",
        Duration::from_secs(20),
        &players("every(v => v.readyState >= 2)"),
    );
    let errors = s.run(&players(
        "map(v => v.error ? v.error.message || String(v.error.code) : null)",
    ));
    assert_eq!(
        errors,
        json!([null, null, null]),
        "the browser cannot play the previews"
    );
    s.click(&s.find("#play"));
    s.wait(
        "the previews to advance",
        Duration::from_secs(20),
        &players("every(v => v.currentTime > 0.3)"),
    );
    let times = s.run(&players("map(v => v.currentTime)"));
    let t: Vec<f64> = times
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        (t[0] - t[1]).abs() < 0.5 && (t[0] - t[2]).abs() < 0.5,
        "players out of step: {t:?}"
    );
    s.click(&s.find("#play"));

    // The matte, through the page's own download link.
    let got = s.run_async(
        "const done = arguments[arguments.length - 1];\
         const a = [...document.querySelectorAll('#downloads a')].find(a => a.textContent.startsWith('alpha'));\
         fetch(a.href).then(r => r.arrayBuffer()).then(b => done([a.getAttribute('download'), b.byteLength]));",
    );
    let name = got[0].as_str().unwrap();
    assert!(name.ends_with(".alpha.mp4"), "{got}");
    let on_disk = std::fs::metadata(out.join(name)).unwrap().len();
    assert_eq!(got[1].as_u64().unwrap(), on_disk);

    // Scrub to the middle so the players show a frame, then keep a picture
    // of the page.
    s.run(
        "const v = document.querySelector('#v-input'); const s = document.querySelector('#scrub'); \
         s.value = 500; s.dispatchEvent(new Event('input')); return true;",
    );
    std::thread::sleep(Duration::from_millis(800));
    let png = s.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    drop(s);
    assert!(server.stop().success());
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
