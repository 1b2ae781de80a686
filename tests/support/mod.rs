//! Shared fixtures for the integration tests. Use it from a test file with `mod support;` (or, from a test made of
//! several files, `#[path = "../support/mod.rs"] mod support;`).
//!
//! - [`process`]: the harness: run or start a command, `#[track_caller]` assertions that print the command, its
//!   status, stdout and stderr on failure, and polling with a time limit.
//! - [`running`]: a started command (`Running`): its output as it comes, signals, a wait with a time limit.
//! - [`ssh`]: real SSH servers (OpenSSH's sshd, `kb agent`) on 127.0.0.1 with throw-away keys.
//! - [`cluster`]: a namespace of its own on the local cluster, `kb` aimed at it, and the check that nothing is left.
//! - [`share`]: what `kb cluster-setup` deploys for the share tests, and pods to break under a run.
//! - [`task`]: a kb task on the local cluster, seen through `kb status` and the Kubernetes API.
//! - [`terminal`]: a command on a pseudo-terminal of its own (`kb shell`, `kb setup`).
//! - [`static_kb`]: the static kb and the agent image, built once per test run.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses a different part of the fixtures"
)]

pub mod cluster;
pub mod process;
pub mod running;
pub mod share;
pub mod ssh;
pub mod static_kb;
pub mod task;
pub mod terminal;

pub use process::{CommandExt, Pipe, Run, Running, kb_command, wait_until};
pub use ssh::{Agent, Keys, SshServer, Sshd, key_pair};
