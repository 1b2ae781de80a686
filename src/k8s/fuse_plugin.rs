//! The `kb-fuse` DaemonSet, printed by `kb cluster-setup`: `kb device-plugin` from the agent image on every node,
//! advertising `kb.dev/fuse` to the kubelet so that a pod asking for that resource gets `/dev/fuse` without being
//! privileged (see `docs/architecture.md`, "FUSE in pods").
//!
//! Security: not privileged, no capability at all (every one dropped), no privilege escalation, a read-only root
//! filesystem, no service-account token (it never calls the API). It runs as root for one reason: its socket goes
//! in the node's `/var/lib/kubelet/device-plugins`, a directory root owns (mode 0750 on kubelets that make it), and
//! the kubelet's `kubelet.sock` there is root's too; as their owner, root needs no capability to use them. That
//! directory is its only host path. The reasons are also on the objects, as annotations, for whoever reads them
//! with kubectl.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, HostPathVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::resources::{MANAGED_BY, locked_down, quantities};
use crate::share::client::SERVER_KB;

/// The DaemonSet's name.
pub const NAME: &str = "kb-fuse";
/// The kubelet's device plugin directory (fixed in the kubelet: `k8s.io/kubelet/.../v1beta1.DevicePluginPath`).
pub const DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";
/// The annotation that says why a pod's containers add the capabilities they add (or that they add none).
pub const CAPABILITIES_ANNOTATION: &str = "kb.dev/capabilities";
/// The annotation that says why an object of `kb cluster-setup` exists and runs as it does.
pub const WHY_ANNOTATION: &str = "kb.dev/why";

/// Why `kb-fuse` exists and runs as root with no capability (the text of [`WHY_ANNOTATION`]).
pub const WHY: &str = "kubelet device plugin: advertises kb.dev/fuse and hands /dev/fuse to the containers that \
request it, so that no pod needs privileged: true to mount a FUSE filesystem. It runs as root only to make its \
socket in the node's /var/lib/kubelet/device-plugins (root's directory) and to connect to the kubelet's socket \
there; as their owner root needs no capability, so all are dropped.";
/// The capabilities `kb-fuse` adds (the text of [`CAPABILITIES_ANNOTATION`] on its pods).
pub const CAPABILITIES: &str = "none: every capability is dropped";

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), NAME.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "kb".to_string()),
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
    ])
}

/// The plugin's socket name for `namespace`: one per namespace, so that two namespaces' DaemonSets on one node
/// never remove each other's socket (the namespace is cut to keep the path within a unix socket's 107 bytes).
pub fn socket_name(namespace: &str) -> String {
    let short: String = namespace.chars().take(60).collect();
    format!("kb-fuse-{short}.sock")
}

/// The DaemonSet running `kb device-plugin` from `image` (kb's agent image) on every node.
pub fn build_daemonset(namespace: &str, image: &str) -> DaemonSet {
    let selector = BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    let why = BTreeMap::from([(WHY_ANNOTATION.to_string(), WHY.to_string())]);
    let mut pod_annotations = why.clone();
    pod_annotations.insert(CAPABILITIES_ANNOTATION.into(), CAPABILITIES.into());
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels()),
            annotations: Some(why),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(build_pod_spec(namespace, image)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn build_pod_spec(namespace: &str, image: &str) -> PodSpec {
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        // A pod may run on any node whose taints it tolerates; the plugin must be on each of them.
        tolerations: Some(vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }]),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        containers: vec![Container {
            name: "plugin".into(),
            image: Some(image.into()),
            command: Some(vec![
                SERVER_KB.into(),
                "device-plugin".into(),
                "--dir".into(),
                DEVICE_PLUGIN_DIR.into(),
                "--socket".into(),
                socket_name(namespace),
            ]),
            // What it does (registered, standing by, registering again) belongs in its log.
            env: Some(vec![EnvVar {
                name: "RUST_LOG".into(),
                value: Some("kb=info".into()),
                ..Default::default()
            }]),
            resources: Some(quantities(
                &[("cpu", "10m"), ("memory", "16Mi")],
                &[("memory", "64Mi")],
            )),
            security_context: Some(locked_down()),
            volume_mounts: Some(vec![VolumeMount {
                name: "device-plugins".into(),
                mount_path: DEVICE_PLUGIN_DIR.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "device-plugins".into(),
            host_path: Some(HostPathVolumeSource {
                path: DEVICE_PLUGIN_DIR.into(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_unprivileged_and_mounts_only_the_plugin_dir() {
        let set = build_daemonset("team", "reg/kb/agent:1");
        assert_eq!(set.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(
            set.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
            "kb"
        );
        assert!(set.metadata.annotations.as_ref().unwrap()[WHY_ANNOTATION].contains("privileged"));
        let template = set.spec.unwrap().template;
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_eq!(annotations[CAPABILITIES_ANNOTATION], CAPABILITIES);
        let pod = template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.host_network, None);
        assert_eq!(pod.host_pid, None);
        let volumes = pod.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0].host_path.as_ref().unwrap().path,
            DEVICE_PLUGIN_DIR
        );
        let container = &pod.containers[0];
        crate::k8s::resources::assert_locked_down(container);
        let command = container.command.clone().unwrap();
        assert_eq!(command[..2], [SERVER_KB, "device-plugin"]);
        assert_eq!(command.last().unwrap(), "kb-fuse-team.sock");
    }

    #[test]
    fn socket_paths_fit_a_unix_socket() {
        let long = "n".repeat(63);
        let path = format!("{DEVICE_PLUGIN_DIR}/{}", socket_name(&long));
        assert!(path.len() <= 107, "{path}");
    }
}
