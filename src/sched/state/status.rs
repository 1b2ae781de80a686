//! What the dispatcher asks the core between events: whether to read input, when the next deadline is, whether
//! the run is over and how it ended.

use std::time::Instant;

use super::RunState;
use crate::error::exit;
use crate::sched::Error;
use crate::sched::core;

impl RunState {
    /// Whether the dispatcher should read another record now: only when a slot could take it.
    pub fn wants_input(&self) -> bool {
        let free = self.free_capacity();
        self.input_open && !self.stopping() && self.queue.len() < free.max(1) && free > 0
    }

    /// Whether the input must be read to its end before any job runs (`--halt` with a percentage).
    pub fn needs_all_input(&self) -> bool {
        self.rules.halt.is_some_and(|h| h.needs_total())
    }

    /// Whether the input has not ended yet.
    pub fn input_open(&self) -> bool {
        self.input_open
    }

    /// Whether a worker source may still announce something.
    pub fn sources_open(&self) -> bool {
        self.sources_open > 0
    }

    /// Whether attempts are running.
    pub fn has_running(&self) -> bool {
        !self.running.is_empty()
    }

    /// The next moment [`RunState::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeouts.first().map(|(at, _)| *at);
        // `--delay`'s next start counts only while a job waits for it.
        let next_start = self
            .next_start
            .filter(|_| !self.queue.is_empty() && !self.stopping());
        [
            self.grace_deadline,
            self.abandon_deadline,
            timeout,
            next_start,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the run is over: nothing runs, and nothing is left or the run stops early.
    pub fn finished(&self) -> bool {
        self.abandoned
            || (self.running.is_empty()
                && (self.stopping() || (!self.input_open && self.queue.is_empty())))
    }

    /// With jobs left and no worker alive or coming, the run cannot go on.
    pub fn stranded(&self) -> Option<Error> {
        let work_left = !self.queue.is_empty() || self.input_open;
        let no_workers = self.sources_open == 0 && !self.workers.iter().any(|w| w.alive);
        (work_left && no_workers && self.running.is_empty()).then(|| Error::NoWorkers {
            reasons: self.lost.clone(),
        })
    }

    /// How the run ended: its exit status (GNU parallel's contract), or the limit that stopped it.
    pub fn outcome(&mut self) -> crate::sched::Result<u8> {
        if let Some((reason, hint)) = self.stopped.take() {
            let done = self.tally.succeeded + self.tally.failed;
            return Err(Error::Stopped {
                reason,
                hint,
                done,
                unfinished: self.next_seq.saturating_sub(done),
                input_left: self.input_open,
            });
        }
        Ok(if self.broken_pipe {
            exit::SUCCESS
        } else if self.interrupts > 0 {
            exit::INTERRUPTED
        } else if let Some(status) = self.halted {
            status
        } else if let Some(halt) = self.rules.halt {
            halt.exit_status_not_halted(self.tally)
        } else {
            core::exit_status(self.tally.failed)
        })
    }

    pub(super) fn stopping(&self) -> bool {
        self.halted.is_some()
            || self.interrupts > 0
            || self.hung_up
            || self.broken_pipe
            || self.stopped.is_some()
    }

    pub(super) fn free_capacity(&self) -> usize {
        let alive = self.workers.iter().filter(|w| w.alive);
        alive.map(|w| w.capacity.saturating_sub(w.busy)).sum()
    }
}
