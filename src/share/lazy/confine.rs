//! Confinement of the SFTP server to its root: every path a client sends is resolved beneath the root directory,
//! and nothing (an absolute path, `..`, a symbolic link, a rename racing the server) may lead outside it.
//!
//! Two layers. [`relative`] normalises the client's path lexically (`/a/./b/../c` → `a/c`) and refuses a `..` that
//! would climb above the root. Then every file system call goes through a descriptor opened with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` from the root's descriptor, so the kernel itself refuses a symbolic
//! link (relative or absolute) that leads out, atomically, with no check-then-use window. Operations on a name
//! that must not follow it (`lstat`, `remove`, `rename`, `symlink`, `readlink`, `mkdir`, `rmdir`) open the parent
//! that way and act on the last component with the `*at` calls. Both refusals are reported as permission denied.
//! This module does not decide what an SFTP request means; `server` does.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// The message of every refusal; the errno is EACCES so that the SFTP status is "permission denied".
const ESCAPE: &str = "path leads outside the share's root";

/// The error for a path that would leave the root.
pub(crate) fn escape() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, ESCAPE)
}

/// The client's path relative to the root, normalised lexically: absolute and relative paths both start at the
/// root, `.` and empty components are dropped, `..` removes the previous component, and a `..` at the root is
/// refused. The empty path is the root itself. A NUL byte is refused (it cannot reach a system call).
pub(crate) fn relative(path: &str) -> io::Result<PathBuf> {
    if path.contains('\0') {
        return Err(escape());
    }
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(escape());
                }
            }
            Component::Normal(name) => out.push(name),
        }
    }
    Ok(out)
}

/// The client-visible absolute path of a relative path (`a/c` → `/a/c`, the root → `/`).
pub(crate) fn absolute(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// The root directory, held open: every lookup starts from this descriptor, so renaming or replacing the root's
/// path after the start does not move the share.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `dir` as the root.
    pub(crate) fn open(dir: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Opens `rel` (from [`relative`]) beneath the root with `flags` (and `mode` when creating), following
    /// symbolic links only while they stay beneath it.
    pub(crate) fn open_beneath(
        &self,
        rel: &Path,
        flags: OFlags,
        mode: Mode,
    ) -> io::Result<OwnedFd> {
        let path: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        rustix::fs::openat2(
            self.fd.as_fd(),
            path,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|errno| match errno {
            // RESOLVE_BENEATH reports an escape (through `..` or a symbolic link) as EXDEV.
            rustix::io::Errno::XDEV => escape(),
            other => io::Error::from(other),
        })
    }

    /// The parent directory of `rel`, opened beneath the root, and the last component, for the `*at` calls that
    /// act on a name without following it. The root itself has no parent in the share: refused.
    pub(crate) fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, OsString)> {
        let name = rel.file_name().ok_or_else(escape)?.to_os_string();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.open_beneath(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((fd, name))
    }
}

/// The path through which the kernel reaches exactly the file behind `fd` (an `O_PATH` descriptor cannot be
/// passed to `fchmod` or `futimens`): the magic link is followed by the system call itself, not resolved by name.
pub(crate) fn proc_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn relative_normalises_and_refuses_climbing_out() {
        assert_eq!(relative("/").unwrap(), PathBuf::new());
        assert_eq!(relative("").unwrap(), PathBuf::new());
        assert_eq!(relative(".").unwrap(), PathBuf::new());
        assert_eq!(relative("/a/./b//c/").unwrap(), PathBuf::from("a/b/c"));
        assert_eq!(relative("a/b/../c").unwrap(), PathBuf::from("a/c"));
        assert_eq!(relative("/a/..").unwrap(), PathBuf::new());
        for bad in [
            "..",
            "/..",
            "/../etc/passwd",
            "a/../..",
            "a/../../b",
            "./../x",
            "a\0b",
        ] {
            let err = relative(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{bad}");
        }
        assert_eq!(absolute(&relative("/a/b/../c").unwrap()), "/a/c");
        assert_eq!(absolute(Path::new("")), "/");
    }

    fn tree() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/in.txt"), "in").unwrap();
        std::fs::write(dir.path().join("secret"), "out").unwrap();
        symlink("../secret", root.join("up")).unwrap();
        symlink(dir.path().join("secret"), root.join("abs")).unwrap();
        symlink("sub/in.txt", root.join("inside")).unwrap();
        symlink("../in.txt", root.join("sub/sideways")).unwrap();
        symlink("..", root.join("sub/dotdot")).unwrap();
        symlink("/", root.join("slash")).unwrap();
        let opened = Root::open(&root).unwrap();
        (dir, opened)
    }

    fn read(root: &Root, path: &str) -> io::Result<String> {
        let fd = root.open_beneath(&relative(path)?, OFlags::RDONLY, Mode::empty())?;
        Ok(std::io::read_to_string(std::fs::File::from(fd)).unwrap())
    }

    #[test]
    fn symlinks_that_stay_inside_are_followed() {
        let (_dir, root) = tree();
        assert_eq!(read(&root, "/inside").unwrap(), "in");
        assert_eq!(read(&root, "sub/dotdot/inside").unwrap(), "in");
        assert_eq!(read(&root, "/sub/../sub/in.txt").unwrap(), "in");
    }

    #[test]
    fn symlinks_and_dotdot_that_leave_are_refused() {
        let (_dir, root) = tree();
        for path in [
            "/up",
            "/abs",
            "/slash/etc/passwd",
            "/sub/dotdot/up",
            "../secret",
            "/sub/sideways",
        ] {
            let err = read(&root, path).unwrap_err();
            // `sub/sideways` points at `in.txt` in the root, which does not exist: only that one may be ENOENT.
            if path == "/sub/sideways" {
                assert_eq!(err.kind(), io::ErrorKind::NotFound, "{path}");
            } else {
                assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{path}: {err}");
            }
        }
    }

    #[test]
    fn parent_refuses_the_root_and_escaping_parents() {
        let (_dir, root) = tree();
        assert_eq!(
            root.parent(Path::new("")).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        let (_fd, name) = root.parent(Path::new("sub/in.txt")).unwrap();
        assert_eq!(name, "in.txt");
        // A parent reached through a link that leaves the root: creating `up2` under `/slash` must not happen.
        let err = root.parent(Path::new("slash/tmp/x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }
}
