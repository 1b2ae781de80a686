//! The errors of the SSH client and of kb's agent, with hints that say what the user can do.

use std::path::PathBuf;

/// An SSH failure: a login that does not parse, a host that cannot be reached or trusted, a refused login, or an
/// agent that cannot start.
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
    /// The TCP connection could not be made.
    #[error("cannot reach `{host}`")]
    Unreachable {
        /// `host:port`.
        host: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting, the handshake or the login took too long.
    #[error("timed out after {seconds} s connecting to `{host}`")]
    Timeout {
        /// `host:port` or the label of the stream.
        host: String,
        /// How long kb waited.
        seconds: u64,
    },
    /// The SSH handshake failed (protocol error, connection closed by the server).
    #[error("ssh handshake with `{host}` failed")]
    Handshake {
        /// `host:port` or the label of the stream.
        host: String,
        /// The underlying error.
        #[source]
        source: russh::Error,
    },
    /// No known_hosts entry and no pinned key names the host's key.
    #[error("the host key of `{host}` is unknown ({fingerprint})")]
    HostKeyUnknown {
        /// The name looked up (`host` or `[host]:port`).
        host: String,
        /// The SHA256 fingerprint of the key the server showed.
        fingerprint: String,
        /// Where kb looked.
        checked: String,
    },
    /// The host's key differs from the recorded or pinned one.
    #[error("the host key of `{host}` does not match the recorded key ({fingerprint}, {recorded})")]
    HostKeyMismatch {
        /// The name looked up (`host` or `[host]:port`).
        host: String,
        /// The SHA256 fingerprint of the key the server showed.
        fingerprint: String,
        /// Where the other key is recorded.
        recorded: String,
    },
    /// An identity file could not be read.
    #[error("cannot read the private key `{}`", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: russh::keys::Error,
    },
    /// The server accepted none of the keys kb offered.
    #[error("`{user}@{host}` refused every key kb offered ({tried})")]
    AuthRefused {
        /// The user name.
        user: String,
        /// `host:port` or the label of the stream.
        host: String,
        /// The keys offered, or "none found".
        tried: String,
    },
    /// The agent's host key or authorised key could not be loaded.
    #[error("cannot load the agent's {what} `{}`", path.display())]
    AgentKey {
        /// "host key" or "authorized key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: russh::keys::Error,
    },
    /// The agent could not listen.
    #[error("kb agent cannot listen on `{addr}`")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        let hint = match self {
            Error::BadLogin { .. } => "write it as `[N/][user@]host[:port]`, e.g. `4/alice@node1:2222`".into(),
            Error::Unreachable { .. } => {
                "check the host name and port, and that an SSH server listens there (`ssh -p PORT user@host true`)"
                    .into()
            }
            Error::Timeout { .. } => "check that the host is up and that nothing drops the connection".into(),
            Error::Handshake { .. } => "check that the port is an SSH server's; run with -vvv for details".into(),
            Error::HostKeyUnknown { host, .. } => format!(
                "if you trust the host, add its key to ~/.ssh/known_hosts, e.g. with `ssh-keyscan` or by logging in \
                 once with `ssh` (entry `{host}`)"
            ),
            Error::HostKeyMismatch { host, .. } => format!(
                "someone may be intercepting the connection, or the host was reinstalled; if the new key is right, \
                 remove the old one with `ssh-keygen -R '{host}'`"
            ),
            Error::Key { .. } => "give an unencrypted OpenSSH private key with -i, or load it into ssh-agent".into(),
            Error::AuthRefused { .. } => {
                "add your public key to the server's authorized_keys, pass the right key with -i, or load it into \
                 ssh-agent"
                    .into()
            }
            Error::AgentKey { .. } => "give an OpenSSH private key with --host-key and a public key line with \
                                       --authorized-key"
                .into(),
            Error::Listen { .. } => "choose a free port, or an address of this machine".into(),
        };
        Some(hint)
    }
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a command on a channel did not give an exit status.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The channel could not be opened or the command could not be started: it did not run.
    #[error("{0}")]
    NotStarted(String),
    /// The connection died (or the channel closed) after the command was sent: it may have run in part.
    #[error("{0}")]
    Lost(String),
}
