//! Progress for people: bars on a terminal, plain lines in a log, nothing
//! with `--json` (stdout is then only JSON).
//!
//! On a terminal a run shows one bar per running video and, for a batch,
//! one overall bar beneath them; a video that ends leaves one line above the
//! bars and its bar goes. Every line is printed through the bars' own
//! drawer, so nothing is drawn twice or left behind.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use vmatte_engine::observer::{JobView, Observer};
use vmatte_engine::outcome::{one_line, rate, Outcome, Status};
use vmatte_jobs::JobRow;
use vmatte_pipeline::Progress;

/// How progress reaches the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bars on a terminal.
    Bars,
    /// A line every few seconds (stderr is a file or a pipe).
    Lines,
    /// Nothing but the result (`--json`).
    Quiet,
}

impl Mode {
    pub fn detect(json: bool) -> Self {
        if json {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Bars
        } else {
            Self::Lines
        }
    }
}

const JOB_TEMPLATE: &str = "{prefix} [{bar:30}] {pos}/{len} frames  {msg}";
const STARTING_TEMPLATE: &str = "{prefix} starting {spinner}";

/// A video's bar: frames done of all, the rate to one decimal and the time
/// left, computed here (indicatif's own rate shows four decimals).
struct JobBar {
    bar: ProgressBar,
    started: Instant,
    has_length: bool,
    /// GPU readings to show after the rate (`vmatte matte` on a GPU).
    gpu: Arc<Mutex<String>>,
}

