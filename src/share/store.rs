//! The share server's store: content-addressed blobs, one manifest per task, and the `authorized_keys` file that
//! lets each task's pods (and nothing else) read that task's tree.
//!
//! Layout under the store directory:
//!
//! ```text
//! blobs/<sha256>            file contents, written once, verified on the way in
//! tasks/<task>/manifest.json
//! authorized_keys           one `command="kb share serve --task T" KEY` line per task (kb's agent reads it)
//! host_key, host_key.pub    the server's SSH host key, made on first start
//! lazy/<task>.sock          the relay of a task's lazy share (`lazy-host` listens, `lazy-attach` and NFS connect)
//! lazy/<task>.nfs           the secret of the task's NFS export path (0600, made by `lazy-allow`)
//! ```
//!
//! The operations are `kb share` subcommands run in the server's pod. Their stdin is self-delimiting (every list
//! ends with `end`), so they never depend on the caller being able to half-close stdin.

use std::collections::BTreeSet;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use super::manifest::{Entry, Manifest, is_hash};

mod access;
mod files;

pub use access::is_token;
pub use files::{read_framed_manifest, write_atomic, write_framed_manifest};

/// Where `kb share` keeps its store in the server's pod.
pub const DEFAULT_STORE: &str = "/var/lib/kb-share";
/// The size limit of the store's emptyDir, in GiB; the kubelet evicts the server's pod when it is passed.
pub const STORE_LIMIT_GIB: u64 = 20;
/// Above this many bytes of contents (three quarters of the limit), each commit deletes contents no task uses...
pub const COLLECT_ABOVE: u64 = (STORE_LIMIT_GIB << 30) / 4 * 3;
/// ...least recently used first, down to half the limit.
pub const COLLECT_DOWN_TO: u64 = (STORE_LIMIT_GIB << 30) / 2;
/// Contents stored or asked about this recently are kept: an upload in flight may be about to commit them.
pub const KEEP_RECENT: std::time::Duration = std::time::Duration::from_secs(3600);
/// The end marker of every list on the wire.
pub const END: &str = "end";

/// A store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Task ids are kb's (lowercase letters and digits); anything else is refused before it names a path.
pub fn check_task(task: &str) -> std::io::Result<()> {
    if !task.is_empty()
        && task.len() <= 63
        && task
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(invalid(format!("`{task}` is not a task id")))
    }
}

impl Store {
    /// The store at `root`, created with its host key when missing.
    pub fn open(root: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("tasks"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        let store = Store {
            root: root.to_owned(),
        };
        if !store.authorized_keys().exists() {
            std::fs::write(store.authorized_keys(), "")?;
        }
        if !root.join("host_key").exists() {
            let seed: [u8; 32] = rand::random();
            let key = russh::keys::PrivateKey::from(
                russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed),
            );
            let private = key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .map_err(std::io::Error::other)?;
            let public = key
                .public_key()
                .to_openssh()
                .map_err(std::io::Error::other)?;
            write_atomic(
                &root.join("host_key.pub"),
                format!("{public}\n").as_bytes(),
                0o644,
            )?;
            write_atomic(&root.join("host_key"), private.as_bytes(), 0o600)?;
        }
        Ok(store)
    }

    /// The `authorized_keys` file kb's agent reads.
    pub fn authorized_keys(&self) -> PathBuf {
        self.root.join("authorized_keys")
    }

    fn blob(&self, hash: &str) -> PathBuf {
        self.root.join("blobs").join(hash)
    }

    fn manifest_path(&self, task: &str) -> PathBuf {
        self.root.join("tasks").join(task).join("manifest.json")
    }

    /// The server's public host key, an OpenSSH line.
    pub fn host_public_key(&self) -> std::io::Result<String> {
        Ok(std::fs::read_to_string(self.root.join("host_key.pub"))?
            .trim()
            .to_string())
    }

    /// `have`: reads hashes (one per line, then `end`) and writes those the store lacks, then `end`.
    pub fn have(&self, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
        for line in input.lines() {
            let line = line?;
            let hash = line.trim();
            if hash == END {
                writeln!(output, "{END}")?;
                return output.flush();
            }
            if !is_hash(hash) {
                return Err(invalid(format!("`{hash}` is not a SHA-256")));
            }
            let blob = self.blob(hash);
            if !blob.exists() {
                writeln!(output, "{hash}")?;
            } else {
                // A content asked about is about to be used: [`Store::collect`] leaves it alone for a while.
                let _ = std::fs::File::open(&blob)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            }
        }
        Err(invalid("the list ended without `end`"))
    }

