//! Removing tasks: everything a task made, by label and in one go, whatever the number of tasks.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};

use super::PodTask;
use crate::k8s::client::{Kube, classify};
use crate::k8s::error::Result;
use crate::k8s::resources::tasks_selector;

impl PodTask {
    /// Deletes everything the task created (by label; running it again is harmless). A coordinator that attached
    /// to the task only stops its heartbeat: the task stays for `kb logs` and `kb finish`.
    pub async fn finish(mut self) -> Result<()> {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop().await;
        }
        if self.attached {
            return Ok(());
        }
        let _ = std::fs::remove_dir_all(&self.key_dir);
        if self.share_on_server {
            crate::k8s::share::server::drop_task(&self.kube, &self.spec.id).await;
        }
        finish_task(&self.kube, &self.spec.id).await.map(|_| ())
    }
}

/// Deletes the Job, Secret, Lease and pods labelled with task `id`; returns whether there was a task (a Job or a
/// Secret) to delete.
pub async fn finish_task(kube: &Kube, id: &str) -> Result<bool> {
    let found = finish_tasks(kube, &[id.to_string()]).await?;
    Ok(found.iter().any(|f| f == id))
}

/// Deletes the Jobs, Secrets, Leases and pods of every task in `ids` in one go (one delete-collection call per
/// kind, whatever the number of tasks); returns the ids that had a task (a Job or a Secret) to delete.
pub async fn finish_tasks(kube: &Kube, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ListParams::default().labels(&tasks_selector(ids));
    // Background: the Job goes at once (so it makes no new pods) and the garbage collector takes what it owns.
    let delete = DeleteParams::background();
    let ns = &kube.namespace;
    let which = match ids {
        [one] => format!("task `{one}`"),
        many => format!("{} tasks", many.len()),
    };
    let what = |kind: &str| format!("delete the {kind} of {which} in namespace `{ns}`");
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), ns);
    let deleted_jobs = jobs
        .delete_collection(&delete, &list)
        .await
        .map_err(|e| classify(kube, &what("jobs"), e))?;
    let secrets: Api<Secret> = Api::namespaced(kube.client.clone(), ns);
    let deleted_secrets = secrets
        .delete_collection(&delete, &list)
        .await
        .map_err(|e| classify(kube, &what("secrets"), e))?;
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    pods.delete_collection(&delete, &list)
        .await
        .map_err(|e| classify(kube, &what("pods"), e))?;
    // The Job owns the Lease, so the garbage collector takes it anyway; deleting it now is a courtesy that a user
    // without rights on Leases goes without.
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), ns);
    if let Err(err) = leases.delete_collection(&delete, &list).await {
        tracing::debug!(
            "cannot delete the leases of {which}: {}",
            crate::error::chain(&err)
        );
    }
    // Pods that are already stopping are listed again by a second `finish`; the Job and the Secret go at once, so
    // they alone say whether there was a task to finish.
    let task_of = |meta: &kube::api::ObjectMeta| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(crate::k8s::resources::TASK_ID))
            .cloned()
    };
    let mut found: Vec<String> = Vec::new();
    if let Some(list) = deleted_jobs.left() {
        found.extend(list.items.iter().filter_map(|j| task_of(&j.metadata)));
    }
    if let Some(list) = deleted_secrets.left() {
        found.extend(list.items.iter().filter_map(|s| task_of(&s.metadata)));
    }
    found.sort();
    found.dedup();
    Ok(found)
}
