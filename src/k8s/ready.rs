//! Waiting for the first pod of a task to be Ready (for `kb shell`), with the same rules as the worker source for
//! what cannot start, turned into an error instead of a report.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::client::Kube;
use super::error::{Error, Result};
use super::pod_state::observe;
use super::progress::PodProgress;
use super::tracker::{Action, Tracker};

/// Waits until a pod of task `id` is Ready and returns its name; fails when the task cannot start or after
/// `timeout`.
pub async fn await_ready_pod(
    kube: &Kube,
    id: &str,
    pods: usize,
    timeout: Duration,
) -> Result<String> {
    let wait = async {
        let api: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let config = watcher::Config::default().labels(&super::coordinator::worker_selector(id));
        let mut stream = pin!(watcher::watcher(api, config).default_backoff());
        let mut tracker = Tracker::new(pods);
        let progress = PodProgress::new(pods);
        while let Some(item) = stream.next().await {
            let pod = match item {
                Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(
                        "watching the pods of task `{id}`: {}",
                        crate::error::chain(&err)
                    );
                    continue;
                }
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            for action in tracker.on_pod(&name, observe(&pod)) {
                match action {
                    Action::Connect(name) | Action::Reconnect(name) => return Ok(name),
                    Action::Report { name, reason } => tracing::info!("pod `{name}`: {reason}"),
                }
            }
            progress.update(tracker.counts(), 0);
            if let Some(reason) = tracker.fatal() {
                return Err(Error::CannotStart {
                    task: id.to_string(),
                    reason,
                });
            }
        }
        Err(Error::CannotStart {
            task: id.to_string(),
            reason: "the watch on its pods ended".into(),
        })
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| Error::Timeout {
            what: format!("a pod of task `{id}` to be ready"),
            seconds: timeout.as_secs(),
        })?
}
