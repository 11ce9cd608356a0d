//! What the front end decides before the service starts: typed, checked,
//! with no flag names.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Map, Value};
use vmatte_engine::spec::JobSpec;
use vmatte_engine::telemetry::Hub;
use vmatte_engine::EngineConfig;
use vmatte_gpu::DeviceSpec;
use vmatte_jobs::queue::QueueUrl;

/// How the service runs.
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Uploads land in `OUTDIR/uploads`; jobs made here write to OUTDIR.
    pub outdir: PathBuf,
    /// The store jobs go to (OUTDIR's own SQLite store, or a PostgreSQL
    /// queue).
    pub queue: QueueUrl,
    /// Server-side inputs must lie under one of these (canonical) folders;
    /// none: jobs come by upload only.
    pub allow_roots: Vec<PathBuf>,
    /// Required of every request but the health probes and the page's
    /// static files, when set.
    pub token: Option<Token>,
    /// Uploads larger than this are refused (413) before they are stored.
    pub max_upload: u64,
    /// Attempts before a failing job is parked as failed (PostgreSQL).
    pub max_attempts: u32,
    /// Signs webhook bodies (HMAC-SHA256); when not given, a secret made
    /// once and kept in OUTDIR/.vmatte-serve/webhook-secret.
    pub webhook_secret: Option<Vec<u8>>,
}

/// A bearer token, compared in constant time.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl Token {
    /// `None` for an empty (or all-blank) token.
    pub fn new(text: &str) -> Option<Self> {
        let t = text.trim();
        (!t.is_empty()).then(|| Self(t.as_bytes().to_vec()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant time in the given token's content (its length is not
    /// secret enough to hide).
    pub fn matches(&self, given: &[u8]) -> bool {
        if given.len() != self.0.len() {
            return false;
        }
        self.0
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// A request's options, refused: which field, and the one line that says
/// what is wrong and what to do.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: Option<String>,
    pub message: String,
}

/// Turns a request's matte options (`{"preset": "high", "crf": 20, ...}`,
/// the names of `vmatte matte`'s options) into the job they ask for, with
/// the same checks and messages as the command line.
pub trait Resolve: Send + Sync {
    fn resolve(&self, options: &Map<String, Value>) -> Result<JobSpec, FieldError>;
}

/// Plans the engine once the GPUs' telemetry (if any) is up.
pub type PlanEngine = Box<dyn FnOnce(Option<&Hub>) -> EngineConfig + Send>;

/// In-process workers: the devices they run on and their engine's plan.
pub struct Workers {
    pub devices: Vec<DeviceSpec>,
    pub engine: PlanEngine,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let t = Token::new(" s3cret\n").unwrap();
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3creT"));
        assert!(!t.matches(b"s3cret "));
        assert!(!t.matches(b""));
        assert!(Token::new("  \n").is_none());
    }
}
