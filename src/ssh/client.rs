//! kb's SSH client: one [`Connection`] per host (over TCP or any byte stream, such as a Kubernetes port-forward),
//! many commands at once, one channel each. Host keys are checked against pinned keys or `known_hosts`; keepalives
//! detect a dead peer within about 15 s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::error::{Error, ExecError, Result};
use super::exec::run_channel;
use super::known_hosts::{self, Verdict};
use super::login::SshLogin;
use crate::model::{JobExit, JobSignal, OutputTx};

/// How long connecting, the handshake and the login may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive period; after [`KEEPALIVE_MAX`] unanswered ones the connection counts as dead.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(4);
const KEEPALIVE_MAX: usize = 3;

/// How the client authenticates and checks host keys.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Private keys from `--identity`; when empty, the ssh-agent and `~/.ssh/id_*` are used.
    pub identities: Vec<PathBuf>,
    /// Pinned host keys (OpenSSH public key lines); when empty, `known_hosts` files are checked.
    pub pinned_host_keys: Vec<String>,
    /// `known_hosts` files to check; when empty, `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`.
    pub known_hosts: Vec<PathBuf>,
}

impl ClientConfig {
    fn known_hosts_files(&self) -> Vec<PathBuf> {
        if !self.known_hosts.is_empty() {
            return self.known_hosts.clone();
        }
        let mut files: Vec<PathBuf> = super::keys::home_dir()
            .map(|home| home.join(".ssh/known_hosts"))
            .into_iter()
            .collect();
        files.push("/etc/ssh/ssh_known_hosts".into());
        files
    }
}

/// One SSH connection; commands run on channels of it, many at once and from many tasks (`Send + Sync`).
pub struct Connection {
    handle: client::Handle<HostKeyCheck>,
    label: String,
    /// Session channels opened before the jobs that will use them, so that a job starts with its `exec` request
    /// instead of first waiting a round trip for its channel (see [`Connection::open_ahead`]).
    spare: Mutex<Vec<russh::Channel<client::Msg>>>,
    /// How many spare channels to keep; 0 opens each job's channel when the job starts.
    spare_max: AtomicUsize,
}

impl Connection {
    /// Connects to `login` over TCP and logs in (user: the login's, else the current user; port: else 22).
    pub async fn connect(login: &SshLogin, config: &ClientConfig) -> Result<Connection> {
        let port = login.port_or_default();
        let address = if login.host.contains(':') {
            format!("[{}]:{port}", login.host)
        } else {
            format!("{}:{port}", login.host)
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((login.host.as_str(), port)),
        )
        .await
        .map_err(|_| Error::Timeout {
            host: address.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        })?
        .map_err(|source| Error::Unreachable {
            host: address.clone(),
            source,
        })?;
        let _ = stream.set_nodelay(true);
        let lookup = known_hosts::lookup_name(&login.host, port);
        Self::establish(stream, &login.user_or_default(), &address, lookup, config).await
    }

