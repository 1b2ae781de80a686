//! One agent job: the command of one channel, in a process group of its own, with its output streamed back and its
//! end reported as exit-status or exit-signal. When the channel or the connection goes away first, the whole group
//! gets SIGTERM, then SIGKILL after a short grace.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use russh::server::{Handle, Msg};
use russh::{ChannelId, ChannelWriteHalf, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::pty::{self, Pty};
use super::reaper::{self, Exit};

/// Time between SIGTERM and SIGKILL when a job's channel goes away.
const GRACE: Duration = Duration::from_secs(2);
/// After a PTY job's shell exits, how long to drain output still in the terminal.
const PTY_DRAIN: Duration = Duration::from_millis(200);
const READ_BUFFER: usize = 32 * 1024;

/// The terminal a client asked for with `pty-req`.
#[derive(Debug, Clone)]
pub(crate) struct PtySpec {
    pub term: String,
    pub cols: u32,
    pub rows: u32,
}

/// What a channel asked to run.
#[derive(Debug, Default)]
pub(crate) struct JobSpec {
    /// The `exec` command; `None` for a `shell` request.
    pub command: Option<Vec<u8>>,
    /// Variables from `env` requests.
    pub env: Vec<(String, String)>,
    /// The terminal, when `pty-req` came first.
    pub pty: Option<PtySpec>,
}

/// A message from the channel to its running job.
#[derive(Debug)]
pub(crate) enum Control {
    /// Bytes for the job's stdin.
    Stdin(Bytes),
    /// The client sent EOF: close the job's stdin.
    Eof,
    /// Deliver this signal to the job's process group.
    Signal(Signal),
    /// The terminal's new size (columns, rows).
    Resize(u32, u32),
}

/// A started job, ready to be supervised.
pub(crate) struct Job {
    pgid: Pid,
    exit: oneshot::Receiver<Exit>,
    io: JobIo,
}

enum JobIo {
    Pipes {
        stdin: tokio::process::ChildStdin,
        stdout: tokio::process::ChildStdout,
        stderr: tokio::process::ChildStderr,
    },
    Pty(Arc<Pty>),
}

/// Makes `$HOME` (else the user's home, else `/`) the agent's working directory, which every job inherits.
pub(crate) fn enter_working_dir() {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| {
            login_env()
                .iter()
                .find(|(k, _)| *k == "HOME")
                .map(|(_, v)| v.clone())
        })
        .map(PathBuf::from)
        .filter(|h| h.is_dir());
    if let Err(err) = std::env::set_current_dir(home.unwrap_or_else(|| "/".into())) {
        tracing::warn!("cannot enter the jobs' working directory: {err}");
    }
}

