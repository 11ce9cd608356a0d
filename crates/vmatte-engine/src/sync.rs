//! What a run's threads share: how they reach the queue, and locks that
//! outlive a panic in another thread.

use std::sync::{Mutex, MutexGuard, PoisonError};

use vmatte_jobs::queue::JobQueue;

/// Opens a connection to the run's queue; each thread opens its own.
pub type Connect<'a> = dyn Fn() -> vmatte_jobs::Result<Box<dyn JobQueue>> + Sync + 'a;

/// A poisoned lock only means another stream panicked holding it; the map
/// is still whole (each update is one call), so carry on with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
