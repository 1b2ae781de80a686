//! A backend's failure, keeping the backend's own error (and its hint) intact.

/// Why a backend could not create, reach or remove a task.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes backend.
    #[error(transparent)]
    Kubernetes(#[from] crate::k8s::Error),
}

impl Error {
    /// What to do about it, when the backend knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Kubernetes(err) => err.hint(),
        }
    }
}

/// A result whose error is a backend [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
