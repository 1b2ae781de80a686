//! The dispatcher: the one task that owns a run's state (queue, slots, running attempts, retries, halt, output
//! order) and the only writer of job output. It reacts to input records, worker events, executor events and
//! interrupts in one `select!` loop; executors run in a `JoinSet` it owns.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::core::{self, Capacity, Decision, Job};
use super::executor::{self, AttemptId, ExecEvent};
use super::halt::{Tally, When};
use super::{Error, RunSpec};
use crate::joblog;
use crate::model::{JobExit, JobSignal};
use crate::output::printer::JobBuffer;
use crate::signal::SignalHandler;
use crate::worker::{JobRun, Worker, WorkerEvent, WorkerSource};

/// Records read from the input, one value per source.
pub type Record = crate::input::Result<Vec<String>>;

struct WorkerState {
    worker: Arc<dyn Worker>,
    capacity: usize,
    busy: usize,
    alive: bool,
}

struct Running {
    job: Job,
    worker: usize,
    slot: usize,
    command: String,
    started: SystemTime,
    clock: Instant,
    buf: JobBuffer,
    /// Dropping this kills the job.
    control: Option<mpsc::UnboundedSender<JobSignal>>,
    /// Killed by `--halt now`: its end is neither printed nor logged (as GNU parallel).
    discarded: bool,
    /// Killed by `--timeout`.
    timed_out: bool,
}

/// How the run ended, when it ran to an end.
pub struct Ended {
    /// The exit status (GNU parallel's contract).
    pub status: u8,
}

/// Owns the state of one run.
pub struct Dispatcher {
    spec: RunSpec,
    workers: Vec<WorkerState>,
    free_slots: BTreeSet<usize>,
    slot_count: usize,
    queue: VecDeque<Job>,
    running: HashMap<AttemptId, Running>,
    next_attempt: AttemptId,
    next_seq: u64,
    input_open: bool,
    total: Option<u64>,
    tally: Tally,
    halted: Option<u8>,
    interrupted: u32,
    grace_deadline: Option<tokio::time::Instant>,
    /// After SIGKILL was sent: when to stop waiting for attempts to report their end.
    abandon_deadline: Option<tokio::time::Instant>,
    sources_open: usize,
    lost: Vec<String>,
    broken_pipe: bool,
    /// Why a limit stopped the workers for good, and what to do, once one did.
    stopped: Option<(String, String)>,
}

impl Dispatcher {
    /// A dispatcher for `spec`.
    pub fn new(spec: RunSpec) -> Self {
        Dispatcher {
            spec,
            workers: Vec::new(),
            free_slots: BTreeSet::new(),
            slot_count: 0,
            queue: VecDeque::new(),
            running: HashMap::new(),
            next_attempt: 0,
            next_seq: 0,
            input_open: true,
            total: None,
            tally: Tally::default(),
            halted: None,
            interrupted: 0,
            grace_deadline: None,
            abandon_deadline: None,
            sources_open: 0,
            lost: Vec::new(),
            broken_pipe: false,
            stopped: None,
        }
    }

