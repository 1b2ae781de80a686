//! A task's share as the Kubernetes backend runs it: how each pod gets the working directory (`PodShare`), the
//! laptop's side of the eager share through the exec API (`server`) and of the lazy share (`lazy`).

pub mod lazy;
pub mod server;

use std::sync::Arc;

use crate::k8s::upload::{DirArchive, send_archive};
use crate::ssh::Connection;

/// How a task's pods get the working directory.
#[derive(Debug, Clone)]
pub enum PodShare {
    /// Copied into each pod over its agent connection (no share server, or `--share none` with an empty archive).
    Copy(Arc<DirArchive>),
    /// Fetched by each pod from the share server.
    Server(Arc<server::ServerShare>),
    /// Mounted in each pod with FUSE, served by this client through the share server.
    Lazy(Arc<lazy::LazyShare>),
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
