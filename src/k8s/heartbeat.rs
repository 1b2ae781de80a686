//! The client's heartbeat: while a task's client lives it renews the task's Lease every few seconds and writes the
//! run's progress into it, so `kb status` on any machine shows PROGRESS and, when the renewals stop, ORPHANED.
//!
//! A heartbeat that cannot be written (no right on Leases, say) is logged, never an error: the task runs anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use super::client::Kube;
use super::resources::{HEARTBEAT_SECS, PROGRESS};

const UNKNOWN: u64 = u64::MAX;

/// The run's progress as the scheduler reports it; cheap to clone and update from anywhere.
#[derive(Debug, Clone)]
pub struct ProgressHandle(Arc<(AtomicU64, AtomicU64)>);

impl Default for ProgressHandle {
    fn default() -> Self {
        ProgressHandle(Arc::new((AtomicU64::new(0), AtomicU64::new(UNKNOWN))))
    }
}

impl ProgressHandle {
    /// Records `done` jobs out of `total` (`None` while the input is still being read).
    pub fn set(&self, done: u64, total: Option<u64>) {
        self.0.0.store(done, Ordering::Relaxed);
        self.0.1.store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    /// `done/total`, `done/?` when the total is unknown.
    pub fn text(&self) -> String {
        let done = self.0.0.load(Ordering::Relaxed);
        match self.0.1.load(Ordering::Relaxed) {
            UNKNOWN => format!("{done}/?"),
            total => format!("{done}/{total}"),
        }
    }
}

/// A running heartbeat; stopped by [`Heartbeat::stop`] or when dropped.
pub struct Heartbeat {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Heartbeat {
    /// Renews Lease `name` every few seconds with `progress`.
    pub fn start(kube: Kube, name: String, progress: ProgressHandle) -> Heartbeat {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(beat(kube, name, progress, cancel.clone()));
        Heartbeat {
            cancel,
            task: Some(task),
        }
    }

    /// Stops renewing and waits for the last renewal in flight.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The merge patch of one renewal.
pub fn build_renewal(now: Timestamp, progress: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"annotations": {PROGRESS: progress}},
        "spec": {"renewTime": MicroTime(now)},
    })
}

async fn beat(kube: Kube, name: String, progress: ProgressHandle, cancel: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS.unsigned_abs().into()));
    let mut warned = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                // One last renewal with the final progress (what `kb status` shows of an --async task that ended),
                // bounded so that stopping never waits on an API server that does not answer.
                let patch = Patch::Merge(build_renewal(Timestamp::now(), &progress.text()));
                let params = PatchParams::default();
                let last = leases.patch(&name, &params, &patch);
                let _ = tokio::time::timeout(Duration::from_secs(5), last).await;
                return;
            }
            _ = tick.tick() => {}
        }
        let patch = Patch::Merge(build_renewal(Timestamp::now(), &progress.text()));
        if let Err(err) = leases.patch(&name, &PatchParams::default(), &patch).await
            && !std::mem::replace(&mut warned, true)
        {
            tracing::warn!(
                "cannot renew the heartbeat of `{name}`: {}",
                crate::error::chain(&err)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text() {
        let progress = ProgressHandle::default();
        assert_eq!(progress.text(), "0/?");
        progress.clone().set(3, Some(10));
        assert_eq!(progress.text(), "3/10");
        progress.set(4, None);
        assert_eq!(progress.text(), "4/?");
    }

    #[test]
    fn renewal_patch_has_microsecond_time_and_progress() {
        let now: Timestamp = "2026-01-01T00:00:01.5Z".parse().unwrap();
        let patch = build_renewal(now, "1/2");
        assert_eq!(patch["spec"]["renewTime"], "2026-01-01T00:00:01.500000Z");
        assert_eq!(patch["metadata"]["annotations"]["kb.dev/progress"], "1/2");
    }
}
