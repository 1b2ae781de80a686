//! `kb share ...`: see `args`.

use std::io::Write;
use std::path::Path;

use std::process::Stdio;

use tokio::signal::unix::{SignalKind, signal};

use super::args::{MountOpts, ShareOpts, ShareRequest};
use crate::commands::error::{Error, Result};
use crate::share::manifest::Manifest;
use crate::share::store::Store;

/// Runs one share request.
pub async fn exec(opts: ShareOpts) -> Result<u8> {
    let stdin = || std::io::BufReader::new(std::io::stdin().lock());
    let stdout = || std::io::BufWriter::new(std::io::stdout().lock());
    crate::share::protocol::check_version(opts.protocol).map_err(|e| Error::Usage {
        message: e.to_string(),
        hint: None,
    })?;
    match opts.request {
        ShareRequest::Init(s) => on_store(&s.store, "open the store", |_| Ok(()))?,
        ShareRequest::Server {
            store,
            listen,
            nfs_listen,
            nfs_deadline,
        } => serve(&store.store, listen, &nfs_listen, nfs_deadline).await?,
        ShareRequest::Have(s) => {
            on_store(&s.store, "answer `have`", |st| st.have(stdin(), stdout()))?
        }
        ShareRequest::Put(s) => {
            on_store(&s.store, "store the blobs", |st| st.put(stdin(), stdout()))?
        }
        ShareRequest::Patch {
            store,
            base,
            manifest,
        } => on_store(&store.store, "apply the delta", |st| {
            st.patch(&base, &manifest, stdin(), stdout())
        })?,
        ShareRequest::LazyAllow {
            store,
            task,
            client_key,
            pod_key,
        } => lazy_allow(&store.store, &task, &client_key, &pod_key)?,
        ShareRequest::LazyHost { store, task } => lazy_host(&store.store, &task).await?,
        ShareRequest::LazyAttach { store, task } => lazy_attach(&store.store, &task).await?,
        ShareRequest::Commit {
            store,
            task,
            key,
            manifest,
        } => commit(&store.store, &task, &key, &manifest)?,
        ShareRequest::Serve { store, task } => {
            on_store(&store.store, "serve the task's tree", |st| {
                st.serve(&task, stdout())
            })?
        }
        ShareRequest::Drop { store, task } => {
            on_store(&store.store, "forget the task", |st| st.drop_task(&task))?
        }
        ShareRequest::Connect {
            server,
            host_key_pub,
            key,
        } => connect(&server, &host_key_pub, &key).await?,
        ShareRequest::Fetch {
            server,
            host_key_pub,
            into,
            base,
        } => fetch(&server, &host_key_pub, &into, &base).await?,
        ShareRequest::SftpServe { root } => sftp_serve(&root).await?,
        ShareRequest::Mount(opts) => return mount(opts).await,
        ShareRequest::Changes { base, dir } => changes(&base, &dir)?,
    }
    Ok(crate::error::exit::SUCCESS)
}

fn io(action: &str) -> impl FnOnce(std::io::Error) -> Error {
    let action = action.to_string();
    move |source| Error::Io { action, source }
}

/// Opens the store and runs one request on it, reporting an error in either step as `action`.
fn on_store(
    store: &Path,
    action: &str,
    request: impl FnOnce(Store) -> std::io::Result<()>,
) -> Result<()> {
    Store::open(store).and_then(request).map_err(io(action))
}

/// `kb share connect`: carries stdin and stdout over a channel to the share server, logged in with `key`.
async fn connect(server: &str, host_key_pub: &str, key: &Path) -> Result<()> {
    crate::share::client::connect_stdio(server, host_key_pub, key)
        .await
        .map_err(io("carry the session to the share server"))
}

/// `kb share lazy-host`: relays the task's lazy share from the store's side.
async fn lazy_host(store: &Path, task: &str) -> Result<()> {
    let store = Store::open(store).map_err(io("open the store"))?;
    crate::share::relay::host(&store, task)
        .await
        .map_err(io("relay the lazy share"))
}

/// `kb share lazy-attach`: joins the relay the task's pod is hosting.
async fn lazy_attach(store: &Path, task: &str) -> Result<()> {
    let store = Store::open(store).map_err(io("open the store"))?;
    crate::share::relay::attach(&store, task)
        .await
        .map_err(io("reach the task's lazy share"))
}

/// `kb share fetch`: reads the pod key from stdin, then unpacks the task's tree from the share server.
async fn fetch(server: &str, host_key_pub: &str, into: &Path, base: &Path) -> Result<()> {
    let key =
        crate::share::pod::read_key(std::io::stdin().lock()).map_err(io("read the pod key"))?;
    crate::share::client::fetch(server, host_key_pub, &key, into, base)
        .await
        .map_err(io("fetch the working directory from the share server"))
}

/// `kb share sftp-serve`: serves `root` over SFTP on stdin and stdout, the lazy share's server end.
async fn sftp_serve(root: &Path) -> Result<()> {
    let stream = crate::share::lazy::stdio().map_err(io("open stdin and stdout"))?;
    crate::share::lazy::serve_sftp(stream, root)
        .await
        .map_err(io(&format!("serve `{}` over SFTP", root.display())))
}

