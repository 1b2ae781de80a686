//! The SFTP server's file system calls, run on the blocking pool: attributes, listings, `setstat`, and errors as
//! SFTP statuses. Every path goes through `confine`; nothing here keeps state between requests.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use russh_sftp::protocol::{File, FileAttributes, OpenFlags, Status, StatusCode};
use russh_sftp::server::StatusReply;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use super::confine::{self, Root, relative};

/// The SFTP status for an I/O error: the nearest of SFTP v3's codes, and the errno in the message.
pub(crate) fn status(err: io::Error) -> StatusReply {
    let code = match err.kind() {
        io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        io::ErrorKind::Unsupported => StatusCode::OpUnsupported,
        _ => StatusCode::Failure,
    };
    let errno = err.raw_os_error().unwrap_or(match err.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::Unsupported => libc::EOPNOTSUPP,
        _ => libc::EIO,
    });
    let text = match err.raw_os_error() {
        Some(_) => err.to_string(),
        None => format!("{err} (os error {errno})"),
    };
    StatusReply::new(code).with_message(text)
}

pub(crate) fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

/// SFTP attributes of a `stat`: the whole `st_mode` (type bits included), sizes, owner and times.
pub(crate) fn attributes(st: &rustix::fs::Stat) -> FileAttributes {
    FileAttributes {
        size: Some(st.st_size as u64),
        uid: Some(st.st_uid),
        gid: Some(st.st_gid),
        permissions: Some(st.st_mode),
        atime: Some(st.st_atime as u32),
        mtime: Some(st.st_mtime as u32),
        ..FileAttributes::default()
    }
}

pub(crate) fn utf8(name: &OsStr) -> io::Result<String> {
    name.to_str()
        .map(str::to_string)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EILSEQ))
}

pub(crate) fn lstat(root: &Root, path: &str) -> io::Result<FileAttributes> {
    let rel = relative(path)?;
    if rel.as_os_str().is_empty() {
        let fd = root.open_beneath(&rel, OFlags::PATH, Mode::empty())?;
        return Ok(attributes(&rustix::fs::fstat(fd)?));
    }
    let (dir, name) = root.parent(&rel)?;
    Ok(attributes(&rustix::fs::statat(
        dir,
        &name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// Applies the attributes SFTP can set: size (truncate), mode and times. Owner changes are ignored (the files are
/// the laptop user's; a job running as root in a pod cannot give them away).
pub(crate) fn set_attributes(
    fd: &impl AsFd,
    file: Option<&std::fs::File>,
    attrs: &FileAttributes,
) -> io::Result<()> {
    let fd = fd.as_fd();
    if let Some(size) = attrs.size {
        match file {
            Some(file) => file.set_len(size)?,
            None => {
                let writable = std::fs::OpenOptions::new()
                    .write(true)
                    .open(confine::proc_path(&fd))?;
                writable.set_len(size)?;
            }
        }
    }
    if let Some(mode) = attrs.permissions {
        std::fs::set_permissions(
            confine::proc_path(&fd),
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )?;
    }
    if attrs.atime.is_some() || attrs.mtime.is_some() {
        let time = |t: Option<u32>| Timespec {
            tv_sec: t.map_or(0, i64::from),
            tv_nsec: if t.is_some() {
                0
            } else {
                rustix::fs::UTIME_OMIT
            },
        };
        let times = Timestamps {
            last_access: time(attrs.atime),
            last_modification: time(attrs.mtime),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            confine::proc_path(&fd),
            &times,
            AtFlags::empty(),
        )?;
    }
    Ok(())
}

pub(crate) fn open_flags(pflags: OpenFlags) -> OFlags {
    let mut flags = match (
        pflags.contains(OpenFlags::READ),
        pflags.contains(OpenFlags::WRITE),
    ) {
        (_, false) => OFlags::RDONLY,
        (false, true) => OFlags::WRONLY,
        (true, true) => OFlags::RDWR,
    };
    for (sftp, posix) in [
        (OpenFlags::APPEND, OFlags::APPEND),
        (OpenFlags::CREATE, OFlags::CREATE),
        (OpenFlags::TRUNCATE, OFlags::TRUNC),
        (OpenFlags::EXCLUDE, OFlags::EXCL),
    ] {
        if pflags.contains(sftp) {
            flags |= posix;
        }
    }
    flags
}

pub(crate) fn read_dir(root: &Root, path: &str) -> io::Result<Vec<File>> {
    let fd = root.open_beneath(
        &relative(path)?,
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )?;
    let mut entries = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        // A name that is not UTF-8 cannot travel in SFTP v3's strings; it is left out of the listing.
        let Ok(text) = utf8(name) else { continue };
        match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => entries.push(File::new(text, attributes(&st))),
            // Removed between the listing and the stat: it is gone, leave it out.
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(entries)
}
