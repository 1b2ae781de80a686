//! Attaching to a task a client created and handed over (`kb coordinate`, inside the cluster), and handing a run
//! over (`--async`).

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};

use super::PodTask;
use crate::k8s::client::{self, Target, classify};
use crate::k8s::error::{Error, Result};
use crate::k8s::heartbeat::{Heartbeat, ProgressHandle};
use crate::k8s::lifetime::Lifetime;
use crate::k8s::resources::TaskSpec;
use crate::k8s::share::PodShare;
use crate::k8s::upload::DirArchive;
use crate::k8s::worker::AgentAccess;
use crate::output::report::Reporter;

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
        use crate::k8s::coordinator::{ARCHIVE, CLIENT_KEY, HOST_PUBLIC, RUN_DIR};
        let kube = client::connect(target, &[]).await?;
        let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let name = format!("kb-{id}");
        let job = jobs
            .get(&name)
            .await
            .map_err(|e| classify(&kube, &format!("read job `{name}`"), e))?;
        let spec = spec_from_job(&job, id, lifetime);
        let host_public = String::from_utf8_lossy(&read_run_file(HOST_PUBLIC)?)
            .trim()
            .to_string();
        let archive = DirArchive {
            dir: PathBuf::from(&spec.pwd),
            tar: read_run_file(ARCHIVE)?.into(),
        };
        let share = handed_share(&kube, archive)?;
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
}

/// `--async`: hands the run over to a coordinator pod (the run Secret, then the pod, both owned by the Job), then
/// lets go of the task without deleting it: the coordinator renews the heartbeat from now on.
pub async fn hand_over(
    mut task: PodTask,
    mut handover: crate::k8s::coordinator::Handover,
) -> Result<String> {
    let id = task.spec.id.clone();
    let key_file = task.key_dir.join("id_ed25519");
    handover.client_key = std::fs::read_to_string(&key_file).map_err(|source| Error::Io {
        action: format!("read `{}`", key_file.display()),
        source,
    })?;
    handover.host_public = task.access.ssh.pinned_host_keys.join("\n");
    put_share(&task.share, &mut handover)?;
    let handover = &handover;
    let result = create_coordinator(&task, handover).await;
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

/// Reads `file` from the run directory, where the run Secret is mounted in the coordinator's pod.
fn read_run_file(file: &str) -> Result<Vec<u8>> {
    let path = PathBuf::from(crate::k8s::coordinator::RUN_DIR).join(file);
    std::fs::read(&path).map_err(|source| Error::Io {
        action: format!("read `{}`", path.display()),
        source,
    })
}

/// The share the client handed over: a tree it put on the share server, when it did, else the copy of the
/// directory in `archive`.
fn handed_share(kube: &crate::k8s::Kube, archive: DirArchive) -> Result<PodShare> {
    let share = match std::fs::read(
        PathBuf::from(crate::k8s::coordinator::RUN_DIR).join(crate::k8s::coordinator::SHARE),
    ) {
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
    Ok(share)
}

/// Puts what the coordinator needs of the task's share into `handover`.
fn put_share(share: &PodShare, handover: &mut crate::k8s::coordinator::Handover) -> Result<()> {
    // The coordinator copies the directory into its pods (the share server's tree is not handed over yet): a tar
    // of it travels in the run Secret, within the hand-over limit.
    match share {
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
    Ok(())
}

/// Creates the run Secret and then the coordinator pod of `task`, once the hand-over is known to fit.
async fn create_coordinator(
    task: &PodTask,
    handover: &crate::k8s::coordinator::Handover,
) -> Result<()> {
    use crate::k8s::coordinator::{HANDOVER_LIMIT, build_coordinator_pod, build_run_secret};
    let id = &task.spec.id;
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
            .and_then(|l| l.get(crate::k8s::resources::ORIGIN))
            .cloned()
            .unwrap_or_default(),
        pwd: annotation(crate::k8s::resources::PWD),
        command: annotation(crate::k8s::resources::COMMAND),
        created: annotation(crate::k8s::resources::CREATED),
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
