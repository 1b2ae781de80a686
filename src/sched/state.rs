//! The scheduler's core: the state of one run (queue, slots, running attempts, tally, halt, retries, lost workers,
//! interrupts) and every rule that changes it, as a synchronous state machine. Each `on_*` handler takes one
//! thing that happened, with the time it happened, and returns the [`Action`]s that follow; it does no I/O, reads
//! no clock and prints nothing, so tests drive it directly (`state/tests.rs`). The dispatcher feeds it and
//! carries out its actions. What follows an attempt's end is in `state/ended.rs`, the dispatcher's questions
//! (read input now? the next deadline? over? how?) in `state/status.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::action::{Action, AttemptEvent, Now, Rules};
use super::core::{self, Capacity, Job};
use super::executor::AttemptId;
use super::halt::Tally;
use super::timeout::Remedian;
use crate::model::JobSignal;
use crate::output::report::Event;
use crate::worker::{JobRun, WorkerEvent};

/// How long killed attempts have to report their end before the run stops waiting for them.
pub const ABANDON_AFTER: Duration = Duration::from_secs(3);

struct WorkerState {
    name: String,
    capacity: usize,
    busy: usize,
    alive: bool,
}

struct Running {
    job: Job,
    worker: usize,
    slot: usize,
    command: String,
    started: Now,
    /// Bytes of output, for the joblog's `Receive` column.
    received: u64,
    /// Its control channel is open (closing it kills the job).
    control: bool,
    /// Killed by `--halt now`: its end is neither printed nor logged (as GNU parallel).
    discarded: bool,
    /// `--timeout`: how many of its steps were taken (more than none: the job timed out), and when the next is
    /// due.
    timeout_steps: u8,
    timeout_at: Option<Instant>,
}

/// The state of one run and its rules.
pub struct RunState {
    rules: Rules,
    workers: Vec<WorkerState>,
    free_slots: BTreeSet<usize>,
    slot_count: usize,
    queue: VecDeque<Job>,
    running: BTreeMap<AttemptId, Running>,
    next_attempt: AttemptId,
    next_seq: u64,
    input_open: bool,
    total: Option<u64>,
    tally: Tally,
    halted: Option<u8>,
    interrupts: u32,
    /// SIGHUP arrived: no more jobs start, the running ones finish (GNU parallel's `start_no_new_jobs`).
    hung_up: bool,
    grace_deadline: Option<Instant>,
    /// `--delay`: no job starts before this (the last start plus the delay); `None` once it has passed.
    next_start: Option<Instant>,
    /// After SIGKILL was sent: when to stop waiting for attempts to report their end.
    abandon_deadline: Option<Instant>,
    /// The attempts' `--timeout` deadlines, earliest first.
    timeouts: BTreeSet<(Instant, AttemptId)>,
    /// `--timeout N%`: the median runtime of the jobs that succeeded.
    runtimes: Remedian,
    abandoned: bool,
    sources_open: usize,
    lost: Vec<String>,
    broken_pipe: bool,
    /// Why a limit stopped the workers for good, and what to do, once one did.
    stopped: Option<(String, String)>,
    /// The actions of the handler that runs, handed out when it returns.
    out: Vec<Action>,
}

impl RunState {
    /// A run by `rules`, waiting for `sources` worker sources to announce workers.
    pub fn new(rules: Rules, sources: usize) -> Self {
        RunState {
            rules,
            workers: Vec::new(),
            free_slots: BTreeSet::new(),
            slot_count: 0,
            queue: VecDeque::new(),
            running: BTreeMap::new(),
            next_attempt: AttemptId(0),
            next_seq: 0,
            input_open: true,
            total: None,
            tally: Tally::default(),
            halted: None,
            interrupts: 0,
            hung_up: false,
            grace_deadline: None,
            next_start: None,
            abandon_deadline: None,
            timeouts: BTreeSet::new(),
            runtimes: Remedian::default(),
            abandoned: false,
            sources_open: sources,
            lost: Vec::new(),
            broken_pipe: false,
            stopped: None,
            out: Vec::new(),
        }
    }