    /// Runs SSH over an already open byte stream (a Kubernetes port-forward, for example) and logs in as `user`.
    /// `label` names the peer in messages and is the name looked up in `known_hosts` when no key is pinned.
    pub async fn connect_stream<S>(
        stream: S,
        user: &str,
        label: &str,
        config: &ClientConfig,
    ) -> Result<Connection>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::establish(stream, user, label, label.to_owned(), config).await
    }

    async fn establish<S>(
        stream: S,
        user: &str,
        label: &str,
        lookup: String,
        config: &ClientConfig,
    ) -> Result<Self>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let problem = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            lookup,
            pinned: config.pinned_host_keys.clone(),
            files: config.known_hosts_files(),
            problem: problem.clone(),
        };
        let login = async {
            let mut handle = client::connect_stream(Arc::new(client_config()), stream, check)
                .await
                .map_err(|source| {
                    let problem = problem.lock().ok().and_then(|mut p| p.take());
                    problem.unwrap_or_else(|| Error::Handshake {
                        host: label.to_owned(),
                        source,
                    })
                })?;
            super::keys::authenticate(&mut handle, user, label, &config.identities).await?;
            Ok(handle)
        };
        let handle = tokio::time::timeout(CONNECT_TIMEOUT, login)
            .await
            .map_err(|_| Error::Timeout {
                host: label.to_owned(),
                seconds: CONNECT_TIMEOUT.as_secs(),
            })??;
        Ok(Connection {
            handle,
            label: label.to_owned(),
            spare: Mutex::new(Vec::new()),
            spare_max: AtomicUsize::new(0),
        })
    }

    /// The peer's name, as given to `connect_stream` or `host:port`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `command` on a new channel; output goes to `out`; signals go to the remote process group; when
    /// `signals` closes while the command runs, the channel is closed (kb's agent then kills the job).
    pub async fn exec(
        &self,
        command: &str,
        out: OutputTx,
        signals: mpsc::UnboundedReceiver<JobSignal>,
    ) -> Result<JobExit, ExecError> {
        self.exec_with_env(command, &[], out, signals).await
    }

    /// [`Connection::exec`] with environment variables sent as `env` requests first (OpenSSH's sshd accepts only
    /// the names its `AcceptEnv` lists and ignores the others; kb's agent accepts all).
    pub async fn exec_with_env(
        &self,
        command: &str,
        env: &[(&str, &str)],
        out: OutputTx,
        signals: mpsc::UnboundedReceiver<JobSignal>,
    ) -> Result<JobExit, ExecError> {
        let not_started = |e: russh::Error| {
            ExecError::NotStarted(format!("cannot open a channel to `{}`: {e}", self.label))
        };
        let channel = self.take_channel().await.map_err(not_started)?;
        let start = async {
            for (name, value) in env {
                channel.set_env(false, *name, *value).await?;
            }
            channel.exec(true, command).await?;
            // Jobs read no input, as with GNU parallel: their stdin is at its end from the start.
            let _ = channel.eof().await;
            Ok(())
        };
        // The next job's channel opens while this one starts; its answer comes back before this job's exit status
        // can, so waiting for both costs no time.
        let (started, ()) = tokio::join!(start, self.open_spare());
        started.map_err(not_started)?;
        run_channel(channel, &self.label, out, signals, false).await
    }

    /// Keeps up to `channels` session channels open ahead of the jobs that will use them. Only for servers that
    /// allow that many idle sessions: kb's agent does; OpenSSH's sshd allows 10 (`MaxSessions`) in all.
    pub fn open_ahead(&self, channels: usize) {
        self.spare_max.store(channels, Ordering::Relaxed);
    }

    /// A spare channel if there is one, else a new one.
    async fn take_channel(&self) -> std::result::Result<russh::Channel<client::Msg>, russh::Error> {
        let spare = self.spare.lock().ok().and_then(|mut spare| spare.pop());
        match spare {
            Some(channel) => Ok(channel),
            None => self.handle.channel_open_session().await,
        }
    }

    /// Opens one spare channel when fewer than [`Connection::open_ahead`] asked for are waiting. A failure is left
    /// to the next job's own open, which reports it.
    async fn open_spare(&self) {
        let max = self.spare_max.load(Ordering::Relaxed);
        let waiting = || self.spare.lock().map_or(usize::MAX, |spare| spare.len());
        if waiting() >= max {
            return;
        }
        if let Ok(channel) = self.handle.channel_open_session().await
            && let Ok(mut spare) = self.spare.lock()
            && spare.len() < max
        {
            spare.push(channel);
        }
    }

    /// Runs a command wrapped by [`guard_command`](super::guard_command) on a new channel, for servers that cannot
    /// stop a job themselves: OpenSSH's sshd refuses `signal` requests in sessions without post-authentication
    /// privilege separation (every root login) and never kills a command when its channel closes. Signals are
    /// written as names on the command's stdin, and closing `signals` sends EOF, on which the guard kills the
    /// job's whole process group.
    pub async fn exec_guarded(
        &self,
        command: &str,
        out: OutputTx,
        signals: mpsc::UnboundedReceiver<JobSignal>,
    ) -> Result<JobExit, ExecError> {
        let channel = self.open_session().await?;
        channel.exec(true, command).await.map_err(|e| {
            ExecError::NotStarted(format!("cannot open a channel to `{}`: {e}", self.label))
        })?;
        run_channel(channel, &self.label, out, signals, true).await
    }

    /// Runs `command` with `input` then EOF on its stdin, and collects it whole: exit status, stdout, stderr. For
    /// kb's own short commands (unpacking the working directory, the share's fetch and changes), not for jobs.
    pub async fn run_collect(
        &self,
        command: &str,
        input: &[u8],
    ) -> std::result::Result<(u32, Vec<u8>, Vec<u8>), String> {
        let mut channel = self.open_session().await.map_err(|e| e.to_string())?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| e.to_string())?;
        if !input.is_empty() {
            channel.data(input).await.map_err(|e| e.to_string())?;
        }
        channel.eof().await.map_err(|e| e.to_string())?;
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = channel.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
                russh::ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        status
            .map(|s| (s, out, err))
            .ok_or_else(|| "the connection closed before the command ended".to_string())
    }

    /// Opens a bare session channel (for a PTY shell, say); the caller sends the requests.
    pub async fn open_session(&self) -> Result<russh::Channel<client::Msg>, ExecError> {
        self.handle.channel_open_session().await.map_err(|e| {
            ExecError::NotStarted(format!("cannot open a channel to `{}`: {e}", self.label))
        })
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Closes the connection (kb's agent then kills the commands still running on it).
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn client_config() -> client::Config {
    client::Config {
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        // Large windows: a job's output never waits for a window adjustment.
        window_size: 16 * 1024 * 1024,
        channel_buffer_size: 256,
        nodelay: true,
        ..Default::default()
    }
}

/// The russh handler: checks the server's host key and remembers why it refused one.
struct HostKeyCheck {
    lookup: String,
    pinned: Vec<String>,
    files: Vec<PathBuf>,
    problem: Arc<Mutex<Option<Error>>>,
}

impl HostKeyCheck {
    fn verdict(&self, key: &PublicKey) -> Option<Error> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let (verdict, checked) = if self.pinned.is_empty() {
            let checked = self
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            (
                known_hosts::check_files(&self.files, &self.lookup, key),
                checked,
            )
        } else {
            (
                known_hosts::check_pinned(&self.pinned, key),
                "the pinned keys".to_owned(),
            )
        };
        match verdict {
            Verdict::Trusted => None,
            Verdict::Unknown => Some(Error::HostKeyUnknown {
                host: self.lookup.clone(),
                fingerprint,
                checked,
            }),
            Verdict::Mismatch(recorded) => Some(Error::HostKeyMismatch {
                host: self.lookup.clone(),
                fingerprint,
                recorded,
            }),
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let problem = self.verdict(key);
        let trusted = problem.is_none();
        if let Ok(mut slot) = self.problem.lock() {
            *slot = problem;
        }
        Ok(trusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_is_shared_across_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Connection>();
    }

    #[test]
    fn default_known_hosts_follow_home() {
        let config = ClientConfig::default();
        let files = config.known_hosts_files();
        assert_eq!(
            files.last(),
            Some(&PathBuf::from("/etc/ssh/ssh_known_hosts"))
        );
        let pinned = ClientConfig {
            known_hosts: vec!["/x".into()],
            ..Default::default()
        };
        assert_eq!(pinned.known_hosts_files(), vec![PathBuf::from("/x")]);
    }
}
