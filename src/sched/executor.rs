//! An executor runs one attempt of one job on one worker and reports its output and its end to the dispatcher.
//! It owns the job's `--timeout` (SIGTERM, SIGTERM again after 200 ms, SIGKILL 100 ms later, as GNU parallel).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::model::{JobExit, JobSignal, Stream};
use crate::worker::{JobRun, RunError, Worker};

/// Identifies one attempt of one job within a run (numbered from 0 in the order they start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(pub u64);

/// What executors tell the dispatcher.
pub enum ExecEvent {
    /// A chunk of output, in order.
    Output {
        /// The attempt.
        attempt: AttemptId,
        /// Stdout or stderr.
        stream: Stream,
        /// The bytes.
        data: Bytes,
    },
    /// The attempt ended.
    Done {
        /// The attempt.
        attempt: AttemptId,
        /// Its exit, or why it has none.
        result: Result<JobExit, RunError>,
        /// It was killed because it ran longer than `--timeout`.
        timed_out: bool,
    },
}

/// Runs `job` on `worker`, forwarding output and signals, and enforcing `timeout`.
pub async fn execute(
    worker: Arc<dyn Worker>,
    attempt: AttemptId,
    job: JobRun,
    events: mpsc::Sender<ExecEvent>,
    mut control: mpsc::UnboundedReceiver<JobSignal>,
    timeout: Option<Duration>,
) {
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let run = worker.run(job, out_tx, sig_rx);
    tokio::pin!(run);
    let mut sig_tx = Some(sig_tx);
    let mut control_open = true;
    // The --timeout escalation: TERM at the deadline, TERM again 200 ms later, KILL 100 ms after that.
    let mut stage = 0u8;
    let sleep = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(86400 * 365)));
    tokio::pin!(sleep);
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            Some((stream, data)) = out_rx.recv() => {
                if events.send(ExecEvent::Output { attempt, stream, data }).await.is_err() {
                    sig_tx = None;
                }
            }
            sig = control.recv(), if control_open => match sig {
                Some(sig) => { if let Some(tx) = &sig_tx { let _ = tx.send(sig); } }
                None => { control_open = false; sig_tx = None; }
            },
            () = &mut sleep, if timeout.is_some() && stage < 3 => {
                let (sig, next) = match stage {
                    0 => (JobSignal::Term, Duration::from_millis(200)),
                    1 => (JobSignal::Term, Duration::from_millis(100)),
                    _ => (JobSignal::Kill, Duration::from_secs(86400)),
                };
                stage += 1;
                if let Some(tx) = &sig_tx { let _ = tx.send(sig); }
                sleep.as_mut().reset(tokio::time::Instant::now() + next);
            }
        }
    };
    drop(sig_tx);
    while let Ok((stream, data)) = out_rx.try_recv() {
        let _ = events
            .send(ExecEvent::Output {
                attempt,
                stream,
                data,
            })
            .await;
    }
    let _ = events
        .send(ExecEvent::Done {
            attempt,
            result,
            timed_out: stage > 0,
        })
        .await;
}
