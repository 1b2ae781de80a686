//! The interim way jobs see the user's files: the working directory, packed once as a tar archive (capped in
//! size), is unpacked into every pod at the same path when the pod joins, through an SSH channel's stdin.
//!
//! This is a stopgap until the share server: changes made by jobs do not come back, and files saved after
//! `kb parallel` started are not seen. See `docs/kubernetes.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{Error, Result};
use super::resources::AGENT_DIR;
use crate::ssh::Connection;

/// The default cap on the archive, in bytes; `KB_COPY_LIMIT` changes it.
pub const DEFAULT_COPY_LIMIT: u64 = 64 * 1024 * 1024;

/// The working directory, packed.
#[derive(Debug, Clone)]
pub struct DirArchive {
    /// The directory (absolute), which is also where it is unpacked in the pods.
    pub dir: PathBuf,
    /// The tar archive.
    pub tar: Bytes,
}

/// The cap from `KB_COPY_LIMIT`, else [`DEFAULT_COPY_LIMIT`].
pub fn copy_limit() -> u64 {
    std::env::var("KB_COPY_LIMIT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_COPY_LIMIT)
}

/// Packs `dir` (symlinks as links; sockets and devices left out), failing when the files add up to more than `cap`.
/// A cap of 0 packs nothing: the pods get an empty directory at the same path.
pub fn build_archive(dir: &Path, cap: u64) -> Result<DirArchive> {
    let io = |action: String| move |source| Error::Io { action, source };
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    if cap == 0 {
        let tar = builder
            .into_inner()
            .map_err(io("finish an empty archive".into()))?;
        return Ok(DirArchive {
            dir: dir.to_path_buf(),
            tar: Bytes::from(tar),
        });
    }
    let mut size = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let full = dir.join(&relative);
        let entries = std::fs::read_dir(&full)
            .map_err(io(format!("read the directory `{}`", full.display())))?;
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let rel = relative.join(&name);
            let path = dir.join(&rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
                continue;
            }
            size += if kind.is_file() { meta.len() } else { 512 };
            if size > cap {
                return Err(Error::DirTooLarge {
                    dir: dir.display().to_string(),
                    size,
                    cap,
                });
            }
            builder
                .append_path_with_name(&path, &rel)
                .map_err(io(format!("pack `{}`", path.display())))?;
            if kind.is_dir() {
                stack.push(rel);
            }
        }
    }
    let tar = builder
        .into_inner()
        .map_err(io("finish the archive of the working directory".into()))?;
    Ok(DirArchive {
        dir: dir.to_path_buf(),
        tar: Bytes::from(tar),
    })
}

/// The remote command that unpacks stdin into `dir`: the image's `tar` when it has one, else the static busybox
/// the init container brought.
pub fn build_unpack_command(dir: &str) -> String {
    let dir = crate::template::quote(dir);
    let busybox = format!("{AGENT_DIR}/busybox");
    format!(
        "if command -v tar >/dev/null 2>&1; then mkdir -p {dir} && exec tar -xf - -C {dir}; \
         else {busybox} mkdir -p {dir} && exec {busybox} tar -xf - -C {dir}; fi"
    )
}

/// Unpacks `archive` on the other end of `conn`, at the same path.
pub async fn send_archive(conn: &Connection, archive: Arc<DirArchive>) -> Result<()> {
    let dir = archive.dir.display().to_string();
    let failed = |reason: String| Error::Io {
        action: format!(
            "copy the working directory `{dir}` into pod `{}`",
            conn.label()
        ),
        source: std::io::Error::other(reason),
    };
    let (code, out, err) = conn
        .run_collect(&build_unpack_command(&dir), &archive.tar[..])
        .await
        .map_err(failed)?;
    match code {
        0 => Ok(()),
        code => Err(failed(format!(
            "tar exited with {code}: {}{}",
            String::from_utf8_lossy(&err).trim(),
            String::from_utf8_lossy(&out).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_files_dirs_and_links_under_their_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), "x\n").unwrap();
        std::os::unix::fs::symlink("a.txt", dir.path().join("link")).unwrap();
        let archive = build_archive(dir.path(), 1 << 20).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&archive.tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["a.txt", "link", "sub", "sub/b.txt"]);
    }

    #[test]
    fn refuses_a_directory_above_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 4096]).unwrap();
        let err = build_archive(dir.path(), 1000).unwrap_err();
        assert!(
            err.to_string().contains("more than the 1000 bytes"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("KB_COPY_LIMIT"));
        let empty = build_archive(dir.path(), 0).unwrap();
        assert_eq!(
            tar::Archive::new(&empty.tar[..]).entries().unwrap().count(),
            0
        );
    }

    #[test]
    fn unpack_command_quotes_the_path() {
        let cmd = build_unpack_command("/home/a b");
        assert!(cmd.contains("-C '/home/a b'"), "{cmd}");
        assert!(cmd.contains("/kb/busybox tar"), "{cmd}");
    }
}
