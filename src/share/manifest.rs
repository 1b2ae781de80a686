//! What a shared directory holds, by content: every file's SHA-256, size and mode, every directory and symlink,
//! under paths relative to the directory. The client builds it honouring `.gitignore` and `.kbignore`; pods build
//! the same for syncback without ignore rules (what a job wrote comes back even where git would ignore it).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file that lists paths to leave out of a share, beside `.gitignore` and in the same syntax.
pub const KBIGNORE: &str = ".kbignore";

/// One entry of a shared tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    /// A regular file.
    File {
        /// SHA-256 of the content, lowercase hex.
        hash: String,
        /// Its size in bytes.
        size: u64,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Its permission bits.
        mode: u32,
    },
    /// A symbolic link, never followed.
    Symlink {
        /// Where it points.
        target: String,
    },
}

/// A tree: relative path (with `/`) to entry, in path order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The entries.
    pub entries: BTreeMap<String, Entry>,
}

impl Manifest {
    /// The total size of its files.
    pub fn bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match e {
                Entry::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }

    /// Each distinct file content once: hash and size.
    pub fn blobs(&self) -> BTreeMap<String, u64> {
        self.entries
            .values()
            .filter_map(|e| match e {
                Entry::File { hash, size, .. } => Some((hash.clone(), *size)),
                _ => None,
            })
            .collect()
    }

    /// The hash of the file at `path`, if it is a file.
    pub fn file_hash(&self, path: &str) -> Option<&str> {
        match self.entries.get(path) {
            Some(Entry::File { hash, .. }) => Some(hash),
            _ => None,
        }
    }
}

/// SHA-256 of everything `reader` yields, in lowercase hex.
pub fn hash_reader(reader: impl Read) -> std::io::Result<String> {
    hash_reader_sized(reader, 256 * 1024)
}

/// [`hash_reader`] with a read buffer of `buffer` bytes (small files need no large, zeroed buffer each).
fn hash_reader_sized(mut reader: impl Read, buffer: usize) -> std::io::Result<String> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; buffer.clamp(4096, 256 * 1024)];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
    }
    Ok(data_encoding::HEXLOWER.encode(context.finish().as_ref()))
}

/// SHA-256 of a file.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    hash_reader_sized(
        file,
        usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    )
}

/// True when `hash` looks like a SHA-256 in lowercase hex (it names a file in the store, so this is checked).
pub fn is_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Scans `dir`. With `ignore_rules`, `.gitignore` files (without needing a git repository), `.git/info/exclude`,
/// the global git excludes and `.kbignore` files leave paths out, and `.git` itself is left out; hidden files are
/// included either way.
pub fn scan(dir: &Path, ignore_rules: bool) -> std::io::Result<Manifest> {
    let mut walker = ignore::WalkBuilder::new(dir);
    walker
        .hidden(false)
        .follow_links(false)
        .parents(ignore_rules)
        .ignore(false)
        .git_ignore(ignore_rules)
        .git_global(ignore_rules)
        .git_exclude(ignore_rules)
        .require_git(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    if ignore_rules {
        walker.add_custom_ignore_filename(KBIGNORE);
        walker.filter_entry(|e| e.file_name() != ".git");
    }
    let mut manifest = Manifest::default();
    let mut files = Vec::new();
    for item in walker.build() {
        let item = item.map_err(std::io::Error::other)?;
        let Some(relative) = relative(dir, item.path()) else {
            continue;
        };
        let meta = std::fs::symlink_metadata(item.path())?;
        let kind = meta.file_type();
        let entry = if kind.is_symlink() {
            Entry::Symlink {
                target: std::fs::read_link(item.path())?
                    .to_string_lossy()
                    .into_owned(),
            }
        } else if kind.is_dir() {
            Entry::Dir {
                mode: meta.permissions().mode() & 0o7777,
            }
        } else if kind.is_file() {
            // Hashed below, on every core.
            files.push((relative, item.into_path(), meta));
            continue;
        } else {
            // Sockets, FIFOs and devices are not shared.
            continue;
        };
        manifest.entries.insert(relative, entry);
    }
    for (relative, entry) in hash_files(files)? {
        manifest.entries.insert(relative, entry);
    }
    Ok(manifest)
}

/// Hashes `files` (relative name, path, metadata) on as many threads as there are cores.
fn hash_files(
    files: Vec<(String, PathBuf, std::fs::Metadata)>,
) -> std::io::Result<Vec<(String, Entry)>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(relative, path, meta)| {
                            Ok((
                                relative.clone(),
                                Entry::File {
                                    hash: hash_file(path)?,
                                    size: meta.len(),
                                    mode: meta.permissions().mode() & 0o7777,
                                },
                            ))
                        })
                        .collect::<std::io::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut entries = Vec::with_capacity(files.len());
        for worker in workers {
            entries.extend(
                worker
                    .join()
                    .map_err(|_| std::io::Error::other("a hashing thread panicked"))??,
            );
        }
        Ok(entries)
    })
}

