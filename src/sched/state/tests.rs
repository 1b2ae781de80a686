//! The core's rules, driven through a recording fake of the dispatcher ([`Sim`]): it carries out the core's actions
//! the way the dispatcher does (job output goes through the real printer, into memory) and records everything
//! else: starts, signals, joblog lines and the events the user would read. No runtime, no I/O, no clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::RunState;
use crate::joblog;
use crate::model::{JobExit, JobSignal, Stream};
use crate::output::printer::{JobBuffer, Mode, Printer};
use crate::output::report::Event;
use crate::sched::action::{Action, AttemptEvent, Now, Rules};
use crate::sched::executor::AttemptId;
use crate::sched::halt;
use crate::template::Template;
use crate::worker::{JobAttempt, JobFuture, RunError, Worker, WorkerEvent};

mod faults;
mod halts;

struct FakeWorker {
    name: String,
    slots: usize,
}

impl Worker for FakeWorker {
    fn name(&self) -> &str {
        &self.name
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn run(self: Arc<Self>, _attempt: JobAttempt) -> JobFuture {
        Box::pin(std::future::pending())
    }
}

/// An attempt the fake dispatcher started.
struct Started {
    seq: u64,
    buf: JobBuffer,
}

/// The recording fake of the dispatcher.
struct Sim {
    core: RunState,
    now: Now,
    printer: Printer<Vec<u8>, Vec<u8>>,
    running: BTreeMap<AttemptId, Started>,
    /// Every start: (seq, worker, slot).
    starts: Vec<(u64, usize, usize)>,
    /// Every signal sent, by job: `Kill` also stands for the closed control channel.
    signals: Vec<(u64, JobSignal)>,
    log: Vec<joblog::Entry>,
    /// What the user would read, progress left out.
    events: Vec<Event>,
    next_record: u64,
}

fn rules() -> Rules {
    Rules {
        template: Template::parse(&["echo".to_string(), "{}".to_string()]),
        tag: None,
        retries: 0,
        halt: None,
        resume: None,
        grace: Duration::from_secs(10),
        timeout: None,
        joblog: true,
        delay: None,
    }
}

fn halt(value: &str) -> Option<halt::Halt> {
    halt::parse(value).unwrap()
}

fn not_started() -> Result<JobExit, RunError> {
    Err(RunError::NotStarted {
        worker: "w".into(),
        reason: "channel refused".into(),
    })
}

fn cut_off() -> Result<JobExit, RunError> {
    Err(RunError::CutOff {
        worker: "w".into(),
        reason: "connection reset".into(),
    })
}

impl Sim {
    fn new(rules: Rules) -> Self {
        Sim::with_printer(rules, false)
    }

    fn with_printer(rules: Rules, keep_order: bool) -> Self {
        Sim {
            core: RunState::new(rules, 1),
            now: Now {
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                mono: Instant::now(),
            },
            printer: Printer::to(Mode::Group, keep_order, Vec::new(), Vec::new()),
            running: BTreeMap::new(),
            starts: Vec::new(),
            signals: Vec::new(),
            log: Vec::new(),
            events: Vec::new(),
            next_record: 0,
        }
    }

