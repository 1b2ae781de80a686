//! What follows the end of an attempt: the job is finished (logged, counted, printed, `--halt` checked), tried
//! again (`--retries`), put back in the queue (it never started), or re-run once elsewhere (cut off by a lost
//! worker).

use super::{RunState, Running};
use crate::joblog;
use crate::model::{JobExit, JobSignal};
use crate::output::report::Event;
use crate::sched::action::{Action, Now};
use crate::sched::core::{self, Decision};
use crate::sched::executor::AttemptId;
use crate::sched::halt::When;
use crate::worker::RunError;

impl RunState {
    /// Attempt `attempt`, already taken out of the running ones, ended with `result`.
    pub(super) fn on_done(
        &mut self,
        attempt: AttemptId,
        mut run: Running,
        result: Result<JobExit, RunError>,
        worker_gone: bool,
        now: Now,
    ) {
        self.free_slots.insert(run.slot);
        let worker = run.worker;
        self.workers[worker].busy -= 1;
        if run.discarded {
            self.out.push(Action::Discard { attempt });
            return;
        }
        // Stopped by a limit: an attempt that did not exit by itself did not finish; it is logged (Exitval -1, so
        // `--resume-failed` runs it again) and not counted as failed.
        if self.stopped.is_some() && !matches!(result, Ok(JobExit::Code(_))) {
            self.log(&run, JobExit::Code(-1), now);
            self.out.push(Action::Discard { attempt });
            self.queue.push_back(run.job);
            return;
        }
        match core::after_attempt(&mut run.job, worker, &result, self.rules.retries) {
            Decision::Final(exit) => return self.finish_job(attempt, run, exit, now),
            Decision::Retry => {}
            Decision::Requeue => self.degrade_worker(worker, &result, worker_gone),
            Decision::Rerun => {
                self.lose_worker(worker, &result);
                self.log(&run, JobExit::Code(-1), now);
            }
            Decision::LostTwice => {
                self.lose_worker(worker, &result);
                return self.finish_job(attempt, run, JobExit::Code(-1), now);
            }
        }
        self.out.push(Action::Discard { attempt });
        self.queue.push_front(run.job);
    }

    fn finish_job(&mut self, attempt: AttemptId, run: Running, exit: JobExit, now: Now) {
        if run.timed_out() {
            self.report(Event::TimedOut {
                command: run.command.clone(),
            });
        }
        self.log(&run, exit, now);
        if exit.success() && !run.timed_out() {
            self.record_runtime(now.mono.duration_since(run.started.mono), now);
        }
        if exit.success() {
            self.tally.succeeded += 1;
        } else {
            self.tally.failed += 1;
        }
        self.report(Event::JobDone {
            done: self.tally.succeeded + self.tally.failed,
            total: self.total,
        });
        let seq = run.job.seq;
        self.out.push(match self.broken_pipe {
            false => Action::Finish { attempt, seq },
            true => Action::Discard { attempt },
        });
        self.check_halt(exit, run.command);
    }

    fn check_halt(&mut self, exit: JobExit, command: String) {
        let Some(halt) = self.rules.halt else { return };
        if let Some(notice) = halt.notice(!exit.success()) {
            self.report(Event::Counted { notice, command });
        }
        if self.halted.is_some() || !halt.triggered(self.tally, self.total) {
            return;
        }
        let status = match exit {
            JobExit::Code(code) => code,
            JobExit::Signal(sig) => 128 + sig,
        };
        let total = self.total.unwrap_or(self.next_seq);
        self.halted = Some(halt.exit_status(status, self.tally, total));
        if halt.when == When::Now {
            for (&attempt, run) in self.running.iter_mut() {
                run.discarded = true;
                if std::mem::take(&mut run.control) {
                    let signal = JobSignal::Term;
                    self.out.push(Action::Signal { attempt, signal });
                    self.out.push(Action::Kill { attempt });
                }
            }
        } else if !self.running.is_empty() {
            self.report(Event::HaltWaiting {
                running: self.running.len(),
            });
        }
    }

    fn log(&mut self, run: &Running, exit: JobExit, now: Now) {
        if !self.rules.joblog {
            return;
        }
        let start = run.started.wall.duration_since(std::time::UNIX_EPOCH);
        self.out.push(Action::Log(joblog::Entry {
            seq: run.job.seq,
            host: self.workers[run.worker].name.clone(),
            start: start.map(|d| d.as_secs_f64()).unwrap_or(0.0),
            runtime: now.mono.duration_since(run.started.mono).as_secs_f64(),
            send: 0,
            receive: run.received,
            // GNU parallel logs a job killed by --timeout with Exitval -1.
            exitval: if run.timed_out() { -1 } else { exit.exitval() },
            signal: exit.signal(),
            command: run.command.clone(),
        }));
    }

    /// A channel could not be opened on a live connection: that slot is unusable.
    fn degrade_worker(&mut self, index: usize, result: &Result<JobExit, RunError>, gone: bool) {
        if gone {
            return self.lose_worker(index, result);
        }
        let state = &mut self.workers[index];
        state.capacity = state.capacity.saturating_sub(1);
        let (worker, slots) = (state.name.clone(), state.capacity);
        if let Err(err) = result {
            let reason = err.to_string();
            self.report(Event::SlotRefused {
                worker,
                slots,
                reason,
            });
        }
        if slots == 0 {
            self.lose_worker(index, result);
        }
    }

    fn lose_worker(&mut self, index: usize, result: &Result<JobExit, RunError>) {
        let state = &mut self.workers[index];
        if !state.alive {
            return;
        }
        state.alive = false;
        let reason = match result {
            Err(err) => err.to_string(),
            Ok(_) => "lost".to_string(),
        };
        let worker = state.name.clone();
        self.report(Event::WorkerLost {
            worker,
            reason: reason.clone(),
        });
        self.lost.push(reason);
    }
}
