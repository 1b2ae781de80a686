//! One active plugin per resource per node. Every namespace that applies `kb cluster-setup` runs a `kb-fuse` pod on
//! every node, and the kubelet keeps only the latest registration of a resource: when that plugin stops, the
//! kubelet marks the resource unhealthy even though an older plugin still runs, and nothing tells the older one
//! to register again. So the plugins take turns: each takes an exclusive `flock` on `<resource>.lock` in the
//! kubelet's device plugin directory before it serves, and the others stand by until the lock is free (the kernel
//! frees it when its holder's process ends, however it ends). The kubelet deletes only sockets there, so the lock
//! file outlives kubelet restarts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};

/// How often a standing-by plugin tries the lock.
const TRY_EVERY: Duration = Duration::from_secs(1);

/// The lock's file name for `resource` (`kb.dev/fuse` → `kb.dev_fuse.lock`).
pub fn lock_name(resource: &str) -> String {
    format!("{}.lock", resource.replace('/', "_"))
}

/// The held lock; dropping it frees it.
#[derive(Debug)]
pub struct NodeLock {
    _held: Flock<File>,
}

/// Waits until this process holds the lock of `resource` in `dir`; `None` if shut down first.
pub async fn acquire(
    dir: &Path,
    resource: &str,
    shutdown: &CancellationToken,
) -> Result<Option<NodeLock>> {
    let path = dir.join(lock_name(resource));
    let mut waiting = false;
    loop {
        if let Some(lock) = try_lock(&path)? {
            if waiting {
                tracing::info!(
                    "the lock `{}` is free: this plugin serves now",
                    path.display()
                );
            }
            return Ok(Some(lock));
        }
        if !waiting {
            tracing::info!(
                "another plugin holds `{}` and serves `{resource}` on this node: standing by",
                path.display()
            );
            waiting = true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(TRY_EVERY) => {}
        }
    }
}

fn try_lock(path: &Path) -> Result<Option<NodeLock>> {
    let error = |source: std::io::Error| Error::Lock {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(error)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        // A lock on a file someone deleted (or replaced) meanwhile locks nothing the others open: try again.
        Ok(held) if same_file(&held, path) => Ok(Some(NodeLock { _held: held })),
        Ok(_) => Ok(None),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(error(std::io::Error::from(errno))),
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let first = acquire(dir.path(), "kb.dev/fuse", &shutdown).await.unwrap();
        assert!(first.is_some());
        assert!(dir.path().join("kb.dev_fuse.lock").exists());
        // A second holder in the same process: flock locks belong to the open file, so this is a fair stand-in
        // for a second plugin.
        assert!(
            try_lock(&dir.path().join("kb.dev_fuse.lock"))
                .unwrap()
                .is_none()
        );
        let waiting = tokio::spawn({
            let dir = dir.path().to_path_buf();
            let shutdown = shutdown.clone();
            async move {
                acquire(&dir, "kb.dev/fuse", &shutdown)
                    .await
                    .unwrap()
                    .is_some()
            }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let took = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(took);
    }
}
