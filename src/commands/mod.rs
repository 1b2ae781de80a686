//! One file per subcommand; each takes its options and returns the exit status or an error.

pub mod agent;
pub mod cluster_setup;
pub mod coordinate;
pub mod finish;
pub mod handover;
pub mod logs;
pub mod parallel;
pub mod shell;
pub mod status;

use crate::cli::{Cli, Command};
use crate::error::Result;

/// Runs the subcommand of `cli`.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Parallel(opts) => parallel::exec(*opts).await,
        Command::Agent(opts) => agent::exec(opts).await,
        Command::ClusterSetup(opts) => cluster_setup::exec(opts).await,
        Command::Shell(opts) => shell::exec(opts).await,
        Command::Status(opts) => status::exec(opts).await,
        Command::Finish(opts) => finish::exec(opts).await,
        Command::Logs(opts) => logs::exec(opts).await,
        Command::Coordinate => coordinate::exec().await,
    }
}