/// The variables sshd gives every session (`HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`), for those the agent's own
/// environment lacks: a container's entrypoint usually has no `SHELL` or `USER`, and programs run remotely rely on
/// them (GNU parallel's remote wrapper runs `$SHELL`, and silently runs nothing when it is empty).
fn login_env() -> &'static [(&'static str, OsString)] {
    static LOGIN: OnceLock<Vec<(&'static str, OsString)>> = OnceLock::new();
    LOGIN.get_or_init(|| {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten();
        let shell = user
            .as_ref()
            .map(|u| u.shell.clone())
            .filter(|s| s.is_absolute() && s.exists())
            .unwrap_or_else(|| "/bin/sh".into());
        let name = user
            .as_ref()
            .map(|u| OsString::from(&u.name))
            .unwrap_or_else(|| nix::unistd::getuid().to_string().into());
        let home = user
            .as_ref()
            .map(|u| u.dir.clone().into_os_string())
            .unwrap_or_else(|| "/".into());
        let defaults = [
            ("HOME", home),
            ("USER", name.clone()),
            ("LOGNAME", name),
            ("SHELL", shell.into_os_string()),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
        ];
        defaults
            .into_iter()
            .filter(|(key, _)| std::env::var_os(key).is_none_or(|v| v.is_empty()))
            .collect()
    })
}

/// The shell for `shell` requests: `$SHELL`, else the user's login shell, else `/bin/sh`.
fn login_shell() -> OsString {
    std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .or_else(|| {
            login_env()
                .iter()
                .find(|(k, _)| *k == "SHELL")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| "/bin/sh".into())
}

/// Starts `/bin/sh -c COMMAND` (or a shell) in its own process group, in the agent's working directory.
pub(crate) fn start(spec: &JobSpec) -> std::io::Result<Job> {
    let mut command = match &spec.command {
        Some(cmd) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(OsStr::from_bytes(cmd));
            c
        }
        None => Command::new(login_shell()),
    };
    command.envs(login_env().iter().map(|(k, v)| (k, v)));
    // Tells clients (and jobs) that kb's agent runs them: it signals and kills process groups itself.
    command.env("KB_AGENT", "1");
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    // No `current_dir`: jobs inherit the agent's, set once by [`enter_working_dir`]. A per-spawn chdir makes std
    // fall back from posix_spawn (vfork) to fork in a static binary, which costs far more per job.
    match &spec.pty {
        None => {
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            let (mut child, exit) = reaper::spawn(&mut command)?;
            let missing = || std::io::Error::other("child stdio missing");
            let stdin =
                tokio::process::ChildStdin::from_std(child.stdin.take().ok_or_else(missing)?)?;
            let stdout =
                tokio::process::ChildStdout::from_std(child.stdout.take().ok_or_else(missing)?)?;
            let stderr =
                tokio::process::ChildStderr::from_std(child.stderr.take().ok_or_else(missing)?)?;
            Ok(Job {
                pgid: Pid::from_raw(child.id() as i32),
                exit,
                io: JobIo::Pipes {
                    stdin,
                    stdout,
                    stderr,
                },
            })
        }
        Some(spec) => {
            let (master, slave) = pty::open(spec.cols, spec.rows)?;
            command.env("TERM", &spec.term);
            command
                .stdin(slave.try_clone()?)
                .stdout(slave.try_clone()?)
                .stderr(slave);
            pty::set_controlling_terminal(&mut command);
            let (child, exit) = reaper::spawn(&mut command)?;
            // `command` still holds the parent's copies of the slave: drop them so the master sees the end.
            drop(command);
            Ok(Job {
                pgid: Pid::from_raw(child.id() as i32),
                exit,
                io: JobIo::Pty(Arc::new(master)),
            })
        }
    }
}

/// Runs `job` to its end: streams output to the channel, feeds it the channel's input and signals, reports how it
/// ended. When `control` closes (the channel or the connection is gone) before the end, kills its process group.
pub(crate) async fn supervise(
    job: Job,
    mut control: mpsc::UnboundedReceiver<Control>,
    channel: ChannelWriteHalf<Msg>,
    handle: Handle,
    id: ChannelId,
) {
    let Job { pgid, exit, io } = job;
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel::<Bytes>();
    let mut stdin_tx = Some(stdin_tx);
    let (finished, feed, pty) = start_io(exit, io, &channel, stdin_rx);
    let mut finished = finished;
    let mut feed = feed;
    let mut feeding = true;
    loop {
        tokio::select! {
            status = &mut finished => {
                report(status, &channel, &handle, id).await;
                return;
            }
            () = &mut feed, if feeding => feeding = false,
            message = control.recv() => match message {
                Some(Control::Stdin(data)) => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(data);
                    }
                }
                Some(Control::Eof) => stdin_tx = None,
                Some(Control::Signal(signal)) => {
                    let _ = killpg(pgid, signal);
                }
                Some(Control::Resize(cols, rows)) => {
                    if let Some(pty) = &pty {
                        let _ = pty.resize(cols, rows);
                    }
                }
                None => {
                    kill_group(pgid, finished).await;
                    return;
                }
            }
        }
    }
}

/// The futures that carry a job's I/O: one that ends with the job (its exit once its output is sent) and one that
/// feeds it the channel's input, plus the job's terminal when it has one, for resizes.
fn start_io<'a>(
    exit: oneshot::Receiver<Exit>,
    io: JobIo,
    channel: &'a ChannelWriteHalf<Msg>,
    stdin_rx: mpsc::UnboundedReceiver<Bytes>,
) -> (
    futures::future::BoxFuture<'a, Option<Exit>>,
    futures::future::BoxFuture<'a, ()>,
    Option<Arc<Pty>>,
) {
    match io {
        JobIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let output = async {
                tokio::join!(pump(stdout, channel, None), pump(stderr, channel, Some(1)));
            };
            (
                Box::pin(wait_end(exit, output, None)),
                Box::pin(feed_pipe(stdin, stdin_rx)),
                None,
            )
        }
        JobIo::Pty(master) => {
            let output = pump_pty(master.clone(), channel);
            (
                Box::pin(wait_end(exit, output, Some(PTY_DRAIN))),
                Box::pin(feed_pty(master.clone(), stdin_rx)),
                Some(master),
            )
        }
    }
}

