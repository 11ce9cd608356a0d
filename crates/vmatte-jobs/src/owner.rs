//! Who holds a lease: readable in `vmatte status`, unique across processes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// `hostname-pid-random`. The random part tells apart two processes that
/// reuse a pid (a crashed worker and its successor) on the same host.
pub fn owner_id() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let random = hasher.finish() as u32;
    format!("{}-{}-{random:08x}", hostname(), std::process::id())
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() {
        "host".into()
    } else {
        name
    }
}
