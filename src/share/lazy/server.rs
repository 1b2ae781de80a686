//! The lazy share's SFTP server: serves one root directory read-write over any byte stream (on the laptop, a
//! channel of kb's own SSH connection to the share server). Every request is answered from the real local file
//! system at that moment: no cache, so a job sees what is on disk when its request arrives.
//!
//! Paths go through `confine`; file system calls (`local`) run on tokio's blocking pool. Errors carry their errno in the
//! status message (`... (os error N)`), which kb's FUSE client turns back into the same errno (SFTP v3 has only
//! eight status codes). Deviations from SFTP v3, both as OpenSSH's `posix-rename@openssh.com` does: `rename`
//! replaces an existing target (POSIX `rename(2)`), since jobs rely on `mv tmp file` being atomic. This module must
//! not know about FUSE or about how the stream reaches it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use russh_sftp::extensions::{FSYNC, FsyncExtension};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::{Handler, StatusReply};
use rustix::fs::{AtFlags, Mode, OFlags};

use super::confine::{self, Root, relative};
use super::local::{attributes, lstat, ok, open_flags, read_dir, set_attributes, status, utf8};

/// The largest read the server answers in one packet (a client may ask for less; the FUSE client asks for 128 KiB).
const MAX_READ: u32 = 255 * 1024;
/// Directory entries per `readdir` answer.
const DIR_BATCH: usize = 128;

/// One open handle.
#[derive(Debug)]
enum Open {
    File(Arc<std::fs::File>),
    /// A directory's entries, read at `opendir`, and how many were sent.
    Dir(Vec<File>, usize),
}

/// The SFTP handler for one client. Clones share the root and the open handles: `serve_sftp` runs several, so
/// that one slow request (a cold read on the laptop) does not hold up the others.
#[derive(Debug, Clone)]
pub struct SftpServer {
    root: Arc<Root>,
    handles: Arc<Mutex<HashMap<String, Open>>>,
    next: Arc<AtomicU64>,
}

impl SftpServer {
    /// A server for the directory `root` (opened now; later renames of its path do not move the share).
    pub fn new(root: &Path) -> io::Result<SftpServer> {
        Ok(SftpServer {
            root: Arc::new(Root::open(root)?),
            handles: Arc::default(),
            next: Arc::default(),
        })
    }

    /// The open handles (never held across an await).
    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&mut self, open: Open) -> String {
        let handle = (self.next.fetch_add(1, Ordering::Relaxed) + 1).to_string();
        self.handles().insert(handle.clone(), open);
        handle
    }

    fn file(&self, handle: &str) -> Result<Arc<std::fs::File>, StatusReply> {
        match self.handles().get(handle) {
            Some(Open::File(file)) => Ok(file.clone()),
            _ => Err(status(io::Error::from_raw_os_error(libc::EBADF))),
        }
    }

    /// Runs `f` with the root on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Root) -> io::Result<T> + Send + 'static,
    ) -> Result<T, StatusReply> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| status(io::Error::other(e)))?
            .map_err(status)
    }
}

