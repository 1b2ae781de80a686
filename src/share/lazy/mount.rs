//! Mounting the lazy share: the SFTP handshake first (a share that cannot start is an error before anything is
//! mounted), then the FUSE mount (fuser's own mount, no libfuse: the `mount(2)` call as root, `fusermount3`
//! otherwise), then serve until the shutdown future fires or someone unmounts from outside, then unmount.
//!
//! A lost stream does not unmount: the mount stays and answers EIO to everything (see `remote`), because an
//! unmounted directory would silently show the empty directory beneath to a job that should fail. Unmounting is
//! lazy (`MNT_DETACH`) when a process still uses the mount, so the exit never waits on a job.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use tokio_util::task::TaskTracker;

use super::fs::ShareFs;
use super::remote::Remote;
use super::share::Share;
use super::stream::Stream;

/// How long a request may wait for its answer before the share is declared lost.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);
/// How long the kernel may trust a name or an attribute it got.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// What to mount and how.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// The mount point (an existing directory).
    pub at: PathBuf,
    /// Entry and attribute time-to-live in the kernel.
    pub ttl: Duration,
    /// Each SFTP request's deadline.
    pub deadline: Duration,
}

/// How a mount ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    /// The shutdown future fired while the share was alive.
    Stopped,
    /// The share was lost (stream ended, or a request missed its deadline) before the shutdown.
    Lost,
    /// Someone unmounted the directory.
    UnmountedOutside,
}

/// The lazy share's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SFTP session did not start.
    #[error("failed to start the SFTP session of the lazy share")]
    Connect {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The FUSE mount failed.
    #[error("failed to mount the lazy share at `{at}`")]
    Mount {
        /// The mount point.
        at: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Mounts the share served on `stream` at `spec.at`, serves until `shutdown` fires or the directory is
/// unmounted from outside, then unmounts.
pub async fn mount(
    stream: impl Stream + 'static,
    spec: &MountSpec,
    shutdown: impl Future<Output = ()>,
) -> Result<MountOutcome, Error> {
    let remote = Remote::connect(stream, spec.deadline)
        .await
        .map_err(|e| Error::Connect { source: e.into() })?;
    let share = Arc::new(Share::new(remote, spec.ttl));
    let tasks = TaskTracker::new();
    let (destroyed_tx, destroyed_rx) = tokio::sync::oneshot::channel();
    let fs = ShareFs::new(
        share.clone(),
        tokio::runtime::Handle::current(),
        tasks.clone(),
        destroyed_tx,
    );
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("kb-share".to_string()),
        MountOption::Subtype("kb".to_string()),
        MountOption::RW,
        MountOption::NoSuid,
        MountOption::NoDev,
    ];
    // Jobs may run as any user in the pod; the laptop's server decides what they may do, as its user.
    config.acl = SessionACL::All;
    let at = spec.at.clone();
    // Mounting waits for the kernel's INIT: a blocking call.
    let session = tokio::task::spawn_blocking(move || fuser::spawn_mount(fs, &at, &config))
        .await
        .map_err(|e| Error::Mount {
            at: spec.at.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| Error::Mount {
            at: spec.at.clone(),
            source,
        })?;
    tracing::info!("lazy share mounted at {}", spec.at.display());
    let outcome = tokio::select! {
        () = shutdown => if share.remote.is_dead() { MountOutcome::Lost } else { MountOutcome::Stopped },
        _ = destroyed_rx => MountOutcome::UnmountedOutside,
    };
    unmount(session, &spec.at).await;
    tasks.close();
    // Requests in flight end within their deadline; the process may exit before that, and they then fail.
    let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    Ok(outcome)
}

/// Unmounts: a plain `umount(2)` and a join of fuser's thread when nothing uses the mount, else a lazy unmount
/// (the kernel finishes it when the last user leaves; this process exits without waiting).
async fn unmount(session: fuser::BackgroundSession, at: &std::path::Path) {
    let at = at.to_path_buf();
    let joined = tokio::task::spawn_blocking(move || {
        let result = session.umount_and_join();
        if let Err(err) = &result {
            tracing::info!("unmount of {} failed ({err}), detaching it", at.display());
            if let Err(err) = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("lazy unmount of {} failed: {err}", at.display());
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), joined).await;
}
