//! The subcommands kb runs itself, hidden from `kb --help`: `agent` (the SSH server in every worker pod),
//! `share` (the share server's requests and the worker pods' share steps), `coordinate` (an `--async` task's
//! coordinator pod), `device_plugin` (the `kb-fuse` DaemonSet).

pub mod agent;
pub mod coordinate;
pub mod device_plugin;
pub mod share;
