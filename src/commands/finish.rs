//! `kb finish`: stop and remove tasks and everything they own, in one go; a task already gone is not an error.
//! `--orphaned` removes exactly the tasks `kb status` shows as ORPHANED (this machine's, or everyone's with `-A`).

use crate::commands::error::Result;
use crate::commands::options::KubeOpts;
use crate::k8s::client::{FINISH_RIGHTS, STATUS_RIGHTS, connect};
use crate::k8s::status::{TaskRow, list_tasks};
use crate::k8s::task::finish_tasks;

/// Options of `kb finish`.
#[derive(Debug, Clone, clap::Args)]
pub struct FinishOpts {
    /// The ids of the tasks to stop and remove (as `kb status` shows them).
    #[arg(value_name = "ID", required_unless_present = "orphaned")]
    pub ids: Vec<String>,
    /// Also remove every task `kb status` shows as ORPHANED (its client stopped renewing its heartbeat).
    #[arg(long)]
    pub orphaned: bool,
    /// With `--orphaned`: every machine's orphaned tasks, not only this one's.
    #[arg(short = 'A', long = "all", requires = "orphaned")]
    pub all: bool,
    /// Cluster and namespace.
    #[command(flatten)]
    pub kube: KubeOpts,
}

/// Runs `kb finish`.
pub async fn exec(opts: FinishOpts) -> Result<u8> {
    let rights: Vec<_> = FINISH_RIGHTS
        .iter()
        .chain(if opts.orphaned { STATUS_RIGHTS } else { &[] })
        .copied()
        .collect();
    let kube = connect(&opts.kube.target(), &rights).await?;
    let ns = &kube.namespace;
    let mut ids = Vec::new();
    for id in &opts.ids {
        if is_task_id(id) {
            ids.push(id.clone());
        } else {
            eprintln!("kb: `{id}` is not a task id (`kb status` lists them)");
        }
    }
    let mut orphans: Vec<TaskRow> = Vec::new();
    if opts.orphaned {
        orphans = list_tasks(&kube, opts.all)
            .await?
            .into_iter()
            .filter(|t| t.status == "ORPHANED")
            .collect();
        ids.extend(
            orphans
                .iter()
                .map(|t| t.id.clone())
                .filter(|id| !opts.ids.contains(id)),
        );
        if orphans.is_empty() {
            let whose = if opts.all { "" } else { " from this machine" };
            eprintln!("kb: no orphaned task{whose} in namespace `{ns}`");
        }
    }
    let found = finish_tasks(&kube, &ids).await?;
    // The share server forgets the tasks too: their trees, and the keys a lazy share let in.
    // (Its pod looked up once, without waiting for it to be Ready: a server that is not there has nothing.)
    let server = async {
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(kube.client.clone(), &kube.namespace);
        matches!(
            pods.get_opt(crate::share::client::SERVER_POD).await,
            Ok(Some(_))
        )
    };
    if !found.is_empty() && server.await {
        for id in &found {
            crate::k8s::share::server::drop_task(&kube, id).await;
        }
    }
    for id in &ids {
        let orphan = orphans.iter().find(|t| &t.id == id);
        match (found.contains(id), orphan) {
            (true, Some(row)) => eprintln!("kb: finished task `{id}` {}", describe_orphan(row)),
            (true, None) => eprintln!("kb: finished task `{id}`"),
            (false, _) => eprintln!("kb: task `{id}` has nothing left in namespace `{ns}`"),
        }
    }
    if !orphans.is_empty() {
        let count = orphans.iter().filter(|t| found.contains(&t.id)).count();
        let plural = if count == 1 { "" } else { "s" };
        eprintln!("kb: finished {count} orphaned task{plural} in namespace `{ns}`");
    }
    Ok(crate::error::exit::SUCCESS)
}

/// Ids are label values kb made (`[a-z0-9]`); anything else would not select a task, or would change the selector.
fn is_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What an orphan was, for the line that says it was removed.
fn describe_orphan(row: &TaskRow) -> String {
    format!(
        "(ORPHANED, age {}, {} pods ready, progress {}, from `{}`: {})",
        row.age, row.health, row.progress, row.origin, row.command
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_cannot_change_the_selector() {
        assert!(is_task_id("k3x9a2bq"));
        assert!(!is_task_id("a),kb.dev/origin in (x"));
        assert!(!is_task_id("a b"));
        assert!(!is_task_id(""));
    }
}
