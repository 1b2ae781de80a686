//! `kb logs`: options.

use super::pods::KubeOpts;

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
