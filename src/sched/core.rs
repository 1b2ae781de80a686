//! The synchronous decisions of the scheduler, free of I/O so tests drive them directly: which worker a job goes
//! to, and what happens after an attempt (done, retry, re-run after a cut-off, back to the queue).

use crate::model::JobExit;
use crate::worker::RunError;

/// A job waiting to run or running.
#[derive(Debug, Clone)]
pub struct Job {
    /// `{#}`: its place in the input, from 1.
    pub seq: u64,
    /// One value per input source.
    pub args: Vec<String>,
    /// Attempts that ran to an exit status (for `--retries`).
    pub attempts: u32,
    /// Attempts cut off by a lost connection.
    pub cutoffs: u32,
    /// Workers this job failed or was cut off on, avoided when another worker is free.
    pub avoid: Vec<usize>,
}

impl Job {
    /// A job that has not run yet.
    pub fn new(seq: u64, args: Vec<String>) -> Self {
        Job {
            seq,
            args,
            attempts: 0,
            cutoffs: 0,
            avoid: Vec::new(),
        }
    }
}

/// What the scheduler knows of a worker when choosing one.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Free slots now.
    pub free: usize,
    /// False once the worker is lost.
    pub alive: bool,
}

/// Picks the worker for `job`: the one with the most free slots among those the job has not failed on, else the
/// one with the most free slots. `None` when no slot is free.
pub fn choose_worker(workers: impl Iterator<Item = Capacity> + Clone, job: &Job) -> Option<usize> {
    let best = |avoiding: bool| {
        workers
            .clone()
            .enumerate()
            .filter(|(i, w)| w.alive && w.free > 0 && !(avoiding && job.avoid.contains(i)))
            .max_by_key(|(i, w)| (w.free, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    };
    best(true).or_else(|| best(false))
}

/// What to do after an attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The job is finished with this result (success or final failure).
    Final(JobExit),
    /// The command failed and `--retries` allows another attempt (on another worker when there is one).
    Retry,
    /// The command never started: back to the front of the queue, the attempt does not count.
    Requeue,
    /// The connection died while it ran: log this attempt and re-run it once elsewhere.
    Rerun,
    /// The connection died while it ran, and it had already been re-run once: it failed.
    LostTwice,
}

/// Decides what follows an attempt of `job` on worker `worker`, updating the job's counters.
pub fn after_attempt(
    job: &mut Job,
    worker: usize,
    result: &Result<JobExit, RunError>,
    retries: u32,
) -> Decision {
    match result {
        Ok(exit) => {
            job.attempts += 1;
            if !exit.success() && job.attempts < retries.max(1) {
                job.avoid.push(worker);
                Decision::Retry
            } else {
                Decision::Final(*exit)
            }
        }
        Err(RunError::NotStarted { .. }) => Decision::Requeue,
        Err(RunError::CutOff { .. }) => {
            job.cutoffs += 1;
            job.avoid.push(worker);
            if job.cutoffs > 1 {
                Decision::LostTwice
            } else {
                Decision::Rerun
            }
        }
    }
}

/// The exit status of a run that was not halted: the number of failed jobs, 101 for more than 100.
pub fn exit_status(failed: u64) -> u8 {
    failed.min(101) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(free: usize) -> Capacity {
        Capacity { free, alive: true }
    }

    #[test]
    fn chooses_most_free_and_avoids_failed_workers() {
        let mut job = Job::new(1, vec![]);
        assert_eq!(
            choose_worker([cap(1), cap(3), cap(3)].into_iter(), &job),
            Some(1)
        );
        job.avoid.push(1);
        assert_eq!(
            choose_worker([cap(1), cap(3), cap(3)].into_iter(), &job),
            Some(2)
        );
        assert_eq!(
            choose_worker([cap(0), cap(2)].into_iter(), &job),
            Some(1),
            "falls back to an avoided worker"
        );
        let dead = Capacity {
            free: 5,
            alive: false,
        };
        assert_eq!(choose_worker([dead, cap(0)].into_iter(), &job), None);
    }

    #[test]
    fn failure_is_retried_only_with_retries() {
        let mut job = Job::new(1, vec![]);
        assert_eq!(
            after_attempt(&mut job, 0, &Ok(JobExit::Code(1)), 0),
            Decision::Final(JobExit::Code(1))
        );
        let mut job = Job::new(1, vec![]);
        assert_eq!(
            after_attempt(&mut job, 0, &Ok(JobExit::Code(1)), 3),
            Decision::Retry
        );
        assert_eq!(
            after_attempt(&mut job, 1, &Ok(JobExit::Code(1)), 3),
            Decision::Retry
        );
        assert_eq!(
            after_attempt(&mut job, 0, &Ok(JobExit::Code(1)), 3),
            Decision::Final(JobExit::Code(1))
        );
        assert_eq!(job.attempts, 3);
    }

    #[test]
    fn transport_failures_do_not_count_as_attempts() {
        let mut job = Job::new(1, vec![]);
        let not_started = Err(RunError::NotStarted {
            worker: "a".into(),
            reason: "x".into(),
        });
        assert_eq!(
            after_attempt(&mut job, 0, &not_started, 0),
            Decision::Requeue
        );
        assert_eq!(job.attempts, 0);
        let cut = Err(RunError::CutOff {
            worker: "a".into(),
            reason: "x".into(),
        });
        assert_eq!(after_attempt(&mut job, 0, &cut, 0), Decision::Rerun);
        assert_eq!(job.avoid, vec![0]);
        assert_eq!(after_attempt(&mut job, 1, &cut, 0), Decision::LostTwice);
    }

    #[test]
    fn exit_status_caps_at_101() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(100), 100);
        assert_eq!(exit_status(150), 101);
    }
}
