//! The task's pods as a [`WorkerSource`]: a watch on the task's pods; each pod that becomes Ready is connected to
//! (port-forward, SSH with the pinned host key, working directory copied) and announced as it joins, so the first
//! job starts with the first pod. Pods that cannot start are reported at once, and the source gives up when the
//! whole task cannot start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::lifetime::{build_stop_reason, show_duration};
use super::pod_state::observe;
use super::progress::PodProgress;
use super::resources::task_selector;
use super::tracker::{Action, Tracker};
use super::worker::{AgentAccess, PodWorker, api_answers, join_pod, reconnect_limit, rejoin_pod};
use crate::output::report::{self, Reporter};
use crate::worker::{Worker, WorkerEvent, WorkerSource};

/// Announces the pods of one task as workers.
pub struct PodSource {
    /// How to reach the agents.
    pub access: AgentAccess,
    /// The task id.
    pub task_id: String,
    /// How many pods the task asked for.
    pub pods: usize,
    /// Job slots per pod.
    pub slots: usize,
    /// Where jobs run in the pods.
    pub workdir: Option<PathBuf>,
    /// How each pod gets the working directory.
    pub share: Option<crate::k8s::share::PodShare>,
    /// How long to wait for the first pod before giving up.
    pub start_timeout: Duration,
    /// What each pod asks for, for messages (`100m cpu, 128Mi memory`).
    pub request: String,
    /// The task's `--max-runtime`: the Job's deadline, and (with a margin) the source's own backstop.
    pub max_runtime: Duration,
    /// Words what the source tells the user (a pod that rejoined, an API server that stopped answering).
    pub reporter: Reporter,
}

/// How long after `--max-runtime` the source stops the run itself, if the Job's deadline was never seen (the API
/// server unreachable at the time, say).
const BACKSTOP_MARGIN: Duration = Duration::from_secs(30);

/// How long the pods may fail to mount an NFS lazy share (the kubelet retries) before the run is given up.
const NFS_MOUNT_GRACE: Duration = Duration::from_secs(10);

/// What to do when the nodes cannot mount the lazy share over NFS.
const NFS_MOUNT_HINT: &str = "the nodes cannot mount NFS from the share server: use --lazy-mount fuse (the kb-fuse \
     device plugin from `kb cluster-setup` hands pods /dev/fuse), or --share eager";

/// The kubelet's message when it failed to mount the lazy share's NFS volume in one of task `id`'s pods.
fn share_mount_failure(event: &k8s_openapi::api::core::v1::Event, id: &str) -> Option<String> {
    let pod = event.involved_object.name.as_deref()?;
    let message = event.message.as_deref()?;
    let ours = pod.starts_with(&format!("kb-{id}-"))
        && event.reason.as_deref() == Some("FailedMount")
        && message.contains(&format!("volume \"{}\"", super::resources::NFS_VOLUME));
    // The kubelet's first line and the mount command's own words; the command line and paths in between are
    // in `kubectl describe pod`.
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let output = lines
        .find_map(|l| l.strip_prefix("Output:"))
        .map(|o| format!("; {}", o.trim()))
        .unwrap_or_default();
    ours.then(|| format!("pod `{pod}`: {first}{output}"))
}

/// What to do when `--max-runtime` stopped a run.
const MAX_RUNTIME_HINT: &str = "give the task more time (`--max-runtime`)";

/// A pod's name, whether it was a reconnection, how long joining took, and the worker or why not.
type Joining = (String, bool, Duration, super::Result<PodWorker>);

/// How often the source looks for joined pods whose connection is gone.
const LOST_CHECK: Duration = Duration::from_secs(1);

impl WorkerSource for PodSource {
    fn start(
        self: Box<Self>,
        events: mpsc::Sender<WorkerEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        async move {
            self.run(&events, cancel).await;
            let _ = events.send(WorkerEvent::Done).await;
        }
        .boxed()
    }
}

