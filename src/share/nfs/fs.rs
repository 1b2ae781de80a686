//! The NFS file system (nfsserve's `NFSFileSystem`) over every task's lazy share: the export root `/kb` is an empty
//! directory in which only `<task>-<token>` can be looked up; below it, every request becomes SFTP requests to the
//! task's client through its relay. Nothing is cached beyond a request but the open handles of `task` (each GETATTR
//! and each READDIR asks the laptop), so what the laptop wrote before a request is what the request sees.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use nfsserve::nfs::{
    FSF_CANSETTIME, FSF_HOMOGENEOUS, FSF_SYMLINK, fattr3, fileid3, filename3, fsinfo3, nfs_fh3,
    nfspath3, nfsstat3, nfstime3, post_op_attr, sattr3,
};
use nfsserve::vfs::{DirEntry, NFSFileSystem, ReadDirResult, VFSCapabilities};
use russh_sftp::protocol::{FileAttributes, OpenFlags};

use super::attr::{changes, failure, fattr, root_fattr};
use super::handle::{self, ROOT_SLOT};
use super::registry::Registry;
use super::task::{Session, TaskShare};
use crate::share::lazy::inode::{self, child};
use crate::share::lazy::share::lock;
use crate::share::store::Store;

/// The file id of the export root `/kb`.
pub(crate) const ROOT_ID: u64 = 1;
/// The largest READ or WRITE the server asks clients for: one SFTP read or write (kb's SFTP server answers up to
/// 255 KiB at once, so a shorter answer is the end of the file).
pub(crate) const IO_SIZE: u32 = 128 * 1024;
/// The mode of files and directories created without one.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// The NFS file system; cheap to clone (each listener takes one).
#[derive(Clone)]
pub struct NfsShare {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    deadline: Duration,
}

impl NfsShare {
    /// The file system over the tasks of `store`, each SFTP request with `deadline`.
    pub fn new(store: Store, deadline: Duration) -> NfsShare {
        NfsShare {
            inner: Arc::new(Inner {
                registry: Registry::new(store),
                deadline,
            }),
        }
    }

    /// Closes the SFTP handles no request used for a few seconds.
    pub(crate) async fn close_idle(&self) {
        for task in self.inner.registry.all() {
            task.close_idle(false).await;
        }
    }

    fn task(&self, slot: u16) -> Result<Arc<TaskShare>, nfsstat3> {
        self.inner.registry.task(slot)
    }

    /// The task and the path of a file id below the root.
    fn locate(&self, id: fileid3) -> Result<(Arc<TaskShare>, u64, String), nfsstat3> {
        let (slot, ino) = handle::split_id(id);
        if slot == ROOT_SLOT {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let task = self.task(slot)?;
        let path = task.path(ino)?;
        Ok((task, ino, path))
    }

    async fn session(&self, task: &TaskShare) -> Result<Arc<Session>, nfsstat3> {
        task.session(self.inner.registry.store(), self.inner.deadline)
            .await
    }

    async fn lstat(&self, s: &Session, path: &str) -> Result<FileAttributes, nfsstat3> {
        Ok(s.remote
            .call(s.remote.sftp.lstat(path))
            .await
            .map_err(failure)?
            .attrs)
    }

    /// Looks `path` up on the laptop: its file id and attributes.
    async fn entry(
        &self,
        task: &TaskShare,
        s: &Session,
        path: &str,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let attrs = self.lstat(s, path).await?;
        let id = handle::file_id(task.slot, lock(&task.inodes).lookup(path));
        Ok((id, fattr(id, u64::from(task.slot), &attrs)))
    }

    /// The task, its session and the path of `name` in directory `dirid` (never `.` or `..`, which have no path).
    async fn child_of(
        &self,
        dirid: fileid3,
        name: &filename3,
    ) -> Result<(Arc<TaskShare>, Arc<Session>, String), nfsstat3> {
        let name = name_str(name)?;
        if name == "." || name == ".." {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        let (task, _, dir) = self.locate(dirid)?;
        let session = self.session(&task).await?;
        Ok((task.clone(), session, child(&dir, name)))
    }
}

/// A name as SFTP v3 can carry it: UTF-8, one component.
fn name_str(name: &filename3) -> Result<&str, nfsstat3> {
    let name = std::str::from_utf8(&name.0).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(nfsstat3::NFS3ERR_INVAL);
    }
    Ok(name)
}

/// The parent of a share path (`/` for `/` itself).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[async_trait]
impl NFSFileSystem for NfsShare {
    fn capabilities(&self) -> VFSCapabilities {
        VFSCapabilities::ReadWrite
    }

