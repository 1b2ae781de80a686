//! The command line: the subcommands, parsing, and handing each to its command (`commands`), which holds its
//! options. No I/O beyond what clap prints for `--help` and usage errors.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands;
use crate::commands::error::Result;

/// kb: GNU parallel's interface, with a Kubernetes cluster as the machine.
#[derive(Debug, Parser)]
#[command(
    name = "kb",
    version,
    about,
    propagate_version = true,
    max_term_width = 110
)]
pub struct Cli {
    /// Print diagnostics on stderr (repeat for more); `RUST_LOG` overrides.
    #[arg(long = "debug", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// kb's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command once per input, like GNU parallel, on pods, SSH hosts or local slots.
    #[command(after_help = commands::parallel::AFTER_HELP, args_override_self = true)]
    Parallel(Box<commands::parallel::ParallelOpts>),
    /// kb's SSH server, the process that runs jobs inside every pod (started by kb, not by hand).
    #[command(hide = true)]
    Agent(commands::internal::agent::AgentOpts),
    /// Print the manifests a cluster admin applies once (`kb cluster-setup | kubectl apply -f -`).
    ClusterSetup(commands::cluster_setup::ClusterSetupOpts),
    /// An interactive terminal on a pod with the working directory copied in; the pod is deleted on exit.
    Shell(commands::shell::ShellOpts),
    /// List kb's tasks in the namespace: this machine's, or everyone's with -A.
    Status(commands::status::StatusOpts),
    /// Stop and remove tasks and everything they own (running it twice is not an error).
    Finish(commands::finish::FinishOpts),
    /// Make this project's image: a shell in a local container, then commit and push what you installed.
    Setup(commands::setup::SetupOpts),
    /// kb's own share requests (run by kb in the share server and in worker pods).
    #[command(hide = true)]
    Share(commands::internal::share::ShareOpts),
    /// The output of an `--async` task (`-f` follows it); exits with the task's exit status once it has one.
    Logs(commands::logs::LogsOpts),
    /// The coordinator of an `--async` task, inside the cluster (started by kb, not by hand).
    #[command(hide = true)]
    Coordinate,
    /// The kubelet device plugin that hands pods `/dev/fuse` (run by the `kb-fuse` DaemonSet, not by hand).
    #[command(hide = true)]
    DevicePlugin(commands::internal::device_plugin::DevicePluginOpts),
}

impl Command {
    /// The subcommand's name, which decides the exit status of errors (GNU parallel's 255 for `parallel`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Parallel(_) => "parallel",
            Command::Agent(_) => "agent",
            Command::ClusterSetup(_) => "cluster-setup",
            Command::Shell(_) => "shell",
            Command::Status(_) => "status",
            Command::Finish(_) => "finish",
            Command::Setup(_) => "setup",
            Command::Share(_) => "share",
            Command::Logs(_) => "logs",
            Command::Coordinate => "coordinate",
            Command::DevicePlugin(_) => "device-plugin",
        }
    }
}

/// Parses the process arguments. On `--help`/`--version` it prints and returns `Err(0)`; on a usage error it prints
/// clap's message and returns the exit status: 255 for `kb parallel` (GNU parallel's contract), 2 otherwise.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Cli, u8> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "parallel") {
        // GNU parallel's option files and `$PARALLEL` come before the command line.
        let env = commands::parallel::profile::Env::from_process();
        let rest = commands::parallel::profile::expand(
            &args[2..],
            &env,
            &commands::parallel::profile::Disk,
        );
        args.truncate(2);
        args.extend(rest);
    }
    let parse = || -> Result<Cli, clap::Error> {
        let matches = Cli::command().try_get_matches_from(&args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        // Which pod-only flags were typed, as opposed to set by the environment: `--containers` refuses those.
        if let Command::Parallel(opts) = &mut cli.command
            && let Some(sub) = matches.subcommand_matches("parallel")
        {
            opts.pod_flags_given = commands::parallel::pod_flags_given(sub);
        }
        Ok(cli)
    };
    match parse() {
        Ok(cli) => Ok(cli),
        Err(err) => {
            let _ = err.print();
            if !err.use_stderr() {
                return Err(crate::error::exit::SUCCESS);
            }
            let parallel = args.get(1).is_some_and(|a| a == "parallel");
            Err(if parallel {
                crate::error::exit::OTHER
            } else {
                crate::error::exit::USAGE
            })
        }
    }
}

/// Runs the subcommand of `cli`.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Parallel(opts) => commands::parallel::exec(*opts).await,
        Command::Agent(opts) => commands::internal::agent::exec(opts).await,
        Command::ClusterSetup(opts) => commands::cluster_setup::exec(opts).await,
        Command::Shell(opts) => commands::shell::exec(opts).await,
        Command::Status(opts) => commands::status::exec(opts).await,
        Command::Finish(opts) => commands::finish::exec(opts).await,
        Command::Setup(opts) => commands::setup::exec(opts).await,
        Command::Share(opts) => commands::internal::share::exec(opts).await,
        Command::Logs(opts) => commands::logs::exec(opts).await,
        Command::Coordinate => commands::internal::coordinate::exec().await,
        Command::DevicePlugin(opts) => commands::internal::device_plugin::exec(opts).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};
    use crate::commands::internal::share::ShareRequest;
    use crate::share::protocol::{Request, VERSION};

    /// The server's parse of what the laptop sends.
    fn parse(request: &Request<'_>) -> (Option<u32>, ShareRequest) {
        let argv = std::iter::once("kb".to_string()).chain(request.argv("/s"));
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Share(opts)) => (opts.protocol, opts.request),
            other => panic!("`{request:?}` does not parse as a share request: {other:?}"),
        }
    }

    #[test]
    fn every_request_parses_on_the_server_as_sent() {
        let (version, parsed) = parse(&Request::Have);
        assert_eq!(version, Some(VERSION));
        assert!(matches!(parsed, ShareRequest::Have(s) if s.store.to_str() == Some("/s")));
        assert!(matches!(parse(&Request::Put).1, ShareRequest::Put(_)));
        let patch = Request::Patch {
            base: "b",
            manifest: "m",
        };
        assert!(matches!(parse(&patch).1,
            ShareRequest::Patch { base, manifest, .. } if base == "b" && manifest == "m"));
        let commit = Request::Commit {
            task: "t",
            key: "ssh-ed25519 AAAA x",
            manifest: "m",
        };
        assert!(matches!(parse(&commit).1,
            ShareRequest::Commit { task, key, manifest, .. }
                if task == "t" && key == "ssh-ed25519 AAAA x" && manifest == "m"));
        assert!(matches!(parse(&Request::Drop { task: "t" }).1,
            ShareRequest::Drop { task, .. } if task == "t"));
        let allow = Request::LazyAllow {
            task: "t",
            client_key: "c",
            pod_key: "p",
        };
        assert!(matches!(parse(&allow).1,
            ShareRequest::LazyAllow { task, client_key, pod_key, .. }
                if task == "t" && client_key == "c" && pod_key == "p"));
    }
}
