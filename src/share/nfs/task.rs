//! One task's share as the NFS server sees it: its paths and inode numbers (`lazy::inode`, never forgotten: NFS
//! has no FORGET, and a client may hold a handle for as long as it likes), and its SFTP session to the task's relay
//! (`Store::lazy_socket`, as `lazy-attach` connects), opened on first use and reopened when it died. The session
//! keeps the files NFS reads or writes open for a few seconds ([`IDLE`]): NFS has no OPEN or CLOSE, and an SFTP
//! open and close around every READ would triple the round trips to the laptop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nfsserve::nfs::nfsstat3;
use russh_sftp::protocol::{FileAttributes, OpenFlags};

use super::attr::failure;
use crate::share::lazy::inode::Inodes;
use crate::share::lazy::remote::Remote;
use crate::share::lazy::share::lock;
use crate::share::store::Store;

/// How long an SFTP handle the NFS side opened stays open unused.
pub(crate) const IDLE: Duration = Duration::from_secs(3);
/// After a session was lost or a connection to the task's relay failed, requests fail at once for this long
/// instead of trying again (then the next request connects again: a client that came back is served).
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// An SFTP handle kept open for NFS reads and writes.
struct OpenFile {
    handle: String,
    writable: bool,
    used: Instant,
}

/// One SFTP session to the task's relay and the handles open on it.
pub(crate) struct Session {
    pub(crate) remote: Remote,
    files: Mutex<HashMap<u64, OpenFile>>,
}

/// A task's share: its secret, its path table and its session.
pub(crate) struct TaskShare {
    pub(crate) task: String,
    pub(crate) token: String,
    pub(crate) slot: u16,
    pub(crate) key: ring::hmac::Key,
    pub(crate) inodes: Mutex<Inodes>,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    failed: Mutex<Option<Instant>>,
}

impl TaskShare {
    /// The share of `task` with its token, in `slot`.
    pub(crate) fn new(task: &str, token: &str, slot: u16) -> TaskShare {
        TaskShare {
            task: task.to_string(),
            token: token.to_string(),
            slot,
            key: super::handle::key(token.as_bytes()),
            inodes: Mutex::new(Inodes::default()),
            session: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
        }
    }

    /// The path of inode `ino` (stale when unknown: this server never handed it out).
    pub(crate) fn path(&self, ino: u64) -> Result<String, nfsstat3> {
        lock(&self.inodes).path(ino).ok_or(nfsstat3::NFS3ERR_STALE)
    }

    /// The live session, connecting to the task's relay when there is none or it died. Fails with NFS3ERR_STALE
    /// when the task was dropped (its token is gone from the store), NFS3ERR_IO when its client is not there.
    pub(crate) async fn session(
        &self,
        store: &Store,
        deadline: Duration,
    ) -> Result<Arc<Session>, nfsstat3> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.take() {
            if !session.remote.is_dead() {
                *current = Some(session.clone());
                return Ok(session);
            }
            // Just lost (the client went, or a request missed its deadline): the requests that follow fail at
            // once for a while, rather than each waiting for a deadline of its own on a stalled client.
            *lock(&self.failed) = Some(Instant::now());
        }
        if lock(&self.failed).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(nfsstat3::NFS3ERR_IO);
        }
        match store.nfs_token(&self.task) {
            Ok(Some(token)) if super::handle::same_secret(&token, &self.token) => {}
            _ => return Err(nfsstat3::NFS3ERR_STALE),
        }
        match connect(store, &self.task, deadline).await {
            Ok(remote) => {
                let session = Arc::new(Session {
                    remote,
                    files: Mutex::new(HashMap::new()),
                });
                *current = Some(session.clone());
                *lock(&self.failed) = None;
                Ok(session)
            }
            Err(err) => {
                tracing::warn!(
                    "nfs: cannot reach the lazy share of task `{}`: {err}",
                    self.task
                );
                *lock(&self.failed) = Some(Instant::now());
                Err(nfsstat3::NFS3ERR_IO)
            }
        }
    }

    /// Closes the handles unused for [`IDLE`] (all of them when `all`).
    pub(crate) async fn close_idle(&self, all: bool) {
        let Some(session) = self.session.lock().await.clone() else {
            return;
        };
        let idle: Vec<String> = {
            let mut files = lock(&session.files);
            let old: Vec<u64> = files
                .iter()
                .filter(|(_, f)| all || f.used.elapsed() >= IDLE)
                .map(|(&ino, _)| ino)
                .collect();
            old.iter()
                .filter_map(|ino| files.remove(ino))
                .map(|f| f.handle)
                .collect()
        };
        for handle in idle {
            let _ = session.remote.call(session.remote.sftp.close(handle)).await;
        }
    }
}

async fn connect(store: &Store, task: &str, deadline: Duration) -> std::io::Result<Remote> {
    let socket = store.lazy_socket(task)?;
    let stream = tokio::time::timeout(deadline, tokio::net::UnixStream::connect(&socket))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer from the relay")
        })??;
    Remote::connect(stream, deadline)
        .await
        .map_err(|e| std::io::Error::other(format!("no SFTP session with the client: {e}")))
}

impl Session {
    /// An SFTP handle of inode `ino` (at `path`) open for reading, or for writing too: the one kept open, or a new
    /// one, kept for [`IDLE`].
    pub(crate) async fn handle(
        &self,
        ino: u64,
        path: &str,
        write: bool,
    ) -> Result<String, nfsstat3> {
        {
            let mut files = lock(&self.files);
            if let Some(file) = files.get_mut(&ino)
                && (file.writable || !write)
            {
                file.used = Instant::now();
                return Ok(file.handle.clone());
            }
        }
        let flags = if write {
            OpenFlags::READ | OpenFlags::WRITE
        } else {
            OpenFlags::READ
        };
        let handle = self.open(path, flags, None).await?;
        self.keep(ino, handle.clone(), write).await;
        Ok(handle)
    }

    /// Opens `path` with `flags` (and `mode` when it is created).
    pub(crate) async fn open(
        &self,
        path: &str,
        flags: OpenFlags,
        mode: Option<u32>,
    ) -> Result<String, nfsstat3> {
        let attrs = FileAttributes {
            permissions: mode,
            ..FileAttributes::default()
        };
        Ok(self
            .remote
            .call(self.remote.sftp.open(path, flags, attrs))
            .await
            .map_err(failure)?
            .handle)
    }

    /// Keeps `handle` as inode `ino`'s open file; the one it replaces is closed.
    pub(crate) async fn keep(&self, ino: u64, handle: String, writable: bool) {
        let file = OpenFile {
            handle,
            writable,
            used: Instant::now(),
        };
        let replaced = lock(&self.files).insert(ino, file);
        if let Some(old) = replaced {
            let _ = self.remote.call(self.remote.sftp.close(old.handle)).await;
        }
    }

    /// Closes inode `ino`'s kept handle, if any (before a removal).
    pub(crate) async fn forget(&self, ino: u64) {
        let removed = lock(&self.files).remove(&ino);
        if let Some(old) = removed {
            let _ = self.remote.call(self.remote.sftp.close(old.handle)).await;
        }
    }
}
