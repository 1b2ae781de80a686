//! The FUSE side's SFTP client: one russh-sftp session over the stream, with kb's failure rule on top.
//!
//! Every request has a deadline. When the stream ends or fails, or a request misses its deadline, the session is
//! *dead*: that request fails with EIO, and so does every later one, at once, without touching the stream. A job
//! reading the share therefore gets an I/O error within the deadline, never a hang. An SFTP error status is not a
//! failure of the share: it becomes the errno the server put in its message (`... (os error N)`, see `server`),
//! or the nearest errno of the status code for another server.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fuser::Errno;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, Status, StatusCode};

use super::stream::{Stream, Watched};

/// The SFTP session and whether it is dead.
pub(crate) struct Remote {
    /// The session; call it through [`Remote::call`].
    pub(crate) sftp: RawSftpSession,
    dead: Arc<AtomicBool>,
    deadline: Duration,
}

/// The outcome of one request: the value, an errno, or the end of a file or listing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answered with an error (or the session is dead: EIO).
    Errno(Errno),
    /// SFTP's end of file or end of directory.
    Eof,
}

impl From<Failure> for Errno {
    fn from(f: Failure) -> Errno {
        match f {
            Failure::Errno(e) => e,
            // Only reads and listings expect an EOF; anywhere else it is a protocol error.
            Failure::Eof => Errno::EIO,
        }
    }
}

impl Remote {
    /// Starts an SFTP session on `stream` and waits (at most `deadline`) for the server's version.
    pub(crate) async fn connect(
        stream: impl Stream + 'static,
        deadline: Duration,
    ) -> Result<Remote, SftpError> {
        let dead = Arc::new(AtomicBool::new(false));
        let watched = Watched::new(stream, dead.clone(), None);
        let config = russh_sftp::client::Config {
            // russh-sftp's own timer, a backstop behind kb's deadline below (it counts whole seconds).
            request_timeout_secs: deadline.as_secs() + 1,
            ..Default::default()
        };
        let sftp = RawSftpSession::new_with_config(watched, config);
        let remote = Remote {
            sftp,
            dead,
            deadline,
        };
        match tokio::time::timeout(deadline, remote.sftp.init()).await {
            Ok(Ok(_version)) => Ok(remote),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SftpError::Timeout),
        }
    }

    /// Whether the session is dead (every operation fails with EIO).
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Runs one request under the deadline and the failure rule.
    pub(crate) async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, SftpError>>,
    ) -> Result<T, Failure> {
        if self.is_dead() {
            return Err(Failure::Errno(Errno::EIO));
        }
        match tokio::time::timeout(self.deadline, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(SftpError::Status(status))) => Err(from_status(&status)),
            Ok(Err(err)) => {
                tracing::warn!("lazy share: SFTP request failed, the share is lost: {err}");
                self.dead.store(true, Ordering::SeqCst);
                Err(Failure::Errno(Errno::EIO))
            }
            Err(_) => {
                tracing::warn!(
                    "lazy share: no answer to an SFTP request within {:?}, the share is lost",
                    self.deadline
                );
                self.dead.store(true, Ordering::SeqCst);
                Err(Failure::Errno(Errno::EIO))
            }
        }
    }
}

/// What a `setattr` changes, for both file systems (FUSE and NFS); owner changes are not here: they are accepted
/// and ignored (see `server`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetAttrs {
    pub(crate) mode: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<std::time::SystemTime>,
    pub(crate) mtime: Option<std::time::SystemTime>,
}

impl Remote {
    /// Applies `change` to `path` (the size through `handle` when the file is open): mode, size, then times.
    pub(crate) async fn set_attrs(
        &self,
        path: &str,
        handle: Option<String>,
        change: SetAttrs,
    ) -> Result<(), Failure> {
        if let Some(mode) = change.mode {
            let attrs = FileAttributes {
                permissions: Some(mode & 0o7777),
                ..FileAttributes::default()
            };
            self.call(self.sftp.setstat(path, attrs)).await?;
        }
        if let Some(size) = change.size {
            let attrs = FileAttributes {
                size: Some(size),
                ..FileAttributes::default()
            };
            match handle {
                Some(handle) => self.call(self.sftp.fsetstat(handle, attrs)).await?,
                None => self.call(self.sftp.setstat(path, attrs)).await?,
            };
        }
        if change.atime.is_some() || change.mtime.is_some() {
            // SFTP sets both times at once: keep the one not given.
            let now = self.call(self.sftp.lstat(path)).await?.attrs;
            let attrs = FileAttributes {
                atime: change.atime.map(unix).or(now.atime),
                mtime: change.mtime.map(unix).or(now.mtime),
                ..FileAttributes::default()
            };
            self.call(self.sftp.setstat(path, attrs)).await?;
        }
        Ok(())
    }
}

