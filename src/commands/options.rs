//! Options shared by several commands: those that choose Kubernetes pods as workers (`kb parallel --pods`, `kb shell`) and the cluster and namespace
//! every Kubernetes command talks to.

use crate::k8s::{PodShape, Target};

/// The size and images of a task's pods (`kb parallel --pods`, `kb shell`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PodShapeOpts {
    /// CPU each pod asks for, as a Kubernetes quantity (2, 0.5, 500m) [default: 100m].
    #[arg(long, value_name = "Q")]
    pub cpu: Option<String>,
    /// Memory each pod asks for and may use, as a Kubernetes quantity (512Mi, 4Gi) [default: 128Mi, no limit].
    #[arg(long, value_name = "Q")]
    pub mem: Option<String>,
    /// The image the jobs run in; it needs no sshd, shell tools or language runtime of kb's [default: debian:bookworm].
    #[arg(long, env = "KB_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,
    /// The image holding kb's static agent, copied into every pod by an init container
    /// [default: `$KB_REGISTRY/kb/agent:VERSION`, or `kb/agent:VERSION` without `KB_REGISTRY`].
    #[arg(long = "agent-image", env = "KB_AGENT_IMAGE", value_name = "IMAGE")]
    pub agent_image: Option<String>,
    /// Stop the pods after this long whatever happens, enforced by Kubernetes (90s, 5m, 2h) [default: 24h].
    #[arg(long = "max-runtime", value_name = "DURATION")]
    pub max_runtime: Option<String>,
    /// Pods end themselves when no client has been connected to them for this long (30s, 5m), so a dead client
    /// costs no more than this; `off` keeps them until --max-runtime [default: 10m].
    #[arg(long = "orphan-timeout", value_name = "DURATION")]
    pub orphan_timeout: Option<String>,
    /// How the pods see the working directory: lazy (read from this machine while the run lasts), eager
    /// (uploaded to the share server before the run), syncback (eager, and what the jobs wrote comes back) or
    /// none [default: kb.toml's, else eager].
    #[arg(long, value_enum, value_name = "HOW")]
    pub share: Option<crate::config::Share>,
    /// How pods mount a lazy share: fuse (a FUSE mount in the pod; needs `kb.dev/fuse` from kb-fuse) or nfs (a
    /// kubelet NFS volume from the share server; needs nodes that mount NFS) [default: kb.toml's, else fuse when
    /// a node offers `kb.dev/fuse`, else nfs].
    #[arg(long = "lazy-mount", value_enum, value_name = "HOW")]
    pub lazy_mount: Option<crate::config::LazyMount>,
}

impl PodShapeOpts {
    /// The shape as plain data for the layers below the command line.
    pub fn to_shape(&self) -> PodShape {
        PodShape {
            cpu: self.cpu.clone(),
            mem: self.mem.clone(),
            image: self.image.clone(),
            agent_image: self.agent_image.clone(),
            max_runtime: self.max_runtime.clone(),
            orphan_timeout: self.orphan_timeout.clone(),
            share: self.share,
            lazy_mount: self.lazy_mount,
        }
    }
}

/// Where and how big the pods of a task are.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PodOpts {
    /// Run on N pods of the cluster.
    #[arg(long, value_name = "N")]
    pub pods: Option<usize>,
    /// Job slots per pod [default: the `--cpu` cores, rounded up].
    #[arg(long = "procs-per-pod", value_name = "N")]
    pub procs_per_pod: Option<usize>,
    /// Size and images of the pods.
    #[command(flatten)]
    pub shape: PodShapeOpts,
    /// The kubeconfig context [default: the current context].
    #[arg(long, env = "KB_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (no `-n` here: GNU parallel's `-n` is max-args) [default: the context's, else `kb`].
    #[arg(long, env = "KB_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
}

impl PodOpts {
    /// The task of `count` workers running `command` with `slots` each, as plain data for the backend.
    pub fn request<'a>(
        &self,
        kind: &'static str,
        command: &'a str,
        slots: Option<usize>,
        count: usize,
    ) -> crate::backend::Request<'a> {
        crate::backend::Request {
            shape: self.shape.to_shape(),
            count,
            slots,
            kind,
            command,
        }
    }

    /// The cluster and namespace chosen.
    pub fn target(&self) -> Target {
        Target {
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// The cluster and namespace of a Kubernetes command other than `kb parallel`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeOpts {
    /// The kubeconfig context [default: the current context].
    #[arg(long, env = "KB_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace [default: the context's, else `kb`].
    #[arg(short = 'n', long, env = "KB_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
}

impl KubeOpts {
    /// The cluster and namespace chosen.
    pub fn target(&self) -> Target {
        Target {
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// Every place tasks can be, for `kb status` and `kb finish`: this cluster's namespace, then the local Docker
    /// engine.
    pub fn backends(&self) -> Vec<Box<dyn crate::backend::TaskBackend>> {
        let kubernetes = crate::backend::Kubernetes::new(
            self.target(),
            crate::k8s::Lifetime::default(),
            crate::output::report::Reporter::plain(),
        );
        let containers = crate::backend::Containers {
            agent_binary: None,
            orphan_timeout: None,
        };
        vec![Box::new(kubernetes), Box::new(containers)]
    }
}

/// Fills what the command line left unsaid from the project's `kb.toml` (found from the working directory up):
/// the image, the share method, the namespace and the task limits. Flags and their environment variables win.
pub fn project_defaults(
    shape: &mut PodShapeOpts,
    namespace: &mut Option<String>,
) -> crate::commands::error::Result<()> {
    let Some(found) = crate::config::current_project()? else {
        return Ok(());
    };
    let config = found.config;
    tracing::info!("using {}", found.path.display());
    shape.image = shape.image.take().or(config.image);
    shape.share = shape.share.or(config.share);
    shape.lazy_mount = shape.lazy_mount.or(config.lazy_mount);
    shape.orphan_timeout = shape.orphan_timeout.take().or(config.orphan_timeout);
    shape.max_runtime = shape.max_runtime.take().or(config.max_runtime);
    *namespace = namespace.take().or(config.namespace);
    Ok(())
}
