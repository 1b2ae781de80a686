//! The lazy share's file system state and its SFTP requests, one `async fn` per thing FUSE asks for, each
//! returning the errno the kernel gets. `fs` turns FUSE callbacks into calls of these on tasks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileHandle, FileType, INodeNo, OpenAccMode, OpenFlags, TimeOrNow};
use russh_sftp::protocol::{FileAttributes, OpenFlags as SftpOpen};

use super::inode::{Inodes, child};
use super::remote::{Failure, Remote, SetAttrs};

/// The largest read or write the kernel sends (and so one SFTP packet's payload).
pub(crate) const MAX_IO: u32 = 128 * 1024;

/// The file system's state, shared by the tasks that serve requests.
pub(crate) struct Share {
    pub(crate) remote: Remote,
    pub(crate) inodes: Mutex<Inodes>,
    pub(crate) files: Mutex<HashMap<u64, String>>,
    pub(crate) dirs: Mutex<HashMap<u64, Vec<(String, FileType)>>>,
    pub(crate) next_fh: AtomicU64,
    pub(crate) ttl: Duration,
}
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
impl Share {
    /// A file system over `remote` with entry and attribute time-to-live `ttl`.
    pub(crate) fn new(remote: Remote, ttl: Duration) -> Share {
        Share {
            remote,
            inodes: Mutex::new(Inodes::default()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            ttl,
        }
    }

    pub(crate) fn path(&self, ino: INodeNo) -> Result<String, Errno> {
        lock(&self.inodes).path(ino.0).ok_or(Errno::ENOENT)
    }

    pub(crate) fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        Ok(child(&self.path(parent)?, name))
    }

    pub(crate) fn handle(&self, fh: FileHandle) -> Result<String, Errno> {
        lock(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    pub(crate) fn add_handle(&self, handle: String) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(fh, handle);
        FileHandle(fh)
    }

    pub(crate) async fn lstat(&self, path: &str) -> Result<FileAttributes, Errno> {
        Ok(self.remote.call(self.remote.sftp.lstat(path)).await?.attrs)
    }

    /// Looks `path` up on the laptop and counts the lookup for the kernel.
    pub(crate) async fn entry(&self, path: &str) -> Result<FileAttr, Errno> {
        let attrs = self.lstat(path).await?;
        let ino = lock(&self.inodes).lookup(path);
        Ok(file_attr(ino, &attrs))
    }

    pub(crate) async fn open(
        &self,
        path: &str,
        flags: SftpOpen,
        mode: Option<u32>,
    ) -> Result<FileHandle, Errno> {
        let attrs = FileAttributes {
            permissions: mode,
            ..FileAttributes::default()
        };
        let handle = self
            .remote
            .call(self.remote.sftp.open(path, flags, attrs))
            .await?;
        Ok(self.add_handle(handle.handle))
    }

    pub(crate) async fn read(
        &self,
        fh: FileHandle,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        let handle = self.handle(fh)?;
        let mut out = Vec::with_capacity(size as usize);
        while out.len() < size as usize {
            let want = (size as usize - out.len()) as u32;
            let at = offset + out.len() as u64;
            match self
                .remote
                .call(self.remote.sftp.read(handle.as_str(), at, want))
                .await
            {
                Ok(data) => {
                    // kb's server reads until the count (up to 255 KiB) or the end of the file, so a short answer
                    // to a read it answers whole is the end; the kernel asks for at most `MAX_IO`.
                    let short = data.data.len() < want as usize && want <= MAX_IO;
                    out.extend_from_slice(&data.data);
                    if short || data.data.is_empty() {
                        break;
                    }
                }
                Err(Failure::Eof) => break,
                Err(Failure::Errno(e)) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(crate) async fn set_attr(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
        change: Change,
    ) -> Result<FileAttr, Errno> {
        let path = self.path(ino)?;
        let handle = match (change.size, fh) {
            (Some(_), Some(fh)) => Some(self.handle(fh)?),
            _ => None,
        };
        let time = |t: Option<TimeOrNow>| match t {
            Some(TimeOrNow::SpecificTime(t)) => Some(t),
            Some(TimeOrNow::Now) => Some(SystemTime::now()),
            None => None,
        };
        let attrs = SetAttrs {
            mode: change.mode,
            size: change.size,
            atime: time(change.atime),
            mtime: time(change.mtime),
        };
        self.remote.set_attrs(&path, handle, attrs).await?;
        Ok(file_attr(ino.0, &self.lstat(&path).await?))
    }

    pub(crate) async fn list(&self, path: &str) -> Result<Vec<(String, FileType)>, Errno> {
        let handle = self
            .remote
            .call(self.remote.sftp.opendir(path))
            .await?
            .handle;
        let mut entries = vec![
            (".".to_string(), FileType::Directory),
            ("..".to_string(), FileType::Directory),
        ];
        let result = loop {
            match self
                .remote
                .call(self.remote.sftp.readdir(handle.as_str()))
                .await
            {
                Ok(name) => entries.extend(name.files.into_iter().map(|f| {
                    let kind = file_attr(0, &f.attrs).kind;
                    (f.filename, kind)
                })),
                Err(Failure::Eof) => break Ok(entries),
                Err(Failure::Errno(e)) => break Err(e),
            }
        };
        let _ = self.remote.call(self.remote.sftp.close(handle)).await;
        result
    }
}

/// What a `setattr` changes (owner changes are accepted and ignored: see `server`).
pub(crate) struct Change {
    pub(crate) mode: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<TimeOrNow>,
    pub(crate) mtime: Option<TimeOrNow>,
}

/// The kernel's attributes of a file from its SFTP attributes.
pub(crate) fn file_attr(ino: u64, a: &FileAttributes) -> FileAttr {
    let mode = a.permissions.unwrap_or(0);
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    };
    let time = |t: Option<u32>| UNIX_EPOCH + Duration::from_secs(u64::from(t.unwrap_or(0)));
    let size = a.size.unwrap_or(0);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.mtime),
        crtime: time(a.mtime),
        kind,
        perm: (mode & 0o7777) as u16,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: a.uid.unwrap_or(0),
        gid: a.gid.unwrap_or(0),
        rdev: 0,
        blksize: MAX_IO,
        flags: 0,
    }
}

pub(crate) fn sftp_flags(flags: i32) -> SftpOpen {
    let mut out = match OpenFlags(flags).acc_mode() {
        OpenAccMode::O_RDONLY => SftpOpen::READ,
        OpenAccMode::O_WRONLY => SftpOpen::WRITE,
        OpenAccMode::O_RDWR => SftpOpen::READ | SftpOpen::WRITE,
    };
    for (posix, sftp) in [
        (libc::O_APPEND, SftpOpen::APPEND),
        (libc::O_CREAT, SftpOpen::CREATE),
        (libc::O_TRUNC, SftpOpen::TRUNCATE),
        (libc::O_EXCL, SftpOpen::EXCLUDE),
    ] {
        if flags & posix != 0 {
            out |= sftp;
        }
    }
    out
}