/// `path` relative to `dir` with `/` separators; `None` for `dir` itself.
fn relative(dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(dir).ok()?;
    if rel.as_os_str().is_empty() {
        return None;
    }
    Some(rel.to_string_lossy().into_owned())
}

/// `dir/relative`, refusing relative paths that would leave `dir` (absolute, or with `..`).
pub fn join_inside(dir: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_hashes_files_and_honours_gitignore_and_kbignore() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("a.txt"), "hello\n").unwrap();
        std::fs::write(p.join(".hidden"), "h").unwrap();
        std::fs::create_dir_all(p.join("sub/deep")).unwrap();
        std::fs::write(p.join("sub/deep/b.bin"), [0u8, 1, 2]).unwrap();
        std::fs::write(p.join(".gitignore"), "*.log\nbuild/\n").unwrap();
        std::fs::write(p.join(".kbignore"), "data/\n").unwrap();
        std::fs::write(p.join("x.log"), "no").unwrap();
        std::fs::create_dir_all(p.join("build")).unwrap();
        std::fs::write(p.join("build/out"), "no").unwrap();
        std::fs::create_dir_all(p.join("data")).unwrap();
        std::fs::write(p.join("data/big"), "no").unwrap();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        std::fs::write(p.join(".git/HEAD"), "no").unwrap();
        std::os::unix::fs::symlink("a.txt", p.join("link")).unwrap();
        let m = scan(p, true).unwrap();
        let names: Vec<&str> = m.entries.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                ".gitignore",
                ".hidden",
                ".kbignore",
                "a.txt",
                "link",
                "sub",
                "sub/deep",
                "sub/deep/b.bin"
            ]
        );
        assert_eq!(
            m.file_hash("a.txt"),
            // sha256("hello\n")
            Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
        );
        assert_eq!(
            m.entries["link"],
            Entry::Symlink {
                target: "a.txt".into()
            }
        );
        assert_eq!(m.bytes(), 13 + 1 + 6 + 6 + 3);
        // Without rules, everything is there (syncback in a pod).
        let all = scan(p, false).unwrap();
        assert!(all.entries.contains_key("x.log"));
        assert!(all.entries.contains_key(".git/HEAD"));
    }

    #[test]
    fn paths_may_not_leave_the_directory() {
        let d = Path::new("/w");
        assert_eq!(join_inside(d, "a/b"), Some(PathBuf::from("/w/a/b")));
        assert_eq!(join_inside(d, "../x"), None);
        assert_eq!(join_inside(d, "/etc/passwd"), None);
        assert_eq!(join_inside(d, "a/../../x"), None);
        assert!(is_hash(&"a".repeat(64)));
        assert!(!is_hash(&"A".repeat(64)));
        assert!(!is_hash("../../etc"));
    }
}
