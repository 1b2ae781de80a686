//! `kb share ...`: see [`crate::cli::share`].

use std::io::Write;

use crate::cli::share::{ShareOpts, ShareRequest};
use crate::error::{Error, Result};
use crate::share::manifest::Manifest;
use crate::share::store::Store;

/// Runs one share request.
pub async fn exec(opts: ShareOpts) -> Result<u8> {
    let io = |action: &str| {
        let action = action.to_string();
        move |source| Error::Io { action, source }
    };
    let stdin = || std::io::BufReader::new(std::io::stdin().lock());
    let stdout = || std::io::BufWriter::new(std::io::stdout().lock());
    match opts.request {
        ShareRequest::Init(s) => {
            Store::open(&s.store).map_err(io("open the store"))?;
        }
        ShareRequest::Server { store, listen } => {
            let opened = Store::open(&store.store).map_err(io("open the store"))?;
            let agent = crate::cli::AgentOpts {
                listen,
                host_key: store.store.join("host_key"),
                authorized_key: None,
                authorized_keys: Some(opened.authorized_keys()),
                print_address: false,
                orphan_timeout: None,
            };
            crate::ssh::serve_agent(&agent).await?;
        }
        ShareRequest::Have(s) => Store::open(&s.store)
            .and_then(|st| st.have(stdin(), stdout()))
            .map_err(io("answer `have`"))?,
        ShareRequest::Put(s) => Store::open(&s.store)
            .and_then(|st| st.put(stdin(), stdout()))
            .map_err(io("store the blobs"))?,
        ShareRequest::Patch {
            store,
            base,
            manifest,
        } => Store::open(&store.store)
            .and_then(|st| st.patch(&base, &manifest, stdin(), stdout()))
            .map_err(io("apply the delta"))?,
        ShareRequest::LazyAllow {
            store,
            task,
            client_key,
            pod_key,
        } => {
            let exe = std::env::current_exe().map_err(io("find kb"))?;
            let command = |request: &str| {
                format!(
                    "{} share {request} --store {} --task {}",
                    crate::template::quote(&exe.display().to_string()),
                    crate::template::quote(&store.store.display().to_string()),
                    crate::template::quote(&task)
                )
            };
            Store::open(&store.store)
                .and_then(|st| {
                    st.allow_lazy(
                        &task,
                        &[
                            (client_key.as_str(), command("lazy-host")),
                            (pod_key.as_str(), command("lazy-attach")),
                        ],
                    )
                })
                .map_err(io("allow the task's lazy share"))?
        }
        ShareRequest::LazyHost { store, task } => {
            let store = Store::open(&store.store).map_err(io("open the store"))?;
            crate::share::relay::host(&store, &task)
                .await
                .map_err(io("relay the lazy share"))?
        }
        ShareRequest::LazyAttach { store, task } => {
            let store = Store::open(&store.store).map_err(io("open the store"))?;
            crate::share::relay::attach(&store, &task)
                .await
                .map_err(io("reach the task's lazy share"))?
        }
        ShareRequest::Commit {
            store,
            task,
            key,
            manifest,
        } => {
            let exe = std::env::current_exe().map_err(io("find kb"))?;
            let serve = format!(
                "{} share serve --store {} --task {}",
                crate::template::quote(&exe.display().to_string()),
                crate::template::quote(&store.store.display().to_string()),
                crate::template::quote(&task)
            );
            Store::open(&store.store)
                .and_then(|st| st.commit(&task, &key, &manifest, &serve, stdout()))
                .map_err(io("record the task"))?
        }
        ShareRequest::Serve { store, task } => Store::open(&store.store)
            .and_then(|st| st.serve(&task, stdout()))
            .map_err(io("serve the task's tree"))?,
        ShareRequest::Drop { store, task } => Store::open(&store.store)
            .and_then(|st| st.drop_task(&task))
            .map_err(io("forget the task"))?,
        ShareRequest::Fetch {
            server,
            host_key_pub,
            into,
            base,
        } => {
            let key = crate::share::pod::read_key(std::io::stdin().lock())
                .map_err(io("read the pod key"))?;
            crate::share::client::fetch(&server, &host_key_pub, &key, &into, &base)
                .await
                .map_err(io("fetch the working directory from the share server"))?;
        }
        ShareRequest::Changes { base, dir } => {
            let base: Manifest = std::fs::read(&base)
                .map_err(io("read the fetched manifest"))
                .and_then(|b| {
                    serde_json::from_slice(&b)
                        .map_err(|e| io("parse the fetched manifest")(e.into()))
                })?;
            let mut out = stdout();
            crate::share::pod::changes(&dir, &base, &mut out)
                .map_err(io("list the changed files"))?;
            out.flush().map_err(io("write the changed files"))?;
        }
    }
    Ok(crate::error::exit::SUCCESS)
}
