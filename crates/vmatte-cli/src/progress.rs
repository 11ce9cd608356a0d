//! Progress for people: a bar on a terminal, plain lines in a log, nothing
//! with `--json` (stdout is then only JSON).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vmatte_pipeline::Progress;

pub enum Reporter {
    Bar(ProgressBar),
    Lines { label: String, last: Instant },
    Silent,
}

impl Reporter {
    pub fn new(label: &str, quiet: bool) -> Self {
        if quiet {
            return Self::Silent;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} frames  {per_sec}  ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            return Self::Bar(bar);
        }
        Self::Lines {
            label: label.to_string(),
            last: Instant::now(),
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
