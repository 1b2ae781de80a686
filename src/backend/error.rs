//! A backend's failure, keeping the backend's own error (and its hint) intact.

/// Why a backend could not create, reach or remove a task.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes backend.
    #[error(transparent)]
    Kubernetes(#[from] crate::k8s::Error),
    /// The local Docker backend (`--containers`).
    #[error(transparent)]
    Containers(#[from] crate::container::Error),
    /// A backend that cannot do what was asked.
    #[error("{what} is not available with {backend}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
        /// The backend's option.
        backend: &'static str,
    },
    /// An I/O error with what kb was doing at the time.
    #[error("failed to {action}")]
    Io {
        /// What kb was doing, as a verb phrase.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What to do about it, when the backend knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Kubernetes(err) => err.hint(),
            Error::Containers(err) => err.hint(),
            Error::Unsupported { .. } => Some("use --pods for it".into()),
            Error::Io { .. } => None,
        }
    }
}

/// A result whose error is a backend [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
