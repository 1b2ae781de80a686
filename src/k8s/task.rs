//! A task's life in the cluster: check the request, create the Job and its Secret, hand out the pods as workers,
//! and delete everything (by label, idempotently) at the end, on Ctrl-C, or from `kb finish`.

mod attach;
mod checks;
mod create;
mod finish;

pub use attach::hand_over;
pub use checks::default_agent_image;
use checks::{Shape, check_nodes, check_shape, choose_lazy_mount, start_timeout, write_client_key};
pub use finish::{finish_task, finish_tasks};

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use super::client::{Kube, Target, classify};
use super::error::Result;
use super::heartbeat::{Heartbeat, ProgressHandle};
use super::lifetime::Lifetime;
use super::resources::{TaskSpec, build_job, build_lease, build_secret};
use super::source::PodSource;
use super::worker::AgentAccess;
use crate::config::Share;
use crate::output::report::{Event, Reporter};
use crate::ssh::task_keys::{TaskKeys, build_task_keys};
use crate::worker::WorkerSource;

/// The image jobs run in when neither `--image` nor `KB_IMAGE` says.
pub const DEFAULT_IMAGE: &str = "debian:bookworm";
/// The CPU each pod asks for when `--cpu` is not given.
pub const DEFAULT_CPU: &str = "100m";
/// The memory each pod asks for when `--mem` is not given (no limit then).
pub const DEFAULT_MEM: &str = "128Mi";
/// How long to wait for the first pod; `KB_START_TIMEOUT` (seconds) changes it.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(300);

/// The size and images of a task's pods as the user asked (flags, then `kb.toml`); `None` takes kb's default.
#[derive(Debug, Clone, Default)]
pub struct PodShape {
    /// CPU each pod asks for, as a Kubernetes quantity.
    pub cpu: Option<String>,
    /// Memory each pod asks for and may use.
    pub mem: Option<String>,
    /// The image the jobs run in.
    pub image: Option<String>,
    /// The image holding kb's static agent.
    pub agent_image: Option<String>,
    /// `--max-runtime`, unparsed.
    pub max_runtime: Option<String>,
    /// `--orphan-timeout`, unparsed.
    pub orphan_timeout: Option<String>,
    /// How the pods see the working directory.
    pub share: Option<Share>,
    /// How pods mount a lazy share.
    pub lazy_mount: Option<crate::config::LazyMount>,
}

impl PodShape {
    /// `--orphan-timeout` and `--max-runtime`: as given, else `fallback` (a project config), else kb's defaults.
    pub fn lifetime(&self, fallback: super::LifetimeFallback) -> Result<Lifetime> {
        Lifetime::resolve(
            self.orphan_timeout.as_deref(),
            self.max_runtime.as_deref(),
            fallback,
        )
    }
}

/// What a task is for.
#[derive(Debug, Clone)]
pub struct TaskRequest<'a> {
    /// The cluster and namespace.
    pub target: Target,
    /// The size and images of the pods.
    pub shape: PodShape,
    /// How many pods.
    pub pods: usize,
    /// Job slots per pod, when given.
    pub slots: Option<usize>,
    /// `parallel` or `shell`.
    pub kind: &'static str,
    /// The command line, for `kb status`.
    pub command: &'a str,
    /// `--orphan-timeout` and `--max-runtime`, resolved.
    pub lifetime: Lifetime,
    /// Words what the task tells the user while it is made and runs.
    pub reporter: Reporter,
}

/// A task whose Job exists in the cluster. Call [`PodTask::finish`] to remove it.
pub struct PodTask {
    kube: Kube,
    spec: TaskSpec,
    slots: usize,
    access: AgentAccess,
    key_dir: PathBuf,
    workdir: PathBuf,
    share: crate::k8s::share::PodShare,
    /// The share server may hold the task's keys or tree: `finish` tells it to forget the task.
    share_on_server: bool,
    /// Whether files the jobs write come back after the run.
    syncback: bool,
    progress: ProgressHandle,
    heartbeat: Option<Heartbeat>,
    lifetime: Lifetime,
    /// The Job, once created (the owner of what `--async` adds).
    job: Option<Job>,
    /// Run by a coordinator that attached to a task the client created: `finish` leaves the task in place.
    attached: bool,
    reporter: Reporter,
}

