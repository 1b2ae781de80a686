//! The lazy share's FUSE file system: every operation becomes SFTP requests to the laptop (see `remote`), on a
//! task of the tokio runtime, so one FUSE thread serves many requests at once and a slow one blocks no other.
//!
//! Consistency, in the kernel's terms: entries (name → inode) and attributes are cached for `ttl` (1 s by
//! default); a directory listing is never cached (every `opendir` asks the laptop); file data is cached only while
//! a file is open (no `FOPEN_KEEP_CACHE`: each `open` drops the pages), and writes go through at once (no
//! write-back cache). The mount is fresh for each run, so nothing the laptop held before the run can be stale.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};
use russh_sftp::protocol::{FileAttributes, OpenFlags as SftpOpen};
use tokio_util::task::TaskTracker;

use super::inode::{Inodes, child};
use super::remote::{Failure, Remote};

/// The largest read or write the kernel sends (and so one SFTP packet's payload).
const MAX_IO: u32 = 128 * 1024;

/// The file system's state, shared by the tasks that serve requests.
pub(crate) struct Share {
    pub(crate) remote: Remote,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, String>>,
    dirs: Mutex<HashMap<u64, Vec<(String, FileType)>>>,
    next_fh: AtomicU64,
    ttl: Duration,
}

/// The FUSE file system: hands each request to a task on `rt`, tracked by `tasks`.
pub(crate) struct ShareFs {
    share: Arc<Share>,
    rt: tokio::runtime::Handle,
    tasks: TaskTracker,
    destroyed: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

    fn path(&self, ino: INodeNo) -> Result<String, Errno> {
        lock(&self.inodes).path(ino.0).ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        Ok(child(&self.path(parent)?, name))
    }

