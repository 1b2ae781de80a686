//! What goes into the scheduler's core and what comes out: the inputs the dispatcher reads from the world (a
//! moment, an attempt's report), the options the core decides by, and the [`Action`]s it asks the dispatcher to
//! carry out. Plain data only.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::executor::AttemptId;
use super::halt::Halt;
use crate::joblog;
use crate::model::{JobExit, JobSignal, Stream};
use crate::output::report::Event;
use crate::template::Template;
use crate::worker::{JobRun, RunError};

/// A moment as the dispatcher read it: the wall clock for the joblog's `Starttime`, the monotonic clock for
/// runtimes and deadlines (the grace period, `--timeout`). The core never reads a clock itself, so tests choose
/// the time.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// The wall clock.
    pub wall: SystemTime,
    /// The monotonic clock.
    pub mono: Instant,
}

impl Now {
    /// `self` plus `d` on both clocks.
    pub fn after(self, d: Duration) -> Now {
        Now {
            wall: self.wall + d,
            mono: self.mono + d,
        }
    }
}

/// The options the core decides by.
pub struct Rules {
    /// The command template.
    pub template: Template,
    /// `--tag`/`--tagstring`: the template of the line prefix.
    pub tag: Option<Template>,
    /// `--retries`.
    pub retries: u32,
    /// `--halt`.
    pub halt: Option<Halt>,
    /// `--resume`/`--resume-failed`: the jobs to skip.
    pub resume: Option<joblog::Resume>,
    /// Time between SIGTERM and SIGKILL on the first interrupt.
    pub grace: Duration,
    /// `--timeout`: how long an attempt may run before it is stopped (SIGTERM, SIGTERM again after 200 ms,
    /// SIGKILL 100 ms later, as GNU parallel), fixed or a percentage of the median runtime.
    pub timeout: Option<super::timeout::Timeout>,
    /// Whether a joblog is written (without one, the core builds no joblog lines).
    pub joblog: bool,
    /// `--delay`: the least time between two job starts.
    pub delay: Option<Duration>,
}

/// What an attempt's executor reported, with what the dispatcher knows of its worker at that moment.
#[derive(Debug)]
pub enum AttemptEvent {
    /// A chunk of output, in order.
    Output {
        /// Stdout or stderr.
        stream: Stream,
        /// The bytes.
        data: Bytes,
    },
    /// The attempt ended.
    Ended {
        /// Its exit, or why it has none.
        result: Result<JobExit, RunError>,
        /// Its worker's connection is closed (asked when the end arrives: a refused channel on a live
        /// connection costs one slot, on a closed one the worker).
        worker_gone: bool,
    },
}

/// What the core asks the dispatcher to do, in order.
#[derive(Debug)]
pub enum Action {
    /// Start an attempt: run `run` on the worker with this index (workers are numbered in the order they
    /// joined), its output prefixed with `tag`.
    Start {
        /// The new attempt.
        attempt: AttemptId,
        /// The worker's index.
        worker: usize,
        /// The job as the worker gets it.
        run: JobRun,
        /// The rendered `--tag`/`--tagstring` prefix.
        tag: Option<String>,
    },
    /// Send `signal` to the attempt's job.
    Signal {
        /// The attempt.
        attempt: AttemptId,
        /// The signal.
        signal: JobSignal,
    },
    /// Send SIGKILL to the attempt's job and close its control channel (which kills it where a signal cannot).
    Kill {
        /// The attempt.
        attempt: AttemptId,
    },
    /// Hand a chunk of the attempt's output to the printer (which prints it now or keeps it, by mode).
    Chunk {
        /// The attempt.
        attempt: AttemptId,
        /// Its job's sequence number.
        seq: u64,
        /// Stdout or stderr.
        stream: Stream,
        /// The bytes.
        data: Bytes,
    },
    /// The attempt was its job's last: print its output (now, or in `-k` order) and forget the attempt.
    Finish {
        /// The attempt.
        attempt: AttemptId,
        /// Its job's sequence number.
        seq: u64,
    },
    /// Forget the attempt without printing what it kept back.
    Discard {
        /// The attempt.
        attempt: AttemptId,
    },
    /// Job `seq` was skipped (`--resume`): `-k` must not wait for it.
    Skip {
        /// Its sequence number.
        seq: u64,
    },
    /// Write this joblog line.
    Log(joblog::Entry),
    /// Tell the user.
    Report(Event),
}