    /// Carries out actions as the dispatcher does.
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Start {
                    attempt,
                    worker,
                    run,
                    tag,
                } => {
                    self.starts.push((run.seq, worker, run.slot));
                    let buf = JobBuffer::new(tag);
                    let seq = run.seq;
                    self.running.insert(attempt, Started { seq, buf });
                }
                Action::Signal { attempt, signal } => {
                    self.signals.push((self.running[&attempt].seq, signal));
                }
                Action::Kill { attempt } => {
                    self.signals
                        .push((self.running[&attempt].seq, JobSignal::Kill));
                }
                Action::Chunk {
                    attempt,
                    seq,
                    stream,
                    data,
                } => {
                    let buf = &mut self.running.get_mut(&attempt).unwrap().buf;
                    self.printer.chunk(seq, buf, stream, &data).unwrap();
                }
                Action::Finish { attempt, seq } => {
                    let started = self.running.remove(&attempt).unwrap();
                    self.printer.finish(seq, started.buf).unwrap();
                }
                Action::Discard { attempt } => {
                    self.running.remove(&attempt).unwrap();
                }
                Action::Skip { seq } => self.printer.skip(seq).unwrap(),
                Action::Log(entry) => self.log.push(entry),
                Action::Report(
                    Event::JobQueued | Event::JobsRunning { .. } | Event::JobDone { .. },
                ) => {}
                Action::Report(event) => self.events.push(event),
            }
        }
    }

    fn join(&mut self, name: &str, slots: usize) {
        let worker = Arc::new(FakeWorker {
            name: name.into(),
            slots,
        });
        let actions = self
            .core
            .on_worker(Some(WorkerEvent::Joined(worker)), self.now);
        self.apply(actions);
    }

    fn worker_event(&mut self, event: Option<WorkerEvent>) {
        let actions = self.core.on_worker(event, self.now);
        self.apply(actions);
    }

    /// Reads `n` more records (`1`, `2`, ...).
    fn records(&mut self, n: u64) {
        for _ in 0..n {
            self.next_record += 1;
            let record = vec![self.next_record.to_string()];
            let actions = self.core.on_record(Some(record), self.now);
            self.apply(actions);
        }
    }

    fn end_input(&mut self) {
        let actions = self.core.on_record(None, self.now);
        self.apply(actions);
    }

    /// The running attempt of job `seq`.
    fn attempt(&self, seq: u64) -> AttemptId {
        let found = self.running.iter().find(|(_, s)| s.seq == seq);
        *found
            .unwrap_or_else(|| panic!("job {seq} is not running"))
            .0
    }

    fn running_jobs(&self) -> Vec<u64> {
        self.running.values().map(|s| s.seq).collect()
    }

    fn output(&mut self, seq: u64, text: &str) {
        let event = AttemptEvent::Output {
            stream: Stream::Stdout,
            data: text.to_string().into(),
        };
        let actions = self.core.on_exec(self.attempt(seq), event, self.now);
        self.apply(actions);
    }

    fn end(&mut self, seq: u64, result: Result<JobExit, RunError>, worker_gone: bool) {
        let event = AttemptEvent::Ended {
            result,
            worker_gone,
        };
        let actions = self.core.on_exec(self.attempt(seq), event, self.now);
        self.apply(actions);
    }

    fn exit(&mut self, seq: u64, code: i32) {
        self.end(seq, Ok(JobExit::Code(code)), false);
    }

    fn interrupt(&mut self) {
        let actions = self.core.on_interrupt(self.now);
        self.apply(actions);
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now.after(by);
        let actions = self.core.on_tick(self.now);
        self.apply(actions);
    }

    fn stdout(self) -> String {
        String::from_utf8(self.printer.into_writers().0).unwrap()
    }

    /// Runs `jobs` jobs on one worker with `slots` slots, each exiting with `exits(seq)`, finishing in order.
    fn run_all(rules: Rules, jobs: u64, exits: impl Fn(u64) -> i32) -> Sim {
        let mut sim = Sim::new(rules);
        sim.join("w", 1);
        sim.records(jobs);
        sim.end_input();
        while let Some(&seq) = sim.running_jobs().first() {
            sim.exit(seq, exits(seq));
        }
        sim
    }
}

#[test]
fn runs_every_job_and_exits_with_the_number_failed() {
    let mut sim = Sim::run_all(rules(), 5, |seq| i32::from(seq % 2 == 0));
    assert_eq!(sim.starts.len(), 5);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 2);
    let exits: Vec<i32> = sim.log.iter().map(|e| e.exitval).collect();
    assert_eq!(exits, [0, 1, 0, 1, 0]);
    assert_eq!(sim.log[0].host, "w");
    assert_eq!(sim.log[0].command, "echo 1");
}

