//! The one place that words what the user reads about a run, besides the jobs' own output: warnings, GNU
//! parallel's notices and the progress display. The scheduler hands it typed [`Event`]s; it never formats a
//! message itself. Wording follows GNU parallel where GNU prints the same thing (`This job failed:`,
//! `Starting no more jobs.`), so scripts and eyes used to GNU see the same lines.
//!
//! This module must not know the scheduler's types: events carry plain data only.

use std::io::Write;

use super::progress::Progress;

/// Which jobs GNU parallel's `--halt` notice is printed after (`This job failed:` and its siblings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `--halt ...,fail=...`: after every failed job.
    Failed,
    /// `--halt ...,success=...`: after every job that succeeded.
    Succeeded,
    /// `--halt ...,done=...`: after every job.
    Finished,
}

/// Something that happened in a run that the user is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A worker could not be reached, or failed before it joined; the run goes on without it.
    WorkerUnusable {
        /// The worker's name.
        worker: String,
        /// Why, in the user's terms.
        reason: String,
    },
    /// A worker that ran jobs was lost; its jobs go to the others.
    WorkerLost {
        /// The worker's name.
        worker: String,
        /// Why.
        reason: String,
    },
    /// A worker refused to open a job's channel on a live connection: it runs fewer jobs at a time from now on.
    SlotRefused {
        /// The worker's name.
        worker: String,
        /// How many jobs it runs at a time from now on.
        slots: usize,
        /// The transport's error.
        reason: String,
    },
    /// A limit stopped the workers for good (`--max-runtime`, an API server that did not come back).
    Stopped {
        /// What stopped them, in the user's terms.
        reason: String,
        /// Jobs still running, now being stopped.
        running: usize,
    },
    /// A job was killed by `--timeout` (GNU parallel's warning).
    TimedOut {
        /// The job's command line.
        command: String,
    },
    /// GNU parallel's `--halt` notice after a job that counts towards the condition.
    Counted {
        /// Which notice.
        notice: Notice,
        /// The job's command line.
        command: String,
    },
    /// `--halt soon` triggered with jobs still running (GNU parallel's notice).
    HaltWaiting {
        /// Jobs still running.
        running: usize,
    },
    /// The first interrupt: no more jobs start and the running ones got SIGTERM.
    Interrupted {
        /// Jobs that got SIGTERM.
        running: usize,
    },
    /// A job was killed but its worker never reported its end.
    Unconfirmed {
        /// The job's sequence number.
        seq: u64,
        /// The worker it ran on.
        worker: String,
    },
    /// Writing job output failed (other than a closed pipe, which ends the run quietly).
    OutputFailed {
        /// The I/O error.
        cause: String,
    },
    /// Writing the joblog failed; the run goes on.
    JoblogFailed {
        /// The error with its causes.
        cause: String,
    },
    /// A warning about the input (GNU parallel's wording, such as the CR-NL one).
    InputWarning {
        /// The warning.
        text: String,
    },
    /// A job was read from the input (the progress display's total grows).
    JobQueued,
    /// A job started: this many run now on this many workers.
    JobsRunning {
        /// Jobs running.
        running: usize,
        /// Workers alive.
        workers: usize,
    },
    /// A job finished.
    JobDone {
        /// Jobs finished so far.
        done: u64,
        /// All jobs, when known.
        total: Option<u64>,
    },
}

/// Words [`Event`]s on stderr and drives the progress display. Cloning it gives another handle to the same
/// display (the input thread has one for its warnings).
#[derive(Clone)]
pub struct Reporter {
    progress: Progress,
}

impl Reporter {
    /// A reporter writing to stderr, with `progress` as its display.
    pub fn new(progress: Progress) -> Self {
        Reporter { progress }
    }

    /// Tells the user about `event`.
    pub fn report(&self, event: &Event) {
        match event {
            Event::JobQueued => self.progress.add_job(),
            Event::JobsRunning { running, workers } => {
                self.progress.set_running(*running, *workers)
            }
            Event::JobDone { .. } => self.progress.job_done(),
            _ => {
                if let Some(text) = render(event) {
                    // A message must not tear the progress bar; without one this is a plain write.
                    self.progress.suspend(|| {
                        let _ = writeln!(std::io::stderr().lock(), "{text}");
                    });
                }
            }
        }
    }

    /// Removes the progress display.
    pub fn finish(&self) {
        self.progress.finish();
    }
}

