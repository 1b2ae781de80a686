//! `kb coordinate`: the coordinator of an `--async` task, in a pod the client created. It runs the handed-over
//! `kb parallel` on the task's pods, prints the jobs' output (kept as this pod's log for `kb logs`), then records
//! GNU parallel's exit status in the task's Lease and suspends the Job so its worker pods stop.

use clap::Parser;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};

use crate::commands::error::{Error, Result};
use crate::commands::parallel::ParallelLine;
use crate::k8s::coordinator::{ARGS, EXIT_STATUS, RUN_DIR};

/// Runs `kb coordinate`.
pub async fn exec() -> Result<u8> {
    let id = std::env::var("KB_TASK_ID").map_err(|_| {
        Error::usage(
            "`kb coordinate` runs inside an --async task's coordinator pod",
            "run `kb parallel --pods N --async ...` instead",
        )
    })?;
    let path = format!("{RUN_DIR}/{ARGS}");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        action: format!("read `{path}`"),
        source,
    })?;
    let args: Vec<&str> = text.split('\0').collect();
    let opts = match ParallelLine::try_parse_from(&args) {
        Ok(ParallelLine::Parallel(opts)) => opts,
        _ => {
            return Err(Error::usage(
                format!("`{path}` holds no `kb parallel` command line"),
                "this is a bug in kb; please report it",
            ));
        }
    };
    let target = opts.pods.target();
    let status = match crate::commands::parallel::exec_with(*opts, Some(id.clone())).await {
        Ok(status) => status,
        Err(err) => {
            err.render(&mut std::io::stderr());
            err.exit_code("parallel")
        }
    };
    eprintln!("kb: task {id} ended with exit status {status}");
    record(&target, &id, status).await?;
    Ok(crate::error::exit::SUCCESS)
}

/// Writes the exit status into the Lease and suspends the Job (which stops its pods, and keeps the Job).
async fn record(target: &crate::k8s::Target, id: &str, status: u8) -> Result<()> {
    let kube = crate::k8s::client::connect(target, &[]).await?;
    let name = format!("kb-{id}");
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let note = serde_json::json!({"metadata": {"annotations": {EXIT_STATUS: status.to_string()}}});
    leases
        .patch(&name, &PatchParams::default(), &Patch::Merge(&note))
        .await
        .map_err(|e| {
            crate::k8s::client::classify(
                &kube,
                &format!("record the exit status in lease `{name}`"),
                e,
            )
        })?;
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let suspend = serde_json::json!({"spec": {"suspend": true}});
    jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .map_err(|e| crate::k8s::client::classify(&kube, &format!("suspend job `{name}`"), e))?;
    Ok(())
}
