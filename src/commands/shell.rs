//! `kb shell`: one pod, the working directory copied into it, and an interactive terminal on it over the same
//! path as the jobs (port-forward, kb's SSH client, kb's agent). The terminal is in raw mode, window size changes
//! follow, the remote exit status becomes kb's, and the pod is deleted on the way out, Ctrl-C or hang-up included.

use std::os::fd::AsFd;

use russh::ChannelMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use crate::backend::{Kubernetes, Request, Task, TaskBackend};
use crate::commands::error::{Error, Result};
use crate::commands::options::{KubeOpts, PodShapeOpts};
use crate::ssh::Connection;

/// Options of `kb shell`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShellOpts {
    /// Size and images of the pod.
    #[command(flatten)]
    pub shape: PodShapeOpts,
    /// Cluster and namespace.
    #[command(flatten)]
    pub kube: KubeOpts,
    /// A command to run instead of an interactive shell (still on a terminal).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Runs `kb shell`.
pub async fn exec(mut opts: ShellOpts) -> Result<u8> {
    crate::commands::options::project_defaults(&mut opts.shape, &mut opts.kube.namespace)?;
    let command = opts.command.join(" ");
    let lifetime = opts
        .shape
        .to_shape()
        .lifetime(crate::k8s::LifetimeFallback::default())?;
    let backend = Kubernetes::new(
        opts.kube.target(),
        lifetime,
        crate::output::report::Reporter::plain(),
    );
    let request = Request {
        shape: opts.shape.to_shape(),
        count: 1,
        slots: Some(1),
        kind: "shell",
        command: if command.is_empty() {
            "(interactive shell)"
        } else {
            &command
        },
    };
    let task = backend.create(request).await?;
    eprintln!("{}", task.announcement());
    let result = tokio::select! {
        result = session(task.as_ref(), &command) => result,
        () = interrupted() => Err(Error::Interrupted),
    };
    let finished = task.finish().await;
    let code = result?;
    finished?;
    Ok(code)
}

/// Resolves on SIGINT, SIGTERM or SIGHUP (a terminal in raw mode sends Ctrl-C to the pod instead).
pub(crate) async fn interrupted() {
    let mut signals = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        if let Ok(s) = signal(kind) {
            signals.push(s);
        }
    }
    let waits = signals
        .iter_mut()
        .map(|s| Box::pin(async move { s.recv().await }));
    if waits.len() == 0 {
        return std::future::pending().await;
    }
    futures::future::select_all(waits).await;
}

async fn session(task: &dyn Task, command: &str) -> Result<u8> {
    let terminal = task.terminal().await?;
    let code = run_terminal(
        &terminal.conn,
        &build_remote_command(&terminal.workdir, command),
    )
    .await;
    terminal.conn.close().await;
    drop(terminal.guard);
    code
}

/// The command the pod runs: the user's in the working directory, else the best shell the image has.
fn build_remote_command(workdir: &str, command: &str) -> String {
    let cd = format!("cd {} 2>/dev/null", crate::template::quote(workdir));
    if command.is_empty() {
        format!(
            "{cd}; if [ -x /bin/bash ]; then exec /bin/bash; elif [ -x /bin/sh ]; then exec /bin/sh; \
             else exec /kb/busybox sh; fi"
        )
    } else {
        format!("{cd} || exit 255; {command}")
    }
}

/// Runs `command` on a PTY channel with this terminal attached; returns the remote exit status.
async fn run_terminal(conn: &Connection, command: &str) -> Result<u8> {
    let failed = |e: &dyn std::fmt::Display| Error::Io {
        action: format!("run the shell in pod `{}`", conn.label()),
        source: std::io::Error::other(e.to_string()),
    };
    let channel = conn.open_session().await.map_err(|e| failed(&e))?;
    let (cols, rows) = window_size();
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
    channel
        .request_pty(true, &term, cols, rows, 0, 0, &[])
        .await
        .map_err(|e| failed(&e))?;
    channel.exec(true, command).await.map_err(|e| failed(&e))?;
    let (mut reader, writer) = channel.split();
    let _raw = RawMode::enter();
    let mut winch = signal(SignalKind::window_change()).map_err(|e| failed(&e))?;
    let mut stdin = tokio::io::stdin();
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    let mut code = None;
    loop {
        tokio::select! {
            read = stdin.read(&mut buf), if stdin_open => match read {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = writer.eof().await;
                }
                Ok(n) => writer.data(&buf[..n]).await.map_err(|e| failed(&e))?,
            },
            _ = winch.recv() => {
                let (cols, rows) = window_size();
                let _ = writer.window_change(cols, rows, 0, 0).await;
            }
            msg = reader.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    let _ = stdout.write_all(&data).await;
                    let _ = stdout.flush().await;
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let _ = stderr.write_all(&data).await;
                    let _ = stderr.flush().await;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(u8::try_from(exit_status).unwrap_or(255)),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    let number = crate::model::signal_number(&format!("{signal_name:?}"));
                    code = Some(u8::try_from(128 + number).unwrap_or(255));
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    code.ok_or_else(|| failed(&"the connection closed before the shell ended"))
}

/// The terminal's size, 80x24 when stdout is not a terminal.
pub(crate) fn window_size() -> (u32, u32) {
    match rustix::termios::tcgetwinsize(std::io::stdout().as_fd()) {
        Ok(size) if size.ws_col > 0 => (u32::from(size.ws_col), u32::from(size.ws_row)),
        _ => (80, 24),
    }
}

/// Raw mode on stdin while it lives, when stdin is a terminal; the old settings come back on drop.
pub(crate) struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    pub(crate) fn enter() -> Option<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin().as_fd(),
            nix::sys::termios::SetArg::TCSADRAIN,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_command_runs_in_the_working_directory() {
        assert_eq!(
            build_remote_command("/w d", "exit 3"),
            "cd '/w d' 2>/dev/null || exit 255; exit 3"
        );
        assert!(build_remote_command("/w", "").contains("exec /bin/bash"));
    }

    #[test]
    fn exit_code_constant_is_used_for_interrupts() {
        assert_eq!(
            Error::Interrupted.exit_code("shell"),
            crate::error::exit::INTERRUPTED
        );
    }
}
