//! SSH: kb's client (connect over TCP or any stream, authenticate, check the host key, run commands on channels)
//! and kb's agent (the SSH server that runs in every pod).
//!
//! The client knows nothing of jobs or workers: it runs a command on a channel and reports how it ended
//! (`worker::ssh` builds workers on it). The agent runs each channel's command in a process group of its own and
//! kills the group when the channel or the connection goes away.

mod agent;
mod client;
mod error;
mod exec;
mod job;
pub mod keys;
pub mod known_hosts;
mod liveness;
mod login;
mod pty;
mod reaper;
pub mod task_keys;

pub use agent::{AgentConfig, AgentEnd, serve_agent};
pub use client::{ClientConfig, Connection};
pub use error::{Error, ExecError, Result};
pub use exec::guard_command;
pub use login::{SshLogin, default_user};
