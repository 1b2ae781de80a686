//! The dispatcher: the one task of a run. It waits in one `select!` loop for input records, worker events,
//! executor reports, interrupts and the core's deadlines, hands each to the core ([`RunState`]) and carries out
//! the actions it returns: spawning executors (in a `JoinSet` it owns), signalling jobs, printing job output,
//! writing the joblog and reporting to the user. It decides nothing itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::action::{Action, AttemptEvent, Now, Rules};
use super::executor::{self, AttemptId, ExecEvent};
use super::state::{ABANDON_AFTER, RunState};
use super::{Error, Observer, RunSpec};
use crate::joblog;
use crate::model::JobSignal;
use crate::output::printer::{JobBuffer, Printer};
use crate::output::report::{Event, Reporter};
use crate::signal::{Interrupt, SignalHandler};
use crate::worker::{Worker, WorkerEvent, WorkerSource};

/// Records read from the input, one value per source.
pub type Record = crate::input::Result<Vec<String>>;

/// What the dispatcher holds for a running attempt: the handles the core does not see.
struct Attempt {
    worker: usize,
    /// Dropping this kills the job.
    control: Option<mpsc::UnboundedSender<JobSignal>>,
    buf: JobBuffer,
}

/// Owns the I/O of one run; the decisions are its core's.
pub struct Dispatcher {
    core: RunState,
    printer: Printer,
    joblog: Option<joblog::Writer>,
    reporter: Reporter,
    observer: Option<Observer>,
    /// The workers, in the order they joined (the core's numbering).
    workers: Vec<Arc<dyn Worker>>,
    attempts: HashMap<AttemptId, Attempt>,
    exec_tx: mpsc::Sender<ExecEvent>,
    executors: JoinSet<()>,
}

impl Dispatcher {
    /// A dispatcher for `spec` with `sources` worker sources, telling the user through `reporter`; executors
    /// report on `exec_tx`.
    fn new(
        spec: RunSpec,
        sources: usize,
        reporter: Reporter,
        exec_tx: mpsc::Sender<ExecEvent>,
    ) -> Self {
        let rules = Rules {
            template: spec.template,
            tag: spec.tag,
            retries: spec.retries,
            halt: spec.halt,
            resume: spec.resume,
            grace: spec.grace,
            timeout: spec.timeout,
            joblog: spec.joblog.is_some(),
            delay: spec.delay,
        };
        Dispatcher {
            core: RunState::new(rules, sources),
            printer: spec.printer,
            joblog: spec.joblog,
            reporter,
            observer: spec.observer,
            workers: Vec::new(),
            attempts: HashMap::new(),
            exec_tx,
            executors: JoinSet::new(),
        }
    }

    /// Runs every record of `input` through `spec` on the workers `sources` announce, until every job has
    /// ended, the run halts, or it is interrupted; returns the exit status.
    pub async fn run(
        spec: RunSpec,
        reporter: Reporter,
        mut input: mpsc::Receiver<Record>,
        sources: Vec<Box<dyn WorkerSource>>,
        mut signals: SignalHandler,
    ) -> super::Result<u8> {
        let cancel = CancellationToken::new();
        let (worker_tx, mut worker_rx) = mpsc::channel(64);
        let mut tasks = JoinSet::new();
        let (exec_tx, mut exec_rx) = mpsc::channel::<ExecEvent>(1024);
        let mut this = Dispatcher::new(spec, sources.len(), reporter, exec_tx);
        for source in sources {
            tasks.spawn(source.start(worker_tx.clone(), cancel.child_token()));
        }
        drop(worker_tx);
        if this.core.needs_all_input() {
            while this.core.input_open() {
                let record = input.recv().await;
                this.on_record(record)?;
            }
        }
        let result = loop {
            if this.core.finished() {
                break Ok(());
            }
            if let Some(err) = this.core.stranded() {
                break Err(err);
            }
            let want_input = this.core.wants_input();
            let deadline = this.core.next_deadline();
            tokio::select! {
                Some(event) = exec_rx.recv() => this.on_exec(event),
                record = input.recv(), if want_input => this.on_record(record)?,
                event = worker_rx.recv(), if this.core.sources_open() => this.on_worker(event),
                signal = signals.recv() => {
                    let actions = match signal {
                        Interrupt::Stop => this.core.on_interrupt(now()),
                        Interrupt::HangUp => this.core.on_hangup(),
                    };
                    this.apply(actions);
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    let actions = this.core.on_tick(now());
                    this.apply(actions);
                }
            }
        };
        cancel.cancel();
        tasks.shutdown().await;
        this.drain(&mut exec_rx).await;
        let _ = this.printer.flush();
        this.reporter.finish();
        result?;
        this.core.outcome()
    }

