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

/// The SFTP handles kept open, by inode. Bookkeeping only: the caller closes the handles it is given back.
/// Requests run concurrently (a client reads ahead), so a handle another request may be using is never closed at
/// once: one replaced is retired, and closed with the idle ones.
#[derive(Default)]
pub(crate) struct OpenFiles {
    by_ino: HashMap<u64, OpenFile>,
    retired: Vec<(String, Instant)>,
}

impl OpenFiles {
    /// The kept handle of `ino`, if it is good for `write`; marked used at `now`.
    pub(crate) fn get(&mut self, ino: u64, write: bool, now: Instant) -> Option<String> {
        let file = self.by_ino.get_mut(&ino)?;
        if write && !file.writable {
            return None;
        }
        file.used = now;
        Some(file.handle.clone())
    }

    /// Keeps `handle`, just opened for `ino`: returns the handle to use and one to close now. Unless `replace` (a
    /// file just created), a kept handle good enough wins (another request opened it meanwhile) and the new one is
    /// closed; a replaced handle is retired.
    pub(crate) fn keep(
        &mut self,
        ino: u64,
        handle: String,
        writable: bool,
        replace: bool,
        now: Instant,
    ) -> (String, Option<String>) {
        if !replace && let Some(kept) = self.get(ino, writable, now) {
            return (kept, Some(handle));
        }
        let file = OpenFile {
            handle: handle.clone(),
            writable,
            used: now,
        };
        if let Some(old) = self.by_ino.insert(ino, file) {
            self.retired.push((old.handle, now));
        }
        (handle, None)
    }

    /// Stops keeping `ino`'s handle (its file is being removed); returns it, to close.
    pub(crate) fn remove(&mut self, ino: u64) -> Option<String> {
        self.by_ino.remove(&ino).map(|f| f.handle)
    }

    /// The handles to close at `now`: kept ones unused for [`IDLE`], retired ones retired that long ago; all
    /// when `all`.
    pub(crate) fn sweep(&mut self, now: Instant, all: bool) -> Vec<String> {
        let old = |at: Instant| all || now.saturating_duration_since(at) >= IDLE;
        let idle: Vec<u64> = self
            .by_ino
            .iter()
            .filter(|(_, f)| old(f.used))
            .map(|(&ino, _)| ino)
            .collect();
        let mut out: Vec<String> = idle
            .iter()
            .filter_map(|ino| self.by_ino.remove(ino))
            .map(|f| f.handle)
            .collect();
        let (done, kept): (Vec<_>, Vec<_>) = self.retired.drain(..).partition(|(_, at)| old(*at));
        self.retired = kept;
        out.extend(done.into_iter().map(|(h, _)| h));
        out
    }
}

/// One SFTP session to the task's relay and the handles open on it.
pub(crate) struct Session {
    pub(crate) remote: Remote,
    files: Mutex<OpenFiles>,
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
                    files: Mutex::new(OpenFiles::default()),
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
        let idle = lock(&session.files).sweep(Instant::now(), all);
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
        let kept = lock(&self.files).get(ino, write, Instant::now());
        if let Some(handle) = kept {
            return Ok(handle);
        }
        let flags = if write {
            OpenFlags::READ | OpenFlags::WRITE
        } else {
            OpenFlags::READ
        };
        let handle = self.open(path, flags, None).await?;
        Ok(self.keep(ino, handle, write, false).await)
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

    /// Keeps `handle`, just opened for `ino` (see [`OpenFiles::keep`]); returns the handle to use.
    pub(crate) async fn keep(
        &self,
        ino: u64,
        handle: String,
        writable: bool,
        replace: bool,
    ) -> String {
        let (use_, close) = lock(&self.files).keep(ino, handle, writable, replace, Instant::now());
        if let Some(close) = close {
            let _ = self.remote.call(self.remote.sftp.close(close)).await;
        }
        use_
    }

    /// Closes inode `ino`'s kept handle, if any (before a removal).
    pub(crate) async fn forget(&self, ino: u64) {
        let removed = lock(&self.files).remove(ino);
        if let Some(old) = removed {
            let _ = self.remote.call(self.remote.sftp.close(old)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_handles_serve_reads_and_writes_and_close_when_idle() {
        let t0 = Instant::now();
        let mut files = OpenFiles::default();
        assert_eq!(files.get(1, false, t0), None);
        // A read handle serves reads, not writes.
        assert_eq!(
            files.keep(1, "r1".into(), false, false, t0),
            ("r1".into(), None)
        );
        assert_eq!(files.get(1, false, t0).as_deref(), Some("r1"));
        assert_eq!(files.get(1, true, t0), None);
        // Two requests opened at once: the first kept wins, the second's is closed at once.
        assert_eq!(
            files.keep(1, "r2".into(), false, false, t0),
            ("r1".into(), Some("r2".into()))
        );
        // A write handle replaces the read one, which may be in use: retired, not closed yet.
        assert_eq!(
            files.keep(1, "w1".into(), true, false, t0),
            ("w1".into(), None)
        );
        assert_eq!(
            files.get(1, false, t0).as_deref(),
            Some("w1"),
            "a write handle reads too"
        );
        // A file created anew replaces even a good handle.
        assert_eq!(
            files.keep(1, "c1".into(), true, true, t0),
            ("c1".into(), None)
        );
        let soon = t0 + IDLE / 2;
        assert_eq!(files.get(1, true, soon).as_deref(), Some("c1"));
        assert!(
            files.sweep(t0 + IDLE, false).iter().eq(["r1", "w1"].iter()),
            "retired first"
        );
        assert!(
            files.sweep(t0 + IDLE, false).is_empty(),
            "c1 was used since"
        );
        assert_eq!(files.sweep(soon + IDLE, false), ["c1"]);
        assert_eq!(files.get(1, false, soon + IDLE), None);
        files.keep(2, "x".into(), false, false, t0);
        assert_eq!(files.remove(2).as_deref(), Some("x"));
        assert_eq!(files.remove(2), None);
        files.keep(3, "y".into(), false, false, t0);
        assert_eq!(files.sweep(t0, true), ["y"]);
    }
}
