//! The laptop's side of the eager share and of syncback, through the Kubernetes API.
//!
//! Before the run: scan the directory (honouring `.gitignore` and `.kbignore`), ask the share server which
//! contents it lacks, send only those, and commit the task's manifest together with a fresh pod key; the server
//! answers with its host key. Every request is `kb share ...` run in the server's pod through the Kubernetes exec
//! API, so who may upload is decided by RBAC (`pods/exec` on `kb-share-0`), and nothing listens on the laptop.
//!
//! As each pod joins: through the agent connection kb already has, the pod runs `kb share fetch`, given the pod
//! key on stdin, which pulls the tree from the server's Service over SSH (host key pinned) at cluster speed.

use std::path::PathBuf;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::k8s::Kube;
use crate::output::report::{Event, Reporter};
use crate::share::client::{
    Error, POD_KB, Result, SERVER_KB, SERVER_POD, SERVER_PORT, SERVER_READY_WAIT, SERVER_SERVICE,
    TreeRef, UploadStats,
};
use crate::share::manifest::Manifest;
use crate::share::protocol::Request;
use crate::share::store::{DEFAULT_STORE, END};
use crate::share::sync::{SyncReport, apply};
use crate::ssh::Connection;

mod upload;

use upload::frame_blobs;
pub use upload::upload;

/// A task's tree on the share server.
pub struct ServerShare {
    dir: PathBuf,
    task: String,
    manifest: Manifest,
    pod_key: String,
    host_public: String,
    address: String,
    /// What the upload moved.
    pub stats: UploadStats,
    joined: Mutex<Vec<String>>,
    /// To look at the server's pod again when a pod cannot fetch.
    kube: Kube,
    /// The server pod's UID at the upload: another UID later means a new pod with an empty store.
    server_uid: Option<String>,
}

impl std::fmt::Debug for ServerShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerShare")
            .field("task", &self.task)
            .field("address", &self.address)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The share server's address for pods (its pod's IP and port 2222, looked up for every task), or `None` when it
