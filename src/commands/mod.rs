//! One file per subcommand; each takes its options and returns the exit status or an error.

pub mod agent;
pub mod cluster_setup;
pub mod coordinate;
pub mod device_plugin;
pub mod error;
pub mod finish;
pub mod handover;
pub mod logs;
pub mod parallel;
pub mod setup;
pub mod share;
pub mod shell;
pub mod status;

use crate::cli::{Cli, Command};
use crate::commands::error::Result;

/// Fills what the command line left unsaid from the project's `kb.toml` (found from the working directory up):
/// the image, the share method, the namespace and the task limits. Flags and their environment variables win.
pub fn project_defaults(
    shape: &mut crate::cli::pods::PodShapeOpts,
    namespace: &mut Option<String>,
) -> Result<()> {
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

/// Runs the subcommand of `cli`.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Parallel(opts) => parallel::exec(*opts).await,
        Command::Agent(opts) => agent::exec(opts).await,
        Command::ClusterSetup(opts) => cluster_setup::exec(opts).await,
        Command::Shell(opts) => shell::exec(opts).await,
        Command::Status(opts) => status::exec(opts).await,
        Command::Finish(opts) => finish::exec(opts).await,
        Command::Setup(opts) => setup::exec(opts).await,
        Command::Share(opts) => share::exec(opts).await,
        Command::Logs(opts) => logs::exec(opts).await,
        Command::Coordinate => coordinate::exec().await,
        Command::DevicePlugin(opts) => device_plugin::exec(opts).await,
    }
}
