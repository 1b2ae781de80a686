//! The pods' progress on stderr while a task starts (scheduled, pulling, ready), only on a terminal; cleared
//! once the first pod has joined, when jobs start printing to the same terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::pod_state::Counts;

/// A one-line display of a task's pods.
pub struct PodProgress {
    bar: Option<ProgressBar>,
    total: usize,
}

impl PodProgress {
    /// A display for `total` pods; hidden unless stderr is a terminal and `CI` is unset.
    pub fn new(total: usize) -> Self {
        let enabled = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        PodProgress { bar, total }
    }

    /// Shows the latest counts.
    pub fn update(&self, counts: Counts, joined: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(build_message(counts, joined, self.total));
        }
    }

    /// Removes the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for PodProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The line shown: `pods: 3/3 scheduled, 1 pulling, 2 ready, 1 joined`.
pub fn build_message(counts: Counts, joined: usize, total: usize) -> String {
    let mut text = format!(
        "pods: {}/{total} scheduled, {} pulling, {} ready, {joined} joined",
        counts.scheduled, counts.starting, counts.ready
    );
    if counts.failed > 0 {
        text.push_str(&format!(", {} cannot start", counts.failed));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message() {
        let counts = Counts {
            scheduled: 3,
            starting: 1,
            ready: 2,
            failed: 0,
        };
        assert_eq!(
            build_message(counts, 1, 3),
            "pods: 3/3 scheduled, 1 pulling, 2 ready, 1 joined"
        );
        let counts = Counts {
            failed: 1,
            ..counts
        };
        assert!(build_message(counts, 1, 3).ends_with(", 1 cannot start"));
    }
}