impl PodTask {
    /// Creates the Lease and starts renewing it; a cluster that refuses the Lease gets a task without heartbeat.
    async fn start_heartbeat(&mut self, job: &Job) {
        let leases: Api<Lease> = Api::namespaced(self.kube.client.clone(), &self.kube.namespace);
        let lease = build_lease(&self.spec, job, k8s_openapi::jiff::Timestamp::now());
        match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                let beat =
                    Heartbeat::start(self.kube.clone(), self.spec.name(), self.progress.clone());
                self.heartbeat = Some(beat);
            }
            Err(err) => tracing::warn!(
                "no heartbeat for task `{}`: {}",
                self.spec.id,
                crate::error::chain(&err)
            ),
        }
    }

    async fn apply(&self, keys: &TaskKeys) -> Result<Job> {
        let jobs: Api<Job> = Api::namespaced(self.kube.client.clone(), &self.kube.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.kube.client.clone(), &self.kube.namespace);
        let name = self.spec.name();
        let ns = &self.kube.namespace;
        let job = jobs
            .create(&PostParams::default(), &build_job(&self.spec))
            .await
            .map_err(|e| {
                classify(
                    &self.kube,
                    &format!("create job `{name}` in namespace `{ns}`"),
                    e,
                )
            })?;
        let secret = build_secret(&self.spec, &job, &keys.host_private, &keys.client_public);
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| {
                classify(
                    &self.kube,
                    &format!("create secret `{name}` in namespace `{ns}`"),
                    e,
                )
            })?;
        Ok(job)
    }

    /// The task id (as `kb status` and `kb finish` show and take it).
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The namespace of the task.
    pub fn namespace(&self) -> &str {
        &self.kube.namespace
    }

    /// The line to print when the task starts: its id, its limits and how to change them.
    pub fn announcement(&self) -> String {
        self.lifetime.announce(&self.spec.id, &self.kube.namespace)
    }

    /// Job slots per pod.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// How kb reaches the task's agents (for `kb shell`).
    pub fn access(&self) -> &AgentAccess {
        &self.access
    }

    /// Where the scheduler reports the run's progress, for `kb status` (through the heartbeat).
    pub fn progress(&self) -> ProgressHandle {
        self.progress.clone()
    }

    /// How the pods get the working directory.
    pub fn share(&self) -> &crate::k8s::share::PodShare {
        &self.share
    }

    /// The working directory, which is also where jobs run in the pods.
    pub fn workdir(&self) -> &std::path::Path {
        &self.workdir
    }

    /// With `--share syncback`: brings back what the jobs wrote, from every pod still connected, and reports it on
    /// stderr. Conflicts (a file changed here and by a job) keep both versions.
    pub async fn syncback(&self) {
        let crate::k8s::share::PodShare::Server(share) = &self.share else {
            return;
        };
        if !self.syncback {
            return;
        }
        let mut report = crate::share::sync::SyncReport::default();
        for pod in share.joined_pods() {
            let result = match super::worker::connect_agent(&self.access, &pod).await {
                Ok((conn, forward)) => {
                    let result = share.syncback_pod(&conn, &pod, &mut report).await;
                    conn.close().await;
                    forward.abort();
                    result.map_err(|e| crate::error::chain(&e))
                }
                Err(err) => Err(crate::error::chain(&err)),
            };
            if let Err(reason) = result {
                self.reporter.report(&Event::SyncbackFailed {
                    worker: pod.clone(),
                    reason,
                });
            }
        }
        self.reporter.report(&Event::Syncback {
            updated: report.updated.len(),
            unchanged: report.unchanged,
            conflicts: report.conflicts.len(),
        });
        for (path, aside) in &report.conflicts {
            self.reporter.report(&Event::SyncConflict {
                path: path.to_string(),
                aside: aside.to_string(),
            });
        }
    }

    /// Connects to the task's first Ready pod with the working directory in place (`kb shell`); returns the
    /// connection, the pod and the port-forward it rides on.
    pub async fn connect_first(
        &self,
    ) -> Result<(crate::ssh::Connection, String, kube::api::Portforwarder)> {
        let pod =
            super::ready::await_ready_pod(&self.kube, self.id(), 1, DEFAULT_START_TIMEOUT).await?;
        let (conn, forward) = super::worker::connect_agent(&self.access, &pod).await?;
        if let Err(err) = self.share.prepare(&conn, &pod).await {
            conn.close().await;
            forward.abort();
            return Err(err);
        }
        Ok((conn, pod, forward))
    }

    /// The task's pods as workers, announced as they become Ready.
    pub fn worker_source(&self) -> Box<dyn WorkerSource> {
        Box::new(PodSource {
            access: self.access.clone(),
            task_id: self.spec.id.clone(),
            pods: usize::try_from(self.spec.pods).unwrap_or(1),
            slots: self.slots,
            workdir: Some(self.workdir.clone()),
            share: Some(self.share.clone()),
            start_timeout: start_timeout(),
            request: format!("{} cpu, {} memory", self.spec.cpu, self.spec.mem),
            max_runtime: self.lifetime.max_runtime,
            reporter: self.reporter.clone(),
        })
    }
}

pub use crate::model::new_task_id;

pub use crate::model::origin;
