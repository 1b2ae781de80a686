//! The laptop's side of the eager share and of syncback, through the Kubernetes API.
//!
//! Before the run: scan the directory (honouring `.gitignore` and `.kbignore`), ask the share server which
//! contents it lacks, send only those, and commit the task's manifest together with a fresh pod key; the server
//! answers with its host key. Every request is `kb share ...` run in the server's pod through the Kubernetes exec
//! API, so who may upload is decided by RBAC (`pods/exec` on `kb-share-0`), and nothing listens on the laptop.
//!
//! As each pod joins: through the agent connection kb already has, the pod runs `kb share fetch`, given the pod
//! key on stdin, which pulls the tree from the server's Service over SSH (host key pinned) at cluster speed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::k8s::Kube;
use crate::output::report::{Event, Reporter};
use crate::share::client::{
    Error, POD_KB, Result, SERVER_KB, SERVER_POD, SERVER_PORT, SERVER_READY_WAIT, SERVER_SERVICE,
    TreeRef, UploadStats,
};
use crate::share::manifest::{Entry, Manifest, join_inside, scan};
use crate::share::protocol::Request;
use crate::share::store::{DEFAULT_STORE, END};
use crate::share::sync::{SyncReport, apply};
use crate::ssh::Connection;

/// A task's tree on the share server.
pub struct ServerShare {
    dir: PathBuf,
    task: String,
    manifest: Manifest,
    pod_key: String,
    host_public: String,
    address: String,
    /// What the upload moved.
    pub stats: UploadStats,
    joined: Mutex<Vec<String>>,
    /// To look at the server's pod again when a pod cannot fetch.
    kube: Kube,
    /// The server pod's UID at the upload: another UID later means a new pod with an empty store.
    server_uid: Option<String>,
}

impl std::fmt::Debug for ServerShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerShare")
            .field("task", &self.task)
            .field("address", &self.address)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The share server's address for pods (its pod's IP and port 2222, looked up for every task), or `None` when it
