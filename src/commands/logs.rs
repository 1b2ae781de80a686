//! `kb logs ID [-f]`: the output of an `--async` task, read from its coordinator pod's log; exits with the task's
//! exit status once the coordinator recorded one.

use std::time::Duration;

use futures::AsyncBufReadExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tokio::io::AsyncWriteExt;

use crate::commands::error::{Error, Result};
use crate::commands::options::KubeOpts;
use crate::k8s::client::{Kube, LOGS_RIGHTS, classify, connect};
use crate::k8s::coordinator::{COORDINATOR, coordinator_name, recorded_exit};

/// Options of `kb logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsOpts {
    /// The id of an `--async` task (as `kb status` shows it).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Follow the output until the task ends, then exit with its exit status.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Cluster and namespace.
    #[command(flatten)]
    pub kube: KubeOpts,
}

/// Runs `kb logs`.
pub async fn exec(opts: LogsOpts) -> Result<u8> {
    let kube = connect(&opts.kube.target(), LOGS_RIGHTS).await?;
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let name = coordinator_name(&opts.id);
    await_coordinator(&kube, &pods, &name, &opts.id).await?;
    if !copy_log(&kube, &pods, &name, opts.follow).await? {
        return Ok(crate::error::exit::SUCCESS);
    }
    exit_status(&kube, &opts).await
}

/// Waits for the coordinator's container to start (up to the start timeout): a log cannot be read before.
async fn await_coordinator(kube: &Kube, pods: &Api<Pod>, name: &str, id: &str) -> Result<()> {
    let no_task = || {
        Error::K8s(crate::k8s::Error::NoSuchTask {
            id: format!("{id} (an --async task)"),
            namespace: kube.namespace.clone(),
        })
    };
    let start = tokio::time::Instant::now();
    loop {
        let pod = pods
            .get_opt(name)
            .await
            .map_err(|e| classify(kube, &format!("read pod `{name}`"), e))?
            .ok_or_else(no_task)?;
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.state.as_ref().is_some_and(|s| s.waiting.is_none()))
            });
        if started {
            return Ok(());
        }
        if start.elapsed() > crate::k8s::task::DEFAULT_START_TIMEOUT {
            return Err(Error::K8s(crate::k8s::Error::Timeout {
                what: format!("the coordinator of task `{id}` to start"),
                seconds: crate::k8s::task::DEFAULT_START_TIMEOUT.as_secs(),
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Copies the coordinator's log to stdout. Returns false when stdout was closed (a broken pipe), which `kb logs`
/// treats as a quiet success, the way `kb logs ID | head` expects.
async fn copy_log(kube: &Kube, pods: &Api<Pod>, name: &str, follow: bool) -> Result<bool> {
    let params = LogParams {
        container: Some(COORDINATOR.into()),
        follow,
        ..Default::default()
    };
    let stream = pods
        .log_stream(name, &params)
        .await
        .map_err(|e| classify(kube, &format!("read the log of pod `{name}`"), e))?;
    let mut lines = stream.lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = futures::StreamExt::next(&mut lines).await {
        let line = line.map_err(|source| Error::Io {
            action: format!("read the log of pod `{name}`"),
            source,
        })?;
        let written = async {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await
        };
        if let Err(err) = written.await {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(false);
            }
            return Err(Error::Io {
                action: "write to stdout".into(),
                source: err,
            });
        }
    }
    let _ = stdout.flush().await;
    Ok(true)
}

/// The task's exit status from its lease once the log ended. Without one, a followed task is an error (its
/// coordinator ended without recording it), and an unfollowed one is still running.
async fn exit_status(kube: &Kube, opts: &LogsOpts) -> Result<u8> {
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let lease = leases
        .get_opt(&format!("kb-{}", opts.id))
        .await
        .map_err(|e| classify(kube, "read the task's lease", e))?;
    match lease.as_ref().and_then(recorded_exit) {
        Some(status) => Ok(status),
        None if opts.follow => Err(Error::K8s(crate::k8s::Error::CannotStart {
            task: opts.id.clone(),
            reason: "its coordinator ended without recording an exit status".into(),
        })),
        None => {
            eprintln!(
                "kb: task {} is still running; `kb logs {} -f` follows it",
                opts.id, opts.id
            );
            Ok(crate::error::exit::SUCCESS)
        }
    }
}
