//! Workers: places that run jobs. A worker runs one job per call to [`Worker::run`], with as many calls in flight
//! as it has slots; it knows nothing of queues, retries or output order (that is `sched`).
//!
//! Backends ([`WorkerSource`]) announce workers as they appear and disappear, so a run can start on the first pod
//! that is Ready and go on when one is lost.

mod announce;
pub mod local;
pub mod ssh;

pub use announce::announce;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::{JobExit, JobSignal, OutputTx};

/// One attempt of one job, as handed to a worker.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// GNU parallel's `{#}` / `$PARALLEL_SEQ`.
    pub seq: u64,
    /// GNU parallel's `{%}` / `$PARALLEL_JOBSLOT`.
    pub slot: usize,
    /// The full shell command line, already rendered and quoted.
    pub command: String,
}

/// What [`Worker::run`] is handed: the job and the two channels that connect it to its executor. They travel
/// together so that every worker's `run` takes one argument and the executor builds them in one place.
pub struct JobAttempt {
    /// The job to run.
    pub job: JobRun,
    /// Where the job's output goes, in order.
    pub out: OutputTx,
    /// Signals for the job's process group; closed when the job is to be killed.
    pub signals: mpsc::UnboundedReceiver<JobSignal>,
}

/// The future [`Worker::run`] returns: the attempt's exit status, or why it has none.
pub type JobFuture = BoxFuture<'static, Result<JobExit, RunError>>;

/// Where a [`WorkerSource`] announces its workers.
pub type EventTx = mpsc::Sender<WorkerEvent>;

/// The future [`WorkerSource::start`] returns; it ends when the source is done.
pub type SourceFuture = BoxFuture<'static, ()>;

/// Why an attempt did not produce an exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command never started (the connection was gone or refused the channel): the job goes back to the queue
    /// and the attempt does not count.
    #[error("job did not start on `{worker}`: {reason}")]
    NotStarted {
        /// The worker's name.
        worker: String,
        /// What went wrong.
        reason: String,
    },
    /// The command started, then the connection died: the job is re-run once elsewhere.
    #[error("lost the connection to `{worker}` while the job ran: {reason}")]
    CutOff {
        /// The worker's name.
        worker: String,
        /// What went wrong.
        reason: String,
    },
}

/// Something that runs jobs: local slots, an SSH host, a pod.
pub trait Worker: Send + Sync + 'static {
    /// A short name for messages and the joblog's `Host` column (`:` for local, as GNU parallel).
    fn name(&self) -> &str;

    /// How many jobs it runs at once.
    fn slots(&self) -> usize;

    /// Runs one job to its end, writing its output to `attempt.out` in order. Signals received on `attempt.signals`
    /// go to the job's whole process group; when `signals` is closed and the job still runs, the job is killed.
    fn run(self: Arc<Self>, attempt: JobAttempt) -> JobFuture;

    /// True once the worker can no longer run jobs (its connection is closed).
    fn is_gone(&self) -> bool {
        false
    }
}

/// A change in the set of workers of a run.
pub enum WorkerEvent {
    /// A worker is ready to take jobs.
    Joined(Arc<dyn Worker>),
    /// A worker could not be reached or was lost; the run goes on with the others.
    Failed {
        /// Its name.
        name: String,
        /// Why, in the user's terms.
        reason: String,
    },
    /// A limit stopped this source's workers for good (a task's `--max-runtime`, an API server that did not come
    /// back): the run starts no more jobs,
    /// stops the running ones, and ends with an error that gives `reason` and counts what did not finish.
    Stopped {
        /// What stopped them, in the user's terms.
        reason: String,
        /// What the user can do about it.
        hint: String,
    },
    /// The source will announce no more workers.
    Done,
}

/// Announces the workers of a run on `events` until it has no more to give or `cancel` fires.
pub trait WorkerSource: Send + 'static {
    /// Starts announcing; the future ends when the source is done (after sending [`WorkerEvent::Done`]).
    fn start(self: Box<Self>, events: EventTx, cancel: CancellationToken) -> SourceFuture;
}
