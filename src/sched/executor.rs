//! An executor runs one attempt of one job on one worker and reports its output and its end to the dispatcher.
//! It passes on the signals the dispatcher sends (interrupts, `--halt now`, `--timeout`: the core decides when).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::model::{JobExit, JobSignal, Stream};
use crate::worker::{JobAttempt, JobRun, RunError, Worker};

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
    },
}

/// Runs `job` on `worker`, forwarding its output to `events` and the signals received on `control` to the job;
/// when `control` closes, the job is killed.
pub async fn execute(
    worker: Arc<dyn Worker>,
    attempt: AttemptId,
    job: JobRun,
    events: mpsc::Sender<ExecEvent>,
    mut control: mpsc::UnboundedReceiver<JobSignal>,
) {
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let run = worker.run(JobAttempt {
        job,
        out: out_tx,
        signals: sig_rx,
    });
    tokio::pin!(run);
    let mut sig_tx = Some(sig_tx);
    let mut control_open = true;
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
    let _ = events.send(ExecEvent::Done { attempt, result }).await;
}