    /// A record was read from the input (`None`: the input ended).
    pub fn on_record(&mut self, record: Option<Vec<String>>, now: Now) -> Vec<Action> {
        match record {
            None => {
                self.input_open = false;
                self.total = Some(self.next_seq);
            }
            Some(args) => {
                self.next_seq += 1;
                let seq = self.next_seq;
                let skip = self.rules.resume.as_ref();
                if skip.is_some_and(|r| r.skip.contains(&seq)) {
                    if !self.broken_pipe {
                        self.out.push(Action::Skip { seq });
                    }
                } else {
                    self.out.push(Action::Report(Event::JobQueued));
                    self.queue.push_back(Job::new(seq, args));
                }
            }
        }
        self.start_jobs(now)
    }

    /// A worker source announced something (`None`: every source is gone). Workers are numbered in the order
    /// they join, which is how [`Action::Start`] names them.
    pub fn on_worker(&mut self, event: Option<WorkerEvent>, now: Now) -> Vec<Action> {
        match event {
            None => self.sources_open = 0,
            Some(WorkerEvent::Done) => self.sources_open = self.sources_open.saturating_sub(1),
            Some(WorkerEvent::Joined(worker)) => {
                let capacity = worker.slots().max(1);
                for _ in 0..capacity {
                    self.slot_count += 1;
                    self.free_slots.insert(self.slot_count);
                }
                self.workers.push(WorkerState {
                    name: worker.name().to_string(),
                    capacity,
                    busy: 0,
                    alive: true,
                });
            }
            Some(WorkerEvent::Failed { name, reason }) => {
                self.lost.push(format!("{name}: {reason}"));
                self.report(Event::WorkerUnusable {
                    worker: name,
                    reason,
                });
            }
            Some(WorkerEvent::Stopped { reason, hint }) if self.stopped.is_none() => {
                self.report(Event::Stopped {
                    reason: reason.clone(),
                    running: self.running.len(),
                });
                self.stopped = Some((reason, hint));
                self.kill_all(now);
            }
            Some(WorkerEvent::Stopped { .. }) => {}
        }
        self.start_jobs(now)
    }

    /// An attempt reported output or its end.
    pub fn on_exec(&mut self, attempt: AttemptId, event: AttemptEvent, now: Now) -> Vec<Action> {
        match event {
            AttemptEvent::Output { stream, data } => {
                if let Some(run) = self.running.get_mut(&attempt)
                    && !run.discarded
                {
                    run.received += data.len() as u64;
                    let seq = run.job.seq;
                    self.out.push(Action::Chunk {
                        attempt,
                        seq,
                        stream,
                        data,
                    });
                }
            }
            AttemptEvent::Ended {
                result,
                worker_gone,
            } => {
                if let Some(mut run) = self.running.remove(&attempt) {
                    self.disarm_timeout(attempt, &mut run);
                    self.on_done(attempt, run, result, worker_gone, now);
                }
            }
        }
        self.start_jobs(now)
    }

    /// The user interrupted the run: the first time, start nothing more, send SIGTERM, and SIGKILL after the
    /// grace period; the second time, SIGKILL at once.
    pub fn on_interrupt(&mut self, now: Now) -> Vec<Action> {
        self.interrupts += 1;
        if self.interrupts == 1 {
            self.report(Event::Interrupted {
                running: self.running.len(),
            });
            for (&attempt, run) in &self.running {
                if run.control {
                    self.out.push(Action::Signal {
                        attempt,
                        signal: JobSignal::Term,
                    });
                }
            }
            // A grace period too long to count ends never.
            self.grace_deadline = now.mono.checked_add(self.rules.grace);
        } else {
            self.kill_all(now);
        }
        self.take()
    }

    /// SIGHUP: no more jobs start and the running ones finish, as GNU parallel does; the exit status counts the
    /// failed jobs as usual. A run that is already stopping takes no notice.
    pub fn on_hangup(&mut self) -> Vec<Action> {
        if !self.stopping() {
            self.hung_up = true;
            let running = self.running.values().map(|r| r.command.clone()).collect();
            self.report(Event::HungUp { running });
        }
        self.take()
    }

