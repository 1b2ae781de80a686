//! `kb finish`: options.

use super::pods::KubeOpts;

/// Options of `kb finish`.
#[derive(Debug, Clone, clap::Args)]
pub struct FinishOpts {
    /// The ids of the tasks to stop and remove (as `kb status` shows them).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
    /// Cluster and namespace.
    #[command(flatten)]
    pub kube: KubeOpts,
}