impl JobBar {
    fn new(bar: ProgressBar, label: &str) -> Self {
        bar.set_style(
            ProgressStyle::with_template(STARTING_TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(one_line(label));
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            started: Instant::now(),
            has_length: false,
            gpu: Arc::default(),
        }
    }

    fn update(&mut self, p: Progress) {
        if !self.has_length {
            self.has_length = true;
            self.bar.disable_steady_tick();
            self.bar.set_style(
                ProgressStyle::with_template(JOB_TEMPLATE)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
        }
        let total = p.frames_total.unwrap_or(0).max(p.frames_done);
        self.bar.set_length(total);
        self.bar.set_position(p.frames_done);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let fps = p.frames_done as f64 / secs;
        let left = match p.frames_total {
            Some(t) if fps > 0.0 && t > p.frames_done => {
                format!("  ETA {}", clock((t - p.frames_done) as f64 / fps))
            }
            _ => String::new(),
        };
        let gpu = self.gpu.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.bar.set_message(
            format!("{} fps{left}  {gpu}", rate(fps))
                .trim_end()
                .to_string(),
        );
    }
}

/// `1:05`, `0:07`, `1:02:03`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

/// The screen of a batch or a worker: the overall bar (a batch's), the
/// running videos' bars, and the lines of those that ended.
pub struct Screen {
    mode: Mode,
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    frames: AtomicU64,
    gpu: Mutex<String>,
    /// Lines mode: when each running job last said where it was.
    json_lines: bool,
}

impl Screen {
    /// `total` jobs for a batch (an overall bar), `None` for a worker.
    /// `json_lines`: a worker's `--json`, one JSON line per ended job.
    pub fn new(mode: Mode, total: Option<usize>, json_lines: bool) -> Self {
        let target = match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        };
        let multi = MultiProgress::with_draw_target(target);
        let overall = match (mode, total) {
            (Mode::Bars, Some(total)) => {
                let bar = multi.add(ProgressBar::new(total as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "batch [{bar:30}] {pos}/{len} videos  {msg}  {elapsed} elapsed",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                // Drawn from the start, and its clock kept moving.
                bar.enable_steady_tick(Duration::from_millis(500));
                Some(bar)
            }
            _ => None,
        };
        Self {
            mode,
            multi,
            overall,
            frames: AtomicU64::new(0),
            gpu: Mutex::new(String::new()),
            json_lines,
        }
    }

    /// A line above the bars (or on its own without them).
    pub fn println(&self, line: &str) {
        match self.mode {
            Mode::Bars => {
                if self.multi.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
            Mode::Lines => eprintln!("{line}"),
            Mode::Quiet => {}
        }
    }

    /// The latest GPU readings, shown on the overall bar.
    pub fn set_gpu(&self, brief: &str) {
        *self.gpu.lock().unwrap_or_else(|p| p.into_inner()) = brief.to_string();
        self.refresh_overall();
    }

    fn refresh_overall(&self) {
        if let Some(bar) = &self.overall {
            let gpu = self.gpu.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let frames = self.frames.load(Ordering::Relaxed);
            bar.set_message(format!("{frames} frames  {gpu}").trim_end().to_string());
        }
    }

    /// Clears every bar, leaving the lines printed above them.
    pub fn finish(&self) {
        if let Some(bar) = &self.overall {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

impl Observer for Screen {
    fn started(&self, label: &str, _: &JobRow) -> Box<dyn JobView> {
        match self.mode {
            Mode::Bars => {
                // Added hidden and drawn only through the multi-bar, so it
                // never leaves a line of its own behind.
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                let bar = match &self.overall {
                    Some(overall) => self.multi.insert_before(overall, bar),
                    None => self.multi.add(bar),
                };
                Box::new(BarView {
                    job: JobBar::new(bar, label),
                    multi: self.multi.clone(),
                })
            }
            Mode::Lines => Box::new(LineView {
                label: one_line(label),
                last: Instant::now(),
            }),
            Mode::Quiet => Box::new(vmatte_engine::observer::Quiet),
        }
    }

    fn settled(&self, outcome: &Outcome) {
        if outcome.status == Status::Done {
            self.frames
                .fetch_add(outcome.frames.unwrap_or(0), Ordering::Relaxed);
        }
        if let Some(bar) = &self.overall {
            bar.inc(1);
        }
        self.refresh_overall();
        // Jobs this run did not touch stay for the summary.
        if outcome.status != Status::Skipped {
            self.println(&outcome.line());
        }
        if self.json_lines {
            let line = serde_json::json!({
                "job": outcome.job,
                "name": outcome.name,
                "status": outcome.status,
                "error": outcome.error,
                "note": outcome.note,
                "frames": outcome.frames,
                "seconds": outcome.seconds,
                "device": outcome.device,
                "outputs": outcome.outputs,
            });
            println!("{line}");
        }
    }

    fn note(&self, line: &str) {
        self.println(&format!("vmatte: {}", one_line(line)));
    }
}

struct BarView {
    job: JobBar,
    multi: MultiProgress,
}

impl JobView for BarView {
    fn progress(&mut self, p: Progress) {
        self.job.update(p);
    }
}

impl Drop for BarView {
    fn drop(&mut self) {
        self.job.bar.finish_and_clear();
        self.multi.remove(&self.job.bar);
    }
}

/// Without a terminal: where each video is, every five seconds.
struct LineView {
    label: String,
    last: Instant,
}

impl JobView for LineView {
    fn progress(&mut self, p: Progress) {
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            match p.frames_total {
                Some(total) => eprintln!("{}: {}/{total} frames", self.label, p.frames_done),
                None => eprintln!("{}: {} frames", self.label, p.frames_done),
            }
        }
    }
}

/// One video's progress for `vmatte matte`: a bar, lines, or nothing.
pub struct Reporter {
    view: Option<Box<dyn JobView>>,
    bar: Option<ProgressBar>,
    gpu: Arc<Mutex<String>>,
    mode: Mode,
}

impl Reporter {
    pub fn new(label: &str, mode: Mode) -> Self {
        match mode {
            Mode::Bars => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let job = JobBar::new(bar.clone(), label);
                Self {
                    gpu: job.gpu.clone(),
                    view: Some(Box::new(SoloBar { job })),
                    bar: Some(bar),
                    mode,
                }
            }
            Mode::Lines => Self {
                view: Some(Box::new(LineView {
                    label: one_line(label),
                    last: Instant::now(),
                })),
                bar: None,
                gpu: Arc::default(),
                mode,
            },
            Mode::Quiet => Self {
                view: None,
                bar: None,
                gpu: Arc::default(),
                mode,
            },
        }
    }

    /// Where other threads put the latest GPU readings for the bar.
    pub fn gpu_slot(&self) -> Arc<Mutex<String>> {
        self.gpu.clone()
    }

    pub fn update(&mut self, p: Progress) {
        if let Some(v) = self.view.as_mut() {
            v.progress(p);
        }
    }

    /// A line above the bar, now.
    pub fn note(&self, line: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(one_line(line)),
            (None, Mode::Lines) => eprintln!("{}", one_line(line)),
            _ => {}
        }
    }

    /// Clears the bar and prints `summary` in its place.
    pub fn finish(mut self, summary: &str) {
        self.view = None;
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.mode != Mode::Quiet && !summary.is_empty() {
            eprintln!("{summary}");
        }
    }
}

struct SoloBar {
    job: JobBar,
}

impl JobView for SoloBar {
    fn progress(&mut self, p: Progress) {
        self.job.update(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_read_like_clocks() {
        assert_eq!(clock(7.4), "0:07");
        assert_eq!(clock(65.0), "1:05");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(clock(-1.0), "0:00");
    }
}
