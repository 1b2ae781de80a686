//! kb's SSH client against real servers on 127.0.0.1, Debian's OpenSSH sshd and `kb agent`, one test binary in
//! several files by theme:
//!
//! - [`exec`]: output, exit codes and signals, environment requests, many channels at once, sessions with a
//!   pseudo-terminal, SSH over a given stream;
//! - [`kill`]: what happens to a job's processes when it is signalled, given up on, cut off or orphaned;
//! - [`auth`]: client keys, known_hosts and pinned host keys, forced commands, unreachable ports;
//! - [`binary`]: the `kb` binary (keys under `HOME`, ssh-agent, agent startup errors) and OpenSSH's client and GNU
//!   parallel against the same servers.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod binary;
mod exec;
mod kill;

use kb::ssh::{ClientConfig, Connection, SshLogin};
use support::{Agent, SshServer, Sshd};

pub(crate) fn config(server: &SshServer) -> ClientConfig {
    ClientConfig {
        identities: vec![server.client_key.clone()],
        pinned_host_keys: Vec::new(),
        known_hosts: vec![server.known_hosts.clone()],
    }
}

pub(crate) fn login(server: &SshServer) -> SshLogin {
    server.login.parse().expect("fixture login parses")
}

pub(crate) async fn connect(server: &SshServer) -> Connection {
    Connection::connect(&login(server), &config(server))
        .await
        .expect("connect")
}

/// Both servers, named for assertion messages.
pub(crate) fn both() -> Vec<(&'static str, SshServer)> {
    vec![("sshd", Sshd::start()), ("agent", Agent::start())]
}