/// `kb share server`: kb's agent on the store's host key and `authorized_keys`, with the NFS server beside it.
async fn serve(
    store: &Path,
    listen: String,
    nfs_listen: &[String],
    nfs_deadline: std::time::Duration,
) -> Result<()> {
    let opened = Store::open(store).map_err(io("open the store"))?;
    // Each NFS address on stderr, the share server's log: `kb share: NFS on IP:PORT` (tests read the port there).
    let listeners = crate::share::nfs::bind(opened.clone(), nfs_listen, nfs_deadline).await;
    for address in listeners.addresses() {
        eprintln!("kb share: NFS on {address}");
    }
    for (address, err) in &listeners.failed {
        eprintln!(
            "kb share: cannot serve NFS on `{address}` ({err}); the lazy share's NFS path is not there"
        );
    }
    let nfs = crate::share::nfs::serve(listeners);
    let agent = crate::ssh::AgentConfig {
        listen,
        host_key: store.join("host_key"),
        authorized_key: None,
        authorized_keys: Some(opened.authorized_keys()),
        print_address: false,
        orphan_timeout: None,
    };
    // NFS serves alongside the SSH side and ends with it; it never ends the server by itself.
    tokio::select! {
        end = crate::ssh::serve_agent(&agent) => { end?; }
        () = nfs => {}
    }
    Ok(())
}

/// The command line of this kb's share request `request` for `task` (a key's forced command).
fn forced_command(store: &Path, request: &str, task: &str) -> Result<String> {
    let exe = std::env::current_exe().map_err(io("find kb"))?;
    Ok(format!(
        "{} share {request} --store {} --task {}",
        crate::template::quote(&exe.display().to_string()),
        crate::template::quote(&store.display().to_string()),
        crate::template::quote(task)
    ))
}

/// `kb share lazy-allow`: the task's client key may host its lazy share and its pod key attach; answers the host
/// key, then the task's NFS export path.
fn lazy_allow(store: &Path, task: &str, client_key: &str, pod_key: &str) -> Result<()> {
    let opened = Store::open(store).map_err(io("open the store"))?;
    let commands = [
        (client_key, forced_command(store, "lazy-host", task)?),
        (pod_key, forced_command(store, "lazy-attach", task)?),
    ];
    opened
        .allow_lazy(task, &commands)
        .map_err(io("allow the task's lazy share"))?;
    let token = opened
        .allow_nfs(task)
        .map_err(io("make the task's NFS export"))?;
    // The client pins the server's host key, as after `commit`; pods on nodes that mount NFS mount the export path.
    let host = opened.host_public_key().map_err(io("read the host key"))?;
    let export = crate::share::nfs::export_path(task, &token);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{host}\n{export}")
        .and_then(|()| out.flush())
        .map_err(io("write the host key and the NFS export"))
}

/// `kb share commit`: records the task's manifest and the key its pods fetch it with (held to `serve`).
fn commit(store: &Path, task: &str, key: &str, manifest: &str) -> Result<()> {
    let serve = forced_command(store, "serve", task)?;
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let opened = Store::open(store)
        .and_then(|st| st.commit(task, key, manifest, &serve, out).map(|()| st))
        .map_err(io("record the task"))?;
    // Room for the next uploads; a failure here does not undo the commit. The share server's log says what went.
    use crate::share::store::{COLLECT_ABOVE, COLLECT_DOWN_TO, KEEP_RECENT};
    match opened.collect(COLLECT_ABOVE, COLLECT_DOWN_TO, KEEP_RECENT) {
        Ok((0, _)) => {}
        Ok((count, bytes)) => {
            eprintln!("kb share: deleted {count} unused contents ({bytes} bytes)")
        }
        Err(err) => eprintln!("kb share: cannot delete unused contents: {err}"),
    }
    Ok(())
}

/// `kb share changes`, in a worker pod: a tar of the files that differ from the fetched tree, on stdout.
fn changes(base: &Path, dir: &Path) -> Result<()> {
    let base: Manifest = std::fs::read(base)
        .map_err(io("read the fetched manifest"))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| io("parse the fetched manifest")(e.into()))
        })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    crate::share::pod::changes(dir, &base, &mut out).map_err(io("list the changed files"))?;
    out.flush().map_err(io("write the changed files"))
}

/// `kb share mount`: exit 0 when stopped with the share alive, 1 when the share was lost or unmounted from outside.
async fn mount(opts: MountOpts) -> Result<u8> {
    use crate::share::lazy::{MountOutcome, MountSpec};
    let io = |action: String| move |source| Error::Io { action, source };
    let spec = MountSpec {
        at: opts.at,
        ttl: opts.ttl,
        deadline: opts.deadline,
    };
    let mut signals = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ] {
        signals.push(signal(kind).map_err(io("listen for signals".to_string()))?);
    }
    let shutdown = async move {
        let waits = signals.iter_mut().map(|s| Box::pin(s.recv()));
        futures::future::select_all(waits).await;
    };
    let outcome = match opts.command.split_first() {
        None => {
            let stream =
                crate::share::lazy::stdio().map_err(io("open stdin and stdout".to_string()))?;
            crate::share::lazy::mount(stream, &spec, shutdown).await
        }
        Some((program, args)) => {
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(io(format!("run `{program}`")))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                unreachable!("both are piped; this is a bug")
            };
            let stream = tokio::io::join(stdout, stdin);
            let outcome = crate::share::lazy::mount(stream, &spec, shutdown).await;
            let _ = child.start_kill();
            outcome
        }
    }
    .map_err(|e| Error::Io {
        action: format!("mount the lazy share at `{}`", spec.at.display()),
        source: std::io::Error::other(crate::error::chain(&e)),
    })?;
    Ok(match outcome {
        MountOutcome::Stopped => crate::error::exit::SUCCESS,
        MountOutcome::Lost | MountOutcome::UnmountedOutside => {
            eprintln!(
                "kb: the lazy share at `{}` ended: {outcome:?}",
                spec.at.display()
            );
            crate::error::exit::FAILURE
        }
    })
}
