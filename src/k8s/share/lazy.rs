//! `kb parallel --share lazy`: the client's side of the lazy share for one task. kb lets the task's keys in on
//! the share server (`kb share lazy-allow`, through the exec API), reaches the server's SSH port over a
//! port-forward with the task's client key (its forced command is `lazy-host`, the relay), and serves the working
//! directory over SFTP on that channel for the whole run. Each pod, as it joins, mounts the share at the user's
//! path with FUSE, reaching the relay with the task's pod key (`lazy-attach`).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::server::{Input, server_exec};
use crate::config::LazyMount;
use crate::k8s::Kube;
use crate::share::client::{Error, SERVER_POD, SERVER_PORT};
use crate::ssh::{ClientConfig, Connection};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Where kb is in a worker pod.
const POD_KB: &str = "/kb/kb";
/// How long a pod's mount may take to appear.
const MOUNT_WAIT_TENTHS: u32 = 100;

/// A task's lazy share, served from this client while the run lasts.
pub struct LazyShare {
    task: String,
    dir: PathBuf,
    /// The server's address for pods (`IP:PORT`).
    address: String,
    host_public: String,
    /// The task's NFS export on the share server (`/kb/<task>-<token>`), if the server exports NFS.
    nfs_export: Option<String>,
    /// How the pods mount the share.
    mount: LazyMount,
    pod_key: String,
    /// The client's connection to the server; its channel carries the SFTP session.
    _conn: Connection,
    _forward: kube::api::Portforwarder,
    serving: tokio::task::JoinHandle<()>,
    /// True once the SFTP session ended (its channel, the connection or the port-forward closed).
    ended: tokio::sync::watch::Receiver<bool>,
    /// The share server's pod and restarts when the run started.
    server: Option<(String, i32)>,
    kube: Kube,
}

impl std::fmt::Debug for LazyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyShare")
            .field("task", &self.task)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn failed(kube: &Kube, action: &str, reason: impl std::fmt::Display) -> Error {
    Error::Server {
        namespace: kube.namespace.clone(),
        action: action.into(),
        reason: reason.to_string(),
    }
}

impl LazyShare {
    /// Lets the task in on the server at `address` and starts serving `dir`.
    pub async fn start(
        kube: &Kube,
        address: String,
        dir: &Path,
        task: &str,
        mount: LazyMount,
    ) -> Result<LazyShare> {
        let allowed = allow_task(kube, task).await?;
        let (conn, forward, channel) =
            connect_relay(kube, &allowed.client_key, &allowed.host_public).await?;
        let root = dir.to_owned();
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let serving = tokio::spawn(async move {
            if let Err(err) = crate::share::lazy::serve_sftp(channel.into_stream(), &root).await {
                tracing::debug!("lazy share: serving ended: {err}");
            }
            let _ = ended_tx.send(true);
        });
        let server = super::server::server_identity(kube).await;
        Ok(LazyShare {
            task: task.to_string(),
            dir: dir.to_owned(),
            address,
            host_public: allowed.host_public,
            nfs_export: allowed.nfs_export,
            mount,
            pod_key: allowed.pod_key,
            _conn: conn,
            _forward: forward,
            serving,
            ended,
            server,
            kube: kube.clone(),
        })
    }

    /// How the pods mount the share.
    pub fn mount(&self) -> LazyMount {
        self.mount
    }

    /// The task's NFS export path on the share server, if it exports NFS (a server from an older kb does not).
    pub fn nfs_export(&self) -> Option<&str> {
        self.nfs_export.as_deref()
    }

