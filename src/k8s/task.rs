//! A task's life in the cluster: check the request, create the Job and its Secret, hand out the pods as workers,
//! and delete everything (by label, idempotently) at the end, on Ctrl-C, or from `kb finish`.

mod create;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::client::{self, Kube, Target, classify};
use super::error::{Error, Result};
use super::heartbeat::{Heartbeat, ProgressHandle};
use super::lifetime::Lifetime;
use super::quantity::{self, capacities, check_fits};
use super::resources::{TaskSpec, build_job, build_lease, build_secret, tasks_selector};
use super::source::PodSource;
use super::upload::DirArchive;
use super::worker::AgentAccess;
use crate::config::{LazyMount, Share};
use crate::k8s::share::PodShare;
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
    /// Attaches to task `id`, which a client created and handed over (`kb coordinate`, inside the cluster): reads
    /// its Job, takes the keys and the working directory from the run Secret, and renews its heartbeat.
    pub async fn attach(
        target: &Target,
        id: &str,
        lifetime: Lifetime,
        slots: usize,
        reporter: Reporter,
    ) -> Result<PodTask> {
        use super::coordinator::{ARCHIVE, CLIENT_KEY, HOST_PUBLIC, RUN_DIR};
        let kube = client::connect(target, &[]).await?;
        let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let name = format!("kb-{id}");
        let job = jobs
            .get(&name)
            .await
            .map_err(|e| classify(&kube, &format!("read job `{name}`"), e))?;
        let spec = spec_from_job(&job, id, lifetime);
        let read = |file: &str| {
            let path = PathBuf::from(RUN_DIR).join(file);
            std::fs::read(&path).map_err(|source| Error::Io {
                action: format!("read `{}`", path.display()),
                source,
            })
        };
        let host_public = String::from_utf8_lossy(&read(HOST_PUBLIC)?)
            .trim()
            .to_string();
        let archive = DirArchive {
            dir: PathBuf::from(&spec.pwd),
            tar: read(ARCHIVE)?.into(),
        };
        // A tree the client put on the share server, when it did.
        let share = match std::fs::read(PathBuf::from(RUN_DIR).join(super::coordinator::SHARE)) {
            Ok(json) => {
                let tree: crate::share::client::TreeRef =
                    serde_json::from_slice(&json).map_err(|e| Error::Io {
                        action: "read the share reference".into(),
                        source: e.into(),
                    })?;
                PodShare::Server(Arc::new(crate::k8s::share::server::ServerShare::from_ref(
                    tree,
                    kube.clone(),
                )))
            }
            Err(_) => PodShare::Copy(Arc::new(archive)),
        };
        let ssh = crate::ssh::ClientConfig {
            identities: vec![PathBuf::from(RUN_DIR).join(CLIENT_KEY)],
            pinned_host_keys: vec![host_public],
            ..Default::default()
        };
        let access = AgentAccess {
            kube: kube.clone(),
            ssh,
        };
        let progress = ProgressHandle::default();
        let heartbeat = Some(Heartbeat::start(
            kube.clone(),
            spec.name(),
            progress.clone(),
        ));
        Ok(PodTask {
            kube,
            workdir: PathBuf::from(&spec.pwd),
            spec,
            slots: slots.max(1),
            access,
            key_dir: PathBuf::new(),
            share,
            share_on_server: false,
            syncback: false,
            progress,
            heartbeat,
            lifetime,
            job: Some(job),
            attached: true,
            reporter,
        })
    }

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

    /// Deletes everything the task created (by label; running it again is harmless). A coordinator that attached
    /// to the task only stops its heartbeat: the task stays for `kb logs` and `kb finish`.
    pub async fn finish(mut self) -> Result<()> {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop().await;
        }
        if self.attached {
            return Ok(());
        }
        let _ = std::fs::remove_dir_all(&self.key_dir);
        if self.share_on_server {
            crate::k8s::share::server::drop_task(&self.kube, &self.spec.id).await;
        }
        finish_task(&self.kube, &self.spec.id).await.map(|_| ())
    }
}

