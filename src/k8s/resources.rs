//! Pure builders of the objects a task creates: one Job (N pods running kb's agent) and one Secret (the keys),
//! as k8s-openapi structs. No I/O here.
//!
//! Why a Job with `parallelism: N` and no `completions`, not a ReplicaSet: the Job controller also replaces a pod
//! that dies (up to `backoffLimit`), but unlike a ReplicaSet it can bound the task on the server side
//! (`activeDeadlineSeconds`, so a task whose client vanished still ends) and clean up after itself
//! (`ttlSecondsAfterFinished`), and `kubectl get jobs` is where users look for batch work.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, PodTemplateSpec, ResourceRequirements, Secret, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};

mod pod;

pub use pod::{ORPHANED_EXIT, STOPPED_EXIT, build_agent_command};
use pod::{build_pod_failure_policy, build_pod_spec};

/// The label every object kb creates carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kb");
/// The label with the task id.
pub const TASK_ID: &str = "kb.dev/task-id";
/// The label with the machine that created the task.
pub const ORIGIN: &str = "kb.dev/origin";
/// The annotation with the working directory of the task's client.
pub const PWD: &str = "kb.dev/pwd";
/// The annotation with the task's command line.
pub const COMMAND: &str = "kb.dev/command";
/// The annotation with the creation time (RFC 3339).
pub const CREATED: &str = "kb.dev/created";
/// The annotation with the kind of task (`parallel` or `shell`).
pub const KIND: &str = "kb.dev/kind";
/// The annotation with the task's total number of jobs, when known.
pub const TOTAL: &str = "kb.dev/jobs-total";
/// The Lease annotation with the task's progress, `done/total` (`done/?` while the input is still being read).
pub const PROGRESS: &str = "kb.dev/progress";
/// How often the client renews its Lease, in seconds.
pub const HEARTBEAT_SECS: i32 = 5;
/// After how many seconds without renewal a task counts as orphaned (its client is gone).
pub const ORPHANED_AFTER_SECS: i32 = 30;

/// The port kb's agent listens on inside every pod.
pub const AGENT_PORT: u16 = 2222;
/// Where the init container puts the static kb (and busybox) for the main container.
pub const AGENT_DIR: &str = "/kb";
/// Where the main container sees the task's Secret.
pub const KEYS_DIR: &str = "/etc/kb";
/// The Secret's key holding the agent's host key (OpenSSH private key).
pub const HOST_KEY: &str = "host_key";
/// The Secret's key holding the client's public key (an `authorized_keys` line).
pub const AUTHORIZED_KEY: &str = "authorized_key";
/// The name of the main container.
pub const MAIN_CONTAINER: &str = "main";
/// Where the agent image keeps its static kb.
pub const AGENT_IMAGE_KB: &str = "/usr/local/bin/kb";
/// Where the agent image keeps its static busybox.
pub const AGENT_IMAGE_BUSYBOX: &str = "/bin/busybox";

/// Everything the builders need to know about a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task id (lowercase letters and digits).
    pub id: String,
    /// This machine's name, cleaned up to be a label value.
    pub origin: String,
    /// The client's working directory.
    pub pwd: String,
    /// The command line the task runs.
    pub command: String,
    /// When the task was created.
    pub created: String,
    /// `parallel` or `shell`.
    pub kind: &'static str,
    /// The user's image, which runs the jobs.
    pub image: String,
    /// The image with the static kb that the init container copies.
    pub agent_image: String,
    /// How many pods.
    pub pods: i32,
    /// The CPU request (a valid quantity).
    pub cpu: String,
    /// The memory request (a valid quantity).
    pub mem: String,
    /// Whether `mem` is also the limit (when the user gave `--mem`).
    pub mem_limit: bool,
    /// The hard bound on the task's life, enforced by Kubernetes.
    pub max_runtime_secs: Option<i64>,
    /// Agents end their pod after this many seconds without a connected client (`--orphan-timeout`).
    pub orphan_timeout_secs: Option<u64>,
    /// The total number of jobs, when known up front.
    pub total_jobs: Option<u64>,
    /// The pods mount the lazy share with FUSE: they ask for `/dev/fuse` (`kb.dev/fuse`) and `SYS_ADMIN`.
    pub fuse: bool,
    /// The pods see the lazy share as a kubelet NFS volume at `pwd`, exported by the share server.
    pub nfs: Option<NfsExport>,
}

/// Where the share server exports a task's lazy share over NFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsExport {
    /// The share server's Service address (a ClusterIP: the kubelet mounts from the node, outside cluster DNS).
    pub server: String,
    /// The export path, `/kb/<task>-<token>`.
    pub path: String,
}

/// The name of a lazy share's NFS volume in the pod.
pub const NFS_VOLUME: &str = "kb-share";

/// What a lazy-share pod adds, and why (the text of its `kb.dev/capabilities` annotation).
pub const FUSE_CAPABILITIES: &str =
    "SYS_ADMIN: mount(2) of the lazy share's FUSE file system at the working directory";

