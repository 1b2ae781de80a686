//! The eager share's upload: scan the directory, ask the share server which contents it lacks, send only those
//! (as patches where an older version is there), and commit the task's manifest with a fresh pod key.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use super::{Input, ServerShare, Source, server_exec, server_pod_uid};
use crate::k8s::Kube;
use crate::share::client::{Error, Result, UploadStats};
use crate::share::manifest::{Entry, Manifest, join_inside, scan};
use crate::share::protocol::Request;
use crate::share::store::END;

/// Uploads `dir` for `task` to the server at `address` and commits it; returns the share.
pub async fn upload(kube: &Kube, address: String, dir: &Path, task: &str) -> Result<ServerShare> {
    let clock = std::time::Instant::now();
    let mut scanned = scan_tree(dir).await?;
    let mut stats = scanned.stats();
    // What the server had from this directory last time, when it still has it: then only the changes go.
    let cache = crate::share::delta::cache_dir();
    let cached = cache
        .as_deref()
        .and_then(|cache| crate::share::delta::load_base(cache, &kube.namespace, dir));
    send_tree(kube, dir, &mut scanned, cached, &mut stats, clock).await?;
    let committed = commit(kube, task, &scanned.hash).await?;
    if let Some(cache) = &cache {
        crate::share::delta::save_base(
            cache,
            &crate::share::delta::Base {
                namespace: kube.namespace.clone(),
                dir: dir.to_owned(),
                hash: scanned.hash.clone(),
                manifest: scanned.manifest.clone(),
            },
        );
    }
    Ok(ServerShare {
        kube: kube.clone(),
        server_uid: committed.server_uid,
        dir: dir.to_owned(),
        task: task.to_string(),
        manifest: scanned.manifest,
        pod_key: committed.pod_key,
        host_public: committed.host_public,
        address,
        stats,
        joined: Mutex::new(Vec::new()),
    })
}

/// The working directory as a manifest, which is stored as a blob too: a tree the server has seen is committed
/// by one hash.
struct Scanned {
    manifest: Manifest,
    /// The manifest's JSON and its SHA-256.
    json: Vec<u8>,
    hash: String,
}

impl Scanned {
    fn stats(&self) -> UploadStats {
        UploadStats {
            files: self
                .manifest
                .entries
                .values()
                .filter(|e| matches!(e, Entry::File { .. }))
                .count() as u64,
            bytes: self.manifest.bytes(),
            ..Default::default()
        }
    }
}