/// `--async`: hands the run over to a coordinator pod (the run Secret, then the pod, both owned by the Job), then
/// lets go of the task without deleting it: the coordinator renews the heartbeat from now on.
pub async fn hand_over(
    mut task: PodTask,
    mut handover: super::coordinator::Handover,
) -> Result<String> {
    use super::coordinator::{HANDOVER_LIMIT, build_coordinator_pod, build_run_secret};
    let id = task.spec.id.clone();
    let key_file = task.key_dir.join("id_ed25519");
    handover.client_key = std::fs::read_to_string(&key_file).map_err(|source| Error::Io {
        action: format!("read `{}`", key_file.display()),
        source,
    })?;
    handover.host_public = task.access.ssh.pinned_host_keys.join("\n");
    // The coordinator copies the directory into its pods (the share server's tree is not handed over yet): a tar
    // of it travels in the run Secret, within the hand-over limit.
    match &task.share {
        PodShare::Copy(archive) => handover.archive = archive.tar.to_vec(),
        // The tree is on the share server already: the coordinator's pods fetch it as the client's would.
        PodShare::Server(share) => {
            handover.share = serde_json::to_vec(&share.tree_ref()).map_err(|e| Error::Io {
                action: "encode the share reference".into(),
                source: e.into(),
            })?;
        }
        // Refused before anything is created (`--async` cannot serve files from a laptop that goes away).
        PodShare::Lazy(_) => {
            return Err(Error::Io {
                action: "hand the run over".into(),
                source: std::io::Error::other("--async cannot use the lazy share; this is a bug"),
            });
        }
    }
    let handover = &handover;
    let result = async {
        if handover.size() > HANDOVER_LIMIT {
            return Err(Error::HandoverTooLarge {
                size: handover.size(),
                limit: HANDOVER_LIMIT,
            });
        }
        let job = task.job.as_ref().ok_or_else(|| Error::Io {
            action: "hand the run over: the task has no Job; this is a bug".into(),
            source: std::io::Error::other("no job"),
        })?;
        let ns = &task.kube.namespace;
        let secrets: Api<Secret> = Api::namespaced(task.kube.client.clone(), ns);
        let secret = build_run_secret(&task.spec, job, handover);
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| {
                classify(
                    &task.kube,
                    &format!("create the run secret of task `{id}`"),
                    e,
                )
            })?;
        let pods: Api<Pod> = Api::namespaced(task.kube.client.clone(), ns);
        let pod = build_coordinator_pod(&task.spec, job, ns);
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(|e| {
                classify(
                    &task.kube,
                    &format!("create the coordinator pod of task `{id}`"),
                    e,
                )
            })?;
        Ok(())
    }
    .await;
    if let Err(err) = result {
        let _ = task.finish().await;
        return Err(err);
    }
    if let Some(heartbeat) = task.heartbeat.take() {
        heartbeat.stop().await;
    }
    let _ = std::fs::remove_dir_all(&task.key_dir);
    Ok(id)
}

/// Deletes the Job, Secret, Lease and pods labelled with task `id`; returns whether there was a task (a Job or a
/// Secret) to delete.
pub async fn finish_task(kube: &Kube, id: &str) -> Result<bool> {
    let found = finish_tasks(kube, &[id.to_string()]).await?;
    Ok(found.iter().any(|f| f == id))
}

