//! `kb agent`: serve SSH until stopped, or until nobody has been connected for `--orphan-timeout`.

use crate::cli::AgentOpts;
use crate::commands::error::Result;
use crate::ssh::AgentEnd;

/// Runs kb's agent.
pub async fn exec(opts: AgentOpts) -> Result<u8> {
    let config = crate::ssh::AgentConfig {
        listen: opts.listen,
        host_key: opts.host_key,
        authorized_key: opts.authorized_key,
        authorized_keys: opts.authorized_keys,
        print_address: opts.print_address,
        orphan_timeout: opts.orphan_timeout.map(std::time::Duration::from_secs),
    };
    match crate::ssh::serve_agent(&config).await? {
        AgentEnd::Stopped => Ok(crate::error::exit::SUCCESS),
        AgentEnd::Orphaned => {
            eprintln!(
                "kb agent: no client connected for {} s: the task is orphaned, ending this pod",
                config.orphan_timeout.unwrap_or_default().as_secs()
            );
            Ok(crate::error::exit::ORPHANED)
        }
    }
}
