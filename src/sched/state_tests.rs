//! The core's rules, driven through a recording fake of the dispatcher ([`Sim`]): it carries out the core's actions
//! the way the dispatcher does (job output goes through the real printer, into memory) and records everything
//! else: starts, signals, joblog lines and the events the user would read. No runtime, no I/O, no clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;

use super::{ABANDON_AFTER, RunState};
use crate::joblog;
use crate::model::{JobExit, JobSignal, OutputTx, Stream};
use crate::output::printer::{JobBuffer, Mode, Printer};
use crate::output::report::{Event, Notice};
use crate::sched::action::{Action, AttemptEvent, Now, Rules};
use crate::sched::executor::AttemptId;
use crate::sched::{Error, halt};
use crate::template::Template;
use crate::worker::{JobRun, RunError, Worker, WorkerEvent};

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

    fn run(
        self: Arc<Self>,
        _job: JobRun,
        _out: OutputTx,
        _signals: tokio::sync::mpsc::UnboundedReceiver<JobSignal>,
    ) -> BoxFuture<'static, Result<JobExit, RunError>> {
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
        joblog: true,
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
            timed_out: false,
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

/// Runs 6 jobs on 3 slots with `--halt value`; job `trigger` ends with `code` while 1..=3 run, then the others
/// end with 0 when still running. Returns the fake and the jobs that were started.
fn halted(value: &str, trigger: u64, code: i32) -> Sim {
    let mut sim = Sim::new(Rules {
        halt: halt(value),
        ..rules()
    });
    sim.join("w", 3);
    sim.records(6);
    sim.end_input();
    sim.exit(trigger, code);
    sim
}

#[test]
fn halt_now_kills_the_running_jobs_and_prints_nothing_more() {
    let mut sim = halted("now,fail=1", 2, 3);
    assert_eq!(
        sim.events,
        [Event::Counted {
            notice: Notice::Failed,
            command: "echo 2".into()
        }]
    );
    assert_eq!(
        sim.signals,
        [
            (1, JobSignal::Term),
            (1, JobSignal::Kill),
            (3, JobSignal::Term),
            (3, JobSignal::Kill)
        ]
    );
    sim.output(1, "late\n");
    sim.end(1, Ok(JobExit::Signal(15)), false);
    sim.end(3, Ok(JobExit::Signal(9)), false);
    assert_eq!(sim.starts.len(), 3, "nothing more started");
    assert_eq!(sim.log.len(), 1, "the killed jobs are not logged");
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 3, "the failed job's status");
    assert_eq!(sim.stdout(), "");
}

#[test]
fn halt_soon_lets_the_running_jobs_finish() {
    let mut sim = halted("soon,fail=1", 1, 4);
    assert_eq!(sim.events[1], Event::HaltWaiting { running: 2 });
    assert!(sim.signals.is_empty());
    assert!(!sim.core.wants_input());
    sim.output(2, "two\n");
    sim.exit(2, 0);
    sim.exit(3, 1);
    assert_eq!(sim.starts.len(), 3);
    assert_eq!(sim.log.len(), 3);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 4);
    assert_eq!(sim.stdout(), "two\n");
}

#[test]
fn halt_on_success_exits_0() {
    let mut sim = halted("now,success=1", 1, 0);
    assert_eq!(
        sim.events[0],
        Event::Counted {
            notice: Notice::Succeeded,
            command: "echo 1".into()
        }
    );
    sim.exit(2, 1);
    sim.exit(3, 1);
    assert_eq!(sim.core.outcome().unwrap(), 0);
}

#[test]
fn halt_on_done_count_without_failure_is_gnus_101() {
    let mut sim = halted("soon,done=2", 1, 0);
    assert!(sim.events.iter().all(|e| matches!(
        e,
        Event::Counted {
            notice: Notice::Finished,
            ..
        }
    )));
    sim.exit(2, 0);
    assert_eq!(sim.events.last(), Some(&Event::HaltWaiting { running: 2 }));
    sim.exit(3, 0);
    sim.exit(4, 0);
    assert_eq!(
        sim.starts.len(),
        4,
        "job 4 started before the second job ended"
    );
    assert_eq!(sim.core.outcome().unwrap(), 101);
}

#[test]
fn halt_on_a_count_of_failures_exits_with_the_count() {
    let mut sim = halted("soon,fail=2", 1, 5);
    sim.exit(2, 6);
    sim.exit(3, 0);
    assert_eq!(
        sim.starts.len(),
        3 + 1,
        "one job started after the first failure"
    );
    sim.exit(4, 0);
    assert_eq!(sim.core.outcome().unwrap(), 2);
}

