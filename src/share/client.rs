//! What both ends of the eager share agree on (the share server's names and ports, the errors, the tree a pod
//! fetches), and the worker pod's side: `kb share fetch` pulls the task's tree from the server over SSH (host key
//! pinned) and `kb share connect` carries a pod's lazy-share channel. The laptop's side, which reaches the server
//! through the Kubernetes API, is `k8s::share`.
//!
//! After the run (syncback): each pod still connected runs `kb share changes`, and [`super::sync::apply`] takes
//! its files in by content.

use std::path::{Path, PathBuf};

use crate::ssh::Connection;

/// The share server's pod (a StatefulSet's first pod, so RBAC can name it).
pub const SERVER_POD: &str = "kb-share-0";
/// The share server's Service.
pub const SERVER_SERVICE: &str = "kb-share";
/// The port of the share server's SSH service.
pub const SERVER_PORT: u16 = 2222;
/// How long kb waits for a share server that exists but is not Ready yet.
pub const SERVER_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(90);
/// kb in the share server's image.
pub const SERVER_KB: &str = "/usr/local/bin/kb";
/// kb in a worker pod (copied in by the init container).
pub const POD_KB: &str = "/kb/kb";

/// A share failure, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The share server is not deployed, not ready, or refused a request.
    #[error("the share server in namespace `{namespace}` could not {action}: {reason}")]
    Server {
        /// The namespace.
        namespace: String,
        /// What kb asked.
        action: String,
        /// Why it failed.
        reason: String,
    },
    /// A pod could not fetch the tree or report its changes.
    #[error("pod `{pod}` could not {action}: {reason}")]
    Pod {
        /// The pod.
        pod: String,
        /// What it was asked.
        action: String,
        /// Why it failed.
        reason: String,
    },
    /// The share server's pod was replaced after the upload: its store, an emptyDir, went with the old pod.
    #[error(
        "the share server (pod {SERVER_POD} in namespace `{namespace}`) was replaced after kb uploaded the working \
         directory, and the new one does not have this task's files: pods that joined before keep their copy, pods \
         that join now cannot get one; run the command again to upload the files to the new server"
    )]
    Replaced {
        /// The namespace.
        namespace: String,
    },
    /// The tree is more than the share server keeps.
    #[error(
        "the working directory `{}` holds {} MiB to share, more than the share server keeps ({} MiB)",
        dir.display(), bytes >> 20, super::store::COLLECT_ABOVE >> 20
    )]
    TooBig {
        /// The bytes of distinct contents to share.
        bytes: u64,
        /// The directory.
        dir: PathBuf,
    },
    /// Reading the local directory failed.
    #[error("cannot {action}")]
    Io {
        /// What kb was doing.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Server { namespace, .. } => Some(format!(
                "deploy or update it with `kb cluster-setup -n {namespace} | kubectl apply -f -` and wait for pod \
                 {SERVER_POD} to be Ready, or run with --share none"
            )),
            Error::TooBig { .. } => Some(
                "leave large files out with a `.kbignore` (the syntax of `.gitignore`), or run with --share none"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// A result whose error is a share [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the upload moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Files in the tree.
    pub files: u64,
    /// Bytes in the tree's files.
    pub bytes: u64,
    /// Contents sent (files whose content the server lacked, each content once).
    pub sent_files: u64,
    /// Bytes of content sent.
    pub sent_bytes: u64,
    /// Bytes of lists sent beside the content: hashes asked about, blob headers, the manifest.
    pub sent_meta: u64,
}

impl std::fmt::Display for UploadStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sent = self.sent_bytes + self.sent_meta;
        let percent = if self.bytes == 0 {
            0.0
        } else {
            sent as f64 * 100.0 / self.bytes as f64
        };
        write!(
            f,
            "sent {sent} of {} bytes ({percent:.2}%: {} of content in {} of {} files, {} of lists)",
            self.bytes, self.sent_bytes, self.sent_files, self.files, self.sent_meta
        )
    }
}

/// What a pod needs to fetch a task's tree, handed to an `--async` coordinator.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TreeRef {
    /// The task.
    pub task: String,
    /// The working directory.
    pub dir: PathBuf,
    /// The server's address for pods.
    pub address: String,
    /// The server's public host key.
    pub host_public: String,
    /// The pods' private key.
    pub pod_key: String,
    /// The server pod's UID at the upload.
    #[serde(default)]
    pub server_uid: Option<String>,
}

/// Logs in to the share server at `server` (`IP:PORT`, host key `host_public` pinned) with the private key in
/// `key` and runs `command` (the key's forced command runs instead, whatever is asked); returns the connection and
/// the channel as a byte stream.
pub async fn open_server_stream(
    server: &str,
    host_public: &str,
    key: &Path,
    command: &str,
) -> std::io::Result<(Connection, russh::ChannelStream<russh::client::Msg>)> {
    let config = crate::ssh::ClientConfig {
        identities: vec![key.to_owned()],
        pinned_host_keys: vec![host_public.to_string()],
        known_hosts: Vec::new(),
    };
    let login = crate::ssh::SshLogin::parse(server).map_err(std::io::Error::other)?;
    let conn = Connection::connect(&login, &config)
        .await
        .map_err(|e| std::io::Error::other(crate::error::chain(&e)))?;
    let channel = conn
        .open_session()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    channel
        .exec(true, command)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((conn, channel.into_stream()))
}

/// `kb share connect`: this process's stdin and stdout carried over a channel to the share server (the key's
/// forced command decides what answers), until either end stops.
pub async fn connect_stdio(server: &str, host_public: &str, key: &Path) -> std::io::Result<()> {
    let (conn, stream) = open_server_stream(server, host_public, key, "connect").await?;
    let result = super::lazy::splice_stdio(stream).await;
    conn.close().await;
    result
}

/// `kb share fetch` in a worker pod: connect to the server with the key from `key_text`, pinning `host_public`,
/// and unpack the task's tree into `into`, recording the manifest at `base`.
pub async fn fetch(
    server: &str,
    host_public: &str,
    key_text: &str,
    into: &Path,
    base: &Path,
) -> std::io::Result<()> {
    let key_file = tempfile::NamedTempFile::new()?;
    std::fs::write(key_file.path(), key_text)?;
    // The server's key runs only `serve` for this task, whatever is asked.
    let (conn, stream) = open_server_stream(server, host_public, key_file.path(), "serve").await?;
    drop(key_file);
    let (into, base) = (into.to_owned(), base.to_owned());
    let unpacked = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::new(tokio_util::io::SyncIoBridge::new(stream));
        super::pod::unpack(reader, &into, &base)
    })
    .await
    .map_err(std::io::Error::other)?;
    conn.close().await;
    unpacked.map(|_| ())
}