    /// Runs until every job has ended, the run halts, or it is interrupted.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Record>,
        sources: Vec<Box<dyn WorkerSource>>,
        mut signals: SignalHandler,
    ) -> super::Result<Ended> {
        let cancel = CancellationToken::new();
        let (worker_tx, mut worker_rx) = mpsc::channel(64);
        let mut tasks = JoinSet::new();
        self.sources_open = sources.len();
        for source in sources {
            tasks.spawn(source.start(worker_tx.clone(), cancel.child_token()));
        }
        drop(worker_tx);
        let (exec_tx, mut exec_rx) = mpsc::channel::<ExecEvent>(1024);
        let mut executors = JoinSet::new();
        if self.spec.halt.is_some_and(|h| h.needs_total()) {
            self.read_all_input(&mut input).await?;
        }
        let result = loop {
            self.start_jobs(&exec_tx, &mut executors);
            if self.finished() {
                break Ok(());
            }
            if let Some(err) = self.stranded() {
                break Err(err);
            }
            let want_input = self.input_open
                && self.halted.is_none()
                && self.stopped.is_none()
                && self.interrupted == 0
                && self.queue.len() < self.free_capacity().max(1)
                && self.free_capacity() > 0;
            let grace = self.grace_deadline;
            let abandon = self.abandon_deadline;
            tokio::select! {
                Some(event) = exec_rx.recv() => self.on_exec(event),
                record = input.recv(), if want_input => self.on_record(record)?,
                event = worker_rx.recv(), if self.sources_open > 0 => self.on_worker(event),
                () = signals.recv() => self.on_interrupt(),
                () = sleep_until(grace), if grace.is_some() => self.kill_all(),
                () = sleep_until(abandon), if abandon.is_some() => {
                    self.abandon();
                    break Ok(());
                }
            }
        };
        cancel.cancel();
        tasks.shutdown().await;
        self.kill_all();
        // Every attempt was told to stop; give them a moment to report, then abort what is left.
        let wait = if self.running.is_empty() {
            Duration::ZERO
        } else {
            ABANDON_AFTER
        };
        let _ = tokio::time::timeout(wait, async {
            while !self.running.is_empty() {
                match exec_rx.recv().await {
                    Some(event) => self.on_exec(event),
                    None => break,
                }
            }
        })
        .await;
        self.abandon();
        executors.shutdown().await;
        let _ = self.spec.printer.flush();
        self.spec.progress.finish();
        result?;
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
        Ok(Ended {
            status: self.status(),
        })
    }

    fn status(&self) -> u8 {
        if self.broken_pipe {
            crate::error::exit::SUCCESS
        } else if self.interrupted > 0 {
            crate::error::exit::INTERRUPTED
        } else if let Some(status) = self.halted {
            status
        } else if let Some(halt) = self.spec.halt {
            halt.exit_status_not_halted(self.tally)
        } else {
            core::exit_status(self.tally.failed)
        }
    }

    fn finished(&self) -> bool {
        let stopping = self.halted.is_some()
            || self.interrupted > 0
            || self.broken_pipe
            || self.stopped.is_some();
        self.running.is_empty() && (stopping || (!self.input_open && self.queue.is_empty()))
    }

    /// With jobs left and no worker alive or coming, the run cannot go on.
    fn stranded(&self) -> Option<Error> {
        let work_left = !self.queue.is_empty() || self.input_open;
        let no_workers = self.sources_open == 0 && !self.workers.iter().any(|w| w.alive);
        (work_left && no_workers && self.running.is_empty()).then(|| Error::NoWorkers {
            reasons: self.lost.clone(),
        })
    }

    fn free_capacity(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.alive)
            .map(|w| w.capacity.saturating_sub(w.busy))
            .sum()
    }

    async fn read_all_input(&mut self, input: &mut mpsc::Receiver<Record>) -> super::Result<()> {
        while self.input_open {
            let record = input.recv().await;
            self.on_record(record)?;
        }
        self.total = Some(self.next_seq);
        Ok(())
    }

    fn on_record(&mut self, record: Option<Record>) -> super::Result<()> {
        match record {
            None => {
                self.input_open = false;
                self.total = Some(self.next_seq);
            }
            Some(Err(err)) => return Err(Error::Input(err)),
            Some(Ok(args)) => {
                self.next_seq += 1;
                let seq = self.next_seq;
                if self
                    .spec
                    .resume
                    .as_ref()
                    .is_some_and(|r| r.skip.contains(&seq))
                {
                    self.print(|p| p.skip(seq));
                } else {
                    self.spec.progress.add_job();
                    self.queue.push_back(Job::new(seq, args));
                }
            }
        }
        Ok(())
    }

    fn on_worker(&mut self, event: Option<WorkerEvent>) {
        match event {
            None => self.sources_open = 0,
            Some(WorkerEvent::Done) => self.sources_open = self.sources_open.saturating_sub(1),
            Some(WorkerEvent::Joined(worker)) => {
                let capacity = worker.slots().max(1);
                tracing::info!(worker = worker.name(), capacity, "worker joined");
                for _ in 0..capacity {
                    self.slot_count += 1;
                    self.free_slots.insert(self.slot_count);
                }
                self.workers.push(WorkerState {
                    worker,
                    capacity,
                    busy: 0,
                    alive: true,
                });
            }
            Some(WorkerEvent::Failed { name, reason }) => {
                eprintln!("kb: warning: cannot use `{name}`, going on without it: {reason}");
                self.lost.push(format!("{name}: {reason}"));
            }
            Some(WorkerEvent::Stopped { reason, hint }) => {
                if self.stopped.is_none() {
                    match self.running.len() {
                        0 => eprintln!("kb: {reason}: starting no more jobs"),
                        n => eprintln!("kb: {reason}: starting no more jobs, stopping {n} running"),
                    }
                    self.stopped = Some((reason, hint));
                    self.kill_all();
                }
            }
        }
    }

    fn start_jobs(&mut self, exec_tx: &mpsc::Sender<ExecEvent>, executors: &mut JoinSet<()>) {
        if self.halted.is_some()
            || self.interrupted > 0
            || self.broken_pipe
            || self.stopped.is_some()
        {
            return;
        }
        while !self.queue.is_empty() {
            let caps = self.workers.iter().map(|w| Capacity {
                free: w.capacity.saturating_sub(w.busy),
                alive: w.alive,
            });
            let Some(front) = self.queue.front() else {
                break;
            };
            let Some(index) = core::choose_worker(caps, front) else {
                break;
            };
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.start(job, index, exec_tx, executors);
        }
    }

    fn start(
        &mut self,
        job: Job,
        index: usize,
        exec_tx: &mpsc::Sender<ExecEvent>,
        executors: &mut JoinSet<()>,
    ) {
        let slot = self.free_slots.pop_first().unwrap_or_else(|| {
            self.slot_count += 1;
            self.slot_count
        });
        let command = self.spec.template.render(&job.args, job.seq, slot);
        let tag = self
            .spec
            .tag
            .as_ref()
            .map(|t| t.render(&job.args, job.seq, slot));
        let state = &mut self.workers[index];
        state.busy += 1;
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let run = JobRun {
            seq: job.seq,
            slot,
            command: command.clone(),
        };
        executors.spawn(executor::execute(
            state.worker.clone(),
            attempt,
            run,
            exec_tx.clone(),
            control_rx,
            self.spec.timeout,
        ));
        self.running.insert(
            attempt,
            Running {
                job,
                worker: index,
                slot,
                command,
                started: SystemTime::now(),
                clock: Instant::now(),
                buf: JobBuffer::new(tag),
                control: Some(control_tx),
                discarded: false,
                timed_out: false,
            },
        );
        self.spec.progress.set_running(
            self.running.len(),
            self.workers.iter().filter(|w| w.alive).count(),
        );
    }

    fn on_exec(&mut self, event: ExecEvent) {
        match event {
            ExecEvent::Output {
                attempt,
                stream,
                data,
            } => {
                let Some(run) = self.running.get_mut(&attempt) else {
                    return;
                };
                if run.discarded {
                    return;
                }
                let seq = run.job.seq;
                let buf = &mut run.buf;
                if let Err(err) = self.spec.printer.chunk(seq, buf, stream, &data) {
                    self.on_output_error(err);
                }
            }
            ExecEvent::Done {
                attempt,
                result,
                timed_out,
            } => {
                if let Some(mut run) = self.running.remove(&attempt) {
                    run.timed_out = timed_out;
                    self.on_done(run, result);
                }
            }
        }
    }

    fn on_done(&mut self, mut run: Running, result: Result<JobExit, crate::worker::RunError>) {
        self.free_slots.insert(run.slot);
        let worker = run.worker;
        self.workers[worker].busy -= 1;
        if run.discarded {
            return;
        }
        // Stopped by a limit: an attempt that did not exit by itself did not finish; it is logged (Exitval -1, so
        // `--resume-failed` runs it again) and not counted as failed.
        if self.stopped.is_some() && !matches!(result, Ok(JobExit::Code(_))) {
            self.log(&run, JobExit::Code(-1));
            self.queue.push_back(run.job);
            return;
        }
        match core::after_attempt(&mut run.job, worker, &result, self.spec.retries) {
            Decision::Final(exit) => self.finish_job(run, exit),
            Decision::Retry => self.queue.push_front(run.job),
            Decision::Requeue => {
                self.degrade_worker(worker, &result);
                self.queue.push_front(run.job);
            }
            Decision::Rerun => {
                self.lose_worker(worker, &result);
                self.log(&run, JobExit::Code(-1));
                self.queue.push_front(run.job);
            }
            Decision::LostTwice => {
                self.lose_worker(worker, &result);
                self.finish_job(run, JobExit::Code(-1));
            }
        }
    }

    fn finish_job(&mut self, run: Running, exit: JobExit) {
        if run.timed_out {
            eprintln!(
                "kb: Warning: This job was killed because it timed out:\nkb: Warning: {}",
                run.command
            );
        }
        self.log(&run, exit);
        if exit.success() {
            self.tally.succeeded += 1;
        } else {
            self.tally.failed += 1;
        }
        self.spec.progress.job_done();
        if let Some(observer) = &self.spec.observer {
            observer(self.tally.succeeded + self.tally.failed, self.total);
        }
        let seq = run.job.seq;
        let command = run.command.clone();
        self.print(|p| p.finish(seq, run.buf));
        self.check_halt(exit, &command);
    }

    fn check_halt(&mut self, exit: JobExit, command: &str) {
        let Some(halt) = self.spec.halt else { return };
        if let Some(notice) = halt.notice(!exit.success()) {
            eprintln!("kb: {notice}\n{command}");
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
            for run in self.running.values_mut() {
                run.discarded = true;
                if let Some(control) = run.control.take() {
                    let _ = control.send(JobSignal::Term);
                    let _ = control.send(JobSignal::Kill);
                }
            }
        } else if !self.running.is_empty() {
            eprintln!(
                "kb: Starting no more jobs. Waiting for {} jobs to finish.",
                self.running.len()
            );
        }
    }

    fn log(&mut self, run: &Running, exit: JobExit) {
        let Some(writer) = self.spec.joblog.as_mut() else {
            return;
        };
        let entry = joblog::Entry {
            seq: run.job.seq,
            host: self.workers[run.worker].worker.name().to_string(),
            start: run
                .started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            runtime: run.clock.elapsed().as_secs_f64(),
            send: 0,
            receive: run.buf.received,
            // GNU parallel logs a job killed by --timeout with Exitval -1.
            exitval: if run.timed_out { -1 } else { exit.exitval() },
            signal: exit.signal(),
            command: run.command.clone(),
        };
        if let Err(err) = writer.write(&entry) {
            eprintln!("kb: warning: {}", crate::error::chain(&err));
        }
    }

    /// A channel could not be opened on a live connection: that slot is unusable.
    fn degrade_worker(&mut self, index: usize, result: &Result<JobExit, crate::worker::RunError>) {
        let state = &mut self.workers[index];
        if state.worker.is_gone() {
            self.lose_worker(index, result);
            return;
        }
        state.capacity = state.capacity.saturating_sub(1);
        let name = state.worker.name().to_string();
        if let Err(err) = result {
            eprintln!(
                "kb: warning: `{name}` refused a job slot, running {} at a time there: {err}",
                state.capacity
            );
        }
        if state.capacity == 0 {
            self.lose_worker(index, result);
        }
    }

    fn lose_worker(&mut self, index: usize, result: &Result<JobExit, crate::worker::RunError>) {
        let state = &mut self.workers[index];
        if !state.alive {
            return;
        }
        state.alive = false;
        let reason = match result {
            Err(err) => err.to_string(),
            Ok(_) => "lost".to_string(),
        };
        eprintln!(
            "kb: warning: lost worker `{}`; its jobs go to the others: {reason}",
            state.worker.name()
        );
        self.lost.push(reason);
    }

    fn on_interrupt(&mut self) {
        self.interrupted += 1;
        if self.interrupted == 1 {
            eprintln!(
                "kb: interrupted: starting no more jobs, sent SIGTERM to {} running; press Ctrl-C again to kill them",
                self.running.len()
            );
            for run in self.running.values() {
                if let Some(control) = &run.control {
                    let _ = control.send(JobSignal::Term);
                }
            }
            self.grace_deadline = Some(tokio::time::Instant::now() + self.spec.grace);
        } else {
            self.kill_all();
        }
    }

    /// Kills every running attempt (SIGKILL to its process group, then its channel closed).
    fn kill_all(&mut self) {
        self.grace_deadline = None;
        if !self.running.is_empty() && self.abandon_deadline.is_none() {
            self.abandon_deadline = Some(tokio::time::Instant::now() + ABANDON_AFTER);
        }
        for run in self.running.values_mut() {
            if let Some(control) = run.control.take() {
                let _ = control.send(JobSignal::Kill);
            }
        }
    }

    fn print(
        &mut self,
        f: impl FnOnce(&mut crate::output::printer::Printer) -> std::io::Result<()>,
    ) {
        if self.broken_pipe {
            return;
        }
        if let Err(err) = f(&mut self.spec.printer) {
            self.on_output_error(err);
        }
    }

    fn on_output_error(&mut self, err: std::io::Error) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            // Nobody reads the output any more (`| head`): stop quietly, like a pipeline would.
            self.broken_pipe = true;
            self.kill_all();
        } else {
            eprintln!("kb: warning: cannot write output: {err}");
        }
    }
}

/// How long killed attempts have to report their end before kb stops waiting for them.
const ABANDON_AFTER: Duration = Duration::from_secs(3);

impl Dispatcher {
    /// Gives up on attempts that did not report their end after SIGKILL (a worker that no longer answers).
    fn abandon(&mut self) {
        self.abandon_deadline = None;
        for (_, run) in self.running.drain() {
            let name = self.workers[run.worker].worker.name();
            eprintln!(
                "kb: warning: job {} on `{name}` did not confirm that it stopped",
                run.job.seq
            );
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