#[test]
fn halt_on_a_percentage_reads_all_input_and_exits_with_the_percentage() {
    let mut sim = Sim::new(Rules {
        halt: halt("soon,fail=50%"),
        ..rules()
    });
    assert!(sim.core.needs_all_input());
    sim.records(4);
    sim.end_input();
    sim.join("w", 1);
    sim.exit(1, 1);
    sim.exit(2, 0);
    sim.exit(3, 1);
    assert!(sim.core.finished(), "2 of 4 failed");
    assert_eq!(sim.core.outcome().unwrap(), 50);
}

#[test]
fn a_percentage_that_never_triggers_still_sets_the_exit_status() {
    let mut sim = Sim::new(Rules {
        halt: halt("now,fail=90%"),
        ..rules()
    });
    sim.records(3);
    sim.end_input();
    sim.join("w", 1);
    for seq in 1..=3 {
        sim.exit(seq, i32::from(seq == 1));
    }
    assert_eq!(sim.core.outcome().unwrap(), 34, "1 of 3 failed, rounded up");
}

#[test]
fn a_job_cut_off_by_a_lost_worker_is_logged_and_re_run_once_elsewhere() {
    let mut sim = Sim::new(rules());
    sim.join("a", 1);
    sim.join("b", 1);
    sim.records(2);
    sim.end_input();
    sim.end(1, cut_off(), true);
    assert_eq!(
        sim.events,
        [Event::WorkerLost {
            worker: "a".into(),
            reason: "lost the connection to `w` while the job ran: connection reset".into()
        }]
    );
    assert_eq!(sim.log[0].exitval, -1, "the cut-off attempt is logged");
    sim.exit(2, 0);
    assert_eq!(sim.starts.last(), Some(&(1, 1, 1)), "re-run on `b`");
    sim.exit(1, 0);
    assert_eq!(
        sim.core.outcome().unwrap(),
        0,
        "the cut-off is not a failure"
    );
}

#[test]
fn a_job_cut_off_twice_fails() {
    let mut sim = Sim::new(rules());
    sim.join("a", 1);
    sim.join("b", 1);
    sim.records(1);
    sim.end_input();
    sim.end(1, cut_off(), true);
    sim.end(1, cut_off(), true);
    assert_eq!(sim.log.len(), 2);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 1);
}

#[test]
fn a_job_that_never_started_goes_back_to_the_queue_without_counting() {
    let mut sim = Sim::new(Rules {
        retries: 1,
        ..rules()
    });
    sim.join("a", 2);
    sim.records(1);
    sim.end_input();
    sim.end(1, not_started(), false);
    assert_eq!(
        sim.events,
        [Event::SlotRefused {
            worker: "a".into(),
            slots: 1,
            reason: "job did not start on `w`: channel refused".into()
        }]
    );
    assert_eq!(sim.starts.len(), 2, "started again at once");
    assert!(sim.log.is_empty());
    sim.exit(1, 0);
    assert_eq!(sim.core.outcome().unwrap(), 0);
}

#[test]
fn a_refused_job_on_a_closed_connection_loses_the_worker() {
    let mut sim = Sim::new(rules());
    sim.join("a", 2);
    sim.records(1);
    sim.end_input();
    sim.end(1, not_started(), true);
    assert!(matches!(&sim.events[..], [Event::WorkerLost { worker, .. }] if worker == "a"));
    assert!(sim.running.is_empty());
    assert!(!sim.core.finished());
    assert!(
        sim.core.stranded().is_none(),
        "its source may still send workers"
    );
    sim.join("b", 1);
    assert_eq!(
        sim.starts.last(),
        Some(&(1, 1, 1)),
        "on `b`, in the lowest free slot"
    );
}

#[test]
fn a_worker_that_never_joins_strands_the_run() {
    let mut sim = Sim::new(rules());
    sim.records(1);
    sim.worker_event(Some(WorkerEvent::Failed {
        name: "h1".into(),
        reason: "connection refused".into(),
    }));
    assert_eq!(
        sim.events,
        [Event::WorkerUnusable {
            worker: "h1".into(),
            reason: "connection refused".into()
        }]
    );
    assert!(sim.core.stranded().is_none(), "the source is still open");
    sim.worker_event(Some(WorkerEvent::Done));
    let Some(Error::NoWorkers { reasons }) = sim.core.stranded() else {
        panic!("not stranded");
    };
    assert_eq!(reasons, ["h1: connection refused"]);
}

#[test]
fn losing_every_worker_strands_the_run() {
    let mut sim = Sim::new(rules());
    sim.join("a", 1);
    sim.worker_event(None);
    sim.records(2);
    sim.end(1, cut_off(), true);
    assert!(sim.running.is_empty());
    assert!(
        matches!(sim.core.stranded(), Some(Error::NoWorkers { reasons }) if reasons.len() == 1)
    );
}

