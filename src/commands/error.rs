//! The top-level error: every module error converts into it, and it decides the exit status and how the message
//! is shown (`kb: error: ...`, then `caused by:` for each source, then `hint:` lines saying what to do).

use std::io::Write;

use crate::error::exit;

/// Anything that stops a kb command before it could finish its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong; the hint says what to give instead.
    #[error("{message}")]
    Usage {
        /// What is wrong, in the user's terms.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// Reading the input of a run failed.
    #[error(transparent)]
    Input(#[from] crate::input::Error),
    /// The joblog could not be read or written.
    #[error(transparent)]
    Joblog(#[from] crate::joblog::Error),
    /// An SSH connection, key or agent failure (boxed: it is the largest).
    #[error(transparent)]
    Ssh(Box<crate::ssh::Error>),
    /// A Kubernetes failure: configuration, API server, permissions, or a task that cannot start.
    #[error(transparent)]
    K8s(#[from] crate::k8s::Error),
    /// The local Docker engine or a registry failed (`kb setup`).
    #[error(transparent)]
    Docker(#[from] crate::docker::Error),
    /// A container task (`kb parallel --containers`) could not be created or removed.
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    /// A configuration file could not be read or written.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The kubelet device plugin (`kb device-plugin`) failed.
    #[error(transparent)]
    DevicePlugin(#[from] crate::deviceplugin::Error),
    /// The run itself could not go on (no workers left, for example).
    #[error(transparent)]
    Sched(#[from] crate::sched::Error),
    /// An I/O error with what kb was doing at the time.
    #[error("failed to {action}")]
    Io {
        /// What kb was doing, as a verb phrase.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The user interrupted the command.
    #[error("interrupted")]
    Interrupted,
}

impl From<crate::ssh::Error> for Error {
    fn from(err: crate::ssh::Error) -> Self {
        Error::Ssh(Box::new(err))
    }
}

/// A result whose error is the top-level [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A usage error with a hint.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The exit status for this error when it ends `subcommand` (GNU parallel's 255 for `kb parallel`).
    pub fn exit_code(&self, subcommand: &str) -> u8 {
        match self {
            Error::Interrupted => exit::INTERRUPTED,
            _ if subcommand == "parallel" => exit::OTHER,
            Error::Usage { .. } => exit::USAGE,
            _ => exit::FAILURE,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Usage { hint, .. } => hint.iter().cloned().collect(),
            Error::Ssh(err) => err.hint().into_iter().collect(),
            Error::K8s(err) => err.hint().into_iter().collect(),
            Error::Sched(err) => err.hint().into_iter().collect(),
            Error::Docker(err) => err.hint().into_iter().collect(),
            Error::Container(err) => err.hint().into_iter().collect(),
            Error::Config(err) => err.hint().into_iter().collect(),
            Error::DevicePlugin(err) => err.hint().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Writes the message, its chain of causes and the hints.
    pub fn render(&self, out: &mut dyn Write) {
        let _ = writeln!(out, "kb: error: {self}");
        let mut source = std::error::Error::source(self);
        // `transparent` variants forward `source()` to the inner error's source, so the chain does not repeat
        // the top message.
        while let Some(cause) = source {
            let _ = writeln!(out, "  caused by: {cause}");
            source = cause.source();
        }
        for hint in self.hints() {
            let _ = writeln!(out, "  hint: {hint}");
        }
    }
}