impl Handler for SftpServer {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusReply::new(StatusCode::OpUnsupported)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        let mut version = Version::new();
        version
            .extensions
            .insert(FSYNC.to_string(), "1".to_string());
        Ok(version)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        // openat2(2) refuses a mode without O_CREAT.
        let mode = match pflags.contains(OpenFlags::CREATE) {
            true => Mode::from_raw_mode(attrs.permissions.unwrap_or(0o666) & 0o7777),
            false => Mode::empty(),
        };
        let file = self
            .blocking(move |root| {
                let fd = root.open_beneath(&relative(&filename)?, open_flags(pflags), mode)?;
                Ok(std::fs::File::from(fd))
            })
            .await?;
        let handle = self.insert(Open::File(Arc::new(file)));
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles().remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(status(io::Error::from_raw_os_error(libc::EBADF))),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        let data = self
            .blocking(move |_| {
                let mut buf = vec![0; len.min(MAX_READ) as usize];
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read_at(&mut buf[filled..], offset + filled as u64) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(filled);
                Ok(buf)
            })
            .await?;
        if data.is_empty() && len > 0 {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        self.blocking(move |_| file.write_all_at(&data, offset))
            .await?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = self.blocking(move |root| lstat(root, &path)).await?;
        Ok(Attrs { id, attrs })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = self
            .blocking(move |root| {
                let fd = root.open_beneath(&relative(&path)?, OFlags::PATH, Mode::empty())?;
                Ok(attributes(&rustix::fs::fstat(fd)?))
            })
            .await?;
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let file = self.file(&handle)?;
        let attrs = self
            .blocking(move |_| Ok(attributes(&rustix::fs::fstat(&*file)?)))
            .await?;
        Ok(Attrs { id, attrs })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.blocking(move |root| {
            let fd = root.open_beneath(&relative(&path)?, OFlags::PATH, Mode::empty())?;
            set_attributes(&fd, None, &attrs)
        })
        .await?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        self.blocking(move |_| set_attributes(&*file, Some(file.as_ref()), &attrs))
            .await?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let entries = self.blocking(move |root| read_dir(root, &path)).await?;
        let handle = self.insert(Open::Dir(entries, 0));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let mut handles = self.handles();
        let Some(Open::Dir(entries, sent)) = handles.get_mut(&handle) else {
            return Err(status(io::Error::from_raw_os_error(libc::EBADF)));
        };
        if *sent >= entries.len() {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        let end = (*sent + DIR_BATCH).min(entries.len());
        let files = entries[*sent..end].to_vec();
        *sent = end;
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.blocking(move |root| {
            let (dir, name) = root.parent(&relative(&filename)?)?;
            Ok(rustix::fs::unlinkat(dir, &name, AtFlags::empty())?)
        })
        .await?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let mode = Mode::from_raw_mode(attrs.permissions.unwrap_or(0o777) & 0o7777);
        self.blocking(move |root| {
            let (dir, name) = root.parent(&relative(&path)?)?;
            Ok(rustix::fs::mkdirat(dir, &name, mode)?)
        })
        .await?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        self.blocking(move |root| {
            let (dir, name) = root.parent(&relative(&path)?)?;
            Ok(rustix::fs::unlinkat(dir, &name, AtFlags::REMOVEDIR)?)
        })
        .await?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let rel = relative(&path).map_err(status)?;
        Ok(Name {
            id,
            files: vec![File::dummy(confine::absolute(&rel))],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.blocking(move |root| {
            let (old_dir, old_name) = root.parent(&relative(&oldpath)?)?;
            let (new_dir, new_name) = root.parent(&relative(&newpath)?)?;
            Ok(rustix::fs::renameat(
                old_dir, &old_name, new_dir, &new_name,
            )?)
        })
        .await?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = self
            .blocking(move |root| {
                let (dir, name) = root.parent(&relative(&path)?)?;
                let target = rustix::fs::readlinkat(dir, &name, Vec::new())?;
                utf8(OsStr::from_bytes(target.as_bytes()))
            })
            .await?;
        Ok(Name {
            id,
            files: vec![File::dummy(target)],
        })
    }

    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        // The target is stored as given: a link may point anywhere, but following it is confined like any path.
        self.blocking(move |root| {
            let (dir, name) = root.parent(&relative(&linkpath)?)?;
            Ok(rustix::fs::symlinkat(targetpath.as_str(), dir, &name)?)
        })
        .await?;
        Ok(ok(id))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        if request != FSYNC {
            return Err(self.unimplemented());
        }
        let ext: FsyncExtension = russh_sftp::de::from_bytes(&mut Bytes::from(data))
            .map_err(|_| StatusReply::new(StatusCode::BadMessage))?;
        let file = self.file(&ext.handle)?;
        self.blocking(move |_| file.sync_all()).await?;
        Ok(Packet::Status(ok(id)))
    }
}
