//! Local job slots (`--local-procs`): each job is a child `$SHELL -c COMMAND` in its own process group, so a signal
//! or a kill reaches everything the job started.

use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::{JobAttempt, JobFuture, RunError, Worker, WorkerEvent, WorkerSource};
use crate::model::{JobExit, JobSignal, OutputTx, Stream};

/// The local machine as a worker with a fixed number of slots.
pub struct LocalWorker {
    slots: usize,
    shell: String,
}

impl LocalWorker {
    /// A local worker with `slots` slots; jobs run in `$PARALLEL_SHELL`, else `$SHELL`, else `/bin/sh`.
    pub fn new(slots: usize) -> Self {
        let shell = std::env::var("PARALLEL_SHELL")
            .or_else(|_| std::env::var("SHELL"))
            .unwrap_or_else(|_| "/bin/sh".to_string());
        LocalWorker { slots, shell }
    }
}

impl Worker for LocalWorker {
    fn name(&self) -> &str {
        ":"
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn run(self: Arc<Self>, attempt: JobAttempt) -> JobFuture {
        async move { run_local(&self.shell, attempt).await }.boxed()
    }
}

async fn run_local(shell: &str, attempt: JobAttempt) -> Result<JobExit, RunError> {
    let JobAttempt {
        job,
        out,
        mut signals,
    } = attempt;
    let mut child = tokio::process::Command::new(shell)
        .arg("-c")
        .arg(&job.command)
        .env("PARALLEL_SEQ", job.seq.to_string())
        .env("PARALLEL_JOBSLOT", job.slot.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::NotStarted {
            worker: ":".into(),
            reason: format!("cannot start `{shell}`: {e}"),
        })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let pump_out = pump(stdout, Stream::Stdout, out.clone());
    let pump_err = pump(stderr, Stream::Stderr, out);
    let signal_group = |sig: Signal| {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, sig);
        }
    };
    let wait = async {
        let mut signals_open = true;
        loop {
            tokio::select! {
                status = child.wait() => break status,
                sig = signals.recv(), if signals_open => match sig {
                    Some(sig) => signal_group(to_nix(sig)),
                    None => {
                        // The dispatcher gave up on this job: kill it and everything it started.
                        signals_open = false;
                        signal_group(Signal::SIGKILL);
                    }
                },
            }
        }
    };
    let (status, (), ()) = tokio::join!(wait, pump_out, pump_err);
    let status = status.map_err(|e| RunError::CutOff {
        worker: ":".into(),
        reason: e.to_string(),
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => JobExit::Code(code),
        (None, Some(sig)) => JobExit::Signal(sig),
        (None, None) => JobExit::Code(-1),
    })
}

/// Copies a child's pipe into the output channel until EOF.
async fn pump(pipe: Option<impl AsyncRead + Unpin>, stream: Stream, out: OutputTx) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out
                    .send((stream, Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn to_nix(sig: JobSignal) -> Signal {
    match sig {
        JobSignal::Term => Signal::SIGTERM,
        JobSignal::Kill => Signal::SIGKILL,
        JobSignal::Int => Signal::SIGINT,
    }
}

/// Announces one local worker and is done.
pub struct LocalSource {
    slots: usize,
}

impl LocalSource {
    /// A source of one local worker with `slots` slots.
    pub fn new(slots: usize) -> Self {
        LocalSource { slots }
    }
}

impl WorkerSource for LocalSource {
    fn start(
        self: Box<Self>,
        events: mpsc::Sender<WorkerEvent>,
        _cancel: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()> {
        async move {
            let _ = events
                .send(WorkerEvent::Joined(Arc::new(LocalWorker::new(self.slots))))
                .await;
            let _ = events.send(WorkerEvent::Done).await;
        }
        .boxed()
    }
}
