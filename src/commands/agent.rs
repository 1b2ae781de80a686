//! `kb agent`: serve SSH until stopped.

use crate::cli::AgentOpts;
use crate::error::Result;

/// Runs kb's agent.
pub async fn exec(opts: AgentOpts) -> Result<u8> {
    crate::ssh::serve_agent(&opts).await?;
    Ok(crate::error::exit::SUCCESS)
}
