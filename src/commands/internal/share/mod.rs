//! `kb share ...`: the requests of kb's share server and of worker pods, run by kb itself (in the server's pod
//! through the exec API, in worker pods through kb's agent). `args` holds the options, `run` runs them.

mod args;
mod run;

pub use args::{MountOpts, ShareOpts, ShareRequest, StoreOpt};
pub use run::exec;
