//! What can go wrong with a container task, one variant per failed operation, each with what to do about it.

use std::path::PathBuf;

/// A container task failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--containers 0`.
    #[error("--containers must be at least 1")]
    NoContainers,
    /// The working directory cannot be bind-mounted at its own path.
    #[error("cannot share the working directory `{path}` with containers: {reason}")]
    Workdir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: &'static str,
    },
    /// `--cpu` or `--mem` asks for what no container of this engine can have.
    #[error("--{what} {value} does not fit a container of this Docker engine: {reason}")]
    BadLimit {
        /// `cpu` or `mem`.
        what: &'static str,
        /// The value as asked.
        value: String,
        /// Why not.
        reason: String,
    },
    /// The agent binary cannot be read.
    #[error("cannot read kb's agent binary `{path}`")]
    AgentUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The agent binary cannot run in a container of any image.
    #[error("`{path}` cannot be kb's agent in the containers: {reason}")]
    AgentUnfit {
        /// The file.
        path: PathBuf,
        /// Why not (dynamically linked, not ELF, another architecture).
        reason: String,
        /// The file is the running kb itself (no `--agent-binary` given).
        current_exe: bool,
    },
    /// The Docker engine does not answer, or a call to it failed.
    #[error(transparent)]
    Docker(#[from] crate::docker::Error),
    /// The image is not in the local engine.
    #[error("the image `{image}` is not in the local Docker engine")]
    ImageMissing {
        /// The image.
        image: String,
        /// The engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
    /// The task's keys could not be made.
    #[error("failed to make the task's SSH keys")]
    KeyGen {
        /// Why.
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    /// The task's key files could not be written.
    #[error("failed to write the task's keys in `{dir}`")]
    KeyFiles {
        /// The key directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Containers of the task were still there after `finish` removed them.
    #[error("{count} containers of task {task} are still there after removing them")]
    Leftover {
        /// The task id.
        task: String,
        /// How many.
        count: usize,
    },
    /// A container has no address on a Docker network kb can reach.
    #[error("container `{name}` has no IP address on a Docker network")]
    NoAddress {
        /// The container's name.
        name: String,
    },
    /// A container ended before its agent answered.
    #[error("container `{name}` ended before kb's agent in it answered{logs}")]
    Ended {
        /// The container's name.
        name: String,
        /// The last lines it printed, as `: ...`, or nothing.
        logs: String,
    },
    /// The agent did not answer in time.
    #[error("kb's agent in container `{name}` did not answer within {seconds} s")]
    AgentTimeout {
        /// The container's name.
        name: String,
        /// How long kb waited.
        seconds: u64,
        /// The last connection error.
        #[source]
        source: Box<crate::ssh::Error>,
    },
}

impl Error {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::NoContainers => "give --containers N with N >= 1".into(),
            Error::Workdir { .. } => {
                "run kb from the directory of your project: it is mounted into the containers at the same path".into()
            }
            Error::BadLimit { what: "cpu", .. } => "give at most the engine's CPU count (`docker info`)".into(),
            Error::BadLimit { .. } => "give at least 6Mi, Docker's smallest memory limit".into(),
            Error::AgentUnreadable { .. } => "give --agent-binary (or KB_AGENT_BINARY) a static kb binary".into(),
            Error::AgentUnfit { current_exe: true, .. } => {
                "this kb is not a static Linux binary: build one with `scripts/build-static` and pass it with \
                 --agent-binary FILE (or KB_AGENT_BINARY)"
                    .into()
            }
            Error::AgentUnfit { .. } => "build a static kb for the engine's architecture with `scripts/build-static`"
                .into(),
            Error::Docker(err) => return err.hint(),
            Error::ImageMissing { image, .. } => format!(
                "kb does not pull images for --containers: `docker pull {image}` (or build it), or choose another \
                 with --image / KB_IMAGE"
            ),
            Error::KeyGen { .. } | Error::KeyFiles { .. } => return None,
            Error::Leftover { task, .. } => format!(
                "remove them with `docker rm -f $(docker ps -aq --filter label={}={task})`",
                super::spec::LABEL_TASK
            ),
            Error::NoAddress { .. } => "kb reaches the agents on the default bridge network: check `docker \
                                        network inspect bridge`"
                .into(),
            Error::Ended { .. } | Error::AgentTimeout { .. } => {
                "the image needs /bin/sh, and its user must be able to run the agent at /kb/kb".into()
            }
        })
    }
}

/// A result with a container [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
