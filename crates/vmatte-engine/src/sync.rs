//! What a run's threads share: how they reach the queue, locks that
//! outlive a panic in another thread, and waits that end on a stop.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vmatte_jobs::queue::JobQueue;

/// Opens a connection to the run's queue; each thread opens its own.
pub type Connect<'a> = dyn Fn() -> vmatte_jobs::Result<Box<dyn JobQueue>> + Sync + 'a;

/// A poisoned lock only means another stream panicked holding it; the map
/// is still whole (each update is one call), so carry on with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a lock held at the end of a run, poisoned or not (see [`lock`]).
pub(crate) fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps `pause`, waking every 20 ms to end early once `stop()` says so.
pub fn sleep_unless(stop: impl Fn() -> bool, pause: Duration) {
    let step = Duration::from_millis(20);
    let mut left = pause;
    while !left.is_zero() && !stop() {
        let now = left.min(step);
        std::thread::sleep(now);
        left -= now;
    }
}
