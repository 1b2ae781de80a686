//! The source's state while it runs (`Joins`: the tracker, the joins under way, the workers handed out) and how
//! it tells the user about an unreachable API server (`Outage`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::{Joining, MAX_RUNTIME_HINT, NFS_MOUNT_HINT, PodSource, Step, share_mount_failure};
use crate::k8s::lifetime::build_stop_reason;
use crate::k8s::pod_state::observe;
use crate::k8s::tracker::{Action, Tracker};
use crate::k8s::worker::{PodWorker, api_answers, reconnect_limit};
use crate::output::report::{self, Reporter};
use crate::worker::{Worker, WorkerEvent};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The source's state while it runs: the pods' tracker, the joins under way, the workers handed out.
pub(super) struct Joins<'a> {
    pub(super) source: &'a PodSource,
    pub(super) tracker: Tracker,
    pub(super) joining: JoinSet<Joining>,
    /// The workers handed out, to notice when a connection is gone while its pod still runs.
    pub(super) handed_out: HashMap<String, Weak<PodWorker>>,
    pub(super) outage: Outage,
    /// Why the pods cannot mount the NFS share, once the kubelet said so.
    pub(super) mount_failure: Option<String>,
}

impl Joins<'_> {
    pub(super) fn task(&self) -> String {
        format!("task {}", self.source.task_id)
    }

    /// Records the kubelet's word that the task's NFS volume cannot be mounted; true for the first such word (the
    /// grace period starts then).
    pub(super) fn on_mount_event(
        &mut self,
        item: watcher::Result<Event<k8s_openapi::api::core::v1::Event>>,
    ) -> bool {
        let Ok(Event::Apply(event) | Event::InitApply(event)) = item else {
            return false;
        };
        let Some(failure) = share_mount_failure(&event, &self.source.task_id) else {
            return false;
        };
        tracing::info!("{failure}");
        self.mount_failure.replace(failure).is_none()
    }

    /// The pods still cannot mount the NFS share after the grace period: the run stops.
    pub(super) fn mount_failed(&mut self) -> Step {
        let reason = format!(
            "the pods of {} cannot mount the working directory over NFS ({})",
            self.task(),
            self.mount_failure.take().unwrap_or_default()
        );
        Step::stop(reason, NFS_MOUNT_HINT)
    }

    /// The Job changed: it may say that Kubernetes stopped the task.
    pub(super) fn on_job_event(&mut self, item: watcher::Result<Event<Job>>) -> Step {
        match item {
            Ok(Event::Apply(job) | Event::InitApply(job)) => {
                let source = self.source;
                match build_stop_reason(&job, &source.task_id, source.max_runtime) {
                    Some(reason) => Step::stop(reason, MAX_RUNTIME_HINT),
                    None => Step::idle(),
                }
            }
            Ok(_) => Step::idle(),
            Err(err) => {
                let what = format!("the job of {}", self.task());
                self.outage.on_watch_error(&what, &err);
                Step::idle()
            }
        }
    }

    /// A pod changed.
    pub(super) fn on_pod_event(&mut self, item: Option<watcher::Result<Event<Pod>>>) -> Step {
        if let Some(Ok(_)) = &item {
            self.outage.on_answer();
        }
        match item {
            Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                Step::Go(self.tracker.on_pod(&name, observe(&pod)))
            }
            Some(Ok(Event::Delete(pod))) => {
                self.tracker
                    .on_deleted(&pod.metadata.name.clone().unwrap_or_default());
                Step::idle()
            }
            Some(Ok(Event::Init | Event::InitDone)) => Step::idle(),
            Some(Err(err)) => {
                let what = format!("the pods of {}", self.task());
                self.outage.on_watch_error(&what, &err);
                Step::idle()
            }
            None => Step::End(None),
        }
    }

    /// Workers handed out whose connection is gone while their pod may still run.
    pub(super) fn on_lost_check(&mut self) -> Vec<Action> {
        let gone: Vec<String> = self
            .handed_out
            .iter()
            .filter(|(_, w)| w.upgrade().is_none_or(|w| w.is_gone()))
            .map(|(name, _)| name.clone())
            .collect();
        let mut actions = Vec::new();
        for name in gone {
            self.handed_out.remove(&name);
            actions.extend(self.tracker.on_lost(&name));
        }
        actions
    }

    /// A join ended: the pod is announced, or the tracker hears why not.
    pub(super) async fn on_joined(
        &mut self,
        joined: Result<Joining, tokio::task::JoinError>,
        events: &mpsc::Sender<WorkerEvent>,
    ) -> Step {
        match joined {
            Ok((name, again, took, Ok(worker))) => {
                tracing::info!(
                    pod = name,
                    ms = took.as_millis(),
                    "pod joined (port-forward, SSH, files copied)"
                );
                if again {
                    let worker = name.clone();
                    self.source
                        .reporter
                        .report(&report::Event::WorkerRejoined { worker });
                }
                self.tracker.on_joined(&name);
                let worker = Arc::new(worker);
                self.handed_out.insert(name, Arc::downgrade(&worker));
                let _ = events.send(WorkerEvent::Joined(worker)).await;
                Step::idle()
            }
            Ok((name, again, _, Err(err))) => {
                if again && !api_answers(&self.source.access.kube).await {
                    return Step::End(Some(self.source.api_lost()));
                }
                Step::Go(vec![
                    self.tracker
                        .on_join_failed(&name, &crate::error::chain(&err)),
                ])
            }
            Err(_) => Step::idle(),
        }
    }

    /// Does what the tracker decided: join a pod, join it again, or report one that cannot start.
    pub(super) async fn apply(&mut self, actions: Vec<Action>, events: &mpsc::Sender<WorkerEvent>) {
        for action in actions {
            match action {
                Action::Connect(name) => {
                    tracing::info!(pod = name, "pod ready: joining it");
                    self.source.spawn_join(&mut self.joining, name, false)
                }
                Action::Reconnect(name) => {
                    tracing::info!(
                        pod = name,
                        "connection lost while the pod runs: reconnecting"
                    );
                    self.source.spawn_join(&mut self.joining, name, true)
                }
                Action::Report { name, reason } => {
                    let _ = events.send(WorkerEvent::Failed { name, reason }).await;
                }
            }
        }
    }
}

/// Says once, in the user's terms, that the API server stopped answering, instead of a warning per retry; the
/// watches retry with backoff on their own, and the lost connections to the pods are made again (`rejoin_pod`).
pub(super) struct Outage {
    pub(super) url: String,
    pub(super) said: bool,
    pub(super) reporter: Reporter,
}

impl Outage {
    pub(super) fn new(url: &str, reporter: Reporter) -> Self {
        Outage {
            url: url.to_string(),
            said: false,
            reporter,
        }
    }

    pub(super) fn on_answer(&mut self) {
        self.said = false;
    }

    pub(super) fn on_watch_error(&mut self, what: &str, err: &watcher::Error) {
        tracing::debug!("watching {what}: {}", crate::error::chain(err));
        let unreachable = match err {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => {
                matches!(e, kube::Error::Service(_) | kube::Error::HyperError(_))
            }
            _ => false,
        };
        if unreachable && !std::mem::replace(&mut self.said, true) {
            self.reporter.report(&report::Event::ApiUnreachable {
                url: self.url.clone(),
                retry: reconnect_limit(),
            });
        }
    }
}
