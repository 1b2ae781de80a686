//! `kb finish`: stop and remove tasks and everything they own; a task already gone is not an error.

use crate::cli::finish::FinishOpts;
use crate::error::Result;
use crate::k8s::client::{FINISH_RIGHTS, STATUS_RIGHTS, connect};
use crate::k8s::finish_task;
use crate::k8s::status::list_tasks;

/// Runs `kb finish`.
pub async fn exec(opts: FinishOpts) -> Result<u8> {
    let rights: Vec<_> = FINISH_RIGHTS
        .iter()
        .chain(if opts.orphaned { STATUS_RIGHTS } else { &[] })
        .copied()
        .collect();
    let kube = connect(&opts.kube.target(), &rights).await?;
    let mut ids = opts.ids.clone();
    if opts.orphaned {
        let orphans = list_tasks(&kube, opts.all)
            .await?
            .into_iter()
            .filter(|t| t.status == "ORPHANED");
        ids.extend(orphans.map(|t| t.id).filter(|id| !opts.ids.contains(id)));
        if ids.is_empty() {
            eprintln!("kb: no orphaned task in namespace `{}`", kube.namespace);
        }
    }
    for id in &ids {
        if finish_task(&kube, id).await? {
            eprintln!("kb: finished task `{id}`");
        } else {
            eprintln!(
                "kb: task `{id}` has nothing left in namespace `{}`",
                kube.namespace
            );
        }
    }
    Ok(crate::error::exit::SUCCESS)
}