    fn handle(&self, fh: FileHandle) -> Result<String, Errno> {
        lock(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_handle(&self, handle: String) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(fh, handle);
        FileHandle(fh)
    }

    async fn lstat(&self, path: &str) -> Result<FileAttributes, Errno> {
        Ok(self.remote.call(self.remote.sftp.lstat(path)).await?.attrs)
    }

    /// Looks `path` up on the laptop and counts the lookup for the kernel.
    async fn entry(&self, path: &str) -> Result<FileAttr, Errno> {
        let attrs = self.lstat(path).await?;
        let ino = lock(&self.inodes).lookup(path);
        Ok(file_attr(ino, &attrs))
    }

    async fn open(
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

    async fn read(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
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
                    let short = data.data.len() < want as usize;
                    out.extend_from_slice(&data.data);
                    // kb's server reads until the count or the end of the file, so a short answer is the end.
                    if short {
                        break;
                    }
                }
                Err(Failure::Eof) => break,
                Err(Failure::Errno(e)) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn set_attr(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
        change: Change,
    ) -> Result<FileAttr, Errno> {
        let path = self.path(ino)?;
        if let Some(mode) = change.mode {
            let attrs = FileAttributes {
                permissions: Some(mode & 0o7777),
                ..FileAttributes::default()
            };
            self.remote
                .call(self.remote.sftp.setstat(path.as_str(), attrs))
                .await?;
        }
        if let Some(size) = change.size {
            let attrs = FileAttributes {
                size: Some(size),
                ..FileAttributes::default()
            };
            match fh.map(|fh| self.handle(fh)).transpose()? {
                Some(handle) => {
                    self.remote
                        .call(self.remote.sftp.fsetstat(handle, attrs))
                        .await?
                }
                None => {
                    self.remote
                        .call(self.remote.sftp.setstat(path.as_str(), attrs))
                        .await?
                }
            };
        }
        if change.atime.is_some() || change.mtime.is_some() {
            // SFTP sets both times at once: keep the one not given.
            let now = self.lstat(&path).await?;
            let secs = |t: Option<TimeOrNow>, old: Option<u32>| match t {
                Some(TimeOrNow::SpecificTime(t)) => Some(unix(t)),
                Some(TimeOrNow::Now) => Some(unix(SystemTime::now())),
                None => old,
            };
            let attrs = FileAttributes {
                atime: secs(change.atime, now.atime),
                mtime: secs(change.mtime, now.mtime),
                ..FileAttributes::default()
            };
            self.remote
                .call(self.remote.sftp.setstat(path.as_str(), attrs))
                .await?;
        }
        Ok(file_attr(ino.0, &self.lstat(&path).await?))
    }

    async fn list(&self, path: &str) -> Result<Vec<(String, FileType)>, Errno> {
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
struct Change {
    mode: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

fn unix(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
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

fn sftp_flags(flags: i32) -> SftpOpen {
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

impl ShareFs {
    /// The file system; `destroyed` fires when the kernel ends the session (an unmount from outside).
    pub(crate) fn new(
        share: Arc<Share>,
        rt: tokio::runtime::Handle,
        tasks: TaskTracker,
        destroyed: tokio::sync::oneshot::Sender<()>,
    ) -> ShareFs {
        ShareFs {
            share,
            rt,
            tasks,
            destroyed: Mutex::new(Some(destroyed)),
        }
    }

    /// Serves one request on a task: `f` gets the shared state.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, f: impl FnOnce(Arc<Share>) -> F) {
        self.tasks.spawn_on(f(self.share.clone()), &self.rt);
    }
}

/// Replies to `reply` with the result: `$ok` on success, the errno otherwise.
macro_rules! answer {
    ($reply:ident, $result:expr, |$v:ident| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl fuser::Filesystem for ShareFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_readahead(MAX_IO);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Some(tx) = lock(&self.destroyed).take() {
            let _ = tx.send(());
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let path = self.share.child(parent, name);
        self.spawn(|s| async move {
            let ttl = s.ttl;
            answer!(reply, async { s.entry(&path?).await }.await, |a| reply
                .entry(&ttl, &a, Generation(0)))
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.share.inodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(|s| async move {
            let result = async {
                match fh {
                    Some(fh) => Ok(s
                        .remote
                        .call(s.remote.sftp.fstat(s.handle(fh)?))
                        .await?
                        .attrs),
                    None => s.lstat(&s.path(ino)?).await,
                }
            };
            answer!(reply, result.await, |a| reply
                .attr(&s.ttl, &file_attr(ino.0, &a)))
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = Change {
            mode,
            size,
            atime,
            mtime,
        };
        self.spawn(|s| async move {
            answer!(reply, s.set_attr(ino, fh, change).await, |a| reply
                .attr(&s.ttl, &a))
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn(|s| async move {
            let result = async {
                Ok::<_, Errno>(s.remote.call(s.remote.sftp.readlink(s.path(ino)?)).await?)
            };
            answer!(reply, result.await, |name| match name.files.first() {
                Some(f) => reply.data(f.filename.as_bytes()),
                None => reply.error(Errno::EIO),
            })
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let path = self.share.child(parent, name);
        self.spawn(|s| async move {
            let result = async {
                let path = path?;
                let attrs = FileAttributes {
                    permissions: Some(mode & !umask & 0o7777),
                    ..Default::default()
                };
                s.remote
                    .call(s.remote.sftp.mkdir(path.as_str(), attrs))
                    .await?;
                s.entry(&path).await
            };
            answer!(reply, result.await, |a| reply.entry(
                &s.ttl,
                &a,
                Generation(0)
            ))
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let path = self.share.child(parent, link_name);
        let target = target.to_str().map(str::to_string).ok_or(Errno::EINVAL);
        self.spawn(|s| async move {
            let result = async {
                let path = path?;
                s.remote
                    .call(s.remote.sftp.symlink(path.as_str(), target?))
                    .await?;
                s.entry(&path).await
            };
            answer!(reply, result.await, |a| reply.entry(
                &s.ttl,
                &a,
                Generation(0)
            ))
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_NOREPLACE and RENAME_EXCHANGE have no SFTP request: refused, as by file systems without them.
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let from = self.share.child(parent, name);
        let to = self.share.child(newparent, newname);
        self.spawn(|s| async move {
            let result = async {
                let (from, to) = (from?, to?);
                s.remote
                    .call(s.remote.sftp.rename(from.as_str(), to.as_str()))
                    .await?;
                lock(&s.inodes).rename(&from, &to);
                Ok(())
            };
            answer!(reply, result.await, |_v| reply.ok())
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(|s| async move {
            let result = async { s.open(&s.path(ino)?, sftp_flags(flags.0), None).await };
            answer!(reply, result.await, |fh| reply
                .opened(fh, FopenFlags::empty()))
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(|s| async move {
            answer!(reply, s.read(fh, offset, size).await, |d| reply.data(&d))
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(|s| async move {
            let len = data.len() as u32;
            let result = async {
                Ok::<_, Errno>(
                    s.remote
                        .call(s.remote.sftp.write(s.handle(fh)?, offset, data))
                        .await?,
                )
            };
            answer!(reply, result.await, |_v| reply.written(len))
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes went to the laptop when they were made: nothing is buffered here.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let handle = lock(&self.share.files).remove(&fh.0);
        self.spawn(|s| async move {
            if let Some(handle) = handle {
                let _ = s.remote.call(s.remote.sftp.close(handle)).await;
            }
            reply.ok();
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(|s| async move {
            let result =
                async { Ok::<_, Errno>(s.remote.call(s.remote.sftp.fsync(s.handle(fh)?)).await?) };
            match result.await {
                Ok(_) | Err(Errno::ENOSYS) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        // SFTP v3 has no extended attributes; ENOSYS makes the kernel stop asking.
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The laptop decides on each request; ENOSYS makes the kernel stop asking (and allow).
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(|s| async move {
            let result = async { s.list(&s.path(ino)?).await };
            answer!(reply, result.await, |entries| {
                let fh = s.next_fh.fetch_add(1, Ordering::Relaxed);
                lock(&s.dirs).insert(fh, entries);
                reply.opened(FileHandle(fh), FopenFlags::empty())
            })
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Ok(dir) = self.share.path(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let dirs = lock(&self.share.dirs);
        let Some(entries) = dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let inodes = lock(&self.share.inodes);
        for (i, (name, kind)) in entries.iter().enumerate().skip(offset as usize) {
            // A listing is not a lookup: an entry the kernel has not looked up gets a number outside the table's.
            let ino = inodes
                .peek(&child(&dir, name))
                .unwrap_or(u64::MAX - i as u64);
            if reply.add(INodeNo(ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.share.dirs).remove(&fh.0);
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let path = self.share.child(parent, name);
        self.spawn(|s| async move {
            let result = async {
                let path = path?;
                let fh = s
                    .open(
                        &path,
                        sftp_flags(flags) | SftpOpen::CREATE,
                        Some(mode & !umask & 0o7777),
                    )
                    .await?;
                Ok::<_, Errno>((s.entry(&path).await?, fh))
            };
            answer!(reply, result.await, |v| reply.created(
                &s.ttl,
                &v.0,
                Generation(0),
                v.1,
                FopenFlags::empty()
            ))
        });
    }
}

impl ShareFs {
    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let path = self.share.child(parent, name);
        self.spawn(|s| async move {
            let result = async {
                let path = path?;
                if dir {
                    s.remote.call(s.remote.sftp.rmdir(path.as_str())).await?;
                } else {
                    s.remote.call(s.remote.sftp.remove(path.as_str())).await?;
                }
                lock(&s.inodes).unlink(&path);
                Ok(())
            };
            answer!(reply, result.await, |_v| reply.ok())
        });
    }
}
