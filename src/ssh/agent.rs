//! kb's agent: the SSH server of every pod. Public-key login with the one authorised key; `exec` and `shell`
//! (with or without a PTY), `env`, `signal` and `window-change` requests; each channel's command runs in a process
//! group of its own (see `job`), and closing the channel or the connection kills that group. No forwarding, no
//! subsystems: it runs commands and nothing else.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::PublicKey;
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Server, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelWriteHalf, MethodKind, MethodSet, Pty, Sig};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::error::{Error, Result};
use super::job::{self, Control, JobSpec, PtySpec};
use super::liveness::{ConnectionGuard, Liveness};
use super::reaper::{self, Reaper};

/// Why the agent stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEnd {
    /// It was asked to stop (SIGTERM, Ctrl-C).
    Stopped,
    /// Nobody was connected for `--orphan-timeout`.
    Orphaned,
}

/// What `kb agent` serves: plain data, so the agent does not depend on the command line's types.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Address to listen on (`ADDR:PORT`).
    pub listen: String,
    /// The host's private key (OpenSSH format).
    pub host_key: PathBuf,
    /// The one public key allowed to log in, or `authorized_keys`.
    pub authorized_key: Option<PathBuf>,
    /// An `authorized_keys` file read at every login (lines may carry `command="..."`).
    pub authorized_keys: Option<PathBuf>,
    /// Print the bound address on stdout once listening.
    pub print_address: bool,
    /// End with [`AgentEnd::Orphaned`] once no logged-in client has been connected for this long.
    pub orphan_timeout: Option<Duration>,
}

/// Runs kb's agent (the SSH server of every pod) until the process gets SIGTERM or SIGINT; then kills every job.
pub async fn serve_agent(opts: &AgentConfig) -> Result<AgentEnd> {
    let host_key =
        russh::keys::load_secret_key(&opts.host_key, None).map_err(|source| Error::AgentKey {
            what: "host key",
            path: opts.host_key.clone(),
            source,
        })?;
    let authorized = match (&opts.authorized_key, &opts.authorized_keys) {
        (Some(path), _) => Authorized::Fixed(
            load_authorized(path)?
                .into_iter()
                .map(|key| AuthorizedKey { key, command: None })
                .collect(),
        ),
        (None, Some(path)) => Authorized::File(path.clone()),
        (None, None) => {
            return Err(Error::AgentKey {
                what: "authorized key",
                path: "(none given)".into(),
                source: russh::keys::Error::CouldNotReadKey,
            });
        }
    };
    let listen_error = |source| Error::Listen {
        addr: opts.listen.clone(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(listen_error)?;
    let reaper = Reaper::install().map_err(listen_error)?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(listen_error)?;
    if opts.print_address {
        let address = listener.local_addr().map_err(listen_error)?;
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{address}").and_then(|()| stdout.flush());
    }
    job::enter_working_dir();
    let config = Arc::new(server_config(host_key));
    let tasks = TaskTracker::new();
    let liveness = Liveness::new();
    let mut server = AgentServer {
        authorized: Arc::new(authorized),
        tasks: tasks.clone(),
        liveness: liveness.clone(),
    };
    let orphan_timeout = opts.orphan_timeout;
    let result = tokio::select! {
        result = server.run_on_socket(config, &listener) => result.map(|()| AgentEnd::Stopped).map_err(listen_error),
        () = reaper.run() => Ok(AgentEnd::Stopped),
        _ = terminate.recv() => Ok(AgentEnd::Stopped),
        _ = tokio::signal::ctrl_c() => Ok(AgentEnd::Stopped),
        () = liveness.orphaned(orphan_timeout) => Ok(AgentEnd::Orphaned),
    };
    reaper::kill_all();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), tasks.wait()).await;
    result
}

fn load_authorized(path: &Path) -> Result<Vec<PublicKey>> {
    let error = |source| Error::AgentKey {
        what: "authorized key",
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.into()))?;
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| PublicKey::from_openssh(line).map_err(|e| error(e.into())))
        .collect::<Result<Vec<_>>>()?;
    if keys.is_empty() {
        return Err(error(russh::keys::Error::CouldNotReadKey));
    }
    Ok(keys)
}

