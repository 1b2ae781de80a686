//! Whether anyone still uses an agent: the number of logged-in connections and when the last one ended. An agent
//! started with `--orphan-timeout` exits when nobody has been connected for that long, so a pod whose client died
//! (a laptop closed, a SIGKILLed `kb parallel`) ends itself instead of waiting for `--max-runtime`.
//!
//! A connection counts only once it has logged in: the kubelet's TCP readiness probe connects every few seconds and
//! must not keep an orphan alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Shared by the server and every connection of one agent.
#[derive(Debug)]
pub(crate) struct Liveness {
    connected: AtomicUsize,
    /// When the agent started or the last logged-in connection ended.
    idle_since: Mutex<Instant>,
}

impl Liveness {
    /// A new agent: nobody connected yet, idle from now.
    pub(crate) fn new() -> Arc<Liveness> {
        Arc::new(Liveness {
            connected: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// A connection logged in; the guard counts it until dropped.
    pub(crate) fn connected(self: &Arc<Self>) -> ConnectionGuard {
        self.connected.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(self.clone())
    }

    /// How long nobody has been connected, `None` while someone is.
    fn idle_for(&self) -> Option<Duration> {
        if self.connected.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.idle_since.lock().ok().map(|since| since.elapsed())
    }

    /// Returns once nobody has been connected for `timeout`; never when `timeout` is `None`.
    pub(crate) async fn orphaned(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        loop {
            if self.idle_for().is_some_and(|idle| idle >= timeout) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Counts one logged-in connection while it lives.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Arc<Liveness>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Ok(mut since) = self.0.idle_since.lock() {
            *since = Instant::now();
        }
        self.0.connected.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn orphaned_only_after_the_timeout_with_nobody_connected() {
        let live = Liveness::new();
        let guard = live.connected();
        let timeout = Some(Duration::from_secs(10));
        let waited = tokio::time::timeout(Duration::from_secs(30), live.orphaned(timeout)).await;
        assert!(waited.is_err(), "a connected client keeps the agent alive");
        drop(guard);
        assert!(live.idle_for().is_some());
        tokio::time::timeout(Duration::from_secs(30), live.orphaned(timeout))
            .await
            .expect("orphaned");
        let never = tokio::time::timeout(Duration::from_secs(3600), live.orphaned(None)).await;
        assert!(never.is_err(), "no timeout: never orphaned");
    }
}
