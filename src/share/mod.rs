//! The working directory in the pods (issue [share]). This part is the eager share and syncback through the share
//! server (`kb cluster-setup` deploys it): `manifest` (a tree by content), `store` (the server's store and its
//! requests), `client` (upload before the run, fetch into each pod, syncback after), `pod` (the worker pod's
//! side), `sync` (applying a pod's changes locally, by content), `delta` (what changed since the last upload),
//! `lazy` (the lazy share's two ends: the laptop's SFTP server and the pods' FUSE mount) and `relay` (the share
//! server carrying the pods' SFTP sessions to the laptop's), `nfs` (the share server's NFS server over the same
//! relays, for nodes that mount NFS), `lazy_task` (`--share lazy` for one task).

pub mod client;
pub mod delta;
pub mod lazy;
pub mod lazy_task;
pub mod manifest;
pub mod nfs;
pub mod pod;
pub mod relay;
pub mod store;
pub mod sync;

use std::sync::Arc;

use crate::k8s::upload::{DirArchive, send_archive};
use crate::ssh::Connection;

/// How a task's pods get the working directory.
#[derive(Debug, Clone)]
pub enum PodShare {
    /// Copied into each pod over its agent connection (no share server, or `--share none` with an empty archive).
    Copy(Arc<DirArchive>),
    /// Fetched by each pod from the share server.
    Server(Arc<client::ServerShare>),
    /// Mounted in each pod with FUSE, served by this client through the share server.
    Lazy(Arc<lazy_task::LazyShare>),
}

impl PodShare {
    /// Puts the working directory into the pod behind `conn`.
    pub async fn prepare(&self, conn: &Connection, pod: &str) -> crate::k8s::Result<()> {
        match self {
            PodShare::Copy(archive) => send_archive(conn, archive.clone()).await,
            PodShare::Lazy(share) => {
                share
                    .prepare_pod(conn, pod)
                    .await
                    .map_err(|e| crate::k8s::Error::Io {
                        action: format!("mount the working directory in pod `{pod}`"),
                        source: std::io::Error::other(crate::error::chain(&e)),
                    })
            }
            PodShare::Server(share) => {
                share
                    .prepare_pod(conn, pod)
                    .await
                    .map_err(|e| crate::k8s::Error::Io {
                        action: format!("put the working directory into pod `{pod}`"),
                        source: std::io::Error::other(crate::error::chain(&e)),
                    })
            }
        }
    }

    /// Remembers a pod that joined (syncback talks to it after the run).
    pub fn joined(&self, pod: &str) {
        if let PodShare::Server(share) = self {
            share.joined(pod);
        }
    }
}
