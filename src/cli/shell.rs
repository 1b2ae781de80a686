//! `kb shell`: options.

use super::pods::{KubeOpts, PodShapeOpts};

/// Options of `kb shell`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShellOpts {
    /// Size and images of the pod.
    #[command(flatten)]
    pub shape: PodShapeOpts,
    /// Cluster and namespace.
    #[command(flatten)]
    pub kube: KubeOpts,
    /// A command to run instead of an interactive shell (still on a terminal).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}