/// Scans `dir` (honouring `.gitignore` and `.kbignore`) on a blocking thread; refuses a tree the store would
/// have to collect at once.
async fn scan_tree(dir: &Path) -> Result<Scanned> {
    let root = dir.to_owned();
    let clock = std::time::Instant::now();
    let manifest = tokio::task::spawn_blocking(move || scan(&root, true))
        .await
        .map_err(|e| Error::Io {
            action: "scan the working directory".into(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| Error::Io {
            action: format!("scan the working directory `{}`", dir.display()),
            source,
        })?;
    let shared: u64 = manifest.blobs().values().sum();
    if shared > crate::share::store::COLLECT_ABOVE {
        return Err(Error::TooBig {
            bytes: shared,
            dir: dir.to_owned(),
        });
    }
    tracing::debug!(
        "share: scanned {} entries in {:?}",
        manifest.entries.len(),
        clock.elapsed()
    );
    let json = serde_json::to_vec(&manifest).map_err(|e| Error::Io {
        action: "encode the manifest".into(),
        source: e.into(),
    })?;
    let hash = crate::share::manifest::hash_reader(&json[..]).map_err(|source| Error::Io {
        action: "hash the manifest".into(),
        source,
    })?;
    Ok(Scanned {
        manifest,
        json,
        hash,
    })
}

/// Sends what the server lacks of the scanned tree: nothing when it has the manifest; the new contents and a
/// patch of `cached` (the last tree sent from here) when it still has that; else every missing content and the
/// whole manifest.
async fn send_tree(
    kube: &Kube,
    dir: &Path,
    scanned: &mut Scanned,
    cached: Option<crate::share::delta::Base>,
    stats: &mut UploadStats,
    clock: std::time::Instant,
) -> Result<()> {
    let (manifest, manifest_hash) = (&scanned.manifest, &scanned.hash);
    let blobs = manifest.blobs();
    let unchanged = cached
        .as_ref()
        .is_some_and(|base| &base.hash == manifest_hash);
    let base = cached.filter(|base| &base.hash != manifest_hash);
    // Nothing sent from here before: most likely the server lacks the tree, so every content is asked about at
    // once rather than in a second round trip.
    let ask_all = base.is_none() && !unchanged;
    let delta = base
        .as_ref()
        .map(|base| crate::share::delta::Delta::between(&base.manifest, manifest));
    let new_contents = match (&base, &delta) {
        (Some(base), Some(delta)) => delta.new_contents(&base.manifest),
        _ => Default::default(),
    };
    // One question: is the tree there, is the base there, which of the new contents are there.
    let asked = std::iter::once(manifest_hash.as_str())
        .chain(base.as_ref().map(|base| base.hash.as_str()))
        .chain(new_contents.iter().map(String::as_str))
        .chain(blobs.keys().map(String::as_str).filter(|_| ask_all));
    let mut missing = have(kube, asked, stats).await?;
    let known = !missing.contains(manifest_hash);
    let incremental = match (&base, &delta) {
        (Some(base), Some(delta)) if !missing.contains(&base.hash) => Some((base, delta)),
        _ => None,
    };
    tracing::debug!(
        "share: manifest known: {known}, base known: {}, at {:?}",
        incremental.is_some(),
        clock.elapsed()
    );
    if known {
        return Ok(());
    }
    let patched = match incremental {
        Some((base, delta)) => {
            missing.retain(|hash| new_contents.contains(hash));
            send_incremental(kube, dir, scanned, base, delta, &missing, stats).await?
        }
        None => false,
    };
    // The manifest's JSON goes at most once; upload needs no more of it.
    let whole = Some((manifest_hash.clone(), std::mem::take(&mut scanned.json)));
    if !patched {
        // The whole list of contents (unless it was asked about already), and the whole manifest.
        if !ask_all {
            missing = have_every_content(kube, &blobs, stats, clock).await?;
        }
        put_contents(kube, manifest, dir, &missing, whole, stats).await?;
    }
    Ok(())
}

/// Which of the manifest's contents (`blobs`) the server lacks, asked about all at once.
async fn have_every_content(
    kube: &Kube,
    blobs: &std::collections::BTreeMap<String, u64>,
    stats: &mut UploadStats,
    clock: std::time::Instant,
) -> Result<BTreeSet<String>> {
    let missing = have(kube, blobs.keys().map(String::as_str), stats).await?;
    tracing::debug!(
        "share: {} contents missing, at {:?}",
        missing.len(),
        clock.elapsed()
    );
    Ok(missing)
}

/// Sends the `missing` new contents and, at the same time, a patch that turns `base` into the scanned manifest:
/// the server rebuilds the manifest from the base, not from the contents, so both go in one round trip. Returns
/// whether the server applied the patch.
async fn send_incremental(
    kube: &Kube,
    dir: &Path,
    scanned: &Scanned,
    base: &crate::share::delta::Base,
    delta: &crate::share::delta::Delta,
    missing: &BTreeSet<String>,
    stats: &mut UploadStats,
) -> Result<bool> {
    let mut patch_stats = UploadStats::default();
    let (put, patched) = tokio::join!(
        put_contents(kube, &scanned.manifest, dir, missing, None, stats),
        patch(kube, &base.hash, &scanned.hash, delta, &mut patch_stats),
    );
    put?;
    stats.sent_meta += patch_stats.sent_meta;
    Ok(patched)
}

/// What committing a task's tree gave: the pods' private key, the server's host key, the server pod's UID.
struct Committed {
    pod_key: String,
    host_public: String,
    server_uid: Option<String>,
}

/// Commits the manifest `manifest_hash` for `task` with a fresh key for the task's pods.
async fn commit(kube: &Kube, task: &str, manifest_hash: &str) -> Result<Committed> {
    let keys = crate::ssh::task_keys::build_task_keys().map_err(|e| Error::Io {
        action: "make the pod key".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let pod_key = keys
        .client
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| Error::Io {
            action: "encode the pod key".into(),
            source: std::io::Error::other(e),
        })?
        .to_string();
    let commit = Request::Commit {
        task,
        key: &keys.client_public,
        manifest: manifest_hash,
    };
    let (reply, server_uid) = tokio::join!(
        server_exec(
            kube,
            &commit,
            Input::Bytes(Vec::new()),
            "record the task's files",
        ),
        server_pod_uid(kube),
    );
    let reply = reply?;
    let host_public = String::from_utf8_lossy(&reply).trim().to_string();
    if !host_public.starts_with("ssh-") {
        return Err(Error::Server {
            namespace: kube.namespace.clone(),
            action: "record the task's files".into(),
            reason: format!("unexpected answer `{host_public}`"),
        });
    }
    Ok(Committed {
        pod_key,
        host_public,
        server_uid,
    })
}

/// Stores the contents in `missing` (each from the first file of `manifest` that has it), and `extra` (a hash and
/// bytes, the manifest) after them; nothing is sent when there is nothing to store.
async fn put_contents(
    kube: &Kube,
    manifest: &Manifest,
    dir: &Path,
    missing: &BTreeSet<String>,
    extra: Option<(String, Vec<u8>)>,
    stats: &mut UploadStats,
) -> Result<()> {
    let mut first: HashMap<&str, (&String, u64)> = HashMap::new();
    for (path, entry) in &manifest.entries {
        if let Entry::File { hash, size, .. } = entry
            && missing.contains(hash)
        {
            first.entry(hash.as_str()).or_insert((path, *size));
        }
    }
    let mut sources: Vec<(String, u64, Source)> = Vec::new();
    for hash in missing {
        let Some((path, size)) = first.get(hash.as_str()) else {
            continue;
        };
        let Some(file) = join_inside(dir, path) else {
            continue;
        };
        stats.sent_files += 1;
        stats.sent_bytes += size;
        stats.sent_meta += hash.len() as u64 + 2 + size.to_string().len() as u64;
        sources.push((hash.clone(), *size, Source::File(file)));
    }
    if let Some((hash, bytes)) = extra {
        stats.sent_meta += bytes.len() as u64 + 80;
        sources.push((hash, bytes.len() as u64, Source::Memory(bytes)));
    }
    if sources.is_empty() {
        return Ok(());
    }
    let reply = server_exec(
        kube,
        &Request::Put,
        Input::Blobs(sources),
        "store the files",
    )
    .await?;
    tracing::debug!("share server: {}", String::from_utf8_lossy(&reply).trim());
    Ok(())
}

/// Asks the server which of `hashes` it lacks (`kb share have`): one round trip, counted in `stats`.
async fn have<'a>(
    kube: &Kube,
    hashes: impl Iterator<Item = &'a str>,
    stats: &mut UploadStats,
) -> Result<BTreeSet<String>> {
    let mut ask = String::new();
    for hash in hashes {
        ask.push_str(hash);
        ask.push('\n');
    }
    ask.push_str(END);
    ask.push('\n');
    stats.sent_meta += ask.len() as u64;
    let answer = server_exec(
        kube,
        &Request::Have,
        Input::Bytes(ask.into_bytes()),
        "list what it has",
    )
    .await?;
    Ok(String::from_utf8_lossy(&answer)
        .lines()
        .take_while(|l| *l != END)
        .map(str::to_string)
        .collect())
}

/// Has the server make the manifest `manifest` from its stored `base` and `delta`; false when it could not (the
/// caller then sends the whole manifest).
async fn patch(
    kube: &Kube,
    base: &str,
    manifest: &str,
    delta: &crate::share::delta::Delta,
    stats: &mut UploadStats,
) -> bool {
    let Ok(json) = serde_json::to_vec(delta) else {
        return false;
    };
    let mut input = format!("{}\n", json.len()).into_bytes();
    input.extend_from_slice(&json);
    stats.sent_meta += input.len() as u64;
    let request = Request::Patch { base, manifest };
    match server_exec(kube, &request, Input::Bytes(input), "apply the changes").await {
        Ok(reply) => String::from_utf8_lossy(&reply).trim() == "patched",
        Err(err) => {
            tracing::debug!("share: {err}; sending the whole manifest");
            false
        }
    }
}

/// Writes `HASH LEN\n` + content for each blob, handing over batches of about 1 MiB to `send`.
pub(super) fn frame_blobs(
    blobs: &[(String, u64, Source)],
    mut send: impl FnMut(Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Read;
    const BATCH: usize = 1 << 20;
    let mut batch = Vec::with_capacity(BATCH + 64 * 1024);
    for (hash, size, source) in blobs {
        batch.extend_from_slice(format!("{hash} {size}\n").as_bytes());
        let start = batch.len();
        let path = match source {
            Source::Memory(bytes) => {
                batch.extend_from_slice(bytes);
                continue;
            }
            Source::File(path) => path,
        };
        std::fs::File::open(path)?
            .take(*size)
            .read_to_end(&mut batch)?;
        if (batch.len() - start) as u64 != *size {
            return Err(std::io::Error::other(format!(
                "`{}` changed while it was sent",
                path.display()
            )));
        }
        if batch.len() >= BATCH {
            send(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH + 64 * 1024),
            ))?;
        }
    }
    if !batch.is_empty() {
        send(batch)?;
    }
    Ok(())
}
