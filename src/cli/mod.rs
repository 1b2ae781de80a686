//! The command line: clap types only, no I/O beyond what clap prints for `--help` and usage errors.

pub mod agent;
pub mod cluster_setup;
pub mod device_plugin;
pub mod finish;
pub mod logs;
pub mod parallel;
pub mod pods;
pub mod setup;
pub mod share;
pub mod shell;
pub mod status;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

pub use agent::AgentOpts;
pub use parallel::ParallelOpts;
pub use pods::PodOpts;

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
    #[command(after_help = parallel::AFTER_HELP)]
    Parallel(Box<ParallelOpts>),
    /// kb's SSH server, the process that runs jobs inside every pod.
    Agent(AgentOpts),
    /// Print the manifests a cluster admin applies once (`kb cluster-setup | kubectl apply -f -`).
    ClusterSetup(cluster_setup::ClusterSetupOpts),
    /// An interactive terminal on a pod with the working directory copied in; the pod is deleted on exit.
    Shell(shell::ShellOpts),
    /// List kb's tasks in the namespace: this machine's, or everyone's with -A.
    Status(status::StatusOpts),
    /// Stop and remove tasks and everything they own (running it twice is not an error).
    Finish(finish::FinishOpts),
    /// Make this project's image: a shell in a local container, then commit and push what you installed.
    Setup(setup::SetupOpts),
    /// kb's own share requests (run by kb in the share server and in worker pods).
    #[command(hide = true)]
    Share(share::ShareOpts),
    /// The output of an `--async` task (`-f` follows it); exits with the task's exit status once it has one.
    Logs(logs::LogsOpts),
    /// The coordinator of an `--async` task, inside the cluster (started by kb, not by hand).
    #[command(hide = true)]
    Coordinate,
    /// The kubelet device plugin that hands pods `/dev/fuse` (run by the `kb-fuse` DaemonSet, not by hand).
    #[command(hide = true)]
    DevicePlugin(device_plugin::DevicePluginOpts),
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
    let args: Vec<OsString> = args.into_iter().collect();
    match Cli::try_parse_from(&args) {
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
