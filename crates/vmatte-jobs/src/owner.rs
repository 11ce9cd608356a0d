//! Who holds a lease: readable in `vmatte status`, unique across processes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;

/// `hostname-pid-random`. The random part tells apart two processes that
/// reuse a pid (a crashed worker and its successor) on the same host.
pub fn owner_id() -> String {
    owner_id_named(&hostname())
}

/// [`owner_id`] with `name` in place of the host name (`vmatte worker
/// --name`, e.g. a pod's name). Such an owner is never judged dead by
/// [`holder_is_dead`] unless `name` is this host's name.
pub fn owner_id_named(name: &str) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let random = hasher.finish() as u32;
    format!("{name}-{}-{random:08x}", std::process::id())
}

/// The host and process id of an [`owner_id`] (a worker's stream owners
/// append `/device#slot`, which is ignored).
pub fn owner_host_pid(owner: &str) -> Option<(&str, u32)> {
    let process = owner.split('/').next().unwrap_or(owner);
    let mut parts = process.rsplitn(3, '-');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    Some((host, pid.parse().ok()?))
}

pub fn hostname() -> String {
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

/// Whether `owner` (an [`owner_id`]) is a process of this host that no
/// longer exists. Its lease can then be taken at once instead of after it
/// runs out, so `kill -9` followed by the same command resumes right away.
/// Holders on other hosts, or a recycled pid, count as alive: the lease
/// expiry still frees those jobs.
pub fn holder_is_dead(owner: &str) -> bool {
    let Some((host, pid)) = owner_host_pid(owner) else {
        return false;
    };
    host == hostname()
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_holder_is_not_dead() {
        assert!(!holder_is_dead(&owner_id()));
        assert!(!holder_is_dead("other-host-1-abcd"));
        assert!(!holder_is_dead("garbage"));
    }

    #[test]
    fn an_exited_process_is_dead() {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert!(holder_is_dead(&format!("{}-{pid}-0000abcd", hostname())));
    }
}
