//! The lazy share's FUSE file system: every operation becomes SFTP requests to the laptop (see `remote`), on a
//! task of the tokio runtime, so one FUSE thread serves many requests at once and a slow one blocks no other.
//!
//! Consistency, in the kernel's terms: entries (name → inode) and attributes are cached for `ttl` (1 s by
//! default); a directory listing is never cached (every `opendir` asks the laptop); file data is cached only while
//! a file is open (no `FOPEN_KEEP_CACHE`: each `open` drops the pages), and writes go through at once (no
//! write-back cache). The mount is fresh for each run, so nothing the laptop held before the run can be stale.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, KernelConfig, OpenFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request,
    TimeOrNow,
};
use russh_sftp::protocol::{FileAttributes, OpenFlags as SftpOpen};
use tokio_util::task::TaskTracker;

use super::inode::child;
use super::share::{Change, MAX_IO, Share, file_attr, lock, sftp_flags};

/// The FUSE file system: hands each request to a task on `rt`, tracked by `tasks`.
pub(crate) struct ShareFs {
    share: Arc<Share>,
    rt: tokio::runtime::Handle,
    tasks: TaskTracker,
    destroyed: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
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

/// The permissions a new file or directory gets: the requested `mode` less the caller's `umask`, as the kernel
/// applies them to a local file.
fn creation_mode(mode: u32, umask: u32) -> u32 {
    mode & !umask & 0o7777
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
                    permissions: Some(creation_mode(mode, umask)),
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
                        Some(creation_mode(mode, umask)),
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