    fn root_dir(&self) -> fileid3 {
        ROOT_ID
    }

    async fn lookup(&self, dirid: fileid3, filename: &filename3) -> Result<fileid3, nfsstat3> {
        let name = name_str(filename)?;
        if dirid == ROOT_ID {
            if name == "." || name == ".." {
                return Ok(ROOT_ID);
            }
            let share = self.inner.registry.share_named(name)?;
            return Ok(handle::file_id(share.slot, inode::ROOT));
        }
        let (task, ino, dir) = self.locate(dirid)?;
        let path = match name {
            "." => return Ok(dirid),
            // The share's root is its own parent: nothing above it is reachable from a task's handle.
            ".." if ino == inode::ROOT => return Ok(dirid),
            ".." => parent(&dir).to_string(),
            _ => child(&dir, name),
        };
        let session = self.session(&task).await?;
        Ok(self.entry(&task, &session, &path).await?.0)
    }

    async fn getattr(&self, id: fileid3) -> Result<fattr3, nfsstat3> {
        if id == ROOT_ID {
            return Ok(root_fattr(ROOT_ID));
        }
        let (task, _, path) = self.locate(id)?;
        let session = self.session(&task).await?;
        let attrs = self.lstat(&session, &path).await?;
        Ok(fattr(id, u64::from(task.slot), &attrs))
    }

    async fn setattr(&self, id: fileid3, setattr: sattr3) -> Result<fattr3, nfsstat3> {
        let (task, _, path) = self.locate(id)?;
        let session = self.session(&task).await?;
        let change = changes(&setattr, SystemTime::now());
        session
            .remote
            .set_attrs(&path, None, change)
            .await
            .map_err(failure)?;
        let attrs = self.lstat(&session, &path).await?;
        Ok(fattr(id, u64::from(task.slot), &attrs))
    }

    async fn read(
        &self,
        id: fileid3,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), nfsstat3> {
        let (task, ino, path) = self.locate(id)?;
        let session = self.session(&task).await?;
        let handle = session.handle(ino, &path, false).await?;
        let mut out = Vec::with_capacity(count.min(IO_SIZE) as usize);
        let mut eof = false;
        while out.len() < count as usize {
            let want = (count as usize - out.len()).min(IO_SIZE as usize) as u32;
            let at = offset + out.len() as u64;
            match session
                .remote
                .call(session.remote.sftp.read(handle.as_str(), at, want))
                .await
            {
                Ok(data) => {
                    let short = data.data.len() < want as usize;
                    out.extend_from_slice(&data.data);
                    if short {
                        eof = true;
                        break;
                    }
                }
                Err(crate::share::lazy::remote::Failure::Eof) => {
                    eof = true;
                    break;
                }
                Err(f) => return Err(failure(f)),
            }
        }
        Ok((out, eof))
    }

    async fn write(&self, id: fileid3, offset: u64, data: &[u8]) -> Result<fattr3, nfsstat3> {
        let (task, ino, path) = self.locate(id)?;
        let session = self.session(&task).await?;
        let handle = session.handle(ino, &path, true).await?;
        session
            .remote
            .call(
                session
                    .remote
                    .sftp
                    .write(handle.as_str(), offset, data.to_vec()),
            )
            .await
            .map_err(failure)?;
        let attrs = self.lstat(&session, &path).await?;
        Ok(fattr(id, u64::from(task.slot), &attrs))
    }

    async fn create(
        &self,
        dirid: fileid3,
        filename: &filename3,
        attr: sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (task, session, path) = self.child_of(dirid, filename).await?;
        let mut change = changes(&attr, SystemTime::now());
        let mode = change.mode.take().unwrap_or(FILE_MODE) & 0o7777;
        let flags = OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE;
        let handle = session.open(&path, flags, Some(mode)).await?;
        let (id, _) = self.entry(&task, &session, &path).await?;
        session
            .keep(handle::split_id(id).1, handle, true, true)
            .await;
        if change != Default::default() {
            session
                .remote
                .set_attrs(&path, None, change)
                .await
                .map_err(failure)?;
        }
        self.entry(&task, &session, &path).await
    }

    async fn create_exclusive(
        &self,
        dirid: fileid3,
        filename: &filename3,
    ) -> Result<fileid3, nfsstat3> {
        let (task, session, path) = self.child_of(dirid, filename).await?;
        let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::READ | OpenFlags::WRITE;
        let handle = session.open(&path, flags, Some(FILE_MODE)).await?;
        let (id, _) = self.entry(&task, &session, &path).await?;
        session
            .keep(handle::split_id(id).1, handle, true, true)
            .await;
        Ok(id)
    }