/// The text of `event` without its final newline, `None` for events that only move the progress display.
pub fn render(event: &Event) -> Option<String> {
    let text = match event {
        Event::WorkerUnusable { worker, reason } => {
            format!("kb: warning: cannot use `{worker}`, going on without it: {reason}")
        }
        Event::WorkerLost { worker, reason } => {
            format!("kb: warning: lost worker `{worker}`; its jobs go to the others: {reason}")
        }
        Event::SlotRefused {
            worker,
            slots,
            reason,
        } => format!(
            "kb: warning: `{worker}` refused a job slot, running {slots} at a time there: {reason}"
        ),
        Event::Stopped { reason, running: 0 } => format!("kb: {reason}: starting no more jobs"),
        Event::Stopped { reason, running } => {
            format!("kb: {reason}: starting no more jobs, stopping {running} running")
        }
        Event::TimedOut { command } => {
            format!(
                "kb: Warning: This job was killed because it timed out:\nkb: Warning: {command}"
            )
        }
        Event::Counted { notice, command } => format!("kb: {}\n{command}", notice_text(*notice)),
        Event::HaltWaiting { running } => {
            format!("kb: Starting no more jobs. Waiting for {running} jobs to finish.")
        }
        Event::Interrupted { running } => format!(
            "kb: interrupted: starting no more jobs, sent SIGTERM to {running} running; press Ctrl-C again to \
             kill them"
        ),
        Event::Unconfirmed { seq, worker } => {
            format!("kb: warning: job {seq} on `{worker}` did not confirm that it stopped")
        }
        Event::OutputFailed { cause } => format!("kb: warning: cannot write output: {cause}"),
        Event::JoblogFailed { cause } => format!("kb: warning: {cause}"),
        Event::InputWarning { text } => format!("kb: Warning: {text}"),
        Event::JobQueued | Event::JobsRunning { .. } | Event::JobDone { .. } => return None,
    };
    Some(text)
}

fn notice_text(notice: Notice) -> &'static str {
    match notice {
        Notice::Failed => "This job failed:",
        Notice::Succeeded => "This job succeeded:",
        Notice::Finished => "This job finished:",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(event: Event) -> String {
        render(&event).unwrap()
    }

    #[test]
    fn words_gnu_parallels_notices_as_gnu() {
        let command = || "exit 3".to_string();
        assert_eq!(
            text(Event::Counted {
                notice: Notice::Failed,
                command: command()
            }),
            "kb: This job failed:\nexit 3"
        );
        assert_eq!(
            text(Event::Counted {
                notice: Notice::Succeeded,
                command: command()
            }),
            "kb: This job succeeded:\nexit 3"
        );
        assert_eq!(
            text(Event::Counted {
                notice: Notice::Finished,
                command: command()
            }),
            "kb: This job finished:\nexit 3"
        );
        assert_eq!(
            text(Event::HaltWaiting { running: 2 }),
            "kb: Starting no more jobs. Waiting for 2 jobs to finish."
        );
        assert_eq!(
            text(Event::TimedOut {
                command: "sleep 9".into()
            }),
            "kb: Warning: This job was killed because it timed out:\nkb: Warning: sleep 9"
        );
        assert_eq!(
            text(Event::InputWarning {
                text: "The first three values end in CR-NL.".into()
            }),
            "kb: Warning: The first three values end in CR-NL."
        );
    }

    #[test]
    fn words_kbs_own_warnings() {
        assert_eq!(
            text(Event::WorkerUnusable {
                worker: "h1".into(),
                reason: "refused".into()
            }),
            "kb: warning: cannot use `h1`, going on without it: refused"
        );
        assert_eq!(
            text(Event::WorkerLost {
                worker: "h1".into(),
                reason: "reset".into()
            }),
            "kb: warning: lost worker `h1`; its jobs go to the others: reset"
        );
        assert_eq!(
            text(Event::SlotRefused {
                worker: "h1".into(),
                slots: 3,
                reason: "no".into()
            }),
            "kb: warning: `h1` refused a job slot, running 3 at a time there: no"
        );
        assert_eq!(
            text(Event::Stopped {
                reason: "the task's time is up".into(),
                running: 0
            }),
            "kb: the task's time is up: starting no more jobs"
        );
        assert_eq!(
            text(Event::Stopped {
                reason: "the task's time is up".into(),
                running: 4
            }),
            "kb: the task's time is up: starting no more jobs, stopping 4 running"
        );
        assert_eq!(
            text(Event::Interrupted { running: 2 }),
            "kb: interrupted: starting no more jobs, sent SIGTERM to 2 running; press Ctrl-C again to kill them"
        );
        assert_eq!(
            text(Event::Unconfirmed {
                seq: 7,
                worker: "p".into()
            }),
            "kb: warning: job 7 on `p` did not confirm that it stopped"
        );
        assert_eq!(
            text(Event::OutputFailed {
                cause: "disk full".into()
            }),
            "kb: warning: cannot write output: disk full"
        );
        assert_eq!(
            text(Event::JoblogFailed {
                cause: "failed to access the joblog `x`: denied".into()
            }),
            "kb: warning: failed to access the joblog `x`: denied"
        );
    }

    #[test]
    fn progress_events_print_nothing() {
        assert_eq!(render(&Event::JobQueued), None);
        assert_eq!(
            render(&Event::JobsRunning {
                running: 1,
                workers: 1
            }),
            None
        );
        assert_eq!(
            render(&Event::JobDone {
                done: 1,
                total: None
            }),
            None
        );
    }
}
