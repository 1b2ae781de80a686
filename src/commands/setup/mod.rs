//! `kb setup`: `args` (its options), `ask` (its questions) and `run` (choose the share, a shell in a local container, commit and push).

mod args;
mod ask;
mod check;
mod run;
mod session;
mod stdin;

pub use args::SetupOpts;
pub use run::exec;
