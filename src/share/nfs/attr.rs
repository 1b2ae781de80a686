//! Translations between SFTP's and kb's terms and NFSv3's: errnos to `nfsstat3`, SFTP attributes to `fattr3`, and
//! `sattr3` to the changes the laptop applies. Pure: no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nfsserve::nfs::{
    fattr3, ftype3, nfsstat3, nfstime3, sattr3, set_atime, set_mode3, set_mtime, set_size3,
};
use russh_sftp::protocol::FileAttributes;

use crate::share::lazy::remote::{Failure, SetAttrs};

/// The NFS status of an errno (what the laptop's file system said, or EIO when the share is lost).
pub(crate) fn status(errno: i32) -> nfsstat3 {
    match errno {
        libc::EPERM => nfsstat3::NFS3ERR_PERM,
        libc::ENOENT => nfsstat3::NFS3ERR_NOENT,
        libc::ENXIO => nfsstat3::NFS3ERR_NXIO,
        libc::EACCES => nfsstat3::NFS3ERR_ACCES,
        libc::EEXIST => nfsstat3::NFS3ERR_EXIST,
        libc::EXDEV => nfsstat3::NFS3ERR_XDEV,
        libc::ENODEV => nfsstat3::NFS3ERR_NODEV,
        libc::ENOTDIR => nfsstat3::NFS3ERR_NOTDIR,
        libc::EISDIR => nfsstat3::NFS3ERR_ISDIR,
        libc::EINVAL => nfsstat3::NFS3ERR_INVAL,
        libc::EFBIG => nfsstat3::NFS3ERR_FBIG,
        libc::ENOSPC => nfsstat3::NFS3ERR_NOSPC,
        libc::EROFS => nfsstat3::NFS3ERR_ROFS,
        libc::EMLINK => nfsstat3::NFS3ERR_MLINK,
        libc::ENAMETOOLONG => nfsstat3::NFS3ERR_NAMETOOLONG,
        libc::ENOTEMPTY => nfsstat3::NFS3ERR_NOTEMPTY,
        libc::EDQUOT => nfsstat3::NFS3ERR_DQUOT,
        libc::ESTALE => nfsstat3::NFS3ERR_STALE,
        libc::ENOSYS | libc::EOPNOTSUPP => nfsstat3::NFS3ERR_NOTSUPP,
        _ => nfsstat3::NFS3ERR_IO,
    }
}

/// The NFS status of a failed SFTP request (an end of file where none was expected is an I/O error).
pub(crate) fn failure(f: Failure) -> nfsstat3 {
    match f {
        Failure::Errno(e) => status(e.code()),
        Failure::Eof => nfsstat3::NFS3ERR_IO,
    }
}

fn time(secs: Option<u32>) -> nfstime3 {
    nfstime3 {
        seconds: secs.unwrap_or(0),
        nseconds: 0,
    }
}

/// The NFS attributes of file `fileid` (of file system `fsid`) from its SFTP attributes.
pub(crate) fn fattr(fileid: u64, fsid: u64, a: &FileAttributes) -> fattr3 {
    let mode = a.permissions.unwrap_or(0);
    let ftype = match mode & libc::S_IFMT {
        libc::S_IFDIR => ftype3::NF3DIR,
        libc::S_IFLNK => ftype3::NF3LNK,
        libc::S_IFIFO => ftype3::NF3FIFO,
        libc::S_IFSOCK => ftype3::NF3SOCK,
        libc::S_IFCHR => ftype3::NF3CHR,
        libc::S_IFBLK => ftype3::NF3BLK,
        _ => ftype3::NF3REG,
    };
    let size = a.size.unwrap_or(0);
    fattr3 {
        nlink: if matches!(ftype, ftype3::NF3DIR) {
            2
        } else {
            1
        },
        ftype,
        mode: mode & 0o7777,
        uid: a.uid.unwrap_or(0),
        gid: a.gid.unwrap_or(0),
        size,
        used: size,
        fsid,
        fileid,
        atime: time(a.atime),
        mtime: time(a.mtime),
        // SFTP v3 has no change time; the modification time is the nearest.
        ctime: time(a.mtime),
        ..fattr3::default()
    }
}

/// The attributes of the export root `/kb`: an empty directory nobody may change.
pub(crate) fn root_fattr(fileid: u64) -> fattr3 {
    fattr3 {
        ftype: ftype3::NF3DIR,
        mode: 0o555,
        nlink: 2,
        fileid,
        ..fattr3::default()
    }
}

