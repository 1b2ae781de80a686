//! `kb parallel --async`: the objects that hand a run over to a coordinator pod (pure builders), and the names and
//! annotations the coordinator, `kb logs` and `kb status` share. See docs/architecture.md, "`--async`".

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSpec, ResourceRequirements, Secret, SecretVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::resources::{
    AGENT_IMAGE_KB, TaskSpec, build_labels, build_owner_reference, task_selector,
};

/// The label that tells the coordinator pod from the worker pods.
pub const ROLE: &str = "kb.dev/role";
/// The value of [`ROLE`] on the coordinator pod.
pub const COORDINATOR: &str = "coordinator";
/// The Lease annotation with the run's final exit status (GNU parallel's), written by the coordinator.
pub const EXIT_STATUS: &str = "kb.dev/exit-status";
/// Where the coordinator sees the run Secret.
pub const RUN_DIR: &str = "/etc/kb-run";
/// The ServiceAccount `kb cluster-setup` creates, which the coordinator runs as.
pub const SERVICE_ACCOUNT: &str = "kb-coordinator";
/// The most a hand-over may hold (a Secret holds at most 1 MiB).
pub const HANDOVER_LIMIT: usize = 900 * 1024;
/// The Secret key with the coordinator's `kb parallel` argv, NUL-separated.
pub const ARGS: &str = "args";
/// The Secret key with the share server tree's reference (see [`crate::share::client::TreeRef`]).
pub const SHARE: &str = "share.json";
/// The Secret key with the working directory's tar archive.
pub const ARCHIVE: &str = "archive.tar";
/// The Secret key with the client's private key.
pub const CLIENT_KEY: &str = "client_key";
/// The Secret key with the agents' public host key.
pub const HOST_PUBLIC: &str = "host_key.pub";

/// The worker pods of a task: its pods but the coordinator.
pub fn worker_selector(id: &str) -> String {
    format!("{},{ROLE}!={COORDINATOR}", task_selector(id))
}

/// The name of the coordinator pod of task `id`.
pub fn coordinator_name(id: &str) -> String {
    format!("kb-{id}-coordinator")
}

/// The name of the Secret holding the run of task `id`.
pub fn run_secret_name(id: &str) -> String {
    format!("kb-{id}-run")
}

/// The file name of input column `n` in the run Secret.
pub fn column_key(n: usize) -> String {
    format!("col{n}")
}

/// Everything the coordinator needs to run what the client was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Handover {
    /// `kb parallel ...` as the coordinator runs it.
    pub args: Vec<String>,
    /// The input records, one file per input source, each item NUL-terminated.
    pub columns: Vec<Vec<u8>>,
    /// The working directory's tar archive.
    pub archive: Vec<u8>,
    /// The client's private key (OpenSSH).
    pub client_key: String,
    /// The agents' public host key.
    pub host_public: String,
    /// The tree on the share server the pods fetch, when the client uploaded one (JSON), else empty.
    pub share: Vec<u8>,
}

impl Handover {
    /// The bytes the Secret will hold.
    pub fn size(&self) -> usize {
        let args: usize = self.args.iter().map(|a| a.len() + 1).sum();
        let columns: usize = self.columns.iter().map(Vec::len).sum();
        args + columns
            + self.archive.len()
            + self.client_key.len()
            + self.host_public.len()
            + self.share.len()
    }
}

