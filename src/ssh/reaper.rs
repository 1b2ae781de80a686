//! The agent's child reaper: every child of the agent process (jobs, and orphans re-parented to it as PID 1 or as
//! a child subreaper) is waited for here, so none is left a zombie. Jobs are spawned through [`spawn`], which
//! registers them under the same lock, so their exit status goes to whoever waits for it.
//!
//! It owns `waitpid(-1)` for the whole process: nothing else in the agent process may wait for children
//! (no `tokio::process`).

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a reaped job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal; true when it dumped core.
    Signal(Signal, bool),
}

fn waiting() -> MutexGuard<'static, HashMap<i32, oneshot::Sender<Exit>>> {
    static WAITING: OnceLock<Mutex<HashMap<i32, oneshot::Sender<Exit>>>> = OnceLock::new();
    let lock = WAITING.get_or_init(Default::default).lock();
    // A panic while holding the lock leaves a map that is still consistent: keep using it.
    lock.unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spawns `command` and registers it; the receiver gets its exit once reaped.
pub(crate) fn spawn(command: &mut Command) -> std::io::Result<(Child, oneshot::Receiver<Exit>)> {
    let mut waiting = waiting();
    let child = command.spawn()?;
    let (tx, rx) = oneshot::channel();
    waiting.insert(child.id() as i32, tx);
    Ok((child, rx))
}

/// Sends SIGKILL to the process group of every job not yet reaped (the agent is shutting down).
pub(crate) fn kill_all() {
    for pid in waiting().keys() {
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

/// Listens for SIGCHLD; [`Reaper::run`] reaps. Create it before spawning the first job.
pub(crate) struct Reaper {
    sigchld: tokio::signal::unix::Signal,
}

impl Reaper {
    /// Installs the SIGCHLD listener and makes this process a child subreaper.
    pub(crate) fn install() -> std::io::Result<Reaper> {
        let sigchld = signal(SignalKind::child())?;
        if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::debug!("cannot become a child subreaper: {err}");
        }
        Ok(Reaper { sigchld })
    }

    /// Reaps children until the process ends.
    pub(crate) async fn run(mut self) {
        loop {
            reap_all();
            self.sigchld.recv().await;
        }
    }
}

fn reap_all() {
    loop {
        let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, core)) => (pid, Exit::Signal(signal, core)),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(err) => {
                tracing::warn!("waitpid failed: {err}");
                return;
            }
        };
        if let Some(tx) = waiting().remove(&pid.as_raw()) {
            let _ = tx.send(exit);
        }
    }
}