/// is not deployed in the namespace (no Service `kb-share`). The pod's IP rather than the Service's: one hop less,
/// and no dependence on the node's Service rules; a restarted server has lost its store anyway.
pub async fn find_server(kube: &Kube, reporter: &Reporter) -> Result<Option<String>> {
    let services: Api<Service> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let failed = |action: &str, reason: String| Error::Server {
        namespace: kube.namespace.clone(),
        action: action.into(),
        reason,
    };
    match services.get_opt(SERVER_SERVICE).await {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(None),
        Err(err) => return Err(failed("be found", crate::error::chain(&err))),
    }
    // Just deployed or restarting: worth a short wait, said once.
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let deadline = std::time::Instant::now() + SERVER_READY_WAIT;
    let mut said = false;
    loop {
        let status = pods
            .get_opt(SERVER_POD)
            .await
            .map_err(|e| failed("be found", crate::error::chain(&e)))?
            .and_then(|p| p.status);
        let ready = status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let ip = status.and_then(|s| s.pod_ip).filter(|ip| !ip.is_empty());
        if let (true, Some(ip)) = (ready, ip) {
            return Ok(Some(format!("{ip}:{SERVER_PORT}")));
        }
        if std::time::Instant::now() >= deadline {
            return Err(failed(
                "be used",
                format!(
                    "pod {SERVER_POD} is not Ready after {} s (see `kubectl -n {} describe pod {SERVER_POD}`)",
                    SERVER_READY_WAIT.as_secs(),
                    kube.namespace
                ),
            ));
        }
        if !said {
            reporter.report(&Event::Waiting {
                what: format!("the share server (pod {SERVER_POD}) to be Ready"),
            });
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

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
            // The manifest is rebuilt from the base, not from the contents: both at once, one round trip.
            let mut patch_stats = UploadStats::default();
            let (put, patched) = tokio::join!(
                put_contents(kube, manifest, dir, &missing, None, stats),
                patch(kube, &base.hash, manifest_hash, delta, &mut patch_stats),
            );
            put?;
            stats.sent_meta += patch_stats.sent_meta;
            patched
        }
        None => false,
    };
    // The manifest's JSON goes at most once; upload needs no more of it.
    let whole = Some((manifest_hash.clone(), std::mem::take(&mut scanned.json)));
    if !patched && ask_all {
        put_contents(kube, manifest, dir, &missing, whole, stats).await?;
    } else if !patched {
        // The whole list of contents, and the whole manifest.
        let missing = have(kube, blobs.keys().map(String::as_str), stats).await?;
        tracing::debug!(
            "share: {} contents missing, at {:?}",
            missing.len(),
            clock.elapsed()
        );
        put_contents(kube, manifest, dir, &missing, whole, stats).await?;
    }
    Ok(())
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

/// The UID of the share server's pod, if it can be read.
async fn server_pod_uid(kube: &Kube) -> Option<String> {
    server_identity(kube).await.map(|(uid, _)| uid)
}

/// The share server's pod UID and its containers' restarts, if they can be read: either changing means the
/// server's processes, and what they held in memory, are gone.
pub(crate) async fn server_identity(kube: &Kube) -> Option<(String, i32)> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let pod = pods.get_opt(SERVER_POD).await.ok().flatten()?;
    let restarts = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum();
    Some((pod.metadata.uid?, restarts))
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
fn frame_blobs(
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

/// Forgets the task on the server (its contents stay for later runs). Best effort.
pub async fn drop_task(kube: &Kube, task: &str) {
    if let Err(err) = server_exec(
        kube,
        &Request::Drop { task },
        Input::Bytes(Vec::new()),
        "forget the task",
    )
    .await
    {
        tracing::debug!("share: {err}");
    }
}

/// What a request to the share server reads on stdin.
pub(crate) enum Input {
    /// These bytes.
    Bytes(Vec<u8>),
    /// Blobs, framed for `put`.
    Blobs(Vec<(String, u64, Source)>),
}

/// Where a blob's bytes come from.
pub(crate) enum Source {
    File(PathBuf),
    Memory(Vec<u8>),
}

/// Runs `request` (`kb share --protocol N VERB ... --store ...`) in the server's pod with `input` on stdin; returns its stdout.
pub(crate) async fn server_exec(
    kube: &Kube,
    request: &Request<'_>,
    input: Input,
    action: &str,
) -> Result<Vec<u8>> {
    let failed = |reason: String| Error::Server {
        namespace: kube.namespace.clone(),
        action: action.into(),
        reason,
    };
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let mut command = vec![SERVER_KB.to_string()];
    command.extend(request.argv(DEFAULT_STORE));
    // kube's default of 1 KiB per exec message makes 40,000 messages of 40 MB.
    let params = AttachParams::default()
        .container("server")
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .max_stdin_buf_size(256 * 1024)
        .max_stdout_buf_size(256 * 1024);
    let mut process = pods
        .exec(SERVER_POD, command, &params)
        .await
        .map_err(|e| failed(crate::error::chain(&e)))?;
    // Buffered: the exec stream sends each write as a message of its own.
    let mut stdin = tokio::io::BufWriter::with_capacity(
        256 * 1024,
        process.stdin().ok_or_else(|| failed("no stdin".into()))?,
    );
    let mut stdout = process.stdout().ok_or_else(|| failed("no stdout".into()))?;
    let mut stderr = process.stderr().ok_or_else(|| failed("no stderr".into()))?;
    let status = process.take_status();
    let feed = async move {
        match input {
            Input::Bytes(bytes) => stdin.write_all(&bytes).await?,
            Input::Blobs(blobs) => {
                // Files are read on a thread of their own into large batches: one async file operation per small
                // file would cost more than sending it.
                let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(8);
                std::thread::spawn(move || {
                    let sent = frame_blobs(&blobs, |batch| {
                        tx.blocking_send(Ok(batch))
                            .map_err(|_| std::io::Error::other("upload stopped"))
                    });
                    let last = sent.map(|()| format!("{END}\n").into_bytes());
                    let _ = tx.blocking_send(last);
                });
                while let Some(batch) = rx.recv().await {
                    stdin.write_all(&batch?).await?;
                }
            }
        }
        stdin.flush().await?;
        Ok::<_, std::io::Error>(stdin)
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let (fed, read_out, read_err) = tokio::join!(
        feed,
        stdout.read_to_end(&mut out),
        stderr.read_to_end(&mut err)
    );
    let _stdin = fed.map_err(|e| failed(format!("sending: {e}")))?;
    read_out.map_err(|e| failed(format!("reading: {e}")))?;
    let _ = read_err;
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(out),
        Some(s) => Err(failed(format!(
            "{} {}",
            s.message.unwrap_or_default(),
            String::from_utf8_lossy(&err).trim()
        ))),
        None => Ok(out),
    }
}

impl ServerShare {
    /// What a coordinator needs to have pods fetch the tree.
    pub fn tree_ref(&self) -> TreeRef {
        TreeRef {
            task: self.task.clone(),
            dir: self.dir.clone(),
            address: self.address.clone(),
            host_public: self.host_public.clone(),
            pod_key: self.pod_key.clone(),
            server_uid: self.server_uid.clone(),
        }
    }

    /// The share of a coordinator, from the client's [`TreeRef`] (no syncback: the client is gone).
    pub fn from_ref(tree: TreeRef, kube: Kube) -> ServerShare {
        ServerShare {
            kube,
            server_uid: tree.server_uid,
            dir: tree.dir,
            task: tree.task,
            manifest: Manifest::default(),
            pod_key: tree.pod_key,
            host_public: tree.host_public,
            address: tree.address,
            stats: UploadStats::default(),
            joined: Mutex::new(Vec::new()),
        }
    }

    /// The task's tree as uploaded.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where the pods' copy is recorded, for syncback.
    fn base_path(&self) -> String {
        format!("/tmp/kb-share-base-{}.json", self.task)
    }

    /// Has the pod behind `conn` fetch the tree into the working directory.
    pub async fn prepare_pod(&self, conn: &Connection, pod: &str) -> Result<()> {
        let q = crate::template::quote;
        let command = format!(
            "{POD_KB} share fetch --server {} --host-key-pub {} --into {} --base {}",
            q(&self.address),
            q(&self.host_public),
            q(&self.dir.display().to_string()),
            q(&self.base_path())
        );
        let failure = match conn.run_collect(&command, self.pod_key.as_bytes()).await {
            Ok((0, _, _)) => return Ok(()),
            Ok((code, _, stderr)) => Error::Pod {
                pod: pod.into(),
                action: "fetch the working directory from the share server".into(),
                reason: format!("exit {code}: {}", String::from_utf8_lossy(&stderr).trim()),
            },
            Err(reason) => Error::Pod {
                pod: pod.into(),
                action: "fetch the working directory".into(),
                reason,
            },
        };
        // The likeliest cause of a fetch failing after a good upload: the server's pod was replaced.
        let now = server_pod_uid(&self.kube).await;
        if self.server_uid.is_some() && now != self.server_uid {
            return Err(Error::Replaced {
                namespace: self.kube.namespace.clone(),
            });
        }
        Err(failure)
    }

    /// Remembers a pod that joined, for syncback.
    pub fn joined(&self, pod: &str) {
        if let Ok(mut joined) = self.joined.lock() {
            joined.push(pod.to_string());
        }
    }

    /// The pods that joined the run.
    pub fn joined_pods(&self) -> Vec<String> {
        self.joined.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// Brings back what the jobs wrote on the pod behind `conn`, adding to `report`.
    pub async fn syncback_pod(
        &self,
        conn: &Connection,
        pod: &str,
        report: &mut SyncReport,
    ) -> Result<()> {
        let failed = |reason: String| Error::Pod {
            pod: pod.into(),
            action: "list what its jobs wrote".into(),
            reason,
        };
        let command = format!(
            "{POD_KB} share changes --base {} --dir {}",
            crate::template::quote(&self.base_path()),
            crate::template::quote(&self.dir.display().to_string())
        );
        let (code, tar, stderr) = conn.run_collect(&command, b"").await.map_err(failed)?;
        if code != 0 {
            return Err(failed(format!(
                "exit {code}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        let (dir, base, task, name) = (
            self.dir.clone(),
            self.manifest.clone(),
            self.task.clone(),
            pod.to_string(),
        );
        let (result, part) = tokio::task::spawn_blocking(move || {
            let mut part = SyncReport::default();
            let result = apply(&tar[..], &dir, &base, &task, &name, &mut part);
            (result, part)
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
        result.map_err(|e| failed(e.to_string()))?;
        report.updated.extend(part.updated);
        report.unchanged += part.unchanged;
        report.conflicts.extend(part.conflicts);
        Ok(())
    }
}
