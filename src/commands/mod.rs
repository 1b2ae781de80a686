//! One file per subcommand; each takes its options and returns the exit status or an error.

pub mod agent;
pub mod parallel;

use crate::cli::{Cli, Command};
use crate::error::Result;

/// Runs the subcommand of `cli`.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Parallel(opts) => parallel::exec(opts).await,
        Command::Agent(opts) => agent::exec(opts).await,
    }
}
