//! Creating a task in three stages: `preflight` checks everything it can while nothing exists in the cluster,
//! `plan` turns the request and what the checks found into the task's spec (pure), and `apply` creates the
//! Job, its Secret and Lease and starts the share. A failure in `apply` goes through one rollback path,
//! [`PodTask::finish`], which removes whatever was created so far.

use std::path::PathBuf;
use std::sync::Arc;

use super::{
    PodTask, Shape, TaskRequest, build_task_keys, check_nodes, check_shape, choose_lazy_mount,
    new_task_id, origin, write_client_key,
};
use crate::config::{LazyMount, Share};
use crate::k8s::client::{self, Kube, RUN_RIGHTS};
use crate::k8s::error::{Error, Result};
use crate::k8s::heartbeat::ProgressHandle;
use crate::k8s::resources::{NfsExport, TaskSpec};
use crate::k8s::share::PodShare;
use crate::k8s::share::lazy::LazyShare;
use crate::k8s::upload::{DirArchive, build_archive, copy_limit};
use crate::k8s::worker::AgentAccess;
use crate::output::report::{Event, Reporter};
use crate::ssh::task_keys::TaskKeys;

/// What the checks found, before anything exists in the cluster.
struct Checked {
    kube: Kube,
    shape: Shape,
    workdir: PathBuf,
    mode: Share,
    /// The share server's address for pods, when the share needs it and it is deployed.
    server: Option<String>,
    lazy_mount: Option<LazyMount>,
    /// The working directory, packed, when there is no share server to fetch it from.
    archive: Option<DirArchive>,
}

impl PodTask {
    /// Creates a task; nothing is left in the cluster when it fails.
    pub async fn create_with(request: TaskRequest<'_>) -> Result<PodTask> {
        let checked = preflight(&request).await?;
        let keys = build_task_keys().map_err(|source| Error::Keys { source })?;
        let (mut task, checked) = plan(&request, checked, &keys);
        match task.apply_all(&keys, checked).await {
            Ok(()) => Ok(task),
            Err(err) => {
                let _ = task.finish().await;
                Err(err)
            }
        }
    }

    /// Creates what the plan says, in order: the lazy NFS share (the pod template names its export), the Job and
    /// its Secret, the Lease, then the FUSE share or the upload, which run while the pods are scheduled.
    async fn apply_all(&mut self, keys: &TaskKeys, checked: Checked) -> Result<()> {
        self.key_dir = write_client_key(&self.spec.id, keys)?;
        let share_server = checked.server.clone();
        if let (Some(address), Some(LazyMount::Nfs)) = (&share_server, checked.lazy_mount) {
            self.share_on_server = true;
            let (share, export) = self.start_nfs_share(address).await?;
            self.reporter.report(&Event::ShareLazy {
                mount: "an NFS volume".into(),
            });
            self.spec.nfs = Some(export);
            self.share = PodShare::Lazy(Arc::new(share));
        }
        let job = self.apply(keys).await?;
        self.start_heartbeat(&job).await;
        self.job = Some(job);
        let Some(address) = share_server else {
            return Ok(());
        };
        match (checked.lazy_mount, &self.share) {
            (_, PodShare::Lazy(_)) => {}
            (Some(LazyMount::Fuse), _) => {
                self.share_on_server = true;
                let share = LazyShare::start(
                    &self.kube,
                    address,
                    &self.workdir,
                    &self.spec.id,
                    LazyMount::Fuse,
                )
                .await
                .map_err(|e| Error::Share(Box::new(e)))?;
                self.reporter.report(&Event::ShareLazy {
                    mount: "a FUSE mount".into(),
                });
                self.share = PodShare::Lazy(Arc::new(share));
            }
            _ => {
                self.share_on_server = true;
                let started = std::time::Instant::now();
                let share = crate::k8s::share::server::upload(
                    &self.kube,
                    address,
                    &self.workdir,
                    &self.spec.id,
                )
                .await
                .map_err(|e| Error::Share(Box::new(e)))?;
                self.reporter.report(&Event::ShareUploaded {
                    summary: share.stats.to_string(),
                    took: started.elapsed(),
                });
                self.share = PodShare::Server(Arc::new(share));
            }
        }
        Ok(())
    }

    /// Starts the lazy share for an NFS volume and returns it with the export the pods mount.
    async fn start_nfs_share(&self, address: &str) -> Result<(LazyShare, NfsExport)> {
        let share = LazyShare::start(
            &self.kube,
            address.to_string(),
            &self.workdir,
            &self.spec.id,
            LazyMount::Nfs,
        )
        .await
        .map_err(|e| Error::Share(Box::new(e)))?;
        let Some(path) = share.nfs_export().map(str::to_string) else {
            return Err(Error::Share(Box::new(crate::share::client::Error::Server {
                namespace: self.kube.namespace.clone(),
                action: "export the lazy share over NFS".into(),
                reason: "it does not (it was deployed by an older kb); apply `kb cluster-setup` again, or use \
                         --lazy-mount fuse"
                    .into(),
            })));
        };
        let server = address
            .rsplit_once(':')
            .map_or(address, |(ip, _)| ip)
            .to_string();
        Ok((share, NfsExport { server, path }))
    }
}