/// SIGTERM to the group, SIGKILL after [`GRACE`] if the job has not ended, then a bounded wait for the end.
async fn kill_group(pgid: Pid, mut finished: futures::future::BoxFuture<'_, Option<Exit>>) {
    let _ = killpg(pgid, Signal::SIGTERM);
    if tokio::time::timeout(GRACE, &mut finished).await.is_ok() {
        // The leader is gone, but members of its group that ignore SIGTERM may not be.
        let _ = killpg(pgid, Signal::SIGKILL);
        return;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = tokio::time::timeout(GRACE, finished).await;
}

/// Waits for the leader's exit and the end of its output (for a PTY, at most `drain` after the exit, since a
/// background process may keep the terminal open).
async fn wait_end(
    mut exit: oneshot::Receiver<Exit>,
    output: impl Future<Output = ()>,
    drain: Option<Duration>,
) -> Option<Exit> {
    tokio::pin!(output);
    let status = tokio::select! {
        status = &mut exit => status.ok(),
        () = &mut output => return exit.await.ok(),
    };
    match drain {
        Some(drain) => {
            let _ = tokio::time::timeout(drain, output).await;
        }
        None => output.await,
    }
    status
}

async fn report(
    status: Option<Exit>,
    channel: &ChannelWriteHalf<Msg>,
    handle: &Handle,
    id: ChannelId,
) {
    match status {
        Some(Exit::Code(code)) => {
            let _ = channel.exit_status(code as u32).await;
        }
        Some(Exit::Signal(signal, core)) => {
            let _ = handle
                .exit_signal_request(id, to_sig(signal), core, String::new(), "en".into())
                .await;
        }
        None => {
            let _ = channel.exit_status(255).await;
        }
    }
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

fn to_sig(signal: Signal) -> Sig {
    match signal {
        Signal::SIGABRT => Sig::ABRT,
        Signal::SIGALRM => Sig::ALRM,
        Signal::SIGFPE => Sig::FPE,
        Signal::SIGHUP => Sig::HUP,
        Signal::SIGILL => Sig::ILL,
        Signal::SIGINT => Sig::INT,
        Signal::SIGKILL => Sig::KILL,
        Signal::SIGPIPE => Sig::PIPE,
        Signal::SIGQUIT => Sig::QUIT,
        Signal::SIGSEGV => Sig::SEGV,
        Signal::SIGTERM => Sig::TERM,
        Signal::SIGUSR1 => Sig::USR1,
        other => Sig::Custom(other.as_str().trim_start_matches("SIG").to_owned()),
    }
}

/// Copies a pipe to the channel (`ext` 1 = stderr) until its end; once the channel is gone, keeps draining the
/// pipe so the job never blocks on a full pipe.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    channel: &ChannelWriteHalf<Msg>,
    ext: Option<u32>,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut open = true;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if open {
            let data = Bytes::copy_from_slice(&buf[..n]);
            let sent = match ext {
                None => channel.data_bytes(data).await,
                Some(ext) => channel.extended_data_bytes(ext, data).await,
            };
            open = sent.is_ok();
        }
    }
}

async fn pump_pty(master: Arc<Pty>, channel: &ChannelWriteHalf<Msg>) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match master.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if channel
                    .data_bytes(Bytes::copy_from_slice(&buf[..n]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn feed_pipe(
    mut stdin: tokio::process::ChildStdin,
    mut input: mpsc::UnboundedReceiver<Bytes>,
) {
    while let Some(data) = input.recv().await {
        if stdin.write_all(&data).await.is_err() {
            return;
        }
    }
    // Dropping `stdin` closes the job's input.
}

async fn feed_pty(master: Arc<Pty>, mut input: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(data) = input.recv().await {
        if master.write_all(&data).await.is_err() {
            return;
        }
    }
}
