//! `kb finish`: options.

use super::pods::KubeOpts;

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
