//! The local Docker backend (`kb parallel --containers N`): tasks are containers (`container::ContainerTask`).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::task::{Request, Task, TaskBackend, Terminal};
use super::{Error, Result};
use crate::container::ContainerTask;
use crate::model::TaskRow;
use crate::sched::Observer;
use crate::worker::WorkerSource;

/// Tasks in the local Docker engine.
#[derive(Debug, Clone)]
pub struct Containers {
    /// The static kb that runs as the agent in each container (`--agent-binary`); `None`: this kb, when static.
    pub agent_binary: Option<PathBuf>,
    /// The containers end once no client has been connected for this long (`--orphan-timeout`).
    pub orphan_timeout: Option<Duration>,
}

impl Containers {
    /// The container backend's request: the image, CPU and memory of the shape, parsed as Kubernetes quantities.
    fn request(&self, request: &Request<'_>) -> Result<crate::container::Request> {
        let quantity = |what, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| crate::k8s::quantity::parse(what, v))
                .transpose()
        };
        let shape = &request.shape;
        Ok(crate::container::Request {
            count: request.count,
            image: shape
                .image
                .clone()
                .unwrap_or_else(|| crate::k8s::task::DEFAULT_IMAGE.into()),
            cpu: quantity("cpu", &shape.cpu)?,
            mem: quantity("memory", &shape.mem)?.map(|bytes| bytes as u64),
            slots: request.slots,
            orphan_timeout: self.orphan_timeout,
            workdir: std::env::current_dir().map_err(|source| Error::Io {
                action: "find the working directory".into(),
                source,
            })?,
            command: request.command.to_string(),
            shown_limits: (shape.cpu.clone(), shape.mem.clone()),
            agent_binary: self.agent_binary.clone(),
        })
    }
}

#[async_trait]
impl TaskBackend for Containers {
    async fn create(&self, request: Request<'_>) -> Result<Box<dyn Task>> {
        let request = self.request(&request)?;
        Ok(Box::new(ContainerTask::create(request).await?))
    }

    async fn attach(&self, _id: &str, _slots: usize) -> Result<Box<dyn Task>> {
        Err(Error::Unsupported {
            what: "attaching to a task (`--async`)",
            backend: "--containers",
        })
    }

    async fn list(&self, all: bool) -> Result<Vec<TaskRow>> {
        Ok(crate::container::list_tasks(all).await?)
    }

    async fn finish_ids(&self, ids: &[String]) -> Result<Vec<String>> {
        Ok(crate::container::finish_ids(ids).await?)
    }

    fn scope(&self) -> Option<String> {
        Some("the local Docker engine".into())
    }
}

#[async_trait]
impl Task for ContainerTask {
    fn id(&self) -> &str {
        ContainerTask::id(self)
    }

    fn announcement(&self) -> String {
        ContainerTask::announcement(self)
    }

    fn slots(&self) -> usize {
        ContainerTask::slots(self)
    }

    fn workers(&self) -> Box<dyn WorkerSource> {
        self.worker_source()
    }

    fn observer(&self) -> Option<Observer> {
        None
    }

    async fn terminal(&self) -> Result<Terminal> {
        Err(Error::Unsupported {
            what: "an interactive shell",
            backend: "--containers",
        })
    }

    async fn syncback(&self) {
        // The working directory is bind-mounted: what the jobs wrote is already here.
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        Ok(ContainerTask::finish(*self).await?)
    }
}
