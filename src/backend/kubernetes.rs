//! The Kubernetes backend: tasks are a Job's pods (`k8s::PodTask`).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::Result;
use super::task::{Request, Task, TaskBackend, Terminal};
use crate::k8s::client::{FINISH_RIGHTS, STATUS_RIGHTS};
use crate::k8s::{Lifetime, PodTask, Target, TaskRequest};
use crate::model::TaskRow;
use crate::output::report::Reporter;
use crate::sched::Observer;
use crate::worker::WorkerSource;

/// Tasks on a cluster's namespace, with these lifetime limits.
#[derive(Debug, Clone)]
pub struct Kubernetes {
    /// The kubeconfig context and namespace.
    target: Target,
    /// `--orphan-timeout` and `--max-runtime`, resolved.
    lifetime: Lifetime,
    /// Words what the tasks tell the user while they are made and run.
    reporter: Reporter,
    /// The namespace, once `list` or `finish_ids` connected.
    namespace: Arc<OnceLock<String>>,
}

impl Kubernetes {
    /// The backend of `target`'s namespace; tasks it creates live within `lifetime` and tell the user what they
    /// do through `reporter`.
    pub fn new(target: Target, lifetime: Lifetime, reporter: Reporter) -> Kubernetes {
        Kubernetes {
            target,
            lifetime,
            reporter,
            namespace: Arc::default(),
        }
    }

    async fn connect(&self, rights: &[crate::k8s::client::Right]) -> Result<crate::k8s::Kube> {
        let kube = crate::k8s::client::connect(&self.target, rights).await?;
        let _ = self.namespace.set(kube.namespace.clone());
        Ok(kube)
    }
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

    async fn list(&self, all: bool) -> Result<Vec<TaskRow>> {
        let kube = self.connect(STATUS_RIGHTS).await?;
        Ok(crate::k8s::status::list_tasks(&kube, all).await?)
    }

    async fn finish_ids(&self, ids: &[String]) -> Result<Vec<String>> {
        let kube = self.connect(FINISH_RIGHTS).await?;
        let found = crate::k8s::task::finish_tasks(&kube, ids).await?;
        // The share server forgets the tasks too: their trees, and the keys a lazy share let in.
        // (Its pod looked up once, without waiting for it to be Ready: a server that is not there has nothing.)
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(kube.client.clone(), &kube.namespace);
        let server = !found.is_empty()
            && matches!(
                pods.get_opt(crate::share::client::SERVER_POD).await,
                Ok(Some(_))
            );
        for id in &found {
            let _ = std::fs::remove_dir_all(crate::ssh::task_keys::key_dir(id));
            if server {
                crate::k8s::share::server::drop_task(&kube, id).await;
            }
        }
        Ok(found)
    }

    fn scope(&self) -> Option<String> {
        self.namespace.get().map(|ns| format!("namespace `{ns}`"))
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
