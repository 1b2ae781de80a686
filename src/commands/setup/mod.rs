//! `kb setup`: `args` (its options) and `run` (choose the share, a shell in a local container, commit and push).

mod args;
mod check;
mod run;
mod session;
mod stdin;

pub use args::SetupOpts;
pub use run::exec;
