//! `kb agent`: serve SSH until stopped, or until nobody has been connected for `--orphan-timeout`.

use crate::cli::AgentOpts;
use crate::error::Result;
use crate::ssh::AgentEnd;

/// The exit status of an agent that ended itself because its client was gone (the Job's pod failure policy fails
/// the whole task on it).
pub const ORPHANED_EXIT: u8 = 75;

/// Runs kb's agent.
pub async fn exec(opts: AgentOpts) -> Result<u8> {
    match crate::ssh::serve_agent(&opts).await? {
        AgentEnd::Stopped => Ok(crate::error::exit::SUCCESS),
        AgentEnd::Orphaned => {
            eprintln!(
                "kb agent: no client connected for {} s: the task is orphaned, ending this pod",
                opts.orphan_timeout.unwrap_or_default()
            );
            Ok(ORPHANED_EXIT)
        }
    }
}
