//! Progress for people: a bar on a terminal, plain lines in a log, nothing
//! with `--json` (stdout is then only JSON).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use vmatte_pipeline::Progress;

pub enum Reporter {
    Bar(ProgressBar),
    Lines { label: String, last: Instant },
    Silent,
}

fn frame_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} frames  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

impl Reporter {
    pub fn new(label: &str, quiet: bool) -> Self {
        Self::within(None, label, quiet)
    }

    /// A reporter whose bar sits under `multi`'s other bars (the batch's
    /// overall bar), when there is a terminal to draw on.
    pub fn within(multi: Option<&MultiProgress>, label: &str, quiet: bool) -> Self {
        if quiet {
            return Self::Silent;
        }
        if std::io::stderr().is_terminal() {
            let bar = frame_bar(label);
            return Self::Bar(match multi {
                Some(m) => m.add(bar),
                None => bar,
            });
        }
        Self::Lines {
            label: label.to_string(),
            last: Instant::now(),
        }
    }

    /// The bar, when one is drawn (for other threads to add a message).
    pub fn bar(&self) -> Option<ProgressBar> {
        match self {
            Self::Bar(bar) => Some(bar.clone()),
            _ => None,
        }
    }

    pub fn update(&mut self, p: Progress) {
        match self {
            Self::Bar(bar) => {
                if let Some(total) = p.frames_total {
                    bar.set_length(total.max(p.frames_done));
                }
                bar.set_position(p.frames_done);
            }
            Self::Lines { label, last } => {
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    match p.frames_total {
                        Some(total) => eprintln!("{label}: {}/{total} frames", p.frames_done),
                        None => eprintln!("{label}: {} frames", p.frames_done),
                    }
                }
            }
            Self::Silent => {}
        }
    }

    pub fn finish(self, summary: &str) {
        match self {
            Self::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("{summary}");
            }
            Self::Lines { .. } => eprintln!("{summary}"),
            Self::Silent => {}
        }
    }
}

/// The batch's overall bar: jobs finished of all, frames so far, ETA; the
/// current job's bar is drawn beneath it.
pub struct BatchProgress {
    pub multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    frames: u64,
}

impl BatchProgress {
    pub fn new(jobs: usize, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self {
                multi: None,
                overall: None,
                frames: 0,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(jobs as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "batch  [{bar:30}] {pos}/{len} jobs  {msg}  {elapsed} elapsed, ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Self {
            multi: Some(multi),
            overall: Some(overall),
            frames: 0,
        }
    }

    pub fn job_finished(&mut self, frames: u64) {
        self.frames += frames;
        if let Some(bar) = &self.overall {
            bar.inc(1);
            bar.set_message(format!("{} frames", self.frames));
        }
    }

    /// The latest GPU readings, shown on the overall bar.
    pub fn set_gpu(&mut self, brief: &str) {
        if let Some(bar) = &self.overall {
            bar.set_message(format!("{} frames  {brief}", self.frames));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.overall {
            bar.finish_and_clear();
        }
    }
}