    async fn mkdir(
        &self,
        dirid: fileid3,
        dirname: &filename3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (task, session, path) = self.child_of(dirid, dirname).await?;
        let attrs = FileAttributes {
            permissions: Some(DIR_MODE),
            ..FileAttributes::default()
        };
        session
            .remote
            .call(session.remote.sftp.mkdir(path.as_str(), attrs))
            .await
            .map_err(failure)?;
        self.entry(&task, &session, &path).await
    }

    async fn remove(&self, dirid: fileid3, filename: &filename3) -> Result<(), nfsstat3> {
        // nfsserve sends REMOVE and RMDIR here alike: what the name is decides.
        let (task, session, path) = self.child_of(dirid, filename).await?;
        let attrs = self.lstat(&session, &path).await?;
        let known = lock(&task.inodes).peek(&path);
        if let Some(ino) = known {
            session.forget(ino).await;
        }
        let r = &session.remote;
        if attrs.permissions.unwrap_or(0) & libc::S_IFMT == libc::S_IFDIR {
            r.call(r.sftp.rmdir(path.as_str())).await.map_err(failure)?;
        } else {
            r.call(r.sftp.remove(path.as_str()))
                .await
                .map_err(failure)?;
        }
        lock(&task.inodes).unlink(&path);
        Ok(())
    }

    async fn rename(
        &self,
        from_dirid: fileid3,
        from_filename: &filename3,
        to_dirid: fileid3,
        to_filename: &filename3,
    ) -> Result<(), nfsstat3> {
        let (task, session, from) = self.child_of(from_dirid, from_filename).await?;
        let (to_task, _, to) = self.child_of(to_dirid, to_filename).await?;
        if to_task.slot != task.slot {
            return Err(nfsstat3::NFS3ERR_XDEV);
        }
        session
            .remote
            .call(session.remote.sftp.rename(from.as_str(), to.as_str()))
            .await
            .map_err(failure)?;
        lock(&task.inodes).rename(&from, &to);
        Ok(())
    }

    async fn readdir(
        &self,
        dirid: fileid3,
        start_after: fileid3,
        max_entries: usize,
    ) -> Result<ReadDirResult, nfsstat3> {
        if dirid == ROOT_ID {
            // The root lists nothing: a task's share is found by its secret name only.
            return Ok(ReadDirResult {
                entries: Vec::new(),
                end: true,
            });
        }
        let (task, _, dir) = self.locate(dirid)?;
        let session = self.session(&task).await?;
        let mut listing = list(&session, &dir).await?;
        // Names in order, so a page can start after a name even when the laptop removed it meanwhile.
        listing.sort_by(|a, b| a.0.cmp(&b.0));
        let after = if start_after == 0 {
            None
        } else {
            let (slot, ino) = handle::split_id(start_after);
            let path = (slot == task.slot).then(|| task.path(ino).ok()).flatten();
            let path = path.ok_or(nfsstat3::NFS3ERR_BAD_COOKIE)?;
            Some(path.rsplit('/').next().unwrap_or_default().to_string())
        };
        let mut entries = Vec::new();
        let mut end = true;
        for (name, attrs) in listing {
            if after
                .as_ref()
                .is_some_and(|after| name.as_str() <= after.as_str())
            {
                continue;
            }
            if entries.len() >= max_entries {
                end = false;
                break;
            }
            let id = handle::file_id(task.slot, lock(&task.inodes).lookup(&child(&dir, &name)));
            entries.push(DirEntry {
                fileid: id,
                attr: fattr(id, u64::from(task.slot), &attrs),
                name: name.into_bytes().into(),
            });
        }
        Ok(ReadDirResult { entries, end })
    }

    async fn symlink(
        &self,
        dirid: fileid3,
        linkname: &filename3,
        symlink: &nfspath3,
        _attr: &sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (task, session, path) = self.child_of(dirid, linkname).await?;
        let target = std::str::from_utf8(&symlink.0).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
        session
            .remote
            .call(session.remote.sftp.symlink(path.as_str(), target))
            .await
            .map_err(failure)?;
        self.entry(&task, &session, &path).await
    }

    async fn readlink(&self, id: fileid3) -> Result<nfspath3, nfsstat3> {
        let (task, _, path) = self.locate(id)?;
        let session = self.session(&task).await?;
        let name = session
            .remote
            .call(session.remote.sftp.readlink(path.as_str()))
            .await
            .map_err(failure)?;
        let target = name.files.into_iter().next().ok_or(nfsstat3::NFS3ERR_IO)?;
        Ok(target.filename.into_bytes().into())
    }

