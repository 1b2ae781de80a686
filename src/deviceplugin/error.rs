//! The device plugin's errors.

use std::path::PathBuf;
use std::time::Duration;

/// A failure of `kb device-plugin`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin's socket could not be made.
    #[error("failed to listen on `{path}`")]
    Listen {
        /// The socket.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A socket left by an earlier run could not be removed.
    #[error("failed to remove the old socket `{path}`")]
    RemoveSocket {
        /// The socket.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The node-wide lock that keeps one plugin per resource active could not be taken.
    #[error("failed to lock `{path}`")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server stopped with an error.
    #[error("failed to serve the device plugin API on `{path}`")]
    Serve {
        /// The plugin's socket.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The kubelet did not accept the registration in time.
    #[error("the kubelet at `{path}` did not accept the registration of `{resource}` within {}", humantime::format_duration(*waited))]
    Register {
        /// The kubelet's registration socket.
        path: PathBuf,
        /// The resource kb registers.
        resource: String,
        /// How long kb tried.
        waited: Duration,
        /// The last attempt's error.
        #[source]
        source: RegisterError,
    },
}

/// Why one registration attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// No connection to the kubelet's socket.
    #[error("failed to connect")]
    Connect(#[source] tonic::transport::Error),
    /// The kubelet answered with an error.
    #[error("the kubelet answered {}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
}

impl Error {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Register { .. } => Some(
                "the plugin must see the node's kubelet device plugin directory: mount the host's \
                 /var/lib/kubelet/device-plugins at the same path (`kb cluster-setup` does)"
                    .into(),
            ),
            Error::Listen { .. } => {
                Some("the directory must be writable by the plugin (it runs as root)".into())
            }
            _ => None,
        }
    }
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
