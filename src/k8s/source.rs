//! The task's pods as a [`WorkerSource`]: a watch on the task's pods; each pod that becomes Ready is connected to
//! (port-forward, SSH with the pinned host key, working directory copied) and announced as it joins, so the first
//! job starts with the first pod. Pods that cannot start are reported at once, and the source gives up when the
//! whole task cannot start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::pin;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::lifetime::show_duration;
use super::progress::PodProgress;
use super::resources::task_selector;
use super::tracker::{Action, Tracker};
use super::worker::{AgentAccess, PodWorker, join_pod, reconnect_limit, rejoin_pod};
use crate::config::LazyMount;
use crate::k8s::share::PodShare;
use crate::output::report::Reporter;
use crate::worker::{EventTx, SourceFuture, WorkerEvent, WorkerSource};

mod joins;

use joins::{Joins, Outage};

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
    fn start(self: Box<Self>, events: EventTx, cancel: CancellationToken) -> SourceFuture {
        async move {
            self.run(&events, cancel).await;
            let _ = events.send(WorkerEvent::Done).await;
        }
        .boxed()
    }
}

/// What one turn of the source's loop decided.
enum Step {
    /// Go on, after doing these.
    Go(Vec<Action>),
    /// The source ends, after telling the scheduler this, if anything.
    End(Option<WorkerEvent>),
}

impl Step {
    /// Nothing to do this turn.
    fn idle() -> Step {
        Step::Go(Vec::new())
    }

    /// The run stops for `reason`, with `hint` for the user.
    fn stop(reason: String, hint: &str) -> Step {
        let hint = hint.to_string();
        Step::End(Some(WorkerEvent::Stopped { reason, hint }))
    }
}

impl PodSource {
    async fn run(self: Box<Self>, events: &mpsc::Sender<WorkerEvent>, cancel: CancellationToken) {
        let mut pods = pin!(self.watch::<Pod>(
            watcher::Config::default().labels(&super::coordinator::worker_selector(&self.task_id))
        ));
        // The Job says when Kubernetes stopped the task for good (its deadline, `--max-runtime`).
        let mut jobs = pin!(self.watch::<Job>(
            watcher::Config::default().fields(&format!("metadata.name=kb-{}", self.task_id))
        ));
        // A kubelet NFS volume that cannot be mounted keeps the pods in ContainerCreating: its events say why.
        let mut mounts = pin!(self.watch::<k8s_openapi::api::core::v1::Event>(
            watcher::Config::default().fields("reason=FailedMount")
        ));
        let nfs =
            matches!(&self.share, Some(PodShare::Lazy(share)) if share.mount() == LazyMount::Nfs);
        let mut lazy_ended = pin!(self.lazy_ended());
        let mut backstop = pin!(tokio::time::sleep(self.max_runtime + BACKSTOP_MARGIN));
        let mut deadline = pin!(tokio::time::sleep(self.start_timeout));
        let mut mount_grace = pin!(tokio::time::sleep(Duration::ZERO));
        let mut lost_check = tokio::time::interval(LOST_CHECK);
        lost_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = Joins {
            source: &self,
            tracker: Tracker::new(self.pods).with_request(self.request.clone()),
            joining: JoinSet::new(),
            handed_out: HashMap::new(),
            outage: Outage::new(&self.access.kube.url, self.reporter.clone()),
            mount_failure: None,
        };
        let progress = PodProgress::new(self.pods);
        loop {
            let waiting = state.tracker.joined() == 0;
            let step = tokio::select! {
                () = cancel.cancelled() => Step::End(None),
                (reason, hint) = &mut lazy_ended => Step::stop(reason, &hint),
                Some(item) = mounts.next(), if nfs => {
                    if state.on_mount_event(item) {
                        mount_grace.as_mut().reset(tokio::time::Instant::now() + NFS_MOUNT_GRACE);
                    }
                    Step::idle()
                }
                () = &mut mount_grace, if waiting && state.mount_failure.is_some() => state.mount_failed(),
                () = &mut deadline, if waiting => self.start_timed_out(),
                () = &mut backstop => self.backstop(),
                Some(item) = jobs.next() => state.on_job_event(item),
                _ = lost_check.tick() => Step::Go(state.on_lost_check()),
                Some(joined) = state.joining.join_next() => state.on_joined(joined, events).await,
                item = pods.next() => state.on_pod_event(item),
            };
            match step {
                Step::Go(actions) => state.apply(actions, events).await,
                Step::End(event) => {
                    if let Some(event) = event {
                        let _ = events.send(event).await;
                    }
                    break;
                }
            }
            progress.update(state.tracker.counts(), state.tracker.joined());
            // Jobs print to the same terminal once a pod joined: the display gives way then.
            if state.tracker.joined() > 0 {
                progress.finish();
            }
            // Every pod that cannot start was reported already; say no more and let the run end.
            if state.tracker.fatal().is_some() {
                break;
            }
        }
        progress.finish();
        state.joining.shutdown().await;
    }

    /// A watch on the namespace's objects of kind `K` that `config` selects, retried with backoff.
    fn watch<K>(
        &self,
        config: watcher::Config,
    ) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + use<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let api: Api<K> =
            Api::namespaced(self.access.kube.client.clone(), &self.access.kube.namespace);
        watcher::watcher(api, config).default_backoff()
    }

    /// Ends, with why, when a lazy share ends (its server restarted, its connection dropped): the run stops.
    fn lazy_ended(&self) -> impl std::future::Future<Output = (String, String)> + use<> {
        let lazy_share = match &self.share {
            Some(PodShare::Lazy(share)) => Some(share.clone()),
            _ => None,
        };
        async move {
            match lazy_share {
                Some(share) => share.ended().await,
                None => std::future::pending().await,
            }
        }
    }

    /// No pod joined within the start timeout.
    fn start_timed_out(&self) -> Step {
        let reason = format!(
            "no pod became ready within {} s; `kb status` and `kubectl describe pods -l {}` show why",
            self.start_timeout.as_secs(),
            task_selector(&self.task_id)
        );
        let name = format!("task {}", self.task_id);
        Step::End(Some(WorkerEvent::Failed { name, reason }))
    }

    /// The Job's deadline passed and was never seen (the API server unreachable at the time, say).
    fn backstop(&self) -> Step {
        let reason = format!(
            "task {} passed its max runtime of {} (--max-runtime)",
            self.task_id,
            show_duration(self.max_runtime)
        );
        Step::stop(reason, MAX_RUNTIME_HINT)
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
