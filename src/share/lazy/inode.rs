//! The FUSE side's inode table: SFTP names files by path, the kernel by inode number. An inode is a path the
//! kernel has looked up; it lives until the kernel forgets it. Renames and removals done *through the mount* move
//! or drop the paths at once; those done on the laptop are seen when the kernel's entry expires (see `fs`). No I/O.

use std::collections::HashMap;

/// The root's inode number (FUSE's).
pub(crate) const ROOT: u64 = 1;

#[derive(Debug)]
struct Node {
    path: String,
    lookups: u64,
}

/// Inode numbers ↔ share paths (absolute within the share: `/`, `/a`, `/a/b`).
#[derive(Debug)]
pub(crate) struct Inodes {
    by_ino: HashMap<u64, Node>,
    by_path: HashMap<String, u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut inodes = Inodes {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT + 1,
        };
        inodes.by_ino.insert(
            ROOT,
            Node {
                path: "/".to_string(),
                lookups: 1,
            },
        );
        inodes.by_path.insert("/".to_string(), ROOT);
        inodes
    }
}

/// The path of `name` in the directory `parent`.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

impl Inodes {
    /// The path of an inode.
    pub(crate) fn path(&self, ino: u64) -> Option<String> {
        self.by_ino.get(&ino).map(|n| n.path.clone())
    }

    /// The inode of `path` for a reply that the kernel counts as a lookup (entry, create, mkdir, symlink).
    pub(crate) fn lookup(&mut self, path: &str) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            if let Some(node) = self.by_ino.get_mut(&ino) {
                node.lookups += 1;
            }
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(
            ino,
            Node {
                path: path.to_string(),
                lookups: 1,
            },
        );
        self.by_path.insert(path.to_string(), ino);
        ino
    }

    /// The inode of `path` if the kernel knows it, for a listing (which is not a lookup).
    pub(crate) fn peek(&self, path: &str) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The kernel dropped `n` references to `ino`.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.by_ino.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            let path = node.path.clone();
            self.by_ino.remove(&ino);
            if self.by_path.get(&path) == Some(&ino) {
                self.by_path.remove(&path);
            }
        }
    }

    /// `path` was removed: a new file there is a new inode (the old one lives on until forgotten, for open files).
    pub(crate) fn unlink(&mut self, path: &str) {
        self.by_path.remove(path);
    }

    /// `from` was renamed to `to`, with everything beneath it; whatever `to` was is replaced.
    pub(crate) fn rename(&mut self, from: &str, to: &str) {
        self.unlink(to);
        let prefix = format!("{from}/");
        let moved: Vec<(u64, String)> = self
            .by_ino
            .iter()
            .filter(|(_, n)| n.path == from || n.path.starts_with(&prefix))
            .map(|(&ino, n)| (ino, format!("{to}{}", &n.path[from.len()..])))
            .collect();
        for (ino, new_path) in moved {
            if let Some(node) = self.by_ino.get_mut(&ino) {
                if self.by_path.get(&node.path) == Some(&ino) {
                    self.by_path.remove(&node.path);
                }
                node.path = new_path.clone();
            }
            self.by_path.insert(new_path, ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_counted_and_forgotten() {
        let mut t = Inodes::default();
        assert_eq!(t.path(ROOT).as_deref(), Some("/"));
        let a = t.lookup("/a");
        assert_eq!(t.lookup("/a"), a);
        t.forget(a, 1);
        assert_eq!(t.path(a).as_deref(), Some("/a"));
        t.forget(a, 1);
        assert_eq!(t.path(a), None);
        assert_ne!(t.lookup("/a"), a, "a forgotten inode number is not reused");
        t.forget(ROOT, 10);
        assert_eq!(t.path(ROOT).as_deref(), Some("/"));
    }

    #[test]
    fn rename_moves_descendants_and_replaces_the_target() {
        let mut t = Inodes::default();
        let d = t.lookup("/d");
        let f = t.lookup("/d/f");
        let dd = t.lookup("/dd");
        let old_target = t.lookup("/e");
        t.rename("/d", "/e");
        assert_eq!(t.path(d).as_deref(), Some("/e"));
        assert_eq!(t.path(f).as_deref(), Some("/e/f"));
        assert_eq!(
            t.path(dd).as_deref(),
            Some("/dd"),
            "a sibling sharing the prefix stays"
        );
        assert_eq!(t.peek("/e"), Some(d));
        assert_eq!(t.peek("/d"), None);
        // The replaced inode keeps its path for open files, but the name now belongs to the moved one.
        t.forget(old_target, 1);
        assert_eq!(t.peek("/e"), Some(d));
        assert_eq!(child("/", "x"), "/x");
        assert_eq!(child("/e", "x"), "/e/x");
    }

    #[test]
    fn unlink_frees_the_name() {
        let mut t = Inodes::default();
        let a = t.lookup("/a");
        t.unlink("/a");
        assert_eq!(t.peek("/a"), None);
        assert_eq!(t.path(a).as_deref(), Some("/a"));
        let b = t.lookup("/a");
        assert_ne!(a, b);
        t.forget(a, 1);
        assert_eq!(
            t.peek("/a"),
            Some(b),
            "forgetting the old inode leaves the new name alone"
        );
    }
}
