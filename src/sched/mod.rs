//! The scheduler of a run: the dispatcher owns the queue, the slots, retries, halt and output order; executors run
//! one attempt each on a worker and report back. See `docs/architecture.md`, "The run loop".

/// A failure of the run as a whole (failed jobs are not errors: they are counted in the exit status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No worker is left to run the remaining jobs.
    #[error("no worker left to run the remaining {remaining} jobs")]
    NoWorkers {
        /// Jobs that did not run.
        remaining: u64,
        /// Why each worker was lost.
        reasons: Vec<String>,
    },
}

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NoWorkers { reasons, .. } => Some(format!("workers were lost: {}", reasons.join("; "))),
        }
    }
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