/// Deletes the Jobs, Secrets, Leases and pods of every task in `ids` in one go (one delete-collection call per
/// kind, whatever the number of tasks); returns the ids that had a task (a Job or a Secret) to delete.
pub async fn finish_tasks(kube: &Kube, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ListParams::default().labels(&tasks_selector(ids));
    // Background: the Job goes at once (so it makes no new pods) and the garbage collector takes what it owns.
    let delete = DeleteParams::background();
    let ns = &kube.namespace;
    let which = match ids {
        [one] => format!("task `{one}`"),
        many => format!("{} tasks", many.len()),
    };
    let what = |kind: &str| format!("delete the {kind} of {which} in namespace `{ns}`");
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), ns);
    let deleted_jobs = jobs
        .delete_collection(&delete, &list)
        .await
        .map_err(|e| classify(kube, &what("jobs"), e))?;
    let secrets: Api<Secret> = Api::namespaced(kube.client.clone(), ns);
    let deleted_secrets = secrets
        .delete_collection(&delete, &list)
        .await
        .map_err(|e| classify(kube, &what("secrets"), e))?;
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    pods.delete_collection(&delete, &list)
        .await
        .map_err(|e| classify(kube, &what("pods"), e))?;
    // The Job owns the Lease, so the garbage collector takes it anyway; deleting it now is a courtesy that a user
    // without rights on Leases goes without.
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), ns);
    if let Err(err) = leases.delete_collection(&delete, &list).await {
        tracing::debug!(
            "cannot delete the leases of {which}: {}",
            crate::error::chain(&err)
        );
    }
    // Pods that are already stopping are listed again by a second `finish`; the Job and the Secret go at once, so
    // they alone say whether there was a task to finish.
    let task_of = |meta: &kube::api::ObjectMeta| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(super::resources::TASK_ID))
            .cloned()
    };
    let mut found: Vec<String> = Vec::new();
    if let Some(list) = deleted_jobs.left() {
        found.extend(list.items.iter().filter_map(|j| task_of(&j.metadata)));
    }
    if let Some(list) = deleted_secrets.left() {
        found.extend(list.items.iter().filter_map(|s| task_of(&s.metadata)));
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// What a coordinator needs to know of the task it attached to, read back from its Job.
fn spec_from_job(job: &Job, id: &str, lifetime: Lifetime) -> TaskSpec {
    let annotation = |key: &str| {
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let spec = job.spec.as_ref();
    let pod = spec.and_then(|s| s.template.spec.as_ref());
    let main = pod.and_then(|p| p.containers.first());
    let request = |key: &str| {
        main.and_then(|c| c.resources.as_ref()?.requests.as_ref()?.get(key))
            .map(|q| q.0.clone())
            .unwrap_or_default()
    };
    TaskSpec {
        id: id.to_string(),
        origin: job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(super::resources::ORIGIN))
            .cloned()
            .unwrap_or_default(),
        pwd: annotation(super::resources::PWD),
        command: annotation(super::resources::COMMAND),
        created: annotation(super::resources::CREATED),
        kind: "parallel",
        image: main.and_then(|c| c.image.clone()).unwrap_or_default(),
        agent_image: String::new(),
        pods: spec.and_then(|s| s.parallelism).unwrap_or(1),
        cpu: request("cpu"),
        mem: request("memory"),
        mem_limit: false,
        max_runtime_secs: spec.and_then(|s| s.active_deadline_seconds),
        // A coordinator's task never uses the lazy share.
        fuse: false,
        nfs: None,
        orphan_timeout_secs: lifetime.orphan_timeout.map(|d| d.as_secs()),
        total_jobs: None,
    }
}

/// `--cpu`, `--mem` and images, checked and with defaults filled in.
struct Shape {
    cpu: String,
    cpu_cores: f64,
    mem: String,
    mem_bytes: f64,
    mem_limit: bool,
    image: String,
    agent_image: String,
}

fn check_shape(opts: &PodShape) -> Result<Shape> {
    let cpu = opts.cpu.clone().unwrap_or_else(|| DEFAULT_CPU.into());
    let mem = opts.mem.clone().unwrap_or_else(|| DEFAULT_MEM.into());
    Ok(Shape {
        cpu_cores: quantity::parse("cpu", &cpu)?,
        mem_bytes: quantity::parse("memory", &mem)?,
        cpu,
        mem,
        mem_limit: opts.mem.is_some(),
        image: opts.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into()),
        agent_image: opts.agent_image.clone().unwrap_or_else(default_agent_image),
    })
}

/// `$KB_REGISTRY/kb/agent:VERSION`, or `kb/agent:VERSION` without `KB_REGISTRY`.
pub fn default_agent_image() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match std::env::var("KB_REGISTRY").ok().filter(|r| !r.is_empty()) {
        Some(registry) => format!("{}/kb/agent:{version}", registry.trim_end_matches('/')),
        None => format!("kb/agent:{version}"),
    }
}

/// Fails when no node can hold one pod; skipped when the user may not list nodes (a namespaced user), in which
/// case the scheduler's Unschedulable report speaks instead.
async fn check_nodes(kube: &Kube, shape: &Shape) -> Result<()> {
    let nodes: Api<Node> = Api::all(kube.client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(list) => check_fits(shape.cpu_cores, shape.mem_bytes, &capacities(&list.items)),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(err) => Err(classify(kube, "list the nodes", err)),
    }
}

/// For the lazy share: whether some node hands pods `/dev/fuse` (the `kb-fuse` device plugin of `kb cluster-setup`
/// advertises `kb.dev/fuse`). Unknown (no right to list nodes) counts as yes: the pods then say it themselves.
/// How the pods will mount the lazy share: what was asked (`--lazy-mount`, kb.toml), else what the cluster
/// offers. FUSE when a node offers `kb.dev/fuse` (kb-fuse runs there, and kb's own deadline rule holds end to end),
/// else an NFS volume (whether the nodes can mount it only a mount shows: a pod that cannot is reported as such).
async fn choose_lazy_mount(
    kube: &Kube,
    asked: Option<LazyMount>,
    reporter: &Reporter,
) -> Result<LazyMount> {
    let offered = fuse_offered(kube).await?;
    match decide_lazy_mount(asked, offered) {
        Some(LazyMount::Nfs) if asked.is_none() => {
            reporter.report(&Event::LazyMountFallback {
                resource: crate::deviceplugin::FUSE_RESOURCE.into(),
            });
            Ok(LazyMount::Nfs)
        }
        Some(mount) => Ok(mount),
        None => Err(Error::Share(Box::new(
            crate::share::client::Error::Server {
                namespace: kube.namespace.clone(),
                action: "serve the lazy share with FUSE".into(),
                reason: format!(
                    "no node offers `{}` (the kb-fuse device plugin that hands pods /dev/fuse is not running); \
                     apply `kb cluster-setup` again, or use --lazy-mount nfs or --share eager",
                    crate::deviceplugin::FUSE_RESOURCE
                ),
            },
        ))),
    }
}

