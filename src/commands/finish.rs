//! `kb finish`: stop and remove tasks and everything they own, in one go; a task already gone is not an error.
//! `--orphaned` removes exactly the tasks `kb status` shows as ORPHANED (this machine's, or everyone's with `-A`).
//! Every backend is asked: the cluster's namespace and the local Docker engine.

use crate::commands::error::Result;
use crate::commands::options::KubeOpts;
use crate::model::{CONTAINERS, TaskRow};

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

/// Per backend: what it reported, or why it could not be reached.
type Failures = Vec<Option<crate::backend::Error>>;

/// Runs `kb finish`.
pub async fn exec(opts: FinishOpts) -> Result<u8> {
    let backends = opts.kube.backends();
    let ids = valid_ids(&opts.ids);
    let (orphans, failed) = list_orphans(&backends, opts.orphaned, opts.all).await;
    let (found, failed) = finish_everywhere(&backends, &ids, &orphans, failed).await;
    let mut failed: Vec<crate::backend::Error> = failed.into_iter().flatten().collect();
    let orphan_count: usize = orphans.iter().map(Vec::len).sum();
    // A backend that cannot be reached fails the command only when no other one had anything to remove.
    if !failed.is_empty() && found.is_empty() && orphan_count == 0 {
        return Err(failed.remove(0).into());
    }
    for err in &failed {
        eprintln!("kb: warning: {}", crate::error::chain(err));
    }
    report(&opts, &backends, &ids, &orphans, &found);
    Ok(crate::error::exit::SUCCESS)
}

/// The ids that can name a task; each other one gets a line saying so, and the command goes on without it.
fn valid_ids(ids: &[String]) -> Vec<String> {
    let mut valid = Vec::new();
    for id in ids {
        if is_task_id(id) {
            valid.push(id.clone());
        } else {
            eprintln!("kb: `{id}` is not a task id (`kb status` lists them)");
        }
    }
    valid
}

/// Per backend: its orphans (with `--orphaned`; none without), or why it could not be reached.
async fn list_orphans(
    backends: &[Box<dyn crate::backend::TaskBackend>],
    orphaned: bool,
    all: bool,
) -> (Vec<Vec<TaskRow>>, Failures) {
    let mut orphans: Vec<Vec<TaskRow>> = vec![Vec::new(); backends.len()];
    let mut failed: Failures = backends.iter().map(|_| None).collect();
    if orphaned {
        for (index, backend) in backends.iter().enumerate() {
            match backend.list(all).await {
                Ok(rows) => {
                    orphans[index] = rows
                        .into_iter()
                        .filter(|t| t.status == "ORPHANED")
                        .collect()
                }
                Err(err) => failed[index] = Some(err),
            }
        }
    }
    (orphans, failed)
}

/// Asks every backend that could be reached to finish `ids` and its own orphans: the ids some backend found,
/// and the failures so far, with those of this step added.
async fn finish_everywhere(
    backends: &[Box<dyn crate::backend::TaskBackend>],
    ids: &[String],
    orphans: &[Vec<TaskRow>],
    mut failed: Failures,
) -> (Vec<String>, Failures) {
    let mut found: Vec<String> = Vec::new();
    for (index, backend) in backends.iter().enumerate() {
        if failed[index].is_some() {
            continue;
        }
        let mut mine = ids.to_vec();
        mine.extend(
            orphans[index]
                .iter()
                .map(|t| t.id.clone())
                .filter(|id| !ids.contains(id)),
        );
        if mine.is_empty() {
            continue;
        }
        match backend.finish_ids(&mine).await {
            Ok(gone) => {
                for id in gone {
                    if !found.contains(&id) {
                        found.push(id);
                    }
                }
            }
            Err(err) => failed[index] = Some(err),
        }
    }
    (found, failed)
}

/// Says what became of each task asked for and each orphan, then how many orphans each backend lost.
fn report(
    opts: &FinishOpts,
    backends: &[Box<dyn crate::backend::TaskBackend>],
    ids: &[String],
    orphans: &[Vec<TaskRow>],
    found: &[String],
) {
    let orphan_count: usize = orphans.iter().map(Vec::len).sum();
    let scopes: Vec<String> = backends.iter().filter_map(|b| b.scope()).collect();
    let anywhere = scopes.join(" or in ");
    if opts.orphaned && orphan_count == 0 {
        let whose = if opts.all { "" } else { " from this machine" };
        eprintln!("kb: no orphaned task{whose} in {anywhere}");
    }
    let all_ids = ids.iter().chain(
        orphans
            .iter()
            .flatten()
            .map(|t| &t.id)
            .filter(|id| !ids.contains(id)),
    );
    for id in all_ids {
        let orphan = orphans.iter().flatten().find(|t| &t.id == id);
        match (found.contains(id), orphan) {
            (true, Some(row)) => eprintln!("kb: finished task `{id}` {}", describe_orphan(row)),
            (true, None) => eprintln!("kb: finished task `{id}`"),
            (false, _) => eprintln!("kb: task `{id}` has nothing left in {anywhere}"),
        }
    }
    for (backend, rows) in backends.iter().zip(orphans) {
        if rows.is_empty() {
            continue;
        }
        let count = rows.iter().filter(|t| found.contains(&t.id)).count();
        let plural = if count == 1 { "" } else { "s" };
        let scope = backend.scope().unwrap_or_default();
        eprintln!("kb: finished {count} orphaned task{plural} in {scope}");
    }
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
    let workers = if row.backend == CONTAINERS {
        "containers running"
    } else {
        "pods ready"
    };
    format!(
        "(ORPHANED, age {}, {} {workers}, progress {}, from `{}`: {})",
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