    /// Waits until this client no longer serves its files, and says why, for the run to stop: the pods' reads of
    /// the share fail from then on.
    pub async fn ended(&self) -> (String, String) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|ended| *ended).await;
        let namespace = &self.kube.namespace;
        let now = super::server::server_identity(&self.kube).await;
        let hint = format!(
            "run again once `kubectl -n {namespace} get pod {SERVER_POD}` shows it Ready; jobs that ended before \
             are in the output (and in --joblog, for --resume)"
        );
        let reason = match (&self.server, &now) {
            (Some((uid, _)), Some((now_uid, _))) if uid != now_uid => format!(
                "the share server `{SERVER_POD}` in namespace `{namespace}` was replaced during the run, and the \
                 lazy share with it: jobs can no longer read the working directory"
            ),
            (Some((_, restarts)), Some((_, now_restarts))) if restarts != now_restarts => format!(
                "the share server `{SERVER_POD}` in namespace `{namespace}` restarted during the run, and the lazy \
                 share with it: jobs can no longer read the working directory"
            ),
            (_, None) => format!(
                "the share server `{SERVER_POD}` in namespace `{namespace}` went away during the run, and the lazy \
                 share with it: jobs can no longer read the working directory"
            ),
            _ => format!(
                "the connection to the share server `{SERVER_POD}` in namespace `{namespace}` ended during the run: \
                 jobs can no longer read the working directory"
            ),
        };
        (reason, hint)
    }

    /// Mounts the share at the user's path in the pod behind `conn` and waits until it is there.
    pub async fn prepare_pod(&self, conn: &Connection, pod: &str) -> Result<()> {
        if self.serving.is_finished() {
            return Err(Error::Pod {
                pod: pod.into(),
                action: "mount the lazy share".into(),
                reason:
                    "this client no longer serves its files (its session to the share server ended)"
                        .into(),
            });
        }
        let q = crate::template::quote;
        let dir = self.dir.display().to_string();
        if self.mount == LazyMount::Nfs {
            // The kubelet mounted the volume before the container started; kb only checks that it is there.
            let script = format!(
                "m={mounted}; grep -qF \" $m nfs\" /proc/mounts || {{ echo no NFS mount at {dir} >&2; exit 1; }}",
                mounted = q(&mounts_escape(&dir)),
                dir = q(&dir),
            );
            return self.run_in_pod(conn, pod, &script, b"").await;
        }
        let key = format!("/tmp/kb-lazy-{}.key", self.task);
        let log = format!("/tmp/kb-lazy-{}.log", self.task);
        // The mount runs in a session of its own, so that it outlives this command; the key file only the pod's
        // root reads. The mount is there when the directory's device differs from its parent's.
        let script = format!(
            "set -e; umask 077; cat > {key}; mkdir -p {dir}; m={mounted}; \
             setsid {POD_KB} share mount --at {dir} -- {POD_KB} share connect --server {address} \
             --host-key-pub {host} --key {key} </dev/null >{log} 2>&1 & \
             i=0; while ! grep -qF \" $m fuse\" /proc/mounts; do \
             i=$((i+1)); if [ $i -gt {MOUNT_WAIT_TENTHS} ]; then cat {log} >&2; exit 1; fi; sleep 0.1; done",
            key = q(&key),
            dir = q(&dir),
            address = q(&self.address),
            host = q(&self.host_public),
            log = q(&log),
            mounted = q(&mounts_escape(&dir)),
        );
        self.run_in_pod(conn, pod, &script, self.pod_key.as_bytes())
            .await
    }

    /// Runs `script` in the pod behind `conn` with `stdin`; its stderr is the error when it fails.
    async fn run_in_pod(
        &self,
        conn: &Connection,
        pod: &str,
        script: &str,
        stdin: &[u8],
    ) -> Result<()> {
        let (code, _, stderr) =
            conn.run_collect(script, stdin)
                .await
                .map_err(|reason| Error::Pod {
                    pod: pod.into(),
                    action: "mount the lazy share".into(),
                    reason,
                })?;
        if code != 0 {
            return Err(Error::Pod {
                pod: pod.into(),
                action: "mount the lazy share".into(),
                reason: format!("exit {code}: {}", String::from_utf8_lossy(&stderr).trim()),
            });
        }
        Ok(())
    }
}