/// Everything that can be known before creating anything: the request's values, the cluster's reach and rights,
/// room on the nodes, the share server when the share needs one, and the packed directory when there is none.
async fn preflight(request: &TaskRequest<'_>) -> Result<Checked> {
    let shape = check_shape(&request.shape)?;
    if request.pods == 0 {
        return Err(Error::BadQuantity {
            what: "pod count",
            value: "0".into(),
            reason: "give at least 1".into(),
        });
    }
    let workdir = std::env::current_dir().map_err(|source| Error::Io {
        action: "find the working directory".into(),
        source,
    })?;
    let mode = request.shape.share.unwrap_or(Share::Eager);
    let kube = client::connect(&request.target, RUN_RIGHTS).await?;
    check_nodes(&kube, &shape).await?;
    let server = match mode {
        Share::None => None,
        _ => crate::k8s::share::server::find_server(&kube, &request.reporter)
            .await
            .map_err(|e| Error::Share(Box::new(e)))?,
    };
    let lazy_mount = match (&server, mode) {
        (Some(_), Share::Lazy) => {
            Some(choose_lazy_mount(&kube, request.shape.lazy_mount, &request.reporter).await?)
        }
        _ => None,
    };
    if server.is_none() && mode == Share::Syncback {
        return Err(Error::Share(Box::new(
            crate::share::client::Error::Server {
                namespace: kube.namespace.clone(),
                action: "be found".into(),
                reason: "syncback needs it, and it is not deployed".into(),
            },
        )));
    }
    let archive = match server {
        Some(_) => None,
        None => Some(pack(&kube, &workdir, mode, &request.reporter).await?),
    };
    Ok(Checked {
        kube,
        shape,
        workdir,
        mode,
        server,
        lazy_mount,
        archive,
    })
}

/// The working directory as an archive copied into each pod (empty with `--share none`).
async fn pack(
    kube: &Kube,
    workdir: &std::path::Path,
    mode: Share,
    reporter: &Reporter,
) -> Result<DirArchive> {
    let cap = if mode == Share::None { 0 } else { copy_limit() };
    if mode != Share::None {
        reporter.report(&Event::ShareCopied {
            namespace: kube.namespace.clone(),
        });
    }
    let dir = workdir.to_path_buf();
    tokio::task::spawn_blocking(move || build_archive(&dir, cap))
        .await
        .map_err(|e| Error::Io {
            action: "pack the working directory".into(),
            source: e.into(),
        })?
}

/// The task as it will be created: its spec, slots and access, with the share it starts with (the archive, or an
/// empty one until the share server's share replaces it). Creates nothing.
fn plan(request: &TaskRequest<'_>, mut checked: Checked, keys: &TaskKeys) -> (PodTask, Checked) {
    let id = new_task_id();
    let shape = &checked.shape;
    let spec = TaskSpec {
        id,
        origin: origin(),
        pwd: checked.workdir.display().to_string(),
        command: request.command.to_string(),
        created: k8s_openapi::jiff::Timestamp::now().to_string(),
        kind: request.kind,
        image: shape.image.clone(),
        agent_image: shape.agent_image.clone(),
        pods: i32::try_from(request.pods).unwrap_or(i32::MAX),
        cpu: shape.cpu.clone(),
        mem: shape.mem.clone(),
        mem_limit: shape.mem_limit,
        max_runtime_secs: Some(
            i64::try_from(request.lifetime.max_runtime.as_secs().max(1)).unwrap_or(i64::MAX),
        ),
        orphan_timeout_secs: request.lifetime.orphan_timeout.map(|d| d.as_secs().max(1)),
        total_jobs: None,
        fuse: checked.lazy_mount == Some(LazyMount::Fuse),
        nfs: None,
    };
    let slots = request
        .slots
        .unwrap_or(shape.cpu_cores.ceil().max(1.0) as usize)
        .max(1);
    let access = AgentAccess {
        kube: checked.kube.clone(),
        ssh: crate::ssh::ClientConfig {
            identities: vec![crate::ssh::task_keys::key_dir(&spec.id).join("id_ed25519")],
            pinned_host_keys: vec![keys.host_public.clone()],
            ..Default::default()
        },
    };
    let archive = checked.archive.take().unwrap_or_else(|| DirArchive {
        dir: checked.workdir.clone(),
        tar: Default::default(),
    });
    let task = PodTask {
        kube: checked.kube.clone(),
        key_dir: crate::ssh::task_keys::key_dir(&spec.id),
        spec,
        slots,
        access,
        workdir: checked.workdir.clone(),
        share: PodShare::Copy(Arc::new(archive)),
        share_on_server: false,
        syncback: checked.mode == Share::Syncback,
        progress: ProgressHandle::default(),
        heartbeat: None,
        lifetime: request.lifetime,
        job: None,
        attached: false,
        reporter: request.reporter.clone(),
    };
    (task, checked)
}