impl TaskSpec {
    /// The name of the Job and of the Secret.
    pub fn name(&self) -> String {
        format!("kb-{}", self.id)
    }
}

/// The labels every object of the task carries.
pub fn build_labels(spec: &TaskSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (TASK_ID.to_string(), spec.id.clone()),
        (ORIGIN.to_string(), spec.origin.clone()),
    ])
}

/// The label selector of one task's objects.
pub fn task_selector(id: &str) -> String {
    format!("{}={},{TASK_ID}={id}", MANAGED_BY.0, MANAGED_BY.1)
}

/// The label selector of the objects of several tasks (set-based: `kb.dev/task-id in (a,b)`).
pub fn tasks_selector(ids: &[String]) -> String {
    format!(
        "{}={},{TASK_ID} in ({})",
        MANAGED_BY.0,
        MANAGED_BY.1,
        ids.join(",")
    )
}

/// The label selector of all of kb's objects, optionally only those made on `origin`.
pub fn managed_selector(origin: Option<&str>) -> String {
    match origin {
        Some(origin) => format!("{}={},{ORIGIN}={origin}", MANAGED_BY.0, MANAGED_BY.1),
        None => format!("{}={}", MANAGED_BY.0, MANAGED_BY.1),
    }
}

fn build_annotations(spec: &TaskSpec) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (PWD.to_string(), spec.pwd.clone()),
        (COMMAND.to_string(), truncate(&spec.command, 4096)),
        (CREATED.to_string(), spec.created.clone()),
        (KIND.to_string(), spec.kind.to_string()),
    ]);
    if let Some(total) = spec.total_jobs {
        annotations.insert(TOTAL.to_string(), total.to_string());
    }
    annotations
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

pub use crate::model::label_value;

/// The task's Job: `spec.pods` pods, each an init container copying the static kb from the agent image and the
/// user's image running `kb agent` with the Secret's keys.
pub fn build_job(spec: &TaskSpec) -> Job {
    let labels = build_labels(spec);
    Job {
        metadata: ObjectMeta {
            name: Some(spec.name()),
            labels: Some(labels.clone()),
            annotations: Some(build_annotations(spec)),
            ..Default::default()
        },
        spec: Some(JobSpec {
            parallelism: Some(spec.pods),
            // A pod only ends when its agent dies; replace a few, then give up rather than loop forever.
            backoff_limit: Some(spec.pods + 2),
            pod_failure_policy: Some(build_pod_failure_policy()),
            active_deadline_seconds: spec.max_runtime_secs,
            ttl_seconds_after_finished: Some(60),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: spec.fuse.then(|| {
                        BTreeMap::from([(
                            crate::k8s::fuse_plugin::CAPABILITIES_ANNOTATION.to_string(),
                            FUSE_CAPABILITIES.to_string(),
                        )])
                    }),
                    ..Default::default()
                }),
                spec: Some(build_pod_spec(spec)),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Requests and limits from `(resource, quantity)` pairs; no limits when `limits` is empty.
pub fn quantities(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(name, q)| (name.to_string(), Quantity(q.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(map(requests)),
        limits: (!limits.is_empty()).then(|| map(limits)),
        ..Default::default()
    }
}

/// A container of kb's own (share server, device plugin) as the `restricted` Pod Security Standard asks: no
/// privilege or escalation, a read-only root filesystem, every capability dropped.
pub fn locked_down() -> SecurityContext {
    SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

/// Asserts what [`locked_down`] promises, for the tests of the manifests that use it.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_locked_down(container: &k8s_openapi::api::core::v1::Container) {
    let security = container.security_context.clone().unwrap_or_default();
    assert_eq!(security.privileged, Some(false), "{security:?}");
    assert_eq!(
        security.allow_privilege_escalation,
        Some(false),
        "{security:?}"
    );
    assert_eq!(
        security.read_only_root_filesystem,
        Some(true),
        "{security:?}"
    );
    let caps = security.capabilities.unwrap_or_default();
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    assert_eq!(caps.add, None);
}

/// The task's Secret, owned by its Job so that deleting the Job deletes it.
pub fn build_secret(spec: &TaskSpec, job: &Job, host_key: &str, authorized_key: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(spec.name()),
            labels: Some(build_labels(spec)),
            owner_references: Some(vec![build_owner_reference(job)]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (HOST_KEY.to_string(), host_key.to_string()),
            (AUTHORIZED_KEY.to_string(), authorized_key.to_string()),
        ])),
        ..Default::default()
    }
}

/// The client's heartbeat: a Lease owned by the Job, renewed every [`HEARTBEAT_SECS`] while the client lives.
pub fn build_lease(spec: &TaskSpec, job: &Job, now: k8s_openapi::jiff::Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(spec.name()),
            labels: Some(build_labels(spec)),
            owner_references: Some(vec![build_owner_reference(job)]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(spec.origin.clone()),
            lease_duration_seconds: Some(ORPHANED_AFTER_SECS),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// An owner reference to `job` (which must have been created: it needs the uid).
pub fn build_owner_reference(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
