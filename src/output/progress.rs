//! Progress on stderr for `--bar`, `--eta` and `--progress` (indicatif), shown only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of a run; does nothing when not asked for or when stderr is not a terminal. Clones share
/// one display.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A display for `--bar`/`--eta`/`--progress` when any is set and stderr is a terminal.
    pub fn new(bar: bool, eta: bool, progress: bool) -> Self {
        if !(bar || eta || progress) || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let template = if eta {
            "{spinner} {pos}/{len} jobs done, {per_sec}, ETA {eta} {msg}"
        } else if progress {
            "{spinner} {pos}/{len} jobs done, {msg}"
        } else {
            "{wide_bar} {pos}/{len} {percent}%"
        };
        let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style);
        }
        Progress { bar: Some(pb) }
    }

    /// A job was read from the input (the total grows as input is read lazily).
    pub fn add_job(&self) {
        if let Some(pb) = &self.bar {
            pb.inc_length(1);
        }
    }

    /// A job finished.
    pub fn job_done(&self) {
        if let Some(pb) = &self.bar {
            pb.inc(1);
        }
    }

    /// Shows how many jobs run on how many workers.
    pub fn set_running(&self, running: usize, workers: usize) {
        if let Some(pb) = &self.bar {
            pb.set_message(format!("{running} running on {workers} workers"));
        }
    }

    /// Runs `f` (which writes to stderr) with the display hidden, so a message does not tear the bar.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(pb) => pb.suspend(f),
            None => f(),
        }
    }

    /// Removes the display.
    pub fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}