    async fn fsinfo(&self, root_fileid: fileid3) -> Result<fsinfo3, nfsstat3> {
        // No request to the laptop (whose stall would cost a deadline before the first real request), and never
        // an error: nfsserve's FSINFO failure reply lacks its attributes, which clients cannot decode.
        let attrs = if root_fileid == ROOT_ID {
            post_op_attr::attributes(root_fattr(ROOT_ID))
        } else {
            post_op_attr::Void
        };
        Ok(fsinfo3 {
            obj_attributes: attrs,
            rtmax: IO_SIZE,
            rtpref: IO_SIZE,
            rtmult: 4096,
            wtmax: IO_SIZE,
            wtpref: IO_SIZE,
            wtmult: 4096,
            dtpref: 64 * 1024,
            maxfilesize: u64::MAX >> 1,
            // SFTP v3's times are whole seconds.
            time_delta: nfstime3 {
                seconds: 1,
                nseconds: 0,
            },
            properties: FSF_SYMLINK | FSF_HOMOGENEOUS | FSF_CANSETTIME,
        })
    }

    fn id_to_fh(&self, id: fileid3) -> nfs_fh3 {
        nfs_fh3 {
            data: self.inner.registry.handle(id),
        }
    }

    fn fh_to_id(&self, fh: &nfs_fh3) -> Result<fileid3, nfsstat3> {
        self.inner.registry.file_id(&fh.data)
    }
}

/// The entries of directory `path` on the laptop, without `.` and `..`.
async fn list(s: &Session, path: &str) -> Result<Vec<(String, FileAttributes)>, nfsstat3> {
    let r = &s.remote;
    let handle = r.call(r.sftp.opendir(path)).await.map_err(failure)?.handle;
    let mut entries = Vec::new();
    let result = loop {
        match r.call(r.sftp.readdir(handle.as_str())).await {
            Ok(name) => entries.extend(
                name.files
                    .into_iter()
                    .filter(|f| f.filename != "." && f.filename != "..")
                    .map(|f| (f.filename, f.attrs)),
            ),
            Err(crate::share::lazy::remote::Failure::Eof) => break Ok(entries),
            Err(f) => break Err(failure(f)),
        }
    };
    let _ = r.call(r.sftp.close(handle)).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parents() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert!(name_str(&b"ok.txt"[..].into()).is_ok());
        assert!(name_str(&b"a/b"[..].into()).is_err());
        assert!(name_str(&b""[..].into()).is_err());
        assert!(name_str(&b"\xff"[..].into()).is_err());
    }

    /// The root lists nothing, finds nothing but a kept token's name, and hands out handles only for what it knows.
    #[tokio::test]
    async fn the_root_reveals_nothing_and_handles_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let token = store.allow_nfs("t1").unwrap();
        let other = store.allow_nfs("t2").unwrap();
        let fs = NfsShare::new(store, Duration::from_secs(1));
        let listing = fs.readdir(ROOT_ID, 0, 100).await.unwrap();
        assert!(listing.entries.is_empty() && listing.end);
        let name = |s: String| -> filename3 { s.into_bytes().into() };
        let id = fs
            .lookup(ROOT_ID, &name(format!("t1-{token}")))
            .await
            .unwrap();
        assert_eq!(handle::split_id(id), (1, inode::ROOT));
        assert!(
            fs.lookup(ROOT_ID, &name(format!("t1-{other}")))
                .await
                .is_err(),
            "another task's token"
        );
        assert!(fs.lookup(ROOT_ID, &name("t1".into())).await.is_err());
        assert!(
            fs.lookup(ROOT_ID, &name(format!("t3-{token}")))
                .await
                .is_err()
        );
        let fh = fs.id_to_fh(id);
        assert_eq!(fs.fh_to_id(&fh).unwrap(), id);
        assert_eq!(fs.fh_to_id(&fs.id_to_fh(ROOT_ID)).unwrap(), ROOT_ID);
        // Task t2's handle for t1's root (same slot number, t2's key) is refused.
        let t2 = fs
            .lookup(ROOT_ID, &name(format!("t2-{other}")))
            .await
            .unwrap();
        let forged = handle::encode(
            fs.inner.registry.generation(),
            id,
            &handle::key(other.as_bytes()),
        );
        assert!(fs.fh_to_id(&nfs_fh3 { data: forged }).is_err());
        assert_ne!(t2, id);
        // No client: the task's requests fail with an I/O error, at once.
        let start = std::time::Instant::now();
        assert!(matches!(fs.getattr(id).await, Err(nfsstat3::NFS3ERR_IO)));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
