//! The seam between the commands and where a task's workers live. A [`TaskBackend`] creates or attaches to a
//! task; a [`Task`] hands out its workers, brings back what they wrote and removes what it made. `kubernetes`
//! adapts `k8s::PodTask` to it, `containers` adapts `container::ContainerTask` (local Docker). The commands hold `Box<dyn Task>` and never name a backend's own types, so a
//! backend is added here without touching how a run is driven.

mod containers;
mod error;
mod kubernetes;
mod task;

pub use containers::Containers;
pub use error::{Error, Result};
pub use kubernetes::Kubernetes;
pub use task::{Request, Task, TaskBackend, Terminal};