impl PodSource {
    async fn run(self: Box<Self>, events: &mpsc::Sender<WorkerEvent>, cancel: CancellationToken) {
        let pods: Api<Pod> =
            Api::namespaced(self.access.kube.client.clone(), &self.access.kube.namespace);
        let config =
            watcher::Config::default().labels(&super::coordinator::worker_selector(&self.task_id));
        let mut stream = pin!(watcher::watcher(pods, config).default_backoff());
        // The Job says when Kubernetes stopped the task for good (its deadline, `--max-runtime`).
        let jobs: Api<Job> =
            Api::namespaced(self.access.kube.client.clone(), &self.access.kube.namespace);
        let job_config =
            watcher::Config::default().fields(&format!("metadata.name=kb-{}", self.task_id));
        let mut job_stream = pin!(watcher::watcher(jobs, job_config).default_backoff());
        let backstop = tokio::time::sleep(self.max_runtime + BACKSTOP_MARGIN);
        let mut backstop = pin!(backstop);
        // The workers handed out, to notice when a connection is gone while its pod still runs.
        let mut handed_out: HashMap<String, Weak<PodWorker>> = HashMap::new();
        let mut outage = Outage::new(&self.access.kube.url, self.reporter.clone());
        let mut lost_check = tokio::time::interval(LOST_CHECK);
        lost_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tracker = Tracker::new(self.pods).with_request(self.request.clone());
        let mut joining: JoinSet<Joining> = JoinSet::new();
        let progress = PodProgress::new(self.pods);
        let deadline = tokio::time::sleep(self.start_timeout);
        let mut deadline = pin!(deadline);
        let task = format!("task {}", self.task_id);
        // A lazy share that ends (its server restarted, its connection dropped) stops the run.
        let lazy_share = match &self.share {
            Some(crate::k8s::share::PodShare::Lazy(share)) => Some(share.clone()),
            _ => None,
        };
        let lazy_ended = async move {
            match lazy_share {
                Some(share) => share.ended().await,
                None => std::future::pending().await,
            }
        };
        let mut lazy_ended = pin!(lazy_ended);
        // A kubelet NFS volume that cannot be mounted keeps the pods in ContainerCreating: its events say why.
        let nfs = matches!(&self.share, Some(crate::k8s::share::PodShare::Lazy(share)) if share.mount() == crate::config::LazyMount::Nfs);
        let events_api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.access.kube.client.clone(), &self.access.kube.namespace);
        let mut mount_events = pin!(
            watcher::watcher(
                events_api,
                watcher::Config::default().fields("reason=FailedMount")
            )
            .default_backoff()
        );
        let mut mount_failure: Option<String> = None;
        let mount_grace = tokio::time::sleep(Duration::ZERO);
        let mut mount_grace = pin!(mount_grace);
        loop {
            let actions = tokio::select! {
                () = cancel.cancelled() => break,
                (reason, hint) = &mut lazy_ended => {
                    let _ = events.send(WorkerEvent::Stopped { reason, hint }).await;
                    break;
                }
                Some(item) = mount_events.next(), if nfs => {
                    if let Ok(Event::Apply(event) | Event::InitApply(event)) = item
                        && let Some(failure) = share_mount_failure(&event, &self.task_id)
                    {
                        if mount_failure.is_none() {
                            mount_grace.as_mut().reset(tokio::time::Instant::now() + NFS_MOUNT_GRACE);
                        }
                        tracing::info!("{failure}");
                        mount_failure = Some(failure);
                    }
                    Vec::new()
                }
                () = &mut mount_grace, if mount_failure.is_some() && tracker.joined() == 0 => {
                    let reason = format!(
                        "the pods of {task} cannot mount the working directory over NFS ({})",
                        mount_failure.take().unwrap_or_default()
                    );
                    let hint = NFS_MOUNT_HINT.to_string();
                    let _ = events.send(WorkerEvent::Stopped { reason, hint }).await;
                    break;
                }
                () = &mut deadline, if tracker.joined() == 0 => {
                    let reason = format!(
                        "no pod became ready within {} s; `kb status` and `kubectl describe pods -l {}` show why",
                        self.start_timeout.as_secs(), task_selector(&self.task_id));
                    let _ = events.send(WorkerEvent::Failed { name: task.clone(), reason }).await;
                    break;
                }
                () = &mut backstop => {
                    let reason = format!(
                        "task {} passed its max runtime of {} (--max-runtime)",
                        self.task_id, show_duration(self.max_runtime));
                    let hint = MAX_RUNTIME_HINT.to_string();
                    let _ = events.send(WorkerEvent::Stopped { reason, hint }).await;
                    break;
                }
                Some(item) = job_stream.next() => match item {
                    Ok(Event::Apply(job) | Event::InitApply(job)) => {
                        if let Some(reason) = build_stop_reason(&job, &self.task_id, self.max_runtime) {
                            let hint = MAX_RUNTIME_HINT.to_string();
                            let _ = events.send(WorkerEvent::Stopped { reason, hint }).await;
                            break;
                        }
                        Vec::new()
                    }
                    Ok(_) => Vec::new(),
                    Err(err) => {
                        outage.on_watch_error(&format!("the job of {task}"), &err);
                        Vec::new()
                    }
                },
                _ = lost_check.tick() => {
                    let gone: Vec<String> = handed_out
                        .iter()
                        .filter(|(_, w)| w.upgrade().is_none_or(|w| w.is_gone()))
                        .map(|(name, _)| name.clone())
                        .collect();
                    let mut actions = Vec::new();
                    for name in gone {
                        handed_out.remove(&name);
                        actions.extend(tracker.on_lost(&name));
                    }
                    actions
                }
                Some(joined) = joining.join_next() => match joined {
                    Ok((name, again, took, Ok(worker))) => {
                        tracing::info!(pod = name, ms = took.as_millis(), "pod joined (port-forward, SSH, files copied)");
                        if again {
                            self.reporter.report(&report::Event::WorkerRejoined { worker: name.clone() });
                        }
                        tracker.on_joined(&name);
                        let worker = Arc::new(worker);
                        handed_out.insert(name, Arc::downgrade(&worker));
                        let _ = events.send(WorkerEvent::Joined(worker)).await;
                        Vec::new()
                    }
                    Ok((name, again, _, Err(err))) => {
                        if again && !api_answers(&self.access.kube).await {
                            let _ = events.send(self.api_lost()).await;
                            break;
                        }
                        vec![tracker.on_join_failed(&name, &crate::error::chain(&err))]
                    }
                    Err(_) => Vec::new(),
                },
                item = stream.next() => match item.inspect(|i| if i.is_ok() { outage.on_answer() }) {
                    Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                        tracker.on_pod(&pod.metadata.name.clone().unwrap_or_default(), observe(&pod))
                    }
                    Some(Ok(Event::Delete(pod))) => {
                        tracker.on_deleted(&pod.metadata.name.clone().unwrap_or_default());
                        Vec::new()
                    }
                    Some(Ok(Event::Init | Event::InitDone)) => Vec::new(),
                    Some(Err(err)) => {
                        outage.on_watch_error(&format!("the pods of {task}"), &err);
                        Vec::new()
                    }
                    None => break,
                },
            };
            for action in actions {
                match action {
                    Action::Connect(name) => {
                        tracing::info!(pod = name, "pod ready: joining it");
                        self.spawn_join(&mut joining, name, false)
                    }
                    Action::Reconnect(name) => {
                        tracing::info!(
                            pod = name,
                            "connection lost while the pod runs: reconnecting"
                        );
                        self.spawn_join(&mut joining, name, true)
                    }
                    Action::Report { name, reason } => {
                        let _ = events.send(WorkerEvent::Failed { name, reason }).await;
                    }
                }
            }
            progress.update(tracker.counts(), tracker.joined());
            // Jobs print to the same terminal once a pod joined: the display gives way then.
            if tracker.joined() > 0 {
                progress.finish();
            }
            // Every pod that cannot start was reported already; say no more and let the run end.
            if tracker.fatal().is_some() {
                break;
            }
        }
        progress.finish();
        joining.shutdown().await;
    }

    fn spawn_join(&self, joining: &mut JoinSet<Joining>, name: String, again: bool) {
        let access = self.access.clone();
        let (slots, workdir, share) = (self.slots, self.workdir.clone(), self.share.clone());
        let limit = reconnect_limit();
        joining.spawn(async move {
            let start = std::time::Instant::now();
            let result = if again {
                rejoin_pod(&access, &name, slots, workdir, limit).await
            } else {
                join_pod(&access, &name, slots, workdir, share).await
            };
            (name, again, start.elapsed(), result)
        });
    }

    /// The run cannot go on: the API server, which carries every connection to the pods, did not come back.
    fn api_lost(&self) -> WorkerEvent {
        let kube = &self.access.kube;
        WorkerEvent::Stopped {
            reason: format!(
                "lost the Kubernetes API server at `{}`: kb could not reconnect to the pods of task {} for {} s",
                kube.url,
                self.task_id,
                reconnect_limit().as_secs()
            ),
            hint: format!(
                "check that the cluster is up (`kubectl cluster-info`) and try again; `KB_API_RETRY` (seconds) \
                 waits longer; the pods end themselves after --orphan-timeout, or `kb finish {}` removes them",
                self.task_id
            ),
        }
    }
}

