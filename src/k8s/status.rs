//! `kb status`: the tasks in a namespace, read from their Jobs and pods, as rows for a table, JSON or YAML.
//! Listing is I/O; turning objects into rows is pure and tested.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use super::client::{Kube, classify};
use super::error::Result;
use super::pod_state::{PodState, observe};
use crate::model::{PODS, TaskRow, show_age};

use super::resources::{
    COMMAND, KIND, ORIGIN, ORPHANED_AFTER_SECS, PROGRESS, PWD, TASK_ID, TOTAL, managed_selector,
};

/// Lists the tasks of the namespace: this machine's, or everyone's with `all`.
pub async fn list_tasks(kube: &Kube, all: bool) -> Result<Vec<TaskRow>> {
    let origin = super::task::origin();
    let selector = managed_selector((!all).then_some(origin.as_str()));
    let params = ListParams::default().labels(&selector);
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let action = format!("list kb's tasks in namespace `{}`", kube.namespace);
    let jobs = jobs
        .list(&params)
        .await
        .map_err(|e| classify(kube, &action, e))?;
    let pods = pods
        .list(&params)
        .await
        .map_err(|e| classify(kube, &action, e))?;
    // Without the right to read Leases there is no heartbeat to show: no PROGRESS, no ORPHANED.
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let leases = leases
        .list(&params)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let lease_of = |id: &str| {
        leases.iter().find(|l| {
            l.metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(TASK_ID))
                .is_some_and(|v| v == id)
        })
    };
    let mut by_task: BTreeMap<String, Vec<PodState>> = BTreeMap::new();
    for pod in &pods.items {
        if let Some(id) = pod.metadata.labels.as_ref().and_then(|l| l.get(TASK_ID)) {
            by_task.entry(id.clone()).or_default().push(observe(pod));
        }
    }
    let now = Timestamp::now();
    let mut rows: Vec<TaskRow> = jobs
        .items
        .iter()
        .map(|job| {
            let id = label(job, TASK_ID);
            let states = by_task.get(&id).map(Vec::as_slice).unwrap_or_default();
            build_row(job, states, lease_of(&id), now, &kube.namespace)
        })
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

fn label(job: &Job, key: &str) -> String {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
        .unwrap_or_default()
}

fn annotation(job: &Job, key: &str) -> Option<String> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
}

/// The row of one task from its Job, the states of its pods and its client's heartbeat.
pub fn build_row(
    job: &Job,
    pods: &[PodState],
    lease: Option<&Lease>,
    now: Timestamp,
    namespace: &str,
) -> TaskRow {
    let spec = job.spec.as_ref();
    let desired = spec.and_then(|s| s.parallelism).unwrap_or(0);
    let ready = job.status.as_ref().and_then(|s| s.ready).unwrap_or(0);
    let requests = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    let request = |key: &str| {
        requests
            .and_then(|r| r.get(key))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "-".into())
    };
    let age = job
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| show_age(now.as_second(), t.0.as_second()))
        .unwrap_or_else(|| "-".into());
    let progress = build_progress(job, lease);
    let status = build_status(job, pods, ready, desired);
    let (status, exit_status) = with_lease(status, lease, now);
    TaskRow {
        exit_status,
        id: label(job, TASK_ID),
        backend: PODS.into(),
        age,
        status,
        cpu: request("cpu"),
        mem: request("memory"),
        health: format!("{ready}/{desired}"),
        progress,
        pwd: annotation(job, PWD).unwrap_or_default(),
        command: annotation(job, COMMAND).unwrap_or_default(),
        origin: label(job, ORIGIN),
        kind: annotation(job, KIND).unwrap_or_default(),
        namespace: namespace.to_string(),
    }
}

/// The task's progress: what its heartbeat lease last said, else `-/TOTAL` when the Job knows the total.
fn build_progress(job: &Job, lease: Option<&Lease>) -> String {
    match (
        lease.and_then(|l| l.metadata.annotations.as_ref()?.get(PROGRESS)),
        annotation(job, TOTAL),
    ) {
        (Some(progress), _) => progress.clone(),
        (None, Some(total)) => format!("-/{total}"),
        (None, None) => "-".into(),
    }
}

/// `status` with what the heartbeat lease adds: ORPHANED for a live task whose client stopped renewing it, and
/// EXITED(code) once an --async task recorded its exit status. Returns the status and that code.
fn with_lease(mut status: String, lease: Option<&Lease>, now: Timestamp) -> (String, Option<u8>) {
    let renewed = lease
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
        .map(|t| t.0);
    let stale =
        renewed.is_some_and(|t| now.as_second() - t.as_second() > i64::from(ORPHANED_AFTER_SECS));
    if stale
        && matches!(
            status.as_str(),
            "STARTING" | "RUNNING" | "IMAGE-ERROR" | "UNSCHEDULABLE"
        )
    {
        status = "ORPHANED".into();
    }
    // An --async task that ended says so, whatever its heartbeat (its coordinator stopped renewing it).
    let exit_status = lease.and_then(super::coordinator::recorded_exit);
    if let Some(code) = exit_status {
        status = format!("EXITED({code})");
    }
    (status, exit_status)
}

