//! The pod of a task's Job and how the Job treats its ends: the containers, their volumes, the agent's command
//! line and the pod failure policy.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, NFSVolumeSource, PodSpec,
    Probe, ResourceRequirements, SecretVolumeSource, SecurityContext, TCPSocketAction, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    AGENT_DIR, AGENT_IMAGE_BUSYBOX, AGENT_IMAGE_KB, AGENT_PORT, AUTHORIZED_KEY, HOST_KEY, KEYS_DIR,
    MAIN_CONTAINER, NFS_VOLUME, TaskSpec,
};

/// The volume holding the static kb (and busybox) that the init container copies for the main container.
const BIN_VOLUME: &str = "kb-bin";
/// The volume holding the task's Secret.
const KEYS_VOLUME: &str = "kb-keys";

/// A task's pod: the init container that installs kb, the main container that runs the agent in the user's image,
/// and their volumes. Nothing in it talks to the API server, so it gets no service-account token.
pub(super) fn build_pod_spec(spec: &TaskSpec) -> PodSpec {
    PodSpec {
        restart_policy: Some("Never".into()),
        // The agent stops on SIGTERM; a short grace makes `kb finish` quick.
        termination_grace_period_seconds: Some(3),
        // The workers never talk to the API server.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        volumes: Some(build_volumes(spec)),
        init_containers: Some(vec![build_install_container(spec)]),
        containers: vec![build_main_container(spec)],
        ..Default::default()
    }
}

/// The pod's volumes: an emptyDir for kb's binaries, the Secret's keys, and the lazy share's NFS export if any.
fn build_volumes(spec: &TaskSpec) -> Vec<Volume> {
    [
        Volume {
            name: BIN_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: KEYS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(spec.name()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
    .into_iter()
    .chain(spec.nfs.as_ref().map(|export| Volume {
        name: NFS_VOLUME.into(),
        nfs: Some(NFSVolumeSource {
            server: export.server.clone(),
            path: export.path.clone(),
            read_only: Some(false),
        }),
        ..Default::default()
    }))
    .collect()
}

/// The init container: copies the agent image's static kb and busybox into the binaries' volume, so that the
/// user's image needs neither.
fn build_install_container(spec: &TaskSpec) -> Container {
    let install =
        format!("{AGENT_IMAGE_BUSYBOX} cp {AGENT_IMAGE_KB} {AGENT_IMAGE_BUSYBOX} /kb-install/");
    Container {
        name: "kb-install".into(),
        image: Some(spec.agent_image.clone()),
        command: Some(vec![
            AGENT_IMAGE_BUSYBOX.into(),
            "sh".into(),
            "-c".into(),
            install,
        ]),
        volume_mounts: Some(vec![mount(BIN_VOLUME, "/kb-install", false)]),
        ..Default::default()
    }
}

/// The main container: kb's agent in the user's image, ready once its port answers; with the lazy share over FUSE
/// it gets `SYS_ADMIN` to mount, with NFS the export at the user's directory.
fn build_main_container(spec: &TaskSpec) -> Container {
    Container {
        name: MAIN_CONTAINER.into(),
        image: Some(spec.image.clone()),
        command: Some(build_agent_command(spec.orphan_timeout_secs)),
        ports: Some(vec![ContainerPort {
            container_port: i32::from(AGENT_PORT),
            name: Some("kb-agent".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(AGENT_PORT)),
                host: None,
            }),
            period_seconds: Some(1),
            ..Default::default()
        }),
        resources: Some(build_resources(spec)),
        security_context: spec.fuse.then(|| SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["SYS_ADMIN".into()]),
                drop: None,
            }),
            ..Default::default()
        }),
        env: Some(vec![EnvVar {
            name: "KB_TASK_ID".into(),
            value: Some(spec.id.clone()),
            ..Default::default()
        }]),
        volume_mounts: Some(
            [
                mount(BIN_VOLUME, AGENT_DIR, true),
                mount(KEYS_VOLUME, KEYS_DIR, true),
            ]
            .into_iter()
            .chain(
                spec.nfs
                    .as_ref()
                    .map(|_| mount(NFS_VOLUME, &spec.pwd, false)),
            )
            .collect(),
        ),
        ..Default::default()
    }
}

/// The exit status of the main container when it was asked to stop (128 + SIGTERM).
pub const STOPPED_EXIT: i32 = 143;

/// The main container's command: kb's agent, from the emptyDir, with the task's keys, under busybox's `sh`, which
/// never exits 0. A Job with no `completions` stops replacing pods once one succeeds, and the agent exits 0 on
/// SIGTERM; so a stopped agent makes the pod exit [`STOPPED_EXIT`] (which the pod failure policy does not count)
/// and a crashed one exits non-zero, and the Job replaces both.
pub fn build_agent_command(orphan_timeout_secs: Option<u64>) -> Vec<String> {
    let mut agent = format!(
        "{AGENT_DIR}/kb agent --listen 0.0.0.0:{AGENT_PORT} --host-key {KEYS_DIR}/{HOST_KEY} \
         --authorized-key {KEYS_DIR}/{AUTHORIZED_KEY}"
    );
    if let Some(secs) = orphan_timeout_secs {
        agent.push_str(&format!(" --orphan-timeout {secs}"));
    }
    let script = format!(
        "{agent} & pid=$!; trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit {STOPPED_EXIT}' TERM INT; \
         wait $pid; status=$?; [ $status -eq 0 ] && status=1; exit $status"
    );
    vec![
        format!("{AGENT_DIR}/busybox"),
        "sh".into(),
        "-c".into(),
        script,
    ]
}

/// The exit status of an agent whose client was gone for `--orphan-timeout` (`error::exit::ORPHANED`).
pub const ORPHANED_EXIT: i32 = crate::error::exit::ORPHANED as i32;

/// Pods that were stopped (evicted, preempted, deleted) are replaced without counting toward `backoffLimit`;
/// agents that crash count; an agent that ended because its client was gone fails the whole Job, which stops
/// every pod of the task at once (the Job itself goes `ttlSecondsAfterFinished` later).
pub(super) fn build_pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(MAIN_CONTAINER.into()),
                    operator: "In".into(),
                    values: vec![ORPHANED_EXIT],
                }),
                ..Default::default()
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
                ..Default::default()
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(MAIN_CONTAINER.into()),
                    operator: "In".into(),
                    values: vec![STOPPED_EXIT],
                }),
                ..Default::default()
            },
        ],
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn build_resources(spec: &TaskSpec) -> ResourceRequirements {
    let requests = BTreeMap::from([
        ("cpu".to_string(), Quantity(spec.cpu.clone())),
        ("memory".to_string(), Quantity(spec.mem.clone())),
    ]);
    let mut limits = spec
        .mem_limit
        .then(|| BTreeMap::from([("memory".to_string(), Quantity(spec.mem.clone()))]));
    if spec.fuse {
        limits.get_or_insert_with(BTreeMap::new).insert(
            crate::deviceplugin::FUSE_RESOURCE.to_string(),
            Quantity("1".into()),
        );
    }
    ResourceRequirements {
        requests: Some(requests),
        limits,
        ..Default::default()
    }
}