    /// Kills what still runs, gives it a moment to report its end, then gives up on it.
    async fn drain(&mut self, exec_rx: &mut mpsc::Receiver<ExecEvent>) {
        let actions = self.core.on_shutdown(now());
        self.apply(actions);
        let wait = if self.core.has_running() {
            ABANDON_AFTER
        } else {
            Duration::ZERO
        };
        let _ = tokio::time::timeout(wait, async {
            while self.core.has_running() {
                match exec_rx.recv().await {
                    Some(event) => self.on_exec(event),
                    None => break,
                }
            }
        })
        .await;
        let actions = self.core.on_abandon();
        self.apply(actions);
        self.executors.shutdown().await;
    }

    fn on_record(&mut self, record: Option<Record>) -> super::Result<()> {
        let record = record.transpose().map_err(Error::Input)?;
        let actions = self.core.on_record(record, now());
        self.apply(actions);
        Ok(())
    }

    fn on_worker(&mut self, event: Option<WorkerEvent>) {
        if let Some(WorkerEvent::Joined(worker)) = &event {
            let capacity = worker.slots().max(1);
            tracing::info!(worker = worker.name(), capacity, "worker joined");
            self.workers.push(worker.clone());
        }
        let actions = self.core.on_worker(event, now());
        self.apply(actions);
    }

    fn on_exec(&mut self, event: ExecEvent) {
        let (attempt, event) = match event {
            ExecEvent::Output {
                attempt,
                stream,
                data,
            } => (attempt, AttemptEvent::Output { stream, data }),
            ExecEvent::Done { attempt, result } => {
                let worker = self.attempts.get(&attempt).map(|a| a.worker);
                let worker_gone = worker.is_some_and(|w| self.workers[w].is_gone());
                (
                    attempt,
                    AttemptEvent::Ended {
                        result,
                        worker_gone,
                    },
                )
            }
        };
        let actions = self.core.on_exec(attempt, event, now());
        self.apply(actions);
    }

    /// Carries out `actions` in order, and the actions that follow from a failed write after them.
    fn apply(&mut self, actions: Vec<Action>) {
        let mut pending = VecDeque::from(actions);
        while let Some(action) = pending.pop_front() {
            if let Err(err) = self.act(action) {
                pending.extend(self.core.on_output_error(&err, now()));
            }
        }
    }

    /// Carries out one action; an error is a failed write of job output.
    fn act(&mut self, action: Action) -> std::io::Result<()> {
        match action {
            Action::Start {
                attempt,
                worker,
                run,
                tag,
            } => return self.start(attempt, worker, run, tag),
            Action::Signal { attempt, signal } => {
                let attempt = self.attempts.get(&attempt);
                if let Some(control) = attempt.and_then(|a| a.control.as_ref()) {
                    let _ = control.send(signal);
                }
            }
            Action::Kill { attempt } => {
                let attempt = self.attempts.get_mut(&attempt);
                if let Some(control) = attempt.and_then(|a| a.control.take()) {
                    let _ = control.send(JobSignal::Kill);
                }
            }
            Action::Chunk {
                attempt,
                seq,
                stream,
                data,
            } => {
                if let Some(a) = self.attempts.get_mut(&attempt) {
                    return self.printer.chunk(seq, &mut a.buf, stream, &data);
                }
            }
            Action::Finish { attempt, seq } => {
                if let Some(a) = self.attempts.remove(&attempt) {
                    return self.printer.finish(seq, a.buf);
                }
            }
            Action::Discard { attempt } => {
                self.attempts.remove(&attempt);
            }
            Action::Skip { seq } => return self.printer.skip(seq),
            Action::Log(entry) => self.log(&entry),
            Action::Report(event) => self.report(&event),
        }
        Ok(())
    }

    fn start(
        &mut self,
        attempt: AttemptId,
        worker: usize,
        run: crate::worker::JobRun,
        tag: Option<String>,
    ) -> std::io::Result<()> {
        let mut buf = JobBuffer::new(tag);
        let echoed = self.printer.started(run.seq, &mut buf, &run.command);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        self.executors.spawn(executor::execute(
            self.workers[worker].clone(),
            attempt,
            run,
            self.exec_tx.clone(),
            control_rx,
        ));
        let state = Attempt {
            worker,
            control: Some(control_tx),
            buf,
        };
        self.attempts.insert(attempt, state);
        echoed
    }

    fn log(&mut self, entry: &joblog::Entry) {
        let Some(writer) = self.joblog.as_mut() else {
            return;
        };
        if let Err(err) = writer.write(entry) {
            let cause = crate::error::chain(&err);
            self.reporter.report(&Event::JoblogFailed { cause });
        }
    }

    fn report(&mut self, event: &Event) {
        if let (Event::JobDone { done, total }, Some(observer)) = (event, &self.observer) {
            observer(*done, *total);
        }
        self.reporter.report(event);
    }
}

/// The time now, as the core takes it. The monotonic clock is tokio's, so paused-time tests move it.
fn now() -> Now {
    Now {
        wall: SystemTime::now(),
        mono: tokio::time::Instant::now().into_std(),
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
