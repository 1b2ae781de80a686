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
use crate::k8s::client::{LOGS_RIGHTS, classify, connect};
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
    let no_task = || {
        Error::K8s(crate::k8s::Error::NoSuchTask {
            id: format!("{} (an --async task)", opts.id),
            namespace: kube.namespace.clone(),
        })
    };
    // The coordinator may still be starting: wait for its container (up to the start timeout) before reading.
    let start = tokio::time::Instant::now();
    loop {
        let pod = pods
            .get_opt(&name)
            .await
            .map_err(|e| classify(&kube, &format!("read pod `{name}`"), e))?
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
            break;
        }
        if start.elapsed() > crate::k8s::task::DEFAULT_START_TIMEOUT {
            return Err(Error::K8s(crate::k8s::Error::Timeout {
                what: format!("the coordinator of task `{}` to start", opts.id),
                seconds: crate::k8s::task::DEFAULT_START_TIMEOUT.as_secs(),
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let params = LogParams {
        container: Some(COORDINATOR.into()),
        follow: opts.follow,
        ..Default::default()
    };
    let stream = pods
        .log_stream(&name, &params)
        .await
        .map_err(|e| classify(&kube, &format!("read the log of pod `{name}`"), e))?;
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
                return Ok(crate::error::exit::SUCCESS);
            }
            return Err(Error::Io {
                action: "write to stdout".into(),
                source: err,
            });
        }
    }
    let _ = stdout.flush().await;
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let lease = leases
        .get_opt(&format!("kb-{}", opts.id))
        .await
        .map_err(|e| classify(&kube, "read the task's lease", e))?;
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