impl Drop for LazyShare {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// `path` as `/proc/mounts` writes it (space, tab, newline and backslash as octal escapes).
fn mounts_escape(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// What the share server answered when it let a task in, with the keys kb made for it.
struct Allowed {
    /// The task's client key (OpenSSH private key), with which this client reaches the relay.
    client_key: String,
    /// The task's pod key (OpenSSH private key), with which each pod reaches the relay.
    pod_key: String,
    /// The server's host key, to pin.
    host_public: String,
    /// The task's NFS export, if the server exports NFS.
    nfs_export: Option<String>,
}

/// Makes the task's client and pod keys and lets them in on the share server (`lazy-allow`, through the exec
/// API); the server answers with its host key and, when it exports NFS, the task's export path.
async fn allow_task(kube: &Kube, task: &str) -> Result<Allowed> {
    let (client, pod) = (
        crate::ssh::task_keys::generate(),
        crate::ssh::task_keys::generate(),
    );
    let encode = |key: &russh::keys::PrivateKey| {
        key.to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map(|k| k.to_string())
            .map_err(|e| failed(kube, "encode a key", e))
    };
    let public = |key: &russh::keys::PrivateKey| {
        key.public_key()
            .to_openssh()
            .map_err(|e| failed(kube, "encode a key", e))
    };
    let pod_key = encode(&pod)?;
    let client_key = encode(&client)?;
    let (client_public, pod_public) = (public(&client)?, public(&pod)?);
    let reply = server_exec(
        kube,
        &crate::share::protocol::Request::LazyAllow {
            task,
            client_key: &client_public,
            pod_key: &pod_public,
        },
        Input::Bytes(Vec::new()),
        "let the task's keys in",
    )
    .await?;
    // The host key, then (from a server that exports NFS) the task's export path.
    let reply = String::from_utf8_lossy(&reply);
    let mut lines = reply.lines().map(str::trim);
    let host_public = lines.next().unwrap_or_default().to_string();
    let nfs_export = lines
        .next()
        .filter(|l| l.starts_with("/kb/"))
        .map(str::to_string);
    if !host_public.starts_with("ssh-") {
        return Err(failed(
            kube,
            "let the task's keys in",
            format!("unexpected answer `{host_public}`"),
        ));
    }
    Ok(Allowed {
        client_key,
        pod_key,
        host_public,
        nfs_export,
    })
}

/// Reaches the share server's SSH port over a port-forward, logs in with the task's client key and starts the
/// relay (`lazy-host`) on a channel, which then carries the SFTP session.
async fn connect_relay(
    kube: &Kube,
    client_key: &str,
    host_public: &str,
) -> Result<(
    Connection,
    kube::api::Portforwarder,
    russh::Channel<russh::client::Msg>,
)> {
    // The client key as a file, for the SSH client; gone once logged in.
    let key_file = tempfile::NamedTempFile::new()
        .and_then(|f| std::fs::write(f.path(), client_key).map(|()| f))
        .map_err(|e| failed(kube, "keep the client key", e))?;
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let mut forward = pods
        .portforward(SERVER_POD, &[SERVER_PORT])
        .await
        .map_err(|e| {
            failed(
                kube,
                "be reached over a port-forward",
                crate::error::chain(&e),
            )
        })?;
    let stream = forward
        .take_stream(SERVER_PORT)
        .ok_or_else(|| failed(kube, "be reached over a port-forward", "no stream"))?;
    let config = ClientConfig {
        identities: vec![key_file.path().to_owned()],
        pinned_host_keys: vec![host_public.to_string()],
        known_hosts: Vec::new(),
    };
    let conn = Connection::connect_stream(stream, "kb", SERVER_POD, &config)
        .await
        .map_err(|e| failed(kube, "log in the task's client", crate::error::chain(&e)))?;
    drop(key_file);
    let channel = conn
        .open_session()
        .await
        .map_err(|e| failed(kube, "open the lazy share's channel", e))?;
    // The client key's forced command (`lazy-host`) runs whatever is asked.
    channel
        .exec(true, "lazy-host")
        .await
        .map_err(|e| failed(kube, "start the relay", e))?;
    Ok((conn, forward, channel))
}
