//! `kb cluster-setup`: options.

/// Options of `kb cluster-setup`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterSetupOpts {
    /// The namespace the manifests create and grant rights in.
    #[arg(short = 'n', long, env = "KB_NAMESPACE", default_value = crate::k8s::manifests::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The image the share server runs: kb's agent image of this version
    /// [default: `$KB_REGISTRY/kb/agent:VERSION`, or `kb/agent:VERSION` without `KB_REGISTRY`].
    #[arg(long = "agent-image", env = "KB_AGENT_IMAGE", value_name = "IMAGE")]
    pub agent_image: Option<String>,
}
