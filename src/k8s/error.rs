//! Errors of the Kubernetes backend, each with a hint that says what the user can do about it.

/// A failure of the Kubernetes backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No kubeconfig was found and kb does not run inside a cluster.
    #[error("no kubeconfig found (looked at {looked_at}) and not running inside a cluster")]
    NoKubeconfig {
        /// Where kb looked.
        looked_at: String,
    },
    /// The kubeconfig exists but cannot be used.
    #[error("failed to load the kubeconfig")]
    Kubeconfig {
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The in-cluster configuration cannot be used.
    #[error("failed to load the in-cluster configuration")]
    InCluster {
        /// Why.
        #[source]
        source: kube::config::InClusterError,
    },
    /// The client could not be built from the configuration.
    #[error("failed to build a Kubernetes client")]
    Client {
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The API server did not answer.
    #[error("cannot reach the Kubernetes API server at `{url}`")]
    Unreachable {
        /// The server's address from the kubeconfig.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The namespace kb works in does not exist.
    #[error("namespace `{namespace}` does not exist")]
    NamespaceMissing {
        /// The namespace.
        namespace: String,
    },
    /// The user may not do what kb needs in the namespace.
    #[error("missing permissions in namespace `{namespace}`: {missing}")]
    Forbidden {
        /// The namespace.
        namespace: String,
        /// The missing rights, as `verb resource` pairs.
        missing: String,
    },
    /// A `--cpu` or `--mem` value that does not parse.
    #[error("invalid {what} quantity `{value}`: {reason}")]
    BadQuantity {
        /// `cpu` or `memory`.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--orphan-timeout` or `--max-runtime` value that is not a duration.
    #[error("invalid {flag} `{value}`: {reason}")]
    BadDuration {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--async` cannot hand this much over in a Secret.
    #[error(
        "the run is too large to hand over with --async: {size} bytes of input, files and keys, at most {limit}"
    )]
    HandoverTooLarge {
        /// The bytes to hand over.
        size: usize,
        /// The most a hand-over may hold.
        limit: usize,
    },
    /// The request does not fit on any node.
    #[error("no node can hold a pod asking for {asked}: the largest node `{node}` offers {offers}")]
    TooBig {
        /// What was asked, e.g. `1000 cpu`.
        asked: String,
        /// The largest node's name.
        node: String,
        /// What it offers, e.g. `2 cpu`.
        offers: String,
    },
    /// A call to the API server failed.
    #[error("failed to {action}")]
    Api {
        /// What kb was doing, as a verb phrase.
        action: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// A key could not be generated or encoded.
    #[error("failed to generate the task's SSH keys")]
    Keys {
        /// Why.
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    /// A manifest kept in `manifests/` does not parse; a bug in kb.
    #[error("failed to parse the manifest `{file}`")]
    Manifest {
        /// The file.
        file: &'static str,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A manifest of a kind kb does not know; a bug in kb.
    #[error("the manifest `{file}` has kind `{kind}`, which kb does not handle")]
    ManifestKind {
        /// The file.
        file: &'static str,
        /// The kind found.
        kind: String,
    },
    /// The working directory is too large to copy into the pods.
    #[error(
        "the working directory `{dir}` holds {size} bytes, more than the {cap} bytes kb copies into pods"
    )]
    DirTooLarge {
        /// The directory.
        dir: String,
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The share server failed.
    #[error(transparent)]
    Share(Box<crate::share::client::Error>),
    /// A local I/O error.
    #[error("failed to {action}")]
    Io {
        /// What kb was doing.
        action: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pods of a task cannot start.
    #[error("the pods of task `{task}` cannot start: {reason}")]
    CannotStart {
        /// The task id.
        task: String,
        /// Why, in the user's terms.
        reason: String,
    },
    /// A wait on the cluster took too long.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What kb waited for.
        what: String,
        /// How long it waited.
        seconds: u64,
    },
    /// An SSH connection to a pod failed.
    #[error("failed to reach kb's agent in pod `{pod}`")]
    Agent {
        /// The pod.
        pod: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A task named on the command line does not exist.
    #[error("no task `{id}` in namespace `{namespace}`")]
    NoSuchTask {
        /// The id.
        id: String,
        /// The namespace.
        namespace: String,
    },
    /// Output could not be encoded.
    #[error("failed to encode the output as {format}")]
    Encode {
        /// `json` or `yaml`.
        format: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        if let Error::Share(err) = self {
            return err.hint();
        }
        let hint = match self {
            Error::NoKubeconfig { .. } | Error::Kubeconfig { .. } | Error::InCluster { .. } => {
                "point `KUBECONFIG` at your cluster's kubeconfig (or write `~/.kube/config`); `--context` picks a context"
            }
            Error::Unreachable { .. } => {
                "check that the cluster is up and that `KUBECONFIG`/`--context` name it (`kubectl cluster-info` shows \
                 what kb would reach)"
            }
            Error::NamespaceMissing { namespace } => {
                return Some(format!(
                    "create it with `kb cluster-setup -n {namespace} | kubectl apply -f -`, or choose another with \
                     `--namespace`"
                ));
            }
            Error::Forbidden { namespace, .. } => {
                return Some(format!(
                    "ask a cluster admin to bind the Role from `kb cluster-setup -n {namespace}` to you, or choose a \
                     namespace where you have these rights with `--namespace`"
                ));
            }
            Error::BadQuantity { what: "cpu", .. } => "write cores as `2`, `0.5` or `500m`",
            Error::BadQuantity { .. } => {
                "write memory as `512Mi`, `4Gi`, `1G` or a number of bytes"
            }
            Error::BadDuration {
                flag: "--orphan-timeout",
                ..
            } => {
                "write a duration with a unit (`90s`, `10m`, `2h`), or `off` to keep the pods when the client is gone"
            }
            Error::BadDuration { .. } => "write a duration with a unit (`90s`, `10m`, `2h`, `3d`)",
            Error::HandoverTooLarge { .. } => {
                "until the share server exists, --async carries the input and the working directory in a Secret: \
                 run from a smaller directory, or with `KB_COPY_LIMIT=0` when the jobs need no files, or without \
                 --async"
            }
            Error::TooBig { .. } => {
                "ask for less with `--cpu`/`--mem`, or use more pods that are smaller"
            }
            Error::DirTooLarge { .. } => {
                "run kb from a smaller directory, raise the cap with `KB_COPY_LIMIT` (bytes), or set `KB_COPY_LIMIT=0` \
                 when the jobs need no files (they then start in an empty directory)"
            }
            Error::CannotStart { .. } => {
                "check the image name (`--image`) and that the cluster can pull it; `kubectl describe pod` shows more"
            }
            Error::Agent { .. } => {
                "check that the agent image (`--agent-image`, `KB_AGENT_IMAGE`) holds a static kb of this version"
            }
            Error::NoSuchTask { .. } => {
                "`kb status` lists the tasks; `-A` shows other machines' tasks too"
            }
            Error::Manifest { .. } | Error::ManifestKind { .. } => {
                "this is a bug in kb; please report it"
            }
            _ => return None,
        };
        Some(hint.to_string())
    }
}