/// is not deployed in the namespace (no Service `kb-share`). The pod's IP rather than the Service's: one hop less,
/// and no dependence on the node's Service rules; a restarted server has lost its store anyway.
pub async fn find_server(kube: &Kube, reporter: &Reporter) -> Result<Option<String>> {
    let services: Api<Service> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let failed = |action: &str, reason: String| Error::Server {
        namespace: kube.namespace.clone(),
        action: action.into(),
        reason,
    };
    match services.get_opt(SERVER_SERVICE).await {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(None),
        Err(err) => return Err(failed("be found", crate::error::chain(&err))),
    }
    // Just deployed or restarting: worth a short wait, said once.
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let deadline = std::time::Instant::now() + SERVER_READY_WAIT;
    let mut said = false;
    loop {
        let status = pods
            .get_opt(SERVER_POD)
            .await
            .map_err(|e| failed("be found", crate::error::chain(&e)))?
            .and_then(|p| p.status);
        let ready = status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let ip = status.and_then(|s| s.pod_ip).filter(|ip| !ip.is_empty());
        if let (true, Some(ip)) = (ready, ip) {
            return Ok(Some(format!("{ip}:{SERVER_PORT}")));
        }
        if std::time::Instant::now() >= deadline {
            return Err(failed(
                "be used",
                format!(
                    "pod {SERVER_POD} is not Ready after {} s (see `kubectl -n {} describe pod {SERVER_POD}`)",
                    SERVER_READY_WAIT.as_secs(),
                    kube.namespace
                ),
            ));
        }
        if !said {
            reporter.report(&Event::Waiting {
                what: format!("the share server (pod {SERVER_POD}) to be Ready"),
            });
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The UID of the share server's pod, if it can be read.
pub(super) async fn server_pod_uid(kube: &Kube) -> Option<String> {
    server_identity(kube).await.map(|(uid, _)| uid)
}

/// The share server's pod UID and its containers' restarts, if they can be read: either changing means the
/// server's processes, and what they held in memory, are gone.
pub(crate) async fn server_identity(kube: &Kube) -> Option<(String, i32)> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let pod = pods.get_opt(SERVER_POD).await.ok().flatten()?;
    let restarts = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum();
    Some((pod.metadata.uid?, restarts))
}

/// Forgets the task on the server (its contents stay for later runs). Best effort.
pub async fn drop_task(kube: &Kube, task: &str) {
    if let Err(err) = server_exec(
        kube,
        &Request::Drop { task },
        Input::Bytes(Vec::new()),
        "forget the task",
    )
    .await
    {
        tracing::debug!("share: {err}");
    }
}

/// What a request to the share server reads on stdin.
pub(crate) enum Input {
    /// These bytes.
    Bytes(Vec<u8>),
    /// Blobs, framed for `put`.
    Blobs(Vec<(String, u64, Source)>),
}

/// Where a blob's bytes come from.
pub(crate) enum Source {
    File(PathBuf),
    Memory(Vec<u8>),
}

/// Runs `request` (`kb share --protocol N VERB ... --store ...`) in the server's pod with `input` on stdin; returns its stdout.
pub(crate) async fn server_exec(
    kube: &Kube,
    request: &Request<'_>,
    input: Input,
    action: &str,
) -> Result<Vec<u8>> {
    let failed = |reason: String| Error::Server {
        namespace: kube.namespace.clone(),
        action: action.into(),
        reason,
    };
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let mut command = vec![SERVER_KB.to_string()];
    command.extend(request.argv(DEFAULT_STORE));
    // kube's default of 1 KiB per exec message makes 40,000 messages of 40 MB.
    let params = AttachParams::default()
        .container("server")
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .max_stdin_buf_size(256 * 1024)
        .max_stdout_buf_size(256 * 1024);
    let mut process = pods
        .exec(SERVER_POD, command, &params)
        .await
        .map_err(|e| failed(crate::error::chain(&e)))?;
    // Buffered: the exec stream sends each write as a message of its own.
    let stdin = tokio::io::BufWriter::with_capacity(
        256 * 1024,
        process.stdin().ok_or_else(|| failed("no stdin".into()))?,
    );
    let mut stdout = process.stdout().ok_or_else(|| failed("no stdout".into()))?;
    let mut stderr = process.stderr().ok_or_else(|| failed("no stderr".into()))?;
    let status = process.take_status();
    let feed = feed_input(stdin, input);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let (fed, read_out, read_err) = tokio::join!(
        feed,
        stdout.read_to_end(&mut out),
        stderr.read_to_end(&mut err)
    );
    let _stdin = fed.map_err(|e| failed(format!("sending: {e}")))?;
    read_out.map_err(|e| failed(format!("reading: {e}")))?;
    let _ = read_err;
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(out),
        Some(s) => Err(failed(format!(
            "{} {}",
            s.message.unwrap_or_default(),
            String::from_utf8_lossy(&err).trim()
        ))),
        None => Ok(out),
    }
}

/// Writes `input` to the exec's stdin and flushes it. Returns stdin so that the caller holds it open until the
/// output is read.
async fn feed_input<W>(mut stdin: W, input: Input) -> std::io::Result<W>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    match input {
        Input::Bytes(bytes) => stdin.write_all(&bytes).await?,
        Input::Blobs(blobs) => {
            // Files are read on a thread of their own into large batches: one async file operation per small
            // file would cost more than sending it.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(8);
            std::thread::spawn(move || {
                let sent = frame_blobs(&blobs, |batch| {
                    tx.blocking_send(Ok(batch))
                        .map_err(|_| std::io::Error::other("upload stopped"))
                });
                let last = sent.map(|()| format!("{END}\n").into_bytes());
                let _ = tx.blocking_send(last);
            });
            while let Some(batch) = rx.recv().await {
                stdin.write_all(&batch?).await?;
            }
        }
    }
    stdin.flush().await?;
    Ok(stdin)
}