/// The changes an NFS `sattr3` asks for (owner changes are ignored, as on the FUSE side); `now` is the server's
/// time for `SET_TO_SERVER_TIME`.
pub(crate) fn changes(s: &sattr3, now: SystemTime) -> SetAttrs {
    let at =
        |t: nfstime3| UNIX_EPOCH + Duration::new(u64::from(t.seconds), t.nseconds.min(999_999_999));
    SetAttrs {
        mode: match s.mode {
            set_mode3::mode(m) => Some(m),
            set_mode3::Void => None,
        },
        size: match s.size {
            set_size3::size(n) => Some(n),
            set_size3::Void => None,
        },
        atime: match s.atime {
            set_atime::DONT_CHANGE => None,
            set_atime::SET_TO_SERVER_TIME => Some(now),
            set_atime::SET_TO_CLIENT_TIME(t) => Some(at(t)),
        },
        mtime: match s.mtime {
            set_mtime::DONT_CHANGE => None,
            set_mtime::SET_TO_SERVER_TIME => Some(now),
            set_mtime::SET_TO_CLIENT_TIME(t) => Some(at(t)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuser::Errno;
    use nfsserve::nfs::{set_gid3, set_uid3};

    #[test]
    fn errnos_become_their_nfs_status_and_a_lost_share_is_an_io_error() {
        assert!(matches!(status(libc::ENOENT), nfsstat3::NFS3ERR_NOENT));
        assert!(matches!(
            status(libc::ENOTEMPTY),
            nfsstat3::NFS3ERR_NOTEMPTY
        ));
        assert!(matches!(status(libc::EEXIST), nfsstat3::NFS3ERR_EXIST));
        assert!(matches!(status(libc::EACCES), nfsstat3::NFS3ERR_ACCES));
        assert!(matches!(status(libc::EISDIR), nfsstat3::NFS3ERR_ISDIR));
        assert!(matches!(status(libc::ENOSYS), nfsstat3::NFS3ERR_NOTSUPP));
        assert!(matches!(status(libc::EIO), nfsstat3::NFS3ERR_IO));
        assert!(
            matches!(status(libc::ELOOP), nfsstat3::NFS3ERR_IO),
            "no NFS status: I/O error"
        );
        assert!(matches!(
            failure(Failure::Errno(Errno::EIO)),
            nfsstat3::NFS3ERR_IO
        ));
        assert!(matches!(failure(Failure::Eof), nfsstat3::NFS3ERR_IO));
        assert!(matches!(
            failure(Failure::Errno(Errno::from_i32(libc::ENOTDIR))),
            nfsstat3::NFS3ERR_NOTDIR
        ));
    }

    #[test]
    fn sftp_attributes_become_nfs_attributes() {
        let a = FileAttributes {
            size: Some(1000),
            uid: Some(1000),
            gid: Some(100),
            permissions: Some(libc::S_IFDIR | 0o750),
            atime: Some(5),
            mtime: Some(7),
            ..FileAttributes::default()
        };
        let f = fattr(9, 3, &a);
        assert!(matches!(f.ftype, ftype3::NF3DIR));
        assert_eq!((f.mode, f.nlink, f.uid, f.gid), (0o750, 2, 1000, 100));
        assert_eq!((f.size, f.fileid, f.fsid), (1000, 9, 3));
        assert_eq!(
            (f.atime.seconds, f.mtime.seconds, f.ctime.seconds),
            (5, 7, 7)
        );
        let link = FileAttributes {
            permissions: Some(libc::S_IFLNK | 0o777),
            ..FileAttributes::default()
        };
        assert!(matches!(fattr(1, 1, &link).ftype, ftype3::NF3LNK));
        let file = FileAttributes {
            permissions: Some(libc::S_IFREG | 0o644),
            ..FileAttributes::default()
        };
        assert!(matches!(fattr(1, 1, &file).ftype, ftype3::NF3REG));
        assert_eq!(root_fattr(1).mode, 0o555);
    }

    #[test]
    fn sattr_becomes_the_changes_and_owners_are_ignored() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let s = sattr3 {
            mode: set_mode3::mode(0o600),
            uid: set_uid3::uid(0),
            gid: set_gid3::gid(0),
            size: set_size3::size(0),
            atime: set_atime::SET_TO_SERVER_TIME,
            mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
                seconds: 50,
                nseconds: 0,
            }),
        };
        let c = changes(&s, now);
        assert_eq!(c.mode, Some(0o600));
        assert_eq!(c.size, Some(0));
        assert_eq!(c.atime, Some(now));
        assert_eq!(c.mtime, Some(UNIX_EPOCH + Duration::from_secs(50)));
        assert_eq!(changes(&sattr3::default(), now), SetAttrs::default());
    }
}
