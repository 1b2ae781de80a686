//! One command on one channel: stream its output, forward signals, report how it ended, and close the channel when
//! kb gives up on it (or drops the future). Also the guard that makes OpenSSH's sshd kill a job's process group.

use std::time::Duration;

use russh::{ChannelMsg, Sig, client};
use tokio::sync::mpsc;

use super::error::ExecError;
use crate::model::{JobExit, JobSignal, OutputTx, Stream, signal_number};

/// How long to wait for the server's answer after kb closed a channel itself.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Runs the command already started on `channel` to its end: its output goes to `out`, kb's signals to the
/// command, and the channel closes when the signal sender is dropped.
pub(crate) async fn run_channel(
    channel: russh::Channel<client::Msg>,
    label: &str,
    out: OutputTx,
    mut signals: mpsc::UnboundedReceiver<JobSignal>,
    guarded: bool,
) -> Result<JobExit, ExecError> {
    let (mut reader, writer) = channel.split();
    // Closes the channel if this future is dropped before the end (its job is killed by kb's agent).
    let mut channel = CloseOnDrop(Some(writer));
    let mut exit = None;
    let mut signals_open = true;
    let mut closing_since = None;
    loop {
        let msg = tokio::select! {
            msg = reader.wait() => msg,
            signal = signals.recv(), if signals_open => {
                match signal {
                    Some(signal) => send_signal(&channel, signal, guarded).await,
                    None => {
                        signals_open = false;
                        closing_since = Some(tokio::time::Instant::now());
                        give_up(&channel, guarded).await;
                    }
                }
                continue;
            }
            _ = wait_until(closing_since.map(|t| t + CLOSE_WAIT)) => break,
        };
        match msg {
            Some(ChannelMsg::Data { data }) => {
                let _ = out.send((Stream::Stdout, data)).await;
            }
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                let _ = out.send((Stream::Stderr, data)).await;
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                exit = Some(JobExit::Code(exit_status as i32))
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                exit = Some(JobExit::Signal(signal_number(sig_name(&signal_name))));
            }
            Some(ChannelMsg::Failure) if exit.is_none() => {
                let _ = channel.close().await;
                channel.0 = None;
                return Err(ExecError::NotStarted(format!(
                    "`{label}` refused to run the command"
                )));
            }
            Some(ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    // Closed by the server, or the connection is gone, or kb closed it already.
    channel.0 = None;
    ended(exit, closing_since.is_some(), label)
}

/// Passes a signal to the command: as a line to kb's guard when it runs under one, else as an SSH signal.
async fn send_signal(channel: &CloseOnDrop, signal: JobSignal, guarded: bool) {
    if guarded {
        let line = format!("{}\n", sig_name(&to_sig(signal)));
        let _ = channel.data(line.as_bytes()).await;
    } else {
        let _ = channel.signal(to_sig(signal)).await;
    }
}

/// Closes the channel when kb gives up on the job (its signal sender is gone).
async fn give_up(channel: &CloseOnDrop, guarded: bool) {
    if guarded {
        // The guard kills the job's process group at EOF; the close follows.
        let _ = channel.eof().await;
    }
    let _ = channel.close().await;
}

/// How the command ended once the channel closed: its exit, else lost, by kb's close (`closed_by_kb`) or the
/// connection's loss.
fn ended(exit: Option<JobExit>, closed_by_kb: bool, label: &str) -> Result<JobExit, ExecError> {
    match exit {
        Some(exit) => Ok(exit),
        None if closed_by_kb => Err(ExecError::Lost(format!(
            "kb closed the channel to `{label}` before the command ended"
        ))),
        None => Err(ExecError::Lost(format!(
            "lost the connection to `{label}` while the command ran"
        ))),
    }
}

/// A channel's writing half that closes the channel when dropped while still set.
struct CloseOnDrop(Option<russh::ChannelWriteHalf<client::Msg>>);

impl std::ops::Deref for CloseOnDrop {
    type Target = russh::ChannelWriteHalf<client::Msg>;

    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("the channel is used only while open; this is a bug")
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Drop cannot wait; the close is one message on the connection's queue.
            runtime.spawn(async move {
                let _ = writer.close().await;
            });
        }
    }
}

async fn wait_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn to_sig(signal: JobSignal) -> Sig {
    match signal {
        JobSignal::Term => Sig::TERM,
        JobSignal::Kill => Sig::KILL,
        JobSignal::Int => Sig::INT,
    }
}

/// The SSH name of a signal, without `SIG`.
pub(crate) fn sig_name(sig: &Sig) -> &str {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.trim_start_matches("SIG"),
    }
}

/// Wraps `command` for [`Connection::exec_guarded`](super::Connection::exec_guarded): the command runs in a
/// subshell with stdin from `/dev/null`; a watcher reads signal names (`TERM`, `KILL`, ...) from the channel and
/// sends each to the session's process group, and at EOF (kb gave up on the job, or the connection died) kills the
/// group. The exit status is the command's; a command killed by a signal makes the wrapper die of the same signal,
/// so the server reports `exit-signal`.
pub fn guard_command(command: &str) -> String {
    format!(
        "trap : TERM INT HUP; exec 3<&0; (\n{command}\n) </dev/null & p=$!; \
         {{ trap : TERM INT HUP; while read -r s; do kill -s \"$s\" 0 2>/dev/null; done; kill -s KILL 0; }} <&3 & \
         w=$!; exec 3<&-; \
         while :; do wait \"$p\"; s=$?; kill -0 \"$p\" 2>/dev/null || break; done; \
         {{ kill -s KILL \"$w\"; wait \"$w\"; }} 2>/dev/null; \
         if [ \"$s\" -gt 128 ]; then trap - TERM INT HUP; kill -s \"$(kill -l \"$s\")\" $$; fi; exit \"$s\""
    )
}
