//! `kb cluster-setup`: options.

/// Options of `kb cluster-setup`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterSetupOpts {
    /// The namespace the manifests create and grant rights in.
    #[arg(short = 'n', long, env = "KB_NAMESPACE", default_value = crate::k8s::manifests::DEFAULT_NAMESPACE)]
    pub namespace: String,
}
