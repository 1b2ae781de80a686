//! SSH: kb's client (connect over TCP or any stream, authenticate, check the host key, run commands on channels)
//! and kb's agent (the SSH server that runs in every pod).
//!
//! STUB: the public signatures below are the contract other modules are written against; the bodies are filled in
//! by the work on issue [engine].

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::model::{JobExit, JobSignal, OutputTx};

/// An SSH failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `-S` value that does not parse.
    #[error("invalid sshlogin `{login}`: {reason}")]
    BadLogin {
        /// The value given.
        login: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::BadLogin { .. } => Some("write it as `[N/][user@]host[:port]`, e.g. `4/alice@node1:2222`".into()),
        }
    }
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// GNU parallel's sshlogin: `[N/][user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshLogin {
    /// `N/`: job slots on this host, when given.
    pub slots: Option<usize>,
    /// `user@`, when given.
    pub user: Option<String>,
    /// The host name or address.
    pub host: String,
    /// `:port`, when given.
    pub port: Option<u16>,
}

/// How the client authenticates and checks host keys.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Private keys from `-i`; when empty, the ssh-agent and `~/.ssh/id_*` are used.
    pub identities: Vec<PathBuf>,
    /// Pinned host keys (OpenSSH public key lines); when empty, `known_hosts` files are checked.
    pub pinned_host_keys: Vec<String>,
    /// `known_hosts` files to check; when empty, `~/.ssh/known_hosts`.
    pub known_hosts: Vec<PathBuf>,
}

/// Why a command on a channel did not give an exit status.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The channel could not be opened or the command could not be started.
    #[error("{0}")]
    NotStarted(String),
    /// The connection died while the command ran.
    #[error("{0}")]
    Lost(String),
}

/// One SSH connection; commands run on channels of it, many at once.
pub struct Connection {}

impl Connection {
    /// Connects to `login` over TCP.
    pub async fn connect(_login: &SshLogin, _config: &ClientConfig) -> Result<Connection> {
        todo!("issue [engine]")
    }

    /// Runs `command` on a new channel; output goes to `out`; signals go to the remote process group; when
    /// `signals` closes while the command runs, the channel is closed (kb's agent then kills the job).
    pub async fn exec(
        &self,
        _command: &str,
        _out: OutputTx,
        _signals: mpsc::UnboundedReceiver<JobSignal>,
    ) -> Result<JobExit, ExecError> {
        todo!("issue [engine]")
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        todo!("issue [engine]")
    }
}

/// Runs kb's agent (the SSH server of every pod) until the process is stopped.
pub async fn serve_agent(_opts: &crate::cli::AgentOpts) -> Result<()> {
    todo!("issue [engine]")
}
