//! The scheduler of a run: the core (`state`) holds the queue, the slots, retries, halt and output order and
//! decides; the dispatcher carries out its decisions; executors run one attempt each on a worker and report back.
//! See `docs/architecture.md`, "Data flow of `kb parallel`".

pub mod action;
pub mod core;
pub mod dispatcher;
pub mod executor;
pub mod halt;
pub mod state;
pub mod timeout;

use std::time::Duration;

use tokio::sync::mpsc;

use crate::input::Inputs;
use crate::joblog;
use crate::output::printer::Printer;
use crate::output::report::{Event, Reporter};
use crate::signal::SignalHandler;
use crate::template::Template;
use crate::worker::WorkerSource;

/// A failure of the run as a whole (failed jobs are not errors: they are counted in the exit status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No worker is left to run the remaining jobs.
    #[error("no worker left to run the jobs{}", lost_summary(reasons))]
    NoWorkers {
        /// Why each worker was lost.
        reasons: Vec<String>,
    },
    /// A limit stopped the workers for good (a task's `--max-runtime`, an API server that did not come back).
    #[error("{reason}; {}", stopped_summary(*.done, *.unfinished, *.input_left))]
    Stopped {
        /// What stopped them.
        reason: String,
        /// What to do about it.
        hint: String,
        /// Jobs that ended (succeeded or failed).
        done: u64,
        /// Jobs read but not finished.
        unfinished: u64,
        /// Whether input was left unread.
        input_left: bool,
    },
    /// The input could not be read.
    #[error(transparent)]
    Input(#[from] crate::input::Error),
}

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NoWorkers { .. } => {
                Some("check that the hosts or pods can be reached, then run again (with --joblog and --resume, \
                      only the jobs that did not run)".into())
            }
            Error::Stopped { hint, .. } => Some(format!(
                "{hint}; with `--joblog FILE`, running again with `--joblog FILE --resume-failed` does only the \
                 jobs that did not finish"
            )),
            Error::Input(_) => None,
        }
    }
}

fn stopped_summary(done: u64, unfinished: u64, input_left: bool) -> String {
    let rest = if input_left {
        " and the rest of the input was not read"
    } else {
        ""
    };
    format!("{done} jobs done, {unfinished} did not finish{rest}")
}

fn lost_summary(reasons: &[String]) -> String {
    match reasons {
        [] => String::new(),
        [one] => format!(": {one}"),
        many => format!(": {} workers lost: {}", many.len(), many.join("; ")),
    }
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a run needs besides its input and workers.
pub struct RunSpec {
    /// The command template.
    pub template: Template,
    /// `--tag`/`--tagstring`: the template of the line prefix.
    pub tag: Option<Template>,
    /// Where job output goes.
    pub printer: Printer,
    /// `--retries`.
    pub retries: u32,
    /// `--halt`.
    pub halt: Option<halt::Halt>,
    /// `--timeout`.
    pub timeout: Option<timeout::Timeout>,
    /// `--delay`: the least time between two job starts.
    pub delay: Option<std::time::Duration>,
    /// `--joblog`.
    pub joblog: Option<joblog::Writer>,
    /// `--resume`/`--resume-failed`.
    pub resume: Option<joblog::Resume>,
    /// Time between SIGTERM and SIGKILL on the first interrupt.
    pub grace: Duration,
    /// Words every message about the run and drives `--bar`/`--eta`/`--progress`.
    pub reporter: Reporter,
    /// Told `(jobs done, total when known)` after every finished job (the heartbeat shows it in `kb status`).
    pub observer: Option<Observer>,
}

/// Told `(jobs done, total when known)`.
pub type Observer = Box<dyn Fn(u64, Option<u64>) + Send>;

/// Runs every record of `inputs` through `spec` on the workers `sources` announce; returns the exit status.
pub async fn run(
    spec: RunSpec,
    inputs: Inputs,
    sources: Vec<Box<dyn WorkerSource>>,
    signals: SignalHandler,
) -> Result<u8> {
    let (tx, rx) = mpsc::channel(1024);
    let reporter = spec.reporter.clone();
    let input_reporter = reporter.clone();
    // Input is read on a blocking thread (stdin may be a terminal or a slow pipe) and handed over a bounded
    // channel, so memory stays constant and the first job starts before the input ends. The thread is not joined:
    // it ends at the next record once the receiver is gone, and a read blocked on a terminal must not hold up exit.
    // Its warnings are reported from the thread, when the input is read, as GNU parallel prints them.
    std::thread::spawn(move || {
        let mut inputs = inputs;
        while let Some(record) = inputs.next() {
            for text in inputs.take_warnings() {
                input_reporter.report(&Event::InputWarning { text });
            }
            if tx.blocking_send(record).is_err() {
                return;
            }
        }
    });
    dispatcher::Dispatcher::run(spec, reporter, rx, sources, signals).await
}