    /// Deletes contents no task's manifest names, least recently used first, when the blobs take more than `high`
    /// bytes, until they take at most `low`; contents stored or asked about within `recent` stay (an upload in
    /// flight may be about to commit them). Returns the number of contents and bytes deleted.
    pub fn collect(
        &self,
        high: u64,
        low: u64,
        recent: std::time::Duration,
    ) -> std::io::Result<(u64, u64)> {
        let mut blobs = Vec::new();
        let mut total = 0u64;
        for entry in std::fs::read_dir(self.root.join("blobs"))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            total += meta.len();
            blobs.push((meta.modified()?, meta.len(), entry.file_name()));
        }
        if total <= high {
            return Ok((0, 0));
        }
        let mut named: BTreeSet<String> = BTreeSet::new();
        for task in std::fs::read_dir(self.root.join("tasks"))? {
            let path = task?.path().join("manifest.json");
            let Ok(json) = std::fs::read(&path) else {
                continue;
            };
            let manifest: Manifest = serde_json::from_slice(&json)?;
            named.extend(manifest.blobs().into_keys());
        }
        let cutoff = std::time::SystemTime::now() - recent;
        blobs.sort();
        let (mut count, mut freed) = (0u64, 0u64);
        for (modified, len, name) in blobs {
            if total <= low || modified > cutoff {
                break;
            }
            let name = name.to_string_lossy();
            if named.contains(name.as_ref()) {
                continue;
            }
            std::fs::remove_file(self.blob(&name))?;
            total -= len;
            count += 1;
            freed += len;
        }
        Ok((count, freed))
    }

    /// `put`: reads `HASH LEN` lines each followed by LEN bytes, then `end`; stores each blob after checking its
    /// hash. Writes `stored N BYTES`.
    pub fn put(&self, mut input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
        let (mut count, mut bytes) = (0u64, 0u64);
        // One buffer for every blob: most are small, and a fresh large buffer each would cost more than they do.
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let mut header = String::new();
            if input.read_line(&mut header)? == 0 {
                return Err(invalid("the blobs ended without `end`"));
            }
            let header = header.trim();
            if header == END {
                break;
            }
            let (hash, len) = header
                .split_once(' ')
                .and_then(|(h, l)| Some((h, l.parse::<u64>().ok()?)))
                .ok_or_else(|| invalid(format!("bad blob header `{header}`")))?;
            if !is_hash(hash) {
                return Err(invalid(format!("`{hash}` is not a SHA-256")));
            }
            let tmp = self
                .root
                .join("tmp")
                .join(format!("{hash}.{:08x}", rand::random::<u32>()));
            let result = (|| {
                let mut file = std::fs::File::create(&tmp)?;
                let mut context = ring::digest::Context::new(&ring::digest::SHA256);
                let mut left = len;
                while left > 0 {
                    let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                    let n = input.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(invalid("the blob was cut short"));
                    }
                    context.update(&buf[..n]);
                    file.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                let got = data_encoding::HEXLOWER.encode(context.finish().as_ref());
                if got != hash {
                    return Err(invalid(format!("blob {hash} arrived with hash {got}")));
                }
                // No fsync: the store is a cache on an emptyDir, which does not outlive its pod; a blob is checked
                // against its name on the way in, and one fsync per small file costs more than the upload.
                std::fs::rename(&tmp, self.blob(hash))
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
            count += 1;
            bytes += len;
        }
        writeln!(output, "stored {count} {bytes}")?;
        output.flush()
    }

    /// `patch`: reads a framed [`Delta`](super::delta::Delta) (`LEN` line, then LEN bytes of JSON), applies it to
    /// the stored manifest `base`, and stores the result as the blob `manifest` if its hash is that. Writes
    /// `patched`. Fails without storing anything when `base` is not here or the result has another hash (a client
    /// of another kb version may encode manifests differently): the client then sends the whole manifest.
    pub fn patch(
        &self,
        base: &str,
        manifest: &str,
        mut input: impl BufRead,
        mut output: impl Write,
    ) -> std::io::Result<()> {
        for hash in [base, manifest] {
            if !is_hash(hash) {
                return Err(invalid(format!("`{hash}` is not a SHA-256")));
            }
        }
        let old: Manifest =
            serde_json::from_slice(&std::fs::read(self.blob(base)).map_err(|e| {
                invalid(format!("the base manifest {base} is not in the store: {e}"))
            })?)?;
        let mut header = String::new();
        input.read_line(&mut header)?;
        let len: u64 = header
            .trim()
            .parse()
            .map_err(|_| invalid(format!("bad delta length `{}`", header.trim())))?;
        let mut json = Vec::new();
        input.take(len).read_to_end(&mut json)?;
        if json.len() as u64 != len {
            return Err(invalid("the delta was cut short"));
        }
        let delta: super::delta::Delta = serde_json::from_slice(&json)?;
        let new = serde_json::to_vec(&delta.apply(&old))?;
        let got = super::manifest::hash_reader(&new[..])?;
        if got != manifest {
            return Err(invalid(format!(
                "the patched manifest has hash {got}, not {manifest}"
            )));
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{manifest}.{:08x}", rand::random::<u32>()));
        std::fs::write(&tmp, &new)?;
        std::fs::rename(&tmp, self.blob(manifest))?;
        writeln!(output, "patched")?;
        output.flush()
    }

    /// `commit`: the task's manifest is the blob `manifest` (JSON, stored with `put` like any content, so an
    /// unchanged tree is committed by its hash alone); checks that every blob it names is there; records it and lets
    /// `key` (an OpenSSH public key line) read it through `serve_command`. Writes the host public key.
    pub fn commit(
        &self,
        task: &str,
        key: &str,
        manifest: &str,
        serve_command: &str,
        mut output: impl Write,
    ) -> std::io::Result<()> {
        check_task(task)?;
        russh::keys::PublicKey::from_openssh(key.trim())
            .map_err(|e| invalid(format!("not a public key: {e}")))?;
        if !is_hash(manifest) {
            return Err(invalid(format!("`{manifest}` is not a SHA-256")));
        }
        let json = std::fs::read(self.blob(manifest))
            .map_err(|e| invalid(format!("the manifest {manifest} is not in the store: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&json)?;
        let missing: BTreeSet<&String> = manifest
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::File { hash, .. } if !self.blob(hash).exists() => Some(hash),
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!("{} blobs are missing", missing.len())));
        }
        let path = self.manifest_path(task);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.root))?;
        write_atomic(&path, &serde_json::to_vec(&manifest)?, 0o600)?;
        let line = format!(
            "command=\"{}\" {}",
            serve_command.replace('\\', "\\\\").replace('"', "\\\""),
            key.trim()
        );
        self.edit_authorized_keys(|lines| {
            lines.retain(|l| !l.contains(&task_marker(task)));
            lines.push(format!("{line} {}", task_marker(task)));
        })?;
        writeln!(output, "{}", self.host_public_key()?)?;
        output.flush()
    }

    /// `drop`: forgets a task's manifest, keys and NFS token (its blobs stay for the next run to reuse).
    pub fn drop_task(&self, task: &str) -> std::io::Result<()> {
        check_task(task)?;
        self.edit_authorized_keys(|lines| lines.retain(|l| !l.contains(&task_marker(task))))?;
        match std::fs::remove_file(self.nfs_token_path(task)?) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        match std::fs::remove_dir_all(self.root.join("tasks").join(task)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// `serve`: writes the task's manifest (framed) and then its tree as a tar stream.
    pub fn serve(&self, task: &str, mut output: impl Write) -> std::io::Result<()> {
        check_task(task)?;
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(self.manifest_path(task))?)?;
        write_framed_manifest(&manifest, &mut output)?;
        let mut tar = tar::Builder::new(output);
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for (path, entry) in &manifest.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(mtime);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, path, std::io::empty())?;
                }
                Entry::File { hash, size, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(*size);
                    let blob = std::fs::File::open(self.blob(hash))?;
                    tar.append_data(&mut header, path, blob)?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        tar.into_inner()?.flush()
    }

    fn edit_authorized_keys(&self, edit: impl FnOnce(&mut Vec<String>)) -> std::io::Result<()> {
        // One writer at a time: commits of concurrent tasks must not lose each other's lines.
        let lock = std::fs::File::create(self.root.join("authorized_keys.lock"))?;
        lock.lock()?;
        let text = std::fs::read_to_string(self.authorized_keys()).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        edit(&mut lines);
        let mut out = lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        write_atomic(&self.authorized_keys(), out.as_bytes(), 0o600)
    }
}

fn task_marker(task: &str) -> String {
    format!("kb-task={task}")
}

#[cfg(test)]
mod tests;
