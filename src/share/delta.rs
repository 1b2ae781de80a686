//! Incremental uploads: what changed in a tree since the manifest the share server last received from this client
//! for the same directory. The client keeps that manifest in its cache; when the server still has it (asked by
//! hash), the client sends only the changed entries and the server rebuilds the new manifest from the old one,
//! checking the result by its hash. Without it (first run, another cluster, a restarted server) the whole manifest
//! goes, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{Entry, Manifest};

/// The entries that differ between two manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Entries new or changed, whole.
    pub set: BTreeMap<String, Entry>,
    /// Paths gone.
    pub remove: BTreeSet<String>,
}

impl Delta {
    /// What turns `base` into `new`.
    pub fn between(base: &Manifest, new: &Manifest) -> Delta {
        let set = new
            .entries
            .iter()
            .filter(|(path, entry)| base.entries.get(*path) != Some(entry))
            .map(|(path, entry)| (path.clone(), entry.clone()))
            .collect();
        let remove = base
            .entries
            .keys()
            .filter(|path| !new.entries.contains_key(*path))
            .cloned()
            .collect();
        Delta { set, remove }
    }

    /// `base` with this delta applied.
    pub fn apply(&self, base: &Manifest) -> Manifest {
        let mut entries = base.entries.clone();
        for path in &self.remove {
            entries.remove(path);
        }
        entries.extend(self.set.iter().map(|(p, e)| (p.clone(), e.clone())));
        Manifest { entries }
    }

    /// The contents this delta brings in that `base` does not hold anywhere: the only ones the server may lack.
    pub fn new_contents(&self, base: &Manifest) -> BTreeSet<String> {
        let known: BTreeSet<&str> = base
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::File { hash, .. } => Some(hash.as_str()),
                _ => None,
            })
            .collect();
        self.set
            .values()
            .filter_map(|e| match e {
                Entry::File { hash, .. } if !known.contains(hash.as_str()) => Some(hash.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The manifest last committed from a directory to a namespace's share server, kept in the client's cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Base {
    /// The namespace of the share server.
    pub namespace: String,
    /// The directory, absolute.
    pub dir: PathBuf,
    /// The manifest's hash (its blob's name on the server).
    pub hash: String,
    /// The manifest.
    pub manifest: Manifest,
}

/// Where bases are kept: `$XDG_CACHE_HOME/kb/share/` or `~/.cache/kb/share/`.
pub fn cache_dir() -> Option<PathBuf> {
    Some(dirs::cache_dir()?.join("kb/share"))
}

/// The file in `cache` for `dir` and `namespace`.
fn base_path(cache: &Path, namespace: &str, dir: &Path) -> Option<PathBuf> {
    let key = format!("{namespace}\0{}", dir.display());
    let name = super::manifest::hash_reader(key.as_bytes()).ok()?;
    Some(cache.join(format!("{name}.json")))
}

/// The base recorded in `cache` for `dir` and `namespace`, if any (an unreadable one counts as none).
pub fn load_base(cache: &Path, namespace: &str, dir: &Path) -> Option<Base> {
    let text = std::fs::read(base_path(cache, namespace, dir)?).ok()?;
    let base: Base = serde_json::from_slice(&text).ok()?;
    (base.namespace == namespace && base.dir == dir).then_some(base)
}

/// Records `base` in `cache` for the next upload from its directory. Best effort: without it the next upload
/// sends the whole manifest.
pub fn save_base(cache: &Path, base: &Base) {
    let Some(path) = base_path(cache, &base.namespace, &base.dir) else {
        return;
    };
    let saved = serde_json::to_vec(base)
        .map_err(std::io::Error::from)
        .and_then(|json| {
            std::fs::create_dir_all(cache)?;
            super::store::write_atomic(&path, &json, 0o600)
        });
    if let Err(err) = saved {
        tracing::debug!(
            "share: cannot keep the manifest in {}: {err}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(hash: char, size: u64) -> Entry {
        Entry::File {
            hash: hash.to_string().repeat(64),
            size,
            mode: 0o644,
        }
    }

    fn tree(entries: &[(&str, Entry)]) -> Manifest {
        Manifest {
            entries: entries
                .iter()
                .map(|(p, e)| (p.to_string(), e.clone()))
                .collect(),
        }
    }

    #[test]
    fn a_delta_rebuilds_the_new_tree_and_names_only_new_contents() {
        let base = tree(&[
            ("a", file('a', 1)),
            ("b", file('b', 2)),
            ("d", Entry::Dir { mode: 0o755 }),
            ("d/c", file('c', 3)),
        ]);
        let new = tree(&[
            ("a", file('a', 1)),
            ("b", file('e', 5)),
            ("d", Entry::Dir { mode: 0o700 }),
            ("d/moved", file('c', 3)),
            ("l", Entry::Symlink { target: "a".into() }),
        ]);
        let delta = Delta::between(&base, &new);
        assert_eq!(delta.apply(&base), new);
        assert_eq!(
            delta.set.keys().collect::<Vec<_>>(),
            ["b", "d", "d/moved", "l"]
        );
        assert_eq!(delta.remove.iter().collect::<Vec<_>>(), ["d/c"]);
        // A renamed file's content is already there; only the changed file's is new.
        assert_eq!(
            delta.new_contents(&base).into_iter().collect::<Vec<_>>(),
            ["e".repeat(64)]
        );
        assert_eq!(Delta::between(&new, &new), Delta::default());
    }

    #[test]
    fn bases_are_kept_per_directory_and_namespace() {
        let cache = tempfile::tempdir().expect("tempdir");
        let base = Base {
            namespace: "ns".into(),
            dir: "/work/p".into(),
            hash: "0".repeat(64),
            manifest: tree(&[("a", file('a', 1))]),
        };
        save_base(cache.path(), &base);
        let loaded =
            load_base(cache.path(), "ns", Path::new("/work/p")).expect("the base comes back");
        assert_eq!(loaded.manifest, base.manifest);
        assert_eq!(loaded.hash, base.hash);
        assert!(load_base(cache.path(), "other", Path::new("/work/p")).is_none());
        assert!(load_base(cache.path(), "ns", Path::new("/work/q")).is_none());
    }
}
