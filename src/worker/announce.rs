//! The end of a source that joins its workers concurrently: each join's event is passed on as it comes (so the
//! first worker ready is the first used), and `Done` follows the last; a cancelled run stops the joins still going.

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::WorkerEvent;

/// Sends each event of `joining` as its join ends, then [`WorkerEvent::Done`]; on `cancel`, aborts the joins left.
pub async fn announce(
    mut joining: JoinSet<WorkerEvent>,
    events: &mpsc::Sender<WorkerEvent>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => { joining.shutdown().await; break; }
            next = joining.join_next() => match next {
                Some(Ok(event)) => { let _ = events.send(event).await; }
                Some(Err(_)) => {}
                None => break,
            },
        }
    }
    let _ = events.send(WorkerEvent::Done).await;
}
