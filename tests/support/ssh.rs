//! Real SSH servers on 127.0.0.1 with throw-away keys, and kb's SSH client run against them.
//!
//! - [`Sshd::start`]: Debian's OpenSSH sshd (`/usr/sbin/sshd`; `apt-get install openssh-server`).
//! - [`Agent::start`]: `kb agent` (the binary under test).
//!
//! Both return an [`SshServer`]: the sshlogin to give kb, the client key, a known_hosts file, a `home` laid out as
//! `$HOME/.ssh/{id_ed25519,known_hosts}` (run kb with `HOME=` it), an `ssh -F` config for OpenSSH's client (so GNU
//! parallel can use the same server), the server's PID, and [`SshServer::kill`]. The server is killed on drop.
//! [`exec`] runs one command through kb's client and collects what it printed.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SSH server for tests; killed on drop.
pub struct SshServer {
    /// `user@127.0.0.1:PORT`, for `-S`.
    pub login: String,
    /// The user to log in as (the current user).
    pub user: String,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    /// The client's private key (OpenSSH format, no passphrase); its `.pub` is beside it.
    pub client_key: PathBuf,
    /// A known_hosts file with the line `[127.0.0.1]:PORT <host key>`.
    pub known_hosts: PathBuf,
    /// The host's public key line (`ssh-ed25519 AAAA...`), for pinning.
    pub host_public_key: String,
    /// A home directory with `.ssh/id_ed25519` and `.ssh/known_hosts` (run kb with `HOME` set to it).
    pub home: PathBuf,
    /// A config file for OpenSSH's client: `ssh -F FILE any-name` reaches this server (with ControlMaster).
    pub ssh_config: PathBuf,
    /// The server's process id.
    pub pid: u32,
    child: Child,
    dir: tempfile::TempDir,
}

impl SshServer {
    /// Kills the server and every process it started (sshd's per-connection processes, the jobs), so open
    /// connections die too, and waits for it.
    pub fn kill(&mut self) {
        for pid in descendants(self.pid as i32) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The temporary directory holding the server's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Debian's OpenSSH server.
pub struct Sshd;

impl Sshd {
    /// Starts `/usr/sbin/sshd -D -e -f CONFIG` on 127.0.0.1 with a fresh host key and client key; panics saying
    /// what to install when sshd is missing.
    pub fn start() -> SshServer {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd not found: install openssh-server (`apt-get install openssh-server`)"
        );
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut last_error = String::new();
        for _ in 0..5 {
            let keys = Keys::new();
            let port = free_port();
            let config = keys.dir.path().join("sshd_config");
            std::fs::write(&config, sshd_config(&keys, port)).expect("write sshd_config");
            let log_path = keys.dir.path().join("sshd.log");
            let log = std::fs::File::create(&log_path).expect("create sshd.log");
            let mut child = Command::new(sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("start /usr/sbin/sshd");
            match wait_listening(&mut child, port, &log_path) {
                Ok(()) => return keys.into_server(child, port),
                Err(err) => last_error = err,
            }
        }
        panic!("sshd did not start: {last_error}");
    }
}

/// kb's own agent, `kb agent`.
pub struct Agent;

impl Agent {
    /// Starts `kb agent --listen 127.0.0.1:0 ... --print-address` with fresh keys.
    pub fn start() -> SshServer {
        let keys = Keys::new();
        let authorized = keys.client_key.with_extension("pub");
        Agent::start_with(keys, &["--authorized-key".as_ref(), authorized.as_os_str()])
    }

    /// Starts kb's agent with `--authorized-keys FILE` (read at every login), FILE holding the client's key held to
    /// `command` (OpenSSH's `command="..."`). Returns the server and FILE.
    pub fn start_forced(command: &str) -> (SshServer, PathBuf) {
        let keys = Keys::new();
        let file = keys.dir.path().join("authorized_keys.forced");
        let public =
            std::fs::read_to_string(keys.client_key.with_extension("pub")).expect("client .pub");
        std::fs::write(
            &file,
            format!(
                "command=\"{}\" {}",
                command.replace('"', "\\\""),
                public.trim()
            ),
        )
        .expect("write authorized_keys");
        let server = Agent::start_with(keys, &["--authorized-keys".as_ref(), file.as_os_str()]);
        (server, file)
    }

    fn start_with(keys: Keys, auth: &[&std::ffi::OsStr]) -> SshServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kb"))
            // As in a container's entrypoint: no login variables. The agent supplies them as sshd does.
            .env_remove("SHELL")
            .env_remove("USER")
            .env_remove("LOGNAME")
            .arg("agent")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--host-key")
            .arg(&keys.host_key)
            .args(auth)
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start kb agent");
        let stdout = child.stdout.take().expect("agent stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the agent's address");
        let address: SocketAddr = match line.trim().parse() {
            Ok(address) => address,
            Err(_) => {
                let status = child.wait().ok();
                panic!(
                    "kb agent printed `{}` instead of its address (exit: {status:?})",
                    line.trim()
                );
            }
        };
        keys.into_server(child, address.port())
    }
}

/// Throw-away keys in a temporary directory: `host_key`, `client_key` (each with its `.pub`) and an
/// `authorized_keys` holding the client's public key.
pub struct Keys {
    /// The directory holding them (removed on drop).
    pub dir: tempfile::TempDir,
    /// The host's private key.
    pub host_key: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
}

impl Keys {
    /// Generates both key pairs with `ssh-keygen` (ed25519, no passphrase).
    pub fn new() -> Keys {
        let dir = tempfile::Builder::new()
            .prefix("kb-ssh-test-")
            .tempdir()
            .expect("temp dir");
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        Keys {
            dir,
            host_key,
            client_key,
        }
    }

