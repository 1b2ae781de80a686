//! `kb share ...`: the requests of kb's share server and of worker pods, run by kb itself (in the server's pod
//! through the exec API, in worker pods through kb's agent). Not meant to be typed.

use std::path::PathBuf;

/// Options of `kb share`.
#[derive(Debug, clap::Args)]
pub struct ShareOpts {
    /// The version of the laptop's request (`share::protocol::VERSION`); another version is refused.
    #[arg(long = "protocol", value_name = "N")]
    pub protocol: Option<u32>,
    /// The request.
    #[command(subcommand)]
    pub request: ShareRequest,
}

/// One request.
#[derive(Debug, clap::Subcommand)]
pub enum ShareRequest {
    /// Server: create the store and its host key if missing.
    Init(StoreOpt),
    /// Server: the share server itself: kb's agent on the store's host key and authorized_keys.
    Server {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:2222")]
        listen: String,
        /// Addresses to serve the lazy shares over NFSv3 on (repeatable or a comma list; each bound address is
        /// printed on stderr as `kb share: NFS on IP:PORT`; one that cannot be bound is reported and skipped).
        #[arg(long = "nfs-listen", value_delimiter = ',', default_values_t = crate::share::nfs::DEFAULT_LISTEN.map(String::from))]
        nfs_listen: Vec<String>,
        /// How long one request of the NFS server to a task's client may wait; then it fails with an I/O error.
        #[arg(long = "nfs-deadline", default_value = "15s", value_parser = humantime::parse_duration)]
        nfs_deadline: std::time::Duration,
    },
    /// Server: which of the hashes on stdin (then `end`) the store lacks.
    Have(StoreOpt),
    /// Server: store the blobs on stdin (`HASH LEN` + bytes, then `end`).
    Put(StoreOpt),
    /// Server: store a manifest made from a stored one and the delta on stdin (`LEN` + JSON).
    Patch {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// The SHA-256 of the stored manifest the delta applies to.
        #[arg(long)]
        base: String,
        /// The SHA-256 the result must have.
        #[arg(long)]
        manifest: String,
    },
    /// Server: record a task's manifest (a stored blob) and the key its pods read it with.
    Commit {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// The task id.
        #[arg(long)]
        task: String,
        /// The pods' public key (an OpenSSH line).
        #[arg(long)]
        key: String,
        /// The SHA-256 of the manifest, stored as a blob.
        #[arg(long)]
        manifest: String,
    },
    /// Server: write a task's manifest and tree (tar) on stdout; the command the pods' key is held to.
    Serve {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// The task id.
        #[arg(long)]
        task: String,
    },
    /// Server: forget a task.
    Drop {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// The task id.
        #[arg(long)]
        task: String,
    },
    /// Server: let a task's client key host its lazy share and the task's pod key attach to it; prints the server's
    /// host public key, then the task's NFS export path (`/kb/<task>-<token>`).
    LazyAllow {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// The task id.
        #[arg(long)]
        task: String,
        /// The client's public key (an OpenSSH line): it may run `lazy-host` for the task, nothing else.
        #[arg(long = "client-key")]
        client_key: String,
        /// The pods' public key (an OpenSSH line): it may run `lazy-attach` for the task, nothing else.
        #[arg(long = "pod-key")]
        pod_key: String,
    },
    /// Server, for the client's key: relay the pods' SFTP sessions over the SFTP session the client serves on
    /// stdin/stdout, while it lasts.
    LazyHost {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// The task id.
        #[arg(long)]
        task: String,
    },
    /// Server, for the pods' key: carry stdin/stdout to the task's relay (an SFTP session to the client's files).
    LazyAttach {
        /// The store.
        #[command(flatten)]
        store: StoreOpt,
        /// The task id.
        #[arg(long)]
        task: String,
    },
    /// Worker pod (and tests): carry stdin/stdout over a channel to the share server, logged in with `--key`; the
    /// key's forced command (`lazy-attach` for a pod key, `lazy-host` for a client key) answers.
    Connect {
        /// The server's address (`IP:PORT`).
        #[arg(long)]
        server: String,
        /// The server's public host key, pinned.
        #[arg(long = "host-key-pub")]
        host_key_pub: String,
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Worker pod: fetch the task's tree from the server (the pod key on stdin).
    Fetch {
        /// The server's address (`IP:PORT`).
        #[arg(long)]
        server: String,
        /// The server's public host key, pinned.
        #[arg(long = "host-key-pub")]
        host_key_pub: String,
        /// Where to unpack (the user's working directory).
        #[arg(long)]
        into: PathBuf,
        /// Where to record the manifest, for syncback.
        #[arg(long)]
        base: PathBuf,
    },
    /// Laptop: serve a directory over SFTP on stdin/stdout (the lazy share's server end), confined to it.
    SftpServe {
        /// The directory served.
        #[arg(long)]
        root: PathBuf,
    },
    /// Worker pod: mount the lazy share with FUSE; the SFTP stream is stdin/stdout or a command's. Unmounts on
    /// SIGTERM, SIGINT or SIGHUP.
    Mount(MountOpts),
    /// Worker pod: write a tar of the files that differ from the fetched tree.
    Changes {
        /// The manifest `fetch` recorded.
        #[arg(long)]
        base: PathBuf,
        /// The working directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Options of `kb share mount`.
#[derive(Debug, clap::Args)]
pub struct MountOpts {
    /// The mount point (an existing directory; in a pod, the user's working directory).
    #[arg(long)]
    pub at: PathBuf,
    /// How long the kernel trusts a name or attributes it got (`0` asks the laptop on every access).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
    /// How long one SFTP request may wait; then it and every later operation fail with EIO.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub deadline: std::time::Duration,
    /// The command whose stdin/stdout is the SFTP stream (default: this process's own stdin/stdout).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// The store directory.
#[derive(Debug, clap::Args)]
pub struct StoreOpt {
    /// The store directory.
    #[arg(long, default_value = crate::share::store::DEFAULT_STORE)]
    pub store: PathBuf,
}
