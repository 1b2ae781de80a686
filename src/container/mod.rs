//! The container backend: `kb parallel --containers N` runs the jobs in N containers of the local Docker engine,
//! each running kb's static binary as `kb agent`, reached over SSH on the Docker bridge with a per-task key pair.
//!
//! It owns the task's containers from preflight to removal: checking the request (`preflight`), choosing the agent
//! binary (`agent_binary`), the containers' configuration (`spec`, pure), creating and removing them (`task`) and
//! announcing them as workers (`source`). It must not depend on `k8s`, `cli` or `commands`: it takes plain data
//! ([`Request`]) and gives workers.

mod agent_binary;
mod error;
mod preflight;
mod source;
mod spec;
mod status;
mod task;

pub use agent_binary::{AgentBinary, choose_agent_binary};
pub use error::{Error, Result};
pub use source::ContainerSource;
pub use spec::{LABEL_CLIENT_PID, LABEL_MANAGED_BY, LABEL_ORIGIN, LABEL_PWD, LABEL_TASK};
pub use status::{finish_ids, list_tasks};
pub use task::{ContainerTask, Request};