    /// The host's public key line without its comment (`ssh-ed25519 AAAA...`).
    pub fn host_public_key(&self) -> String {
        let line =
            std::fs::read_to_string(self.host_key.with_extension("pub")).expect("host key .pub");
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn into_server(self, child: Child, port: u16) -> SshServer {
        let dir = self.dir.path();
        let user = current_user();
        let host_public_key = self.host_public_key();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {host_public_key}\n"),
        )
        .expect("known_hosts");
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".ssh")).expect("home/.ssh");
        std::fs::copy(&self.client_key, home.join(".ssh/id_ed25519")).expect("home key");
        std::fs::copy(
            self.client_key.with_extension("pub"),
            home.join(".ssh/id_ed25519.pub"),
        )
        .expect("home key");
        std::fs::copy(&known_hosts, home.join(".ssh/known_hosts")).expect("home known_hosts");
        let ssh_config = dir.join("ssh_config");
        let config = format!(
            "Host *\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ControlMaster auto\n  \
             ControlPath {dir}/cm-%C\n  ControlPersist 60\n  LogLevel ERROR\n",
            key = self.client_key.display(),
            kh = known_hosts.display(),
            dir = dir.display(),
        );
        std::fs::write(&ssh_config, config).expect("ssh_config");
        SshServer {
            login: format!("{user}@127.0.0.1:{port}"),
            user,
            port,
            client_key: self.client_key,
            known_hosts,
            host_public_key,
            home,
            ssh_config,
            pid: child.id(),
            child,
            dir: self.dir,
        }
    }
}

/// The processes below `root` in the process tree (from `/proc`), parents first.
fn descendants(root: i32) -> Vec<i32> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name in parentheses may contain spaces: the fields after it are what count.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        else {
            continue;
        };
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            queue.push(child);
        }
    }
    found
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kb-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen: install openssh-client (`apt-get install openssh-client`)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// The test server's configuration. `SetEnv SHLVL=1` stops bash (the login shell that sshd runs every command
/// with) from sourcing `~/.bashrc`, which it does for ssh commands at shell level 1: a heavy rc file (pyenv init on
/// these machines costs ~250 ms) would otherwise dominate every job, for GNU parallel and kb alike.
fn sshd_config(keys: &Keys, port: u16) -> String {
    format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {dir}/authorized_keys\n\
         PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nMaxSessions 1000\n\
         MaxStartups 1000\nAcceptEnv KB_* LANG LC_*\nSubsystem sftp internal-sftp\nSetEnv SHLVL=1\nLogLevel ERROR\n",
        host_key = keys.host_key.display(),
        dir = keys.dir.path().display(),
    )
}

fn current_user() -> String {
    kb::ssh::default_user()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn wait_listening(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let stderr = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("sshd exited with {status}: {stderr}"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    Err(format!("sshd did not listen on port {port} within 10 s"))
}

/// An ed25519 key pair made with ssh-keygen: (private key path, public key line).
pub fn key_pair(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    keygen(&path);
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

/// What one command run through kb's SSH client left: its output as text and how it ended.
#[derive(Debug)]
pub struct Exec {
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// Its exit, or why it did not run to one.
    pub exit: Result<kb::model::JobExit, kb::ssh::ExecError>,
}

/// Runs `command` on `conn` with no input and collects its output.
pub async fn exec(conn: &kb::ssh::Connection, command: &str) -> Exec {
    exec_with_env(conn, command, &[]).await
}

/// Runs `command` on `conn` with `env` sent as environment requests, and collects its output.
pub async fn exec_with_env(
    conn: &kb::ssh::Connection,
    command: &str,
    env: &[(&str, &str)],
) -> Exec {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (_signals_tx, signals) = tokio::sync::mpsc::unbounded_channel();
    let (exit, (stdout, stderr)) =
        tokio::join!(conn.exec_with_env(command, env, tx, signals), collect(rx));
    Exec {
        stdout,
        stderr,
        exit,
    }
}

/// Reads a job's output channel to its end: (stdout, stderr) as text.
pub async fn collect(
    mut rx: tokio::sync::mpsc::Receiver<(kb::model::Stream, bytes::Bytes)>,
) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some((stream, data)) = rx.recv().await {
        match stream {
            kb::model::Stream::Stdout => out.extend_from_slice(&data),
            kb::model::Stream::Stderr => err.extend_from_slice(&data),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}