/// A key allowed to log in, and the command it is held to, if any.
#[derive(Debug, Clone)]
struct AuthorizedKey {
    key: PublicKey,
    command: Option<String>,
}

/// Who may log in: keys fixed at start, or an `authorized_keys` file read at every login.
enum Authorized {
    Fixed(Vec<AuthorizedKey>),
    File(std::path::PathBuf),
}

impl Authorized {
    fn find(&self, key: &PublicKey) -> Option<AuthorizedKey> {
        let matches = |k: &AuthorizedKey| k.key.key_data() == key.key_data();
        match self {
            Authorized::Fixed(keys) => keys.iter().find(|k| matches(k)).cloned(),
            Authorized::File(path) => {
                let text = std::fs::read_to_string(path).ok()?;
                text.lines()
                    .filter_map(parse_authorized_line)
                    .find(|k| matches(k))
            }
        }
    }
}

/// One `authorized_keys` line: `[options ]type base64 [comment]`; of the options only `command="..."` is used.
fn parse_authorized_line(line: &str) -> Option<AuthorizedKey> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let looks_like_key =
        |s: &str| s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-");
    if looks_like_key(line) {
        return Some(AuthorizedKey {
            key: PublicKey::from_openssh(line).ok()?,
            command: None,
        });
    }
    // Options run to the first space outside double quotes.
    let mut in_quotes = false;
    let mut escaped = false;
    let mut end = line.len();
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => in_quotes = !in_quotes,
            ' ' | '\t' if !in_quotes => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let (options, key) = line.split_at(end);
    let key = PublicKey::from_openssh(key.trim()).ok()?;
    let command = options.find("command=\"").map(|start| {
        let mut value = String::new();
        let mut chars = options[start + 9..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        value
    });
    Some(AuthorizedKey { key, command })
}

fn server_config(host_key: russh::keys::PrivateKey) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        // The client sends keepalives; these catch a client that vanished without closing the connection.
        keepalive_interval: Some(Duration::from_secs(10)),
        keepalive_max: 3,
        inactivity_timeout: None,
        event_buffer_size: 1024,
        window_size: 16 * 1024 * 1024,
        nodelay: true,
        ..Default::default()
    }
}

struct AgentServer {
    authorized: Arc<Authorized>,
    tasks: TaskTracker,
    liveness: Arc<Liveness>,
}

impl Server for AgentServer {
    type Handler = AgentSession;

    fn new_client(&mut self, peer: Option<std::net::SocketAddr>) -> AgentSession {
        tracing::debug!("connection from {peer:?}");
        AgentSession {
            authorized: self.authorized.clone(),
            tasks: self.tasks.clone(),
            channels: HashMap::new(),
            liveness: self.liveness.clone(),
            logged_in: None,
            forced: None,
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::debug!("session ended: {error}");
    }
}

/// One connection. Dropping it (the connection ended) drops every job's control sender, which kills the jobs.
struct AgentSession {
    authorized: Arc<Authorized>,
    /// The command the logged-in key is held to (`command="..."`), if any.
    forced: Option<String>,
    tasks: TaskTracker,
    channels: HashMap<ChannelId, ChannelState>,
    liveness: Arc<Liveness>,
    /// Set once the client has logged in: the agent is in use while it lives.
    logged_in: Option<ConnectionGuard>,
}

enum ChannelState {
    /// Requests (env, pty-req) gathered before exec or shell.
    Setup {
        spec: JobSpec,
        writer: ChannelWriteHalf<Msg>,
    },
    /// The job runs; messages for it go here.
    Running(mpsc::UnboundedSender<Control>),
    /// The job could not start, or the channel's one command is done.
    Spent,
}

impl AgentSession {
    fn authorized(&self, key: &PublicKey) -> Option<AuthorizedKey> {
        self.authorized.find(key)
    }

