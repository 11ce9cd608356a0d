//! Webhooks: a job's `webhook_url` is called with a POST when the job is
//! done or failed. The body is `{"event": "job.done"|"job.failed", "job":
//! {...}}`; `X-Vmatte-Signature: sha256=<hex HMAC-SHA256 of the body>`
//! signs it, `X-Vmatte-Event` names it. Failed calls are retried after 1,
//! 2, 4, 8 and 16 s. Pending calls are kept in OUTDIR/.vmatte-serve/
//! webhooks.json, so a restart delivers what it had not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use vmatte_engine::lock;

use crate::config::ServeConfig;

const TRIES: u32 = 6;

#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    file: PathBuf,
    secret: Vec<u8>,
    /// Job id to URL, for jobs not yet reported.
    pending: Mutex<BTreeMap<i64, String>>,
}

impl Webhooks {
    /// Loads the pending calls, and the signing secret: given, else one
    /// made once and kept beside them (mode 0600).
    pub fn open(config: &ServeConfig) -> Result<Self, String> {
        let dir = config.outdir.join(".vmatte-serve");
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "{}: cannot create ({e}); check that the output folder is writable",
                dir.display()
            )
        })?;
        let file = dir.join("webhooks.json");
        let pending = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
        // Never the API token: a receiver that checks signatures must not
        // hold the key to the API.
        let secret = match &config.webhook_secret {
            Some(s) => s.clone(),
            None => made_secret(&dir.join("webhook-secret"))?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                file,
                secret,
                pending: Mutex::new(pending),
            }),
        })
    }

    /// Remembers `url` for job `id`.
    pub fn register(&self, id: i64, url: &str) -> Result<(), String> {
        let mut pending = lock(&self.inner.pending);
        pending.insert(id, url.to_string());
        self.save(&pending)
    }

    /// Job `id` was deleted: its webhook is not called (a later job given
    /// the same id must not inherit it).
    pub fn forget(&self, id: i64) {
        let mut pending = lock(&self.inner.pending);
        if pending.remove(&id).is_some() {
            if let Err(e) = self.save(&pending) {
                eprintln!("vmatte: warning: {e}");
            }
        }
    }

    /// Job `id` ended as `job` shows: its webhook (if any) is called, off
    /// this thread.
    pub fn ended(&self, id: i64, job: &Value) {
        let url = {
            let pending = lock(&self.inner.pending);
            pending.get(&id).cloned()
        };
        let Some(url) = url else {
            return;
        };
        let event = match job["state"].as_str() {
            Some("done") => "job.done",
            _ => "job.failed",
        };
        let body = json!({ "event": event, "job": job }).to_string();
        let this = self.clone();
        std::thread::spawn(move || {
            let delivered = this.deliver(&url, event, &body);
            if !delivered {
                eprintln!(
                    "vmatte: warning: job {id}: webhook {} did not answer 2xx after {TRIES} tries; \
                     not called again",
                    vmatte_jobs::queue::redact(&url)
                );
            }
            let mut pending = lock(&this.inner.pending);
            pending.remove(&id);
            if let Err(e) = this.save(&pending) {
                eprintln!("vmatte: warning: {e}");
            }
        });
    }

    pub fn sign(&self, body: &[u8]) -> String {
        sign(&self.inner.secret, body)
    }

    fn deliver(&self, url: &str, event: &str, body: &str) -> bool {
        let agent = match native_tls::TlsConnector::new() {
            Ok(tls) => ureq::AgentBuilder::new().tls_connector(Arc::new(tls)),
            Err(_) => ureq::AgentBuilder::new(),
        }
        .timeout(Duration::from_secs(10))
        .build();
        let signature = self.sign(body.as_bytes());
        let mut pause = Duration::from_secs(1);
        for attempt in 1..=TRIES {
            let sent = agent
                .post(url)
                .set("content-type", "application/json")
                .set("x-vmatte-event", event)
                .set("x-vmatte-signature", &signature)
                .send_string(body);
            if sent.is_ok() {
                return true;
            }
            if attempt < TRIES {
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
        false
    }

    fn save(&self, pending: &BTreeMap<i64, String>) -> Result<(), String> {
        let tmp = self
            .inner
            .file
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let text = serde_json::to_vec(pending).unwrap_or_default();
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.inner.file))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!(
                    "{}: cannot save pending webhooks ({e})",
                    self.inner.file.display()
                )
            })
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret kept at `path`, made (32 random bytes as hex) on first use.
fn made_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if !text.trim().is_empty() {
            return Ok(text.trim().as_bytes().to_vec());
        }
    }
    let mut bytes = [0u8; 32];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    random.map_err(|e| format!("cannot read /dev/urandom for a webhook secret: {e}"))?;
    let text = hex(&bytes);
    write_private(path, &text)
        .map_err(|e| format!("{}: cannot write the webhook secret ({e})", path.display()))?;
    Ok(text.into_bytes())
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn signs_as_rfc_4231() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