impl ServerShare {
    /// What a coordinator needs to have pods fetch the tree.
    pub fn tree_ref(&self) -> TreeRef {
        TreeRef {
            task: self.task.clone(),
            dir: self.dir.clone(),
            address: self.address.clone(),
            host_public: self.host_public.clone(),
            pod_key: self.pod_key.clone(),
            server_uid: self.server_uid.clone(),
        }
    }

    /// The share of a coordinator, from the client's [`TreeRef`] (no syncback: the client is gone).
    pub fn from_ref(tree: TreeRef, kube: Kube) -> ServerShare {
        ServerShare {
            kube,
            server_uid: tree.server_uid,
            dir: tree.dir,
            task: tree.task,
            manifest: Manifest::default(),
            pod_key: tree.pod_key,
            host_public: tree.host_public,
            address: tree.address,
            stats: UploadStats::default(),
            joined: Mutex::new(Vec::new()),
        }
    }

    /// The task's tree as uploaded.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where the pods' copy is recorded, for syncback.
    fn base_path(&self) -> String {
        format!("/tmp/kb-share-base-{}.json", self.task)
    }

    /// Has the pod behind `conn` fetch the tree into the working directory.
    pub async fn prepare_pod(&self, conn: &Connection, pod: &str) -> Result<()> {
        let q = crate::template::quote;
        let command = format!(
            "{POD_KB} share fetch --server {} --host-key-pub {} --into {} --base {}",
            q(&self.address),
            q(&self.host_public),
            q(&self.dir.display().to_string()),
            q(&self.base_path())
        );
        let failure = match conn.run_collect(&command, self.pod_key.as_bytes()).await {
            Ok((0, _, _)) => return Ok(()),
            Ok((code, _, stderr)) => Error::Pod {
                pod: pod.into(),
                action: "fetch the working directory from the share server".into(),
                reason: format!("exit {code}: {}", String::from_utf8_lossy(&stderr).trim()),
            },
            Err(reason) => Error::Pod {
                pod: pod.into(),
                action: "fetch the working directory".into(),
                reason,
            },
        };
        // The likeliest cause of a fetch failing after a good upload: the server's pod was replaced.
        let now = server_pod_uid(&self.kube).await;
        if self.server_uid.is_some() && now != self.server_uid {
            return Err(Error::Replaced {
                namespace: self.kube.namespace.clone(),
            });
        }
        Err(failure)
    }

    /// Remembers a pod that joined, for syncback.
    pub fn joined(&self, pod: &str) {
        if let Ok(mut joined) = self.joined.lock() {
            joined.push(pod.to_string());
        }
    }

    /// The pods that joined the run.
    pub fn joined_pods(&self) -> Vec<String> {
        self.joined.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// Brings back what the jobs wrote on the pod behind `conn`, adding to `report`.
    pub async fn syncback_pod(
        &self,
        conn: &Connection,
        pod: &str,
        report: &mut SyncReport,
    ) -> Result<()> {
        let failed = |reason: String| Error::Pod {
            pod: pod.into(),
            action: "list what its jobs wrote".into(),
            reason,
        };
        let command = format!(
            "{POD_KB} share changes --base {} --dir {}",
            crate::template::quote(&self.base_path()),
            crate::template::quote(&self.dir.display().to_string())
        );
        let (code, tar, stderr) = conn.run_collect(&command, b"").await.map_err(failed)?;
        if code != 0 {
            return Err(failed(format!(
                "exit {code}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        let (dir, base, task, name) = (
            self.dir.clone(),
            self.manifest.clone(),
            self.task.clone(),
            pod.to_string(),
        );
        let (result, part) = tokio::task::spawn_blocking(move || {
            let mut part = SyncReport::default();
            let result = apply(&tar[..], &dir, &base, &task, &name, &mut part);
            (result, part)
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
        result.map_err(|e| failed(e.to_string()))?;
        report.updated.extend(part.updated);
        report.unchanged += part.unchanged;
        report.conflicts.extend(part.conflicts);
        Ok(())
    }
}