    fn start(
        &mut self,
        id: ChannelId,
        command: Option<&[u8]>,
        session: &mut Session,
    ) -> std::result::Result<(), russh::Error> {
        let state = self.channels.insert(id, ChannelState::Spent);
        let Some(ChannelState::Setup { mut spec, writer }) = state else {
            return session.channel_failure(id);
        };
        spec.command = command.map(<[u8]>::to_vec);
        if let Some(forced) = &self.forced {
            if let Some(asked) = &spec.command {
                spec.env.push((
                    "SSH_ORIGINAL_COMMAND".into(),
                    String::from_utf8_lossy(asked).into_owned(),
                ));
            }
            spec.command = Some(forced.as_bytes().to_vec());
            spec.pty = None;
        }
        match job::start(&spec) {
            Ok(job) => {
                session.channel_success(id)?;
                let (tx, rx) = mpsc::unbounded_channel();
                self.tasks
                    .spawn(job::supervise(job, rx, writer, session.handle(), id));
                self.channels.insert(id, ChannelState::Running(tx));
                Ok(())
            }
            Err(err) => {
                tracing::warn!("cannot start a job: {err}");
                session.channel_failure(id)
            }
        }
    }

    fn control(&self, id: ChannelId, message: Control) {
        if let Some(ChannelState::Running(tx)) = self.channels.get(&id) {
            let _ = tx.send(message);
        }
    }
}

impl russh::server::Handler for AgentSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.authorized(offer.public_key) {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(found) = self.authorized(key.public_key) else {
            return Ok(Auth::reject());
        };
        self.forced = found.command;
        if self.logged_in.is_none() {
            self.logged_in = Some(self.liveness.connected());
        }
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Requests arrive through this handler's callbacks; the channel's own queue would only fill up unread.
        let (reader, writer) = channel.split();
        drop(reader);
        self.channels.insert(
            writer.id(),
            ChannelState::Setup {
                spec: JobSpec::default(),
                writer,
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        id: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&id) {
            Some(ChannelState::Setup { spec, .. }) => {
                spec.env.push((name.to_owned(), value.to_owned()));
                session.channel_success(id)
            }
            _ => session.channel_failure(id),
        }
    }

    async fn pty_request(
        &mut self,
        id: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&id) {
            Some(ChannelState::Setup { spec, .. }) => {
                spec.pty = Some(PtySpec {
                    term: term.to_owned(),
                    cols,
                    rows,
                });
                session.channel_success(id)
            }
            _ => session.channel_failure(id),
        }
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(id, Some(command), session)
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(id, None, session)
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)
    }

    async fn data(
        &mut self,
        id: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.control(id, Control::Stdin(Bytes::copy_from_slice(data)));
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        id: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.control(id, Control::Eof);
        Ok(())
    }

    async fn signal(
        &mut self,
        id: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let number = crate::model::signal_number(super::exec::sig_name(&signal));
        match nix::sys::signal::Signal::try_from(number) {
            Ok(signal) => self.control(id, Control::Signal(signal)),
            Err(_) => tracing::debug!("ignoring unknown signal {signal:?}"),
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        id: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&id) {
            Some(ChannelState::Setup {
                spec: JobSpec { pty: Some(pty), .. },
                ..
            }) => {
                pty.cols = cols;
                pty.rows = rows;
            }
            _ => self.control(id, Control::Resize(cols, rows)),
        }
        session.channel_success(id)
    }

    async fn channel_close(
        &mut self,
        id: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dropping the job's control sender kills the job if it still runs.
        self.channels.remove(&id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_lines_with_and_without_a_forced_command() {
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[7u8; 32]);
        let key = russh::keys::PrivateKey::from(pair);
        let key_line = key.public_key().to_openssh().unwrap();
        let key_text = key_line.as_str();
        let plain = parse_authorized_line(&format!("{key_text} me@host")).unwrap();
        assert_eq!(plain.command, None);
        let forced = parse_authorized_line(&format!(
            "restrict,command=\"kb share serve --task 'a b' \\\"q\\\"\" {key_text} task"
        ))
        .unwrap();
        assert_eq!(
            forced.command.as_deref(),
            Some("kb share serve --task 'a b' \"q\"")
        );
        assert_eq!(forced.key.key_data(), plain.key.key_data());
        assert!(parse_authorized_line("# comment").is_none());
        assert!(parse_authorized_line("command=\"x\" not-a-key").is_none());
    }
}