#[test]
fn a_stopped_run_kills_its_jobs_and_counts_what_did_not_finish() {
    let mut sim = Sim::new(rules());
    sim.join("w", 2);
    sim.records(3);
    sim.exit(1, 0);
    sim.worker_event(Some(WorkerEvent::Stopped {
        reason: "the task reached its --max-runtime".into(),
        hint: "give a longer --max-runtime".into(),
    }));
    assert_eq!(
        sim.events,
        [Event::Stopped {
            reason: "the task reached its --max-runtime".into(),
            running: 2
        }]
    );
    assert_eq!(sim.signals, [(2, JobSignal::Kill), (3, JobSignal::Kill)]);
    assert!(!sim.core.wants_input());
    sim.exit(2, 0);
    sim.end(3, Ok(JobExit::Signal(9)), false);
    assert_eq!(sim.log.last().map(|e| e.exitval), Some(-1));
    assert!(sim.core.finished());
    let Err(Error::Stopped {
        done,
        unfinished,
        input_left,
        ..
    }) = sim.core.outcome()
    else {
        panic!("not stopped");
    };
    assert_eq!((done, unfinished, input_left), (2, 1, true));
}

#[test]
fn first_interrupt_sends_sigterm_then_sigkill_after_the_grace_period() {
    let mut sim = Sim::new(rules());
    sim.join("w", 2);
    sim.records(2);
    sim.interrupt();
    assert_eq!(sim.events, [Event::Interrupted { running: 2 }]);
    assert_eq!(sim.signals, [(1, JobSignal::Term), (2, JobSignal::Term)]);
    assert!(!sim.core.wants_input());
    sim.exit(1, 143);
    assert_eq!(sim.starts.len(), 2, "nothing more started");
    sim.advance(Duration::from_secs(9));
    assert_eq!(sim.signals.len(), 2, "still in the grace period");
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.signals.last(), Some(&(2, JobSignal::Kill)));
    assert_eq!(sim.core.next_deadline(), Some(sim.now.mono + ABANDON_AFTER));
    sim.exit(2, 137);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 130);
}

#[test]
fn second_interrupt_kills_at_once_and_unconfirmed_jobs_are_abandoned() {
    let mut sim = Sim::new(rules());
    sim.join("w", 1);
    sim.records(1);
    sim.interrupt();
    sim.interrupt();
    assert_eq!(sim.signals, [(1, JobSignal::Term), (1, JobSignal::Kill)]);
    sim.advance(ABANDON_AFTER);
    assert_eq!(
        sim.events.last(),
        Some(&Event::Unconfirmed {
            seq: 1,
            worker: "w".into()
        })
    );
    assert!(sim.running.is_empty() && sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 130);
}

#[test]
fn a_broken_pipe_stops_quietly_with_status_0() {
    let mut sim = Sim::new(rules());
    sim.join("w", 2);
    sim.records(3);
    sim.exit(1, 1);
    let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    let actions = sim.core.on_output_error(&pipe, sim.now);
    sim.apply(actions);
    assert!(sim.events.is_empty(), "nothing said");
    assert_eq!(sim.signals, [(2, JobSignal::Kill), (3, JobSignal::Kill)]);
    sim.output(2, "unread\n");
    sim.exit(2, 1);
    sim.exit(3, 1);
    assert!(sim.core.finished());
    assert_eq!(sim.core.outcome().unwrap(), 0);
    assert_eq!(sim.stdout(), "", "nothing printed after the pipe closed");
}

#[test]
fn other_output_errors_are_warnings() {
    let mut sim = Sim::new(rules());
    let full = std::io::Error::other("disk full");
    let actions = sim.core.on_output_error(&full, sim.now);
    sim.apply(actions);
    assert_eq!(
        sim.events,
        [Event::OutputFailed {
            cause: "disk full".into()
        }]
    );
}

#[test]
fn a_timed_out_job_is_reported_and_logged_with_exitval_minus_1() {
    let mut sim = Sim::new(rules());
    sim.join("w", 1);
    sim.records(1);
    sim.now = sim.now.after(Duration::from_millis(1500));
    let event = AttemptEvent::Ended {
        result: Ok(JobExit::Signal(15)),
        timed_out: true,
        worker_gone: false,
    };
    let actions = sim.core.on_exec(sim.attempt(1), event, sim.now);
    sim.apply(actions);
    assert_eq!(
        sim.events,
        [Event::TimedOut {
            command: "echo 1".into()
        }]
    );
    let entry = &sim.log[0];
    assert_eq!((entry.exitval, entry.signal), (-1, 15));
    assert_eq!(entry.runtime, 1.5);
    assert_eq!(entry.start, 1_700_000_000.0);
}