/// The rule of [`choose_lazy_mount`], given whether a node offers `kb.dev/fuse` (`None`: not known, this user may
/// not list nodes; kb-fuse is then taken to be there, as `kb cluster-setup` deploys it). `None` when FUSE was
/// asked for and no node offers it.
fn decide_lazy_mount(asked: Option<LazyMount>, fuse_offered: Option<bool>) -> Option<LazyMount> {
    match (asked, fuse_offered) {
        (Some(LazyMount::Fuse), Some(false)) => None,
        (Some(mount), _) => Some(mount),
        (None, Some(false)) => Some(LazyMount::Nfs),
        (None, _) => Some(LazyMount::Fuse),
    }
}

/// Whether a node offers `kb.dev/fuse`; `None` when this user may not list nodes.
async fn fuse_offered(kube: &Kube) -> Result<Option<bool>> {
    let nodes: Api<Node> = Api::all(kube.client.clone());
    let list = match nodes.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(None),
        Err(err) => return Err(classify(kube, "list the nodes", err)),
    };
    Ok(Some(list.items.iter().any(|node| {
        node.status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(crate::deviceplugin::FUSE_RESOURCE))
            .is_some_and(|q| q.0 != "0")
    })))
}

fn start_timeout() -> Duration {
    std::env::var("KB_START_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_START_TIMEOUT)
}

pub use crate::model::new_task_id;

pub use crate::model::origin;

/// Writes the client key where only this user can read it, for the SSH client, which reads keys from files.
fn write_client_key(id: &str, keys: &TaskKeys) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |action: &str| {
        let action = action.to_string();
        move |source| Error::Io { action, source }
    };
    let dir = crate::ssh::task_keys::key_dir(id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io("create the key directory"))?;
    let text = keys
        .client
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|source| Error::Keys { source })?;
    let path = dir.join("id_ed25519");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("write the task's client key"))?;
    file.write_all(text.as_bytes())
        .map_err(io("write the task's client key"))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lazy_mount_is_what_was_asked_else_what_the_cluster_offers() {
        use LazyMount::{Fuse, Nfs};
        // Asked: taken, unless FUSE is asked where no node offers it.
        assert_eq!(decide_lazy_mount(Some(Nfs), Some(true)), Some(Nfs));
        assert_eq!(decide_lazy_mount(Some(Fuse), Some(true)), Some(Fuse));
        assert_eq!(decide_lazy_mount(Some(Fuse), Some(false)), None);
        assert_eq!(decide_lazy_mount(Some(Fuse), None), Some(Fuse));
        // Not asked: FUSE where kb-fuse offers it, NFS where nothing does.
        assert_eq!(decide_lazy_mount(None, Some(true)), Some(Fuse));
        assert_eq!(decide_lazy_mount(None, Some(false)), Some(Nfs));
        assert_eq!(decide_lazy_mount(None, None), Some(Fuse));
    }

    #[test]
    fn task_ids_are_dns_friendly() {
        for _ in 0..100 {
            let id = new_task_id();
            assert_eq!(id.len(), 8);
            assert!(id.chars().next().unwrap().is_ascii_lowercase());
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            );
        }
    }

    #[test]
    fn shape_defaults_and_errors() {
        let shape = check_shape(&PodShape::default()).unwrap();
        assert_eq!(
            (shape.cpu.as_str(), shape.mem.as_str(), shape.mem_limit),
            ("100m", "128Mi", false)
        );
        let bad = PodShape {
            mem: Some("1x".into()),
            ..Default::default()
        };
        assert!(check_shape(&bad).is_err());
        let given = PodShape {
            mem: Some("1Gi".into()),
            ..Default::default()
        };
        let shape = check_shape(&given).unwrap();
        assert!(shape.mem_limit);
    }

    #[test]
    fn client_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let keys = build_task_keys().unwrap();
        let dir = write_client_key(&new_task_id(), &keys).unwrap();
        let mode = std::fs::metadata(dir.join("id_ed25519"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = crate::ssh::keys::load_private_key(&dir.join("id_ed25519")).unwrap();
        assert_eq!(
            loaded.public_key().to_openssh().unwrap(),
            keys.client_public
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
