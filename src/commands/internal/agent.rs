//! `kb agent`: serve SSH until stopped, or until nobody has been connected for `--orphan-timeout`.

use crate::commands::error::Result;
use crate::ssh::AgentEnd;
use std::path::PathBuf;

/// Options of `kb agent`.
#[derive(Debug, clap::Args)]
pub struct AgentOpts {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:2222", value_name = "ADDR:PORT")]
    pub listen: String,
    /// The host's private key (OpenSSH format); clients pin its public half.
    #[arg(long, value_name = "FILE")]
    pub host_key: PathBuf,
    /// The one public key (OpenSSH `authorized_keys` line) allowed to log in.
    #[arg(long, value_name = "FILE", required_unless_present = "authorized_keys")]
    pub authorized_key: Option<PathBuf>,
    /// An `authorized_keys` file read at every login, so keys can be added while the agent runs; a line may start
    /// with `command="..."`, which that key runs instead of what it asks for (as with OpenSSH), with the request
    /// in `SSH_ORIGINAL_COMMAND`. kb's share server uses this.
    #[arg(long, value_name = "FILE", conflicts_with = "authorized_key")]
    pub authorized_keys: Option<PathBuf>,
    /// Print the bound address on stdout once listening (for tests and scripts that pass port 0).
    #[arg(long)]
    pub print_address: bool,
    /// Exit with status 75 once no logged-in client has been connected for this many seconds: a pod whose client
    /// is gone ends itself. Without it the agent serves until stopped.
    #[arg(long = "orphan-timeout", value_name = "SECONDS")]
    pub orphan_timeout: Option<u64>,
}

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
