//! Options that choose Kubernetes pods as workers (`kb parallel --pods`, `kb shell`).

/// Where and how big the pods of a task are.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PodOpts {
    /// Run on N pods of the cluster.
    #[arg(long, value_name = "N")]
    pub pods: Option<usize>,
}
