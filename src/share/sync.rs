//! Syncback on the client: applies the files a pod's jobs created or changed to the local directory, deciding by
//! content (SHA-256), never by clock:
//!
//! | local now            | pod's version                 | result                                         |
//! | -------------------- | ----------------------------- | ---------------------------------------------- |
//! | same as pod's        | -                             | nothing to do                                  |
//! | as uploaded (or absent and not uploaded) | any        | pod's version written (temporary file, rename) |
//! | changed since upload (or present but not uploaded) | any | conflict: local kept, pod's version written beside it as `NAME.kb-conflict-<task>-<pod>` |
//!
//! Nothing local is ever deleted.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::manifest::{Manifest, hash_file, hash_reader, join_inside};
use super::store::write_atomic;

/// What a syncback did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Files written or updated locally.
    pub updated: Vec<String>,
    /// Files already identical locally.
    pub unchanged: usize,
    /// Conflicts: the local path kept, and where the pod's version was written.
    pub conflicts: Vec<(String, String)>,
}

/// Applies the tar stream `changes` (from `kb share changes` in pod `pod`) to `dir`; `base` is the manifest that
/// was uploaded at the start of the run.
pub fn apply(
    changes: impl Read,
    dir: &Path,
    base: &Manifest,
    task: &str,
    pod: &str,
    report: &mut SyncReport,
) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(changes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(target) = join_inside(dir, &path) else {
            tracing::warn!("syncback: ignoring `{path}`, which leaves the directory");
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            let Some(link) = entry.link_name()?.map(|l| l.into_owned()) else {
                continue;
            };
            match std::fs::read_link(&target) {
                Ok(existing) if existing == link => report.unchanged += 1,
                Err(_) if std::fs::symlink_metadata(&target).is_err() => {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::os::unix::fs::symlink(&link, &target)?;
                    report.updated.push(path);
                }
                _ => report.conflicts.push((
                    path.clone(),
                    format!("{path} (a symlink in pod {pod}, not written)"),
                )),
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let mut content = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut content)?;
        let pod_hash = hash_reader(&content[..])?;
        let local_hash = match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_file() => Some(hash_file(&target)?),
            Ok(_) => Some(String::new()), // a directory or link where the pod has a file: never replaced
            Err(_) => None,
        };
        if local_hash.as_deref() == Some(pod_hash.as_str()) {
            report.unchanged += 1;
            continue;
        }
        if local_hash.as_deref() == base.file_hash(&path) {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_atomic(&target, &content, mode)?;
            report.updated.push(path);
        } else {
            let name = format!("{path}.kb-conflict-{task}-{pod}");
            let Some(aside) = join_inside(dir, &name) else {
                continue;
            };
            if let Some(parent) = aside.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_atomic(&aside, &content, mode)?;
            let _ = std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(mode));
            report.conflicts.push((path, name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::manifest::scan;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, content.as_bytes())
                .unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn new_and_untouched_files_come_back_and_local_edits_are_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("input.txt"), "v1").unwrap();
        std::fs::write(p.join("edited-here.txt"), "v1").unwrap();
        std::fs::write(p.join("same.txt"), "x").unwrap();
        let base = scan(p, true).unwrap();
        // During the run: the user edits one file locally; a local-only file appears where a job also writes.
        std::fs::write(p.join("edited-here.txt"), "local edit").unwrap();
        std::fs::write(p.join("local-only.txt"), "mine").unwrap();
        let changes = tar_of(&[
            ("input.txt", "job output"),
            ("edited-here.txt", "job edit"),
            ("same.txt", "x"),
            ("results/out.txt", "result"),
            ("local-only.txt", "theirs"),
        ]);
        let mut report = SyncReport::default();
        apply(&changes[..], p, &base, "t1", "pod-a", &mut report).unwrap();
        assert_eq!(report.updated, ["input.txt", "results/out.txt"]);
        assert_eq!(report.unchanged, 1);
        assert_eq!(
            report.conflicts,
            [
                (
                    "edited-here.txt".to_string(),
                    "edited-here.txt.kb-conflict-t1-pod-a".to_string()
                ),
                (
                    "local-only.txt".to_string(),
                    "local-only.txt.kb-conflict-t1-pod-a".to_string()
                )
            ]
        );
        let read = |n: &str| std::fs::read_to_string(p.join(n)).unwrap();
        assert_eq!(read("input.txt"), "job output");
        assert_eq!(read("results/out.txt"), "result");
        assert_eq!(read("edited-here.txt"), "local edit");
        assert_eq!(read("edited-here.txt.kb-conflict-t1-pod-a"), "job edit");
        assert_eq!(read("local-only.txt"), "mine");
    }
}
