//! `kb setup`'s options: every question it asks is also a flag, and `--yes` asks none.

use crate::config::Share;

/// Options of `kb setup`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SetupOpts {
    /// How the pods see this directory: lazy (read on demand from this machine), eager (uploaded before each run),
    /// syncback (eager, and what jobs write comes back), none [asked; default: eager].
    #[arg(long, value_enum, value_name = "HOW")]
    pub share: Option<Share>,
    /// How pods mount a lazy share, recorded in kb.toml: fuse or nfs [default: not recorded; each run finds out
    /// what the cluster offers].
    #[arg(long = "lazy-mount", value_enum, value_name = "HOW")]
    pub lazy_mount: Option<crate::config::LazyMount>,
    /// The image the shell starts from [asked; default: the project's last base image, else debian:bookworm].
    #[arg(long = "base-image", env = "KB_BASE_IMAGE", value_name = "IMAGE")]
    pub base_image: Option<String>,
    /// Where the image is pushed: a registry and path prefix such as `registry.example.com/team/`; remembered for
    /// this user in ~/.config/kb/config.toml [asked; default: the remembered one, else `$KB_REGISTRY/`].
    #[arg(long = "image-prefix", env = "KB_IMAGE_PREFIX", value_name = "PREFIX")]
    pub image_prefix: Option<String>,
    /// Who the shell runs as: `me` (your uid and gid, so files you make in the project stay yours), `root` (to
    /// install system packages with apt-get), or UID[:GID] [default: me; root when you are root].
    #[arg(long, value_name = "WHO")]
    pub user: Option<String>,
    /// The image holding kb's agent, used to check that the agent runs in the new image
    /// [default: `$KB_REGISTRY/kb/agent:VERSION`].
    #[arg(long = "agent-image", env = "KB_AGENT_IMAGE", value_name = "IMAGE")]
    pub agent_image: Option<String>,
    /// Ask nothing: take every default and answer yes to "Does it work?". Without a terminal, the shell's commands
    /// are read from stdin.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// The cluster and namespace tasks of this project use (recorded in kb.toml).
    #[command(flatten)]
    pub kube: crate::commands::options::KubeOpts,
}
