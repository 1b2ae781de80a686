//! The one place that words what the user reads about a run, besides the jobs' own output: warnings, GNU
//! parallel's notices and the progress display. The scheduler hands it typed [`Event`]s; it never formats a
//! message itself. Wording follows GNU parallel where GNU prints the same thing (`This job failed:`,
//! `Starting no more jobs.`), so scripts and eyes used to GNU see the same lines.
//!
//! This module must not know the scheduler's types: events carry plain data only.

use std::io::Write;
use std::time::Duration;

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
    /// SIGHUP: no more jobs start; the running ones finish (GNU parallel's notice, with their command lines).
    HungUp {
        /// The command lines of the jobs still running.
        running: Vec<String>,
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
    /// The working directory is shared lazily: served from here while the run lasts, mounted in the workers.
    ShareLazy {
        /// How the workers mount it (`an NFS volume`, `a FUSE mount`).
        mount: String,
    },
    /// The working directory was uploaded to the share server.
    ShareUploaded {
        /// What was sent and what was already there.
        summary: String,
        /// How long the upload took.
        took: Duration,
    },
    /// There is no share server: the working directory is copied into each worker instead.
    ShareCopied {
        /// The namespace without a share server.
        namespace: String,
    },
    /// No node offers FUSE, so the lazy share falls back to an NFS volume.
    LazyMountFallback {
        /// The resource nobody offers.
        resource: String,
    },
    /// Waiting for something the task needs, said once.
    Waiting {
        /// What, in the user's terms.
        what: String,
    },
    /// The API server stopped answering; the run retries for a while.
    ApiUnreachable {
        /// The API server's address.
        url: String,
        /// How long the connections to the workers are retried.
        retry: Duration,
    },
    /// A lost worker came back and rejoined the run.
    WorkerRejoined {
        /// The worker's name.
        worker: String,
    },
    /// What the jobs wrote on one worker could not be brought back.
    SyncbackFailed {
        /// The worker.
        worker: String,
        /// Why.
        reason: String,
    },
    /// What the syncback brought back.
    Syncback {
        /// Files updated here.
        updated: usize,
        /// Files that were already the same.
        unchanged: usize,
        /// Files changed here and on a worker.
        conflicts: usize,
    },
    /// A file changed here and on a worker during the run: the local one is kept, the worker's set aside.
    SyncConflict {
        /// The file, relative to the working directory.
        path: String,
        /// Where the worker's version was put.
        aside: String,
    },
}

/// Words [`Event`]s on stderr and drives the progress display. Cloning it gives another handle to the same
/// display (the input thread has one for its warnings).
#[derive(Clone)]
pub struct Reporter {
    progress: Progress,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").finish_non_exhaustive()
    }
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

    /// A reporter with no progress display, for commands that show none (`kb shell`, task set-up).
    pub fn plain() -> Self {
        Reporter::new(Progress::new(false, false, false))
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
        Event::HungUp { running } => {
            let mut text = format!(
                "kb: SIGHUP received. No new jobs will be started.\nkb: Waiting for these {} jobs to finish. Send \
                 SIGTERM to stop now.",
                running.len()
            );
            for command in running {
                text.push_str(&format!("\nkb: {command}"));
            }
            text
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
        Event::ShareLazy { mount } => {
            format!("kb: share: lazy, served from here while the run lasts, {mount} in the pods")
        }
        Event::ShareUploaded { summary, took } => {
            format!("kb: share: {summary} in {:.2} s", took.as_secs_f64())
        }
        Event::ShareCopied { namespace } => format!(
            "kb: note: no share server in namespace `{namespace}` (`kb cluster-setup` deploys it); the working \
             directory is copied into each pod instead"
        ),
        Event::LazyMountFallback { resource } => format!(
            "kb: note: no node offers `{resource}` for a FUSE mount: the lazy share is an NFS volume in the pods \
             (--lazy-mount nfs)"
        ),
        Event::Waiting { what } => format!("kb: waiting for {what}"),
        Event::ApiUnreachable { url, retry } => format!(
            "kb: warning: the Kubernetes API server at `{url}` does not answer; retrying (up to {} s for the \
             connections to the pods, `KB_API_RETRY`)",
            retry.as_secs()
        ),
        Event::WorkerRejoined { worker } => {
            format!("kb: reconnected to pod `{worker}`: it rejoined the run")
        }
        Event::SyncbackFailed { worker, reason } => format!(
            "kb: syncback: pod {worker}: {reason}; what its jobs wrote there is not brought back"
        ),
        Event::Syncback {
            updated,
            unchanged,
            conflicts,
        } => format!(
            "kb: syncback: {updated} files updated, {unchanged} already the same, {conflicts} conflicts"
        ),
        Event::SyncConflict { path, aside } => format!(
            "kb: conflict: `{path}` changed here and in a pod during the run; yours is kept, the pod's is `{aside}`"
        ),
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
    fn words_the_tasks_notices() {
        assert_eq!(
            text(Event::ShareUploaded {
                summary: "3 files".into(),
                took: Duration::from_millis(1250)
            }),
            "kb: share: 3 files in 1.25 s"
        );
        assert_eq!(
            text(Event::Waiting {
                what: "the share server (pod kb-share) to be Ready".into()
            }),
            "kb: waiting for the share server (pod kb-share) to be Ready"
        );
        assert_eq!(
            text(Event::Syncback {
                updated: 2,
                unchanged: 5,
                conflicts: 1
            }),
            "kb: syncback: 2 files updated, 5 already the same, 1 conflicts"
        );
        assert_eq!(
            text(Event::WorkerRejoined { worker: "p".into() }),
            "kb: reconnected to pod `p`: it rejoined the run"
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
