//! The Kubernetes backend: tasks are a Job's pods (`k8s::PodTask`).

use async_trait::async_trait;

use super::Result;
use super::task::{Request, Task, TaskBackend, Terminal};
use crate::k8s::{Lifetime, PodTask, Target, TaskRequest};
use crate::output::report::Reporter;
use crate::sched::Observer;
use crate::worker::WorkerSource;

/// Tasks on a cluster's namespace, with these lifetime limits.
#[derive(Debug, Clone)]
pub struct Kubernetes {
    /// The kubeconfig context and namespace.
    pub target: Target,
    /// `--orphan-timeout` and `--max-runtime`, resolved.
    pub lifetime: Lifetime,
    /// Words what the tasks tell the user while they are made and run.
    pub reporter: Reporter,
}

#[async_trait]
impl TaskBackend for Kubernetes {
    async fn create(&self, request: Request<'_>) -> Result<Box<dyn Task>> {
        let request = TaskRequest {
            target: self.target.clone(),
            shape: request.shape,
            pods: request.count,
            slots: request.slots,
            kind: request.kind,
            command: request.command,
            lifetime: self.lifetime,
            reporter: self.reporter.clone(),
        };
        Ok(Box::new(PodTask::create_with(request).await?))
    }

    async fn attach(&self, id: &str, slots: usize) -> Result<Box<dyn Task>> {
        Ok(Box::new(
            PodTask::attach(
                &self.target,
                id,
                self.lifetime,
                slots,
                self.reporter.clone(),
            )
            .await?,
        ))
    }
}

#[async_trait]
impl Task for PodTask {
    fn id(&self) -> &str {
        PodTask::id(self)
    }

    fn announcement(&self) -> String {
        PodTask::announcement(self)
    }

    fn slots(&self) -> usize {
        PodTask::slots(self)
    }

    fn workers(&self) -> Box<dyn WorkerSource> {
        self.worker_source()
    }

    fn observer(&self) -> Option<Observer> {
        let progress = self.progress();
        Some(Box::new(move |done, total| progress.set(done, total)))
    }

    async fn terminal(&self) -> Result<Terminal> {
        let (conn, pod, forward) = self.connect_first().await?;
        Ok(Terminal {
            conn,
            workdir: self.workdir().display().to_string(),
            guard: Box::new(AbortOnDrop(forward, pod)),
        })
    }

    async fn syncback(&self) {
        PodTask::syncback(self).await;
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        Ok(PodTask::finish(*self).await?)
    }
}

/// Stops a pod's port-forward when the terminal is done with it.
struct AbortOnDrop(kube::api::Portforwarder, String);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        tracing::debug!("closing the port-forward to pod `{}`", self.1);
        self.0.abort();
    }
}