/// The run Secret, owned by the Job.
pub fn build_run_secret(spec: &TaskSpec, job: &Job, handover: &Handover) -> Secret {
    let mut data = BTreeMap::from([
        (
            ARGS.to_string(),
            ByteString(handover.args.join("\0").into_bytes()),
        ),
        (ARCHIVE.to_string(), ByteString(handover.archive.clone())),
        (
            CLIENT_KEY.to_string(),
            ByteString(handover.client_key.clone().into_bytes()),
        ),
        (
            HOST_PUBLIC.to_string(),
            ByteString(handover.host_public.clone().into_bytes()),
        ),
    ]);
    for (n, column) in handover.columns.iter().enumerate() {
        data.insert(column_key(n), ByteString(column.clone()));
    }
    if !handover.share.is_empty() {
        data.insert(SHARE.to_string(), ByteString(handover.share.clone()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(run_secret_name(&spec.id)),
            labels: Some(build_labels(spec)),
            owner_references: Some(vec![build_owner_reference(job)]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The coordinator pod: the agent image's static kb running `kb coordinate` as the cluster-setup ServiceAccount,
/// owned by the Job, bounded by `--max-runtime`, never restarted.
pub fn build_coordinator_pod(spec: &TaskSpec, job: &Job, namespace: &str) -> Pod {
    let mut labels = build_labels(spec);
    labels.insert(ROLE.to_string(), COORDINATOR.to_string());
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let requests = BTreeMap::from([
        ("cpu".to_string(), Quantity("100m".into())),
        ("memory".to_string(), Quantity("64Mi".into())),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(coordinator_name(&spec.id)),
            labels: Some(labels),
            owner_references: Some(vec![build_owner_reference(job)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(SERVICE_ACCOUNT.into()),
            automount_service_account_token: Some(true),
            enable_service_links: Some(false),
            // A minute more than the Job: when the Job's deadline stops the workers, the coordinator still records
            // the run's end.
            active_deadline_seconds: spec.max_runtime_secs.map(|s| s.saturating_add(60)),
            termination_grace_period_seconds: Some(15),
            volumes: Some(vec![Volume {
                name: "kb-run".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(run_secret_name(&spec.id)),
                    default_mode: Some(0o400),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            containers: vec![Container {
                name: COORDINATOR.into(),
                image: Some(spec.agent_image.clone()),
                command: Some(vec![AGENT_IMAGE_KB.into(), "coordinate".into()]),
                env: Some(vec![
                    env("KB_TASK_ID", &spec.id),
                    env("KB_NAMESPACE", namespace),
                    env("KB_ORIGIN", &spec.origin),
                ]),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                volume_mounts: Some(vec![VolumeMount {
                    name: "kb-run".into(),
                    mount_path: RUN_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// The exit status a coordinator recorded in the task's Lease, if any.
pub fn recorded_exit(lease: &k8s_openapi::api::coordination::v1::Lease) -> Option<u8> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(EXIT_STATUS)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            id: "abc123".into(),
            origin: "laptop".into(),
            pwd: "/p".into(),
            command: "echo".into(),
            created: "2026-01-01T00:00:00Z".into(),
            kind: "parallel",
            image: "debian".into(),
            agent_image: "reg/kb/agent:1".into(),
            pods: 2,
            cpu: "100m".into(),
            mem: "128Mi".into(),
            mem_limit: false,
            max_runtime_secs: Some(60),
            orphan_timeout_secs: None,
            fuse: false,
            nfs: None,
            total_jobs: None,
        }
    }

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "kb-abc123", "uid": "u1"}}))
            .unwrap()
    }

    #[test]
    fn coordinator_runs_kb_coordinate_as_the_service_account_with_the_run_mounted() {
        let pod = build_coordinator_pod(&spec(), &job(), "ns1");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[ROLE], COORDINATOR);
        assert_eq!(labels["kb.dev/task-id"], "abc123");
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, "u1");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
        assert_eq!(spec.active_deadline_seconds, Some(120));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let main = &spec.containers[0];
        assert_eq!(
            main.command.as_ref().unwrap(),
            &vec!["/usr/local/bin/kb".to_string(), "coordinate".into()]
        );
        assert_eq!(main.volume_mounts.as_ref().unwrap()[0].mount_path, RUN_DIR);
    }

    #[test]
    fn run_secret_holds_args_columns_and_keys() {
        let handover = Handover {
            args: vec!["kb".into(), "parallel".into()],
            columns: vec![b"a\0b\0".to_vec(), b"1\x002\x00".to_vec()],
            archive: vec![1, 2, 3],
            client_key: "k".into(),
            host_public: "h".into(),
            share: b"{}".to_vec(),
        };
        assert_eq!(handover.size(), 12 + 8 + 3 + 2 + 2);
        let secret = build_run_secret(&spec(), &job(), &handover);
        let data = secret.data.unwrap();
        assert_eq!(data[SHARE].0, b"{}");
        assert_eq!(data[ARGS].0, b"kb\0parallel");
        assert_eq!(data["col1"].0, b"1\x002\x00");
        assert_eq!(secret.metadata.name.as_deref(), Some("kb-abc123-run"));
    }

    #[test]
    fn workers_exclude_the_coordinator() {
        assert_eq!(
            worker_selector("x"),
            "app.kubernetes.io/managed-by=kb,kb.dev/task-id=x,kb.dev/role!=coordinator"
        );
    }
}
