//! kb: GNU parallel's interface over SSH channels, with Kubernetes pods as workers.
//!
//! The module tree mirrors the architecture (see `docs/architecture.md`): `cli` parses, `commands` runs one
//! subcommand each, `sched` owns a run (queue, slots, retries, halt, output order), workers run jobs (`sched::local`,
//! `ssh`), and `template`, `input` and `joblog` implement GNU parallel's contract as pure code.

pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod container;
pub mod deviceplugin;
pub mod docker;
pub mod error;
pub mod input;
pub mod joblog;
pub mod k8s;
pub mod model;
pub mod output;
pub mod sched;
pub mod share;
pub mod signal;
pub mod ssh;
pub mod template;
pub mod worker;

/// Runs a parsed command line and returns the process exit status.
pub async fn run(cli: cli::Cli) -> u8 {
    let subcommand = cli.command.name();
    match cli::dispatch(cli).await {
        Ok(code) => code,
        Err(err) => {
            err.render(&mut std::io::stderr());
            err.exit_code(subcommand)
        }
    }
}

/// Sends diagnostics (`tracing`) to stderr; `-v` raises the level, `RUST_LOG` overrides it.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        // kube's client logs an ERROR for every failed request; kb reports those failures itself, with a hint.
        // fuser warns for every FUSE request the lazy share answers with ENOSYS (hard links, ioctl): expected.
        0 => "warn,kube_client=off,fuser=error",
        1 => "kb=info",
        2 => "kb=debug",
        _ => "kb=trace,russh=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
