//! The worker pod's side of the eager share: `kb share fetch` pulls the task's tree from the share server (over
//! SSH, with the task's pod key, the server's host key pinned) and unpacks it at the user's path, keeping the
//! manifest as the base for syncback; `kb share changes` writes, as a tar stream, the files that differ from that
//! base (new or changed, by content).

use std::io::{BufRead, Read, Write};
use std::path::Path;

use super::manifest::{Entry, Manifest, scan};
use super::store::{read_framed_manifest, write_atomic};

/// Unpacks what the server's `serve` wrote (framed manifest, then tar) from `input` into `dir`, and records the
/// manifest at `base`.
pub fn unpack(mut input: impl BufRead, dir: &Path, base: &Path) -> std::io::Result<Manifest> {
    let manifest = read_framed_manifest(&mut input)?;
    std::fs::create_dir_all(dir)?;
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive.unpack(dir)?;
    write_atomic(base, &serde_json::to_vec(&manifest)?, 0o600)?;
    Ok(manifest)
}

/// Writes a tar stream of the files and symlinks under `dir` that are not in `base` with the same content.
pub fn changes(dir: &Path, base: &Manifest, out: impl Write) -> std::io::Result<u64> {
    let now = scan(dir, false)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut count = 0;
    for (path, entry) in &now.entries {
        if base.entries.get(path) == Some(entry) {
            continue;
        }
        match entry {
            Entry::File { .. } | Entry::Symlink { .. } => {
                tar.append_path_with_name(dir.join(path), path)?;
                count += 1;
            }
            // A directory comes back with the files in it; a mode change alone is not synced.
            Entry::Dir { .. } => {}
        }
    }
    tar.into_inner()?.flush()?;
    Ok(count)
}

/// Reads a whole private key text (the pod key arrives on stdin).
pub fn read_key(mut input: impl Read) -> std::io::Result<String> {
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::store::write_framed_manifest;

    #[test]
    fn changes_are_the_new_and_modified_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("same"), "s").unwrap();
        std::fs::write(dir.path().join("edited"), "before").unwrap();
        let base = scan(dir.path(), false).unwrap();
        std::fs::write(dir.path().join("edited"), "after").unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/new.txt"), "n").unwrap();
        let mut tar_bytes = Vec::new();
        assert_eq!(changes(dir.path(), &base, &mut tar_bytes).unwrap(), 2);
        let mut names: Vec<String> = tar::Archive::new(&tar_bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["edited", "out/new.txt"]);
    }

    #[test]
    fn unpack_writes_the_tree_and_the_base() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("f"), "data").unwrap();
        let manifest = scan(src.path(), false).unwrap();
        let mut stream = Vec::new();
        write_framed_manifest(&manifest, &mut stream).unwrap();
        let mut tar = tar::Builder::new(&mut stream);
        tar.append_path_with_name(src.path().join("f"), "f")
            .unwrap();
        tar.into_inner().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let base = dest.path().join("base.json");
        let got = unpack(&stream[..], &dest.path().join("w"), &base).unwrap();
        assert_eq!(got, manifest);
        assert_eq!(
            std::fs::read_to_string(dest.path().join("w/f")).unwrap(),
            "data"
        );
        let saved: Manifest = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
        assert_eq!(saved, manifest);
    }
}
