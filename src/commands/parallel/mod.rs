//! `kb parallel`: `args` (its options), `profile` (`$PARALLEL`, `~/.parallel/config` and `-J` profiles as words
//! in front of the command line), `run` (build the input, the template and the workers, then hand them to
//! the scheduler), `workers` (this machine and the `--sshlogin` hosts), `handover` (`--async`: hand the run to a
//! coordinator pod).

mod args;
mod handover;
pub mod profile;
mod run;
mod workers;

pub use args::{AFTER_HELP, POD_ONLY_FLAGS, ParallelLine, ParallelOpts, pod_flags_given};
pub use run::{exec, exec_with};