/// SFTP v3's time: whole seconds since the epoch.
pub(crate) fn unix(t: std::time::SystemTime) -> u32 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// The errno of an SFTP error status.
pub(crate) fn from_status(status: &Status) -> Failure {
    if status.status_code == StatusCode::Eof {
        return Failure::Eof;
    }
    if let Some(errno) = errno_in(&status.error_message) {
        return Failure::Errno(Errno::from_i32(errno));
    }
    Failure::Errno(match status.status_code {
        StatusCode::NoSuchFile => Errno::ENOENT,
        StatusCode::PermissionDenied => Errno::EACCES,
        StatusCode::OpUnsupported => Errno::ENOSYS,
        _ => Errno::EIO,
    })
}

/// The `N` of a message ending in `(os error N)`.
fn errno_in(message: &str) -> Option<i32> {
    let rest = message.strip_suffix(')')?;
    let start = rest.rfind("(os error ")?;
    rest[start + "(os error ".len()..]
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: StatusCode, message: &str) -> Status {
        Status {
            id: 1,
            status_code: code,
            error_message: message.to_string(),
            language_tag: String::new(),
        }
    }

    #[test]
    fn the_errno_in_the_message_wins_over_the_status_code() {
        let not_empty = status(StatusCode::Failure, "Directory not empty (os error 39)");
        assert_eq!(from_status(&not_empty), Failure::Errno(Errno::from_i32(39)));
        let escape = status(
            StatusCode::PermissionDenied,
            "path leads outside (os error 13)",
        );
        assert_eq!(from_status(&escape), Failure::Errno(Errno::EACCES));
        assert_eq!(
            from_status(&status(StatusCode::NoSuchFile, "No such file")),
            Failure::Errno(Errno::ENOENT)
        );
        assert_eq!(
            from_status(&status(StatusCode::Failure, "Failure")),
            Failure::Errno(Errno::EIO)
        );
        assert_eq!(
            from_status(&status(StatusCode::Failure, "x (os error zz)")),
            Failure::Errno(Errno::EIO)
        );
        assert_eq!(from_status(&status(StatusCode::Eof, "Eof")), Failure::Eof);
    }

    #[test]
    fn the_server_puts_the_errno_in_the_message() {
        let reply = super::super::local::status(std::io::Error::from_raw_os_error(libc::ENOTEMPTY));
        let not_empty = status(reply.status_code, reply.error_message.as_deref().unwrap());
        assert_eq!(
            from_status(&not_empty),
            Failure::Errno(Errno::from_i32(libc::ENOTEMPTY))
        );
        let reply = super::super::local::status(super::super::confine::escape());
        assert_eq!(reply.status_code, StatusCode::PermissionDenied);
        let escape = status(reply.status_code, reply.error_message.as_deref().unwrap());
        assert_eq!(from_status(&escape), Failure::Errno(Errno::EACCES));
    }

    /// A server that answers the handshake and then nothing: the first request fails at the deadline, later ones
    /// at once, all with EIO.
    #[tokio::test(start_paused = true)]
    async fn a_missed_deadline_kills_the_session() {
        use russh_sftp::protocol::{Packet, Version};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let silent = tokio::spawn(async move {
            let len = server.read_u32().await.unwrap();
            let mut init = vec![0; len as usize];
            server.read_exact(&mut init).await.unwrap();
            let version = bytes::Bytes::try_from(Packet::Version(Version::new())).unwrap();
            server.write_all(&version).await.unwrap();
            // Read requests and never answer, until the client goes away.
            let mut sink = vec![0; 1024];
            while server.read(&mut sink).await.unwrap_or(0) > 0 {}
        });
        let remote = Remote::connect(client, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!remote.is_dead());
        let start = tokio::time::Instant::now();
        let first = remote.call(remote.sftp.lstat("/a")).await;
        assert_eq!(first.unwrap_err(), Failure::Errno(Errno::EIO));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert!(remote.is_dead());
        let again = tokio::time::Instant::now();
        let second = remote.call(remote.sftp.lstat("/a")).await;
        assert_eq!(second.unwrap_err(), Failure::Errno(Errno::EIO));
        assert_eq!(again.elapsed(), Duration::ZERO);
        drop(remote);
        silent.await.unwrap();
    }
}
