//! `kb finish`: stop and remove tasks and everything they own; a task already gone is not an error.

use crate::cli::finish::FinishOpts;
use crate::error::Result;
use crate::k8s::client::{FINISH_RIGHTS, connect};
use crate::k8s::finish_task;

/// Runs `kb finish`.
pub async fn exec(opts: FinishOpts) -> Result<u8> {
    let kube = connect(&opts.kube.target(), FINISH_RIGHTS).await?;
    for id in &opts.ids {
        if finish_task(&kube, id).await? {
            eprintln!("kb: finished task `{id}`");
        } else {
            eprintln!("kb: task `{id}` has nothing left in namespace `{}`", kube.namespace);
        }
    }
    Ok(crate::error::exit::SUCCESS)
}
