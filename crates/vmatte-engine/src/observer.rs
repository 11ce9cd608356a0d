//! What the engine tells whoever watches it: a terminal's bars, plain log
//! lines, JSON lines, or (later) an HTTP service's event stream.

use vmatte_jobs::JobRow;
use vmatte_pipeline::Progress;

use crate::outcome::Outcome;

/// Called from the engine's stream threads.
pub trait Observer: Sync {
    /// A stream starts `job`; its frame progress goes to the returned view,
    /// which is dropped when the attempt ends (before [`Observer::settled`]).
    fn started(&self, label: &str, job: &JobRow) -> Box<dyn JobView>;

    /// How a job ended for this run, including jobs it did not run.
    fn settled(&self, outcome: &Outcome);

    /// A line worth telling a person now: an out-of-memory step, a warning.
    fn note(&self, line: &str);
}

/// One running job's progress.
pub trait JobView: Send {
    fn progress(&mut self, p: Progress);
}

/// Watches nothing (tests, and callers that only want the outcomes).
pub struct Quiet;

impl Observer for Quiet {
    fn started(&self, _: &str, _: &JobRow) -> Box<dyn JobView> {
        Box::new(Quiet)
    }

    fn settled(&self, _: &Outcome) {}

    fn note(&self, _: &str) {}
}

impl JobView for Quiet {
    fn progress(&mut self, _: Progress) {}
}