fn build_status(job: &Job, pods: &[PodState], ready: i32, desired: i32) -> String {
    if job.metadata.deletion_timestamp.is_some() {
        return "FINISHING".into();
    }
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let holds = |kind: &str| {
        conditions
            .into_iter()
            .flatten()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if holds("Failed") {
        return "FAILED".into();
    }
    if holds("Complete") {
        return "DONE".into();
    }
    if ready > 0 && ready >= desired {
        return "RUNNING".into();
    }
    if pods
        .iter()
        .any(|p| matches!(p, PodState::PullFailed { .. }))
    {
        return "IMAGE-ERROR".into();
    }
    if pods.iter().any(|p| matches!(p, PodState::Unschedulable(_))) {
        return "UNSCHEDULABLE".into();
    }
    if ready > 0 {
        "RUNNING".into()
    } else {
        "STARTING".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::render_table;

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kb-abc", "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"kb.dev/task-id": "abc", "kb.dev/origin": "laptop"},
                "annotations": {"kb.dev/pwd": "/home/a", "kb.dev/command": "wc -l {}", "kb.dev/kind": "parallel"}},
            "spec": {"parallelism": 3, "template": {"spec": {"containers": [{"name": "main",
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}}},
            "status": {"ready": 2}
        }))
        .unwrap()
    }

    #[test]
    fn row_from_job_and_pods() {
        let now: Timestamp = "2026-01-01T00:03:10Z".parse().unwrap();
        let row = build_row(
            &job(),
            &[PodState::Ready, PodState::Ready, PodState::Starting],
            None,
            now,
            "kb",
        );
        assert_eq!(row.id, "abc");
        assert_eq!(row.age, "3m");
        assert_eq!(row.status, "RUNNING");
        assert_eq!((row.cpu.as_str(), row.mem.as_str()), ("500m", "1Gi"));
        assert_eq!(row.health, "2/3");
        assert_eq!(row.progress, "-");
        assert_eq!(
            (row.pwd.as_str(), row.command.as_str()),
            ("/home/a", "wc -l {}")
        );
        assert_eq!(row.origin, "laptop");
    }

    #[test]
    fn status_says_why_a_task_does_not_start() {
        let mut job = job();
        job.status = None;
        let pull = PodState::PullFailed {
            image: "x".into(),
            message: "ErrImagePull".into(),
        };
        assert_eq!(build_status(&job, &[pull], 0, 3), "IMAGE-ERROR");
        assert_eq!(
            build_status(&job, &[PodState::Unschedulable("no".into())], 0, 3),
            "UNSCHEDULABLE"
        );
        assert_eq!(build_status(&job, &[PodState::Starting], 0, 3), "STARTING");
    }

    #[test]
    fn heartbeat_gives_progress_and_orphaned() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kb-abc", "annotations": {"kb.dev/progress": "7/10"}},
            "spec": {"renewTime": "2026-01-01T00:03:00.000000Z"}
        }))
        .unwrap();
        let fresh: Timestamp = "2026-01-01T00:03:10Z".parse().unwrap();
        let row = build_row(&job(), &[PodState::Ready], Some(&lease), fresh, "kb");
        assert_eq!(
            (row.status.as_str(), row.progress.as_str()),
            ("RUNNING", "7/10")
        );
        let later: Timestamp = "2026-01-01T00:04:00Z".parse().unwrap();
        let row = build_row(&job(), &[PodState::Ready], Some(&lease), later, "kb");
        assert_eq!(row.status, "ORPHANED");
    }

    #[test]
    fn an_async_task_that_ended_shows_its_exit_status_not_orphaned() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kb-abc", "annotations": {"kb.dev/exit-status": "3"}},
            "spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}
        }))
        .unwrap();
        let later: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let row = build_row(&job(), &[], Some(&lease), later, "kb");
        assert_eq!(
            (row.status.as_str(), row.exit_status),
            ("EXITED(3)", Some(3))
        );
    }

    #[test]
    fn table_has_the_columns() {
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let text = render_table(&[build_row(&job(), &[], None, now, "kb")], false);
        let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "ID", "AGE", "STATUS", "CPU", "MEM", "HEALTH", "PROGRESS", "PWD", "COMMAND"
            ]
        );
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("abc   10s   RUNNING"),
            "{text}"
        );
        let all = render_table(&[build_row(&job(), &[], None, now, "kb")], true);
        assert_eq!(
            all.lines().next().unwrap().split_whitespace().last(),
            Some("ORIGIN"),
            "{all}"
        );
        assert!(all.lines().nth(1).unwrap().ends_with("laptop"), "{all}");
    }
}