    /// Time passed: acts on the deadlines that are due (`--timeout`, the grace period, waiting for killed
    /// attempts).
    pub fn on_tick(&mut self, now: Now) -> Vec<Action> {
        self.fire_timeouts(now);
        if self.next_start.is_some_and(|at| at <= now.mono) {
            self.next_start = None;
            let started = self.start_jobs(now);
            self.out.extend(started);
        }
        if self.grace_deadline.is_some_and(|d| d <= now.mono) {
            self.kill_all(now);
        }
        if self.abandon_deadline.is_some_and(|d| d <= now.mono) {
            return self.on_abandon();
        }
        self.take()
    }

    /// Writing job output failed. A closed pipe (`kb parallel ... | head`) ends the run quietly, as a pipeline
    /// expects; anything else is a warning.
    pub fn on_output_error(&mut self, err: &std::io::Error, now: Now) -> Vec<Action> {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            self.broken_pipe = true;
            self.kill_all(now);
        } else {
            self.report(Event::OutputFailed {
                cause: err.to_string(),
            });
        }
        self.take()
    }

    /// The run is over: kill whatever still runs.
    pub fn on_shutdown(&mut self, now: Now) -> Vec<Action> {
        self.kill_all(now);
        self.take()
    }

    /// Gives up on attempts that did not report their end after SIGKILL (a worker that no longer answers).
    pub fn on_abandon(&mut self) -> Vec<Action> {
        self.abandon_deadline = None;
        self.abandoned = true;
        self.timeouts.clear();
        for (attempt, run) in std::mem::take(&mut self.running) {
            self.out.push(Action::Report(Event::Unconfirmed {
                seq: run.job.seq,
                worker: self.workers[run.worker].name.clone(),
            }));
            self.out.push(Action::Discard { attempt });
        }
        self.take()
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    fn report(&mut self, event: Event) {
        self.out.push(Action::Report(event));
    }

    fn start_jobs(&mut self, now: Now) -> Vec<Action> {
        while !self.stopping() {
            // `--delay`: the next start waits for its turn (`on_tick` comes back then).
            if self.next_start.is_some_and(|at| at > now.mono) {
                break;
            }
            let caps = self.workers.iter().map(|w| Capacity {
                free: w.capacity.saturating_sub(w.busy),
                alive: w.alive,
            });
            let Some(index) = self
                .queue
                .front()
                .and_then(|job| core::choose_worker(caps, job))
            else {
                break;
            };
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.start(job, index, now);
            self.next_start = self.rules.delay.and_then(|d| now.mono.checked_add(d));
        }
        self.take()
    }

    fn start(&mut self, job: Job, worker: usize, now: Now) {
        let slot = self.free_slots.pop_first().unwrap_or_else(|| {
            self.slot_count += 1;
            self.slot_count
        });
        let command = self.rules.template.render(&job.args, job.seq, slot);
        let tag = self
            .rules
            .tag
            .as_ref()
            .map(|t| t.render(&job.args, job.seq, slot));
        self.workers[worker].busy += 1;
        let attempt = self.next_attempt;
        self.next_attempt.0 += 1;
        let run = JobRun {
            seq: job.seq,
            slot,
            command: command.clone(),
        };
        self.out.push(Action::Start {
            attempt,
            worker,
            run,
            tag,
        });
        let running = Running {
            job,
            worker,
            slot,
            command,
            started: now,
            received: 0,
            control: true,
            discarded: false,
            timeout_steps: 0,
            timeout_at: None,
        };
        self.running.insert(attempt, running);
        self.arm_timeout(attempt, now);
        self.report(Event::JobsRunning {
            running: self.running.len(),
            workers: self.workers.iter().filter(|w| w.alive).count(),
        });
    }

    /// Kills every running attempt (SIGKILL to its process group, then its channel closed).
    fn kill_all(&mut self, now: Now) {
        self.grace_deadline = None;
        if !self.running.is_empty() && self.abandon_deadline.is_none() {
            self.abandon_deadline = Some(now.mono + ABANDON_AFTER);
        }
        for (&attempt, run) in self.running.iter_mut() {
            if std::mem::take(&mut run.control) {
                self.out.push(Action::Kill { attempt });
            }
        }
    }
}

mod ended;
mod status;
mod timeout;

#[cfg(test)]
mod tests;