/// Says once, in the user's terms, that the API server stopped answering, instead of a warning per retry; the
/// watches retry with backoff on their own, and the lost connections to the pods are made again (`rejoin_pod`).
struct Outage {
    url: String,
    said: bool,
    reporter: Reporter,
}

impl Outage {
    fn new(url: &str, reporter: Reporter) -> Self {
        Outage {
            url: url.to_string(),
            said: false,
            reporter,
        }
    }

    fn on_answer(&mut self) {
        self.said = false;
    }

    fn on_watch_error(&mut self, what: &str, err: &watcher::Error) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Event, ObjectReference};

    fn event(pod: &str, reason: &str, message: &str) -> Event {
        Event {
            involved_object: ObjectReference {
                name: Some(pod.into()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_tasks_share_volume_failing_to_mount_counts() {
        let kubelet = "MountVolume.SetUp failed for volume \"kb-share\" : mount failed: exit status 32\n\
                       Mounting command: mount\nMounting arguments: -t nfs 10.0.0.5:/kb/t-x /var/lib/kubelet/x\n\
                       Output: mount: /var/lib/kubelet/x: unknown filesystem type 'nfs'.\n";
        assert_eq!(
            share_mount_failure(&event("kb-abc-x1", "FailedMount", kubelet), "abc").as_deref(),
            Some(
                "pod `kb-abc-x1`: MountVolume.SetUp failed for volume \"kb-share\" : mount failed: exit status 32; \
                 mount: /var/lib/kubelet/x: unknown filesystem type 'nfs'."
            )
        );
        // Another task's pod, another volume (the Secret arrives a moment after the Job), another reason.
        assert_eq!(
            share_mount_failure(&event("kb-abd-x1", "FailedMount", kubelet), "abc"),
            None
        );
        let secret =
            "MountVolume.SetUp failed for volume \"kb-keys\" : secret \"kb-abc\" not found";
        assert_eq!(
            share_mount_failure(&event("kb-abc-x1", "FailedMount", secret), "abc"),
            None
        );
        assert_eq!(
            share_mount_failure(&event("kb-abc-x1", "Pulled", kubelet), "abc"),
            None
        );
    }
}
