//! `kb cluster-setup`: print the manifests of `manifests/`, moved to the chosen namespace, for `kubectl apply -f -`.

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

use std::io::Write;

use crate::commands::error::{Error, Result};
use crate::k8s::manifests::{build_all, render};

/// Runs `kb cluster-setup`.
pub async fn exec(opts: ClusterSetupOpts) -> Result<u8> {
    let image = opts
        .agent_image
        .clone()
        .unwrap_or_else(crate::k8s::task::default_agent_image);
    let text = render(&build_all(&opts.namespace, &image)?)?;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            action: "write the manifests to stdout".into(),
            source: err,
        }),
        _ => Ok(crate::error::exit::SUCCESS),
    }
}