#[test]
fn exit_status_counts_failed_jobs_up_to_101() {
    let mut sim = Sim::run_all(rules(), 150, |_| 1);
    assert_eq!(sim.core.outcome().unwrap(), 101);
    let mut sim = Sim::run_all(rules(), 100, |_| 1);
    assert_eq!(sim.core.outcome().unwrap(), 100);
}

#[test]
fn reads_input_only_while_a_slot_is_free() {
    let mut sim = Sim::new(rules());
    assert!(!sim.core.wants_input(), "no worker yet");
    sim.join("w", 2);
    assert!(sim.core.wants_input());
    sim.records(2);
    assert_eq!(sim.running_jobs(), [1, 2]);
    assert!(!sim.core.wants_input(), "both slots busy");
    sim.exit(1, 0);
    assert!(sim.core.wants_input());
}

#[test]
fn retries_a_failed_job_on_another_worker_then_gives_up() {
    let mut sim = Sim::new(Rules {
        retries: 3,
        ..rules()
    });
    sim.join("a", 1);
    sim.join("b", 1);
    sim.records(1);
    sim.end_input();
    sim.exit(1, 1);
    sim.exit(1, 1);
    assert_eq!(
        sim.starts.iter().map(|s| s.1).collect::<Vec<_>>(),
        [0, 1, 0],
        "each retry goes where the job has not failed"
    );
    sim.exit(1, 1);
    assert!(sim.running.is_empty() && sim.core.finished());
    assert_eq!(sim.log.len(), 1, "only the last attempt is logged");
    assert_eq!(sim.core.outcome().unwrap(), 1);
}

#[test]
fn a_retry_that_succeeds_counts_as_success() {
    let mut sim = Sim::new(Rules {
        retries: 2,
        ..rules()
    });
    sim.join("a", 1);
    sim.records(1);
    sim.end_input();
    sim.exit(1, 7);
    sim.exit(1, 0);
    assert_eq!(sim.starts.len(), 2);
    assert_eq!(sim.core.outcome().unwrap(), 0);
}

#[test]
fn keep_order_prints_in_input_order_whatever_order_jobs_end_in() {
    let mut resume = joblog::Resume {
        skip: Default::default(),
        completed: 1,
        had_header: true,
    };
    resume.skip.insert(3);
    let mut sim = Sim::with_printer(
        Rules {
            resume: Some(resume),
            ..rules()
        },
        true,
    );
    sim.join("w", 4);
    sim.records(4);
    sim.end_input();
    assert_eq!(
        sim.running_jobs(),
        [1, 2, 4],
        "job 3 is skipped by --resume"
    );
    for seq in [4, 2, 1] {
        sim.output(seq, &format!("out {seq}\n"));
        sim.exit(seq, 0);
    }
    assert_eq!(sim.stdout(), "out 1\nout 2\nout 4\n");
}

#[test]
fn without_keep_order_prints_as_jobs_end() {
    let mut sim = Sim::new(rules());
    sim.join("w", 3);
    sim.records(3);
    for seq in [3, 1, 2] {
        sim.output(seq, &format!("out {seq}\n"));
        sim.exit(seq, 0);
    }
    assert_eq!(sim.stdout(), "out 3\nout 1\nout 2\n");
}

#[test]
fn delay_spaces_the_starts_even_with_free_slots() {
    let mut sim = Sim::new(Rules {
        delay: Some(Duration::from_secs(2)),
        ..rules()
    });
    sim.join("w", 4);
    sim.records(3);
    assert_eq!(
        sim.starts.len(),
        1,
        "the first job starts at once, the others wait their turn"
    );
    assert_eq!(
        sim.core.next_deadline(),
        Some(sim.now.mono + Duration::from_secs(2))
    );
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.starts.len(), 1);
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.starts.len(), 2);
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.starts.len(), 3);
    assert_eq!(sim.core.next_deadline(), None, "nothing waits: no deadline");
}
