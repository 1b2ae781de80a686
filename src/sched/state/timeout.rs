//! `--timeout`: an attempt that runs too long gets SIGTERM at its deadline, SIGTERM again 200 ms later and SIGKILL
//! 100 ms after that, as GNU parallel does; its end is then reported as timed out (a warning, and Exitval -1 in
//! the joblog).

use std::time::{Duration, Instant};

use super::{RunState, Running};
use crate::model::JobSignal;
use crate::sched::action::{Action, Now};
use crate::sched::executor::AttemptId;
use crate::sched::timeout::Timeout;

impl Running {
    /// Whether `--timeout` stopped (or began to stop) it.
    pub(super) fn timed_out(&self) -> bool {
        self.timeout_steps > 0
    }
}

impl RunState {
    /// Sets the `--timeout` deadline of an attempt that just started.
    pub(super) fn arm_timeout(&mut self, attempt: AttemptId, now: Now) {
        // A timeout too long to count ends never.
        let at = self.timeout_limit().and_then(|t| now.mono.checked_add(t));
        self.set_timeout(attempt, at);
    }

    fn timeout_limit(&self) -> Option<Duration> {
        let median = self.runtimes.median();
        self.rules.timeout.and_then(|t| t.limit(median))
    }

    /// `--timeout N%`: a job that succeeded took `runtime`; the limit follows the new median, for the running
    /// attempts too (GNU parallel measures each against the current limit).
    pub(super) fn record_runtime(&mut self, runtime: Duration, now: Now) {
        if !matches!(self.rules.timeout, Some(Timeout::OfMedian(_))) {
            return;
        }
        self.runtimes.push(runtime.as_secs_f64());
        let limit = self.timeout_limit();
        let waiting: Vec<(AttemptId, Instant)> = self
            .running
            .iter()
            .filter(|(_, run)| run.timeout_steps == 0)
            .map(|(&attempt, run)| (attempt, run.started.mono))
            .collect();
        for (attempt, started) in waiting {
            if let Some(run) = self.running.get_mut(&attempt)
                && let Some(at) = run.timeout_at.take()
            {
                self.timeouts.remove(&(at, attempt));
            }
            let at = limit.and_then(|t| started.checked_add(t));
            self.set_timeout(attempt, at);
        }
        self.fire_timeouts(now);
    }

    /// Forgets the deadline of an attempt that ended.
    pub(super) fn disarm_timeout(&mut self, attempt: AttemptId, run: &mut Running) {
        if let Some(at) = run.timeout_at.take() {
            self.timeouts.remove(&(at, attempt));
        }
    }

    /// Takes the next step for every attempt whose deadline has come. The steps go on after the attempt's control
    /// channel closed (nothing is sent then), so its end is still reported as timed out.
    pub(super) fn fire_timeouts(&mut self, now: Now) {
        while let Some(&(at, attempt)) = self.timeouts.first()
            && at <= now.mono
        {
            self.timeouts.pop_first();
            let Some(run) = self.running.get_mut(&attempt) else {
                continue;
            };
            run.timeout_at = None;
            let (signal, next) = match run.timeout_steps {
                0 => (JobSignal::Term, Some(Duration::from_millis(200))),
                1 => (JobSignal::Term, Some(Duration::from_millis(100))),
                _ => (JobSignal::Kill, None),
            };
            run.timeout_steps += 1;
            if run.control {
                self.out.push(Action::Signal { attempt, signal });
            }
            let at = next.and_then(|d| now.mono.checked_add(d));
            self.set_timeout(attempt, at);
        }
    }

    fn set_timeout(&mut self, attempt: AttemptId, at: Option<Instant>) {
        let (Some(at), Some(run)) = (at, self.running.get_mut(&attempt)) else {
            return;
        };
        run.timeout_at = Some(at);
        self.timeouts.insert((at, attempt));
    }
}
