//! The share server's objects, printed by `kb cluster-setup`: a StatefulSet of one pod (`kb-share-0`, so that
//! RBAC can name it for `pods/exec`) running `kb share server` from the agent image, and a ClusterIP Service the
//! worker pods fetch from.
//!
//! Security: no privileged container and no added capability (the eager share needs none: it serves files over
//! SSH from an emptyDir); every capability is dropped, privilege escalation is off, the root filesystem is read-only,
//! it runs as uid 65534, and it gets no service-account token (it never calls the API).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecurityContext, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::share::client::{SERVER_KB, SERVER_PORT, SERVER_SERVICE};
use crate::share::store::DEFAULT_STORE;

/// The StatefulSet's name (its pod is `kb-share-0`).
pub const NAME: &str = "kb-share";
/// The unprivileged user it runs as.
pub const RUN_AS: i64 = 65534;

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), NAME.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "kb".to_string()),
    ])
}

/// The share server's StatefulSet, running `image` (kb's agent image).
pub fn build_statefulset(namespace: &str, image: &str) -> StatefulSet {
    let selector = BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels()),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(SERVER_SERVICE.into()),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        run_as_non_root: Some(true),
                        fs_group: Some(RUN_AS),
                        ..Default::default()
                    }),
                    containers: vec![Container {
                        name: "server".into(),
                        image: Some(image.into()),
                        command: Some(vec![
                            SERVER_KB.into(),
                            "share".into(),
                            "server".into(),
                            "--store".into(),
                            DEFAULT_STORE.into(),
                            "--listen".into(),
                            format!("0.0.0.0:{SERVER_PORT}"),
                        ]),
                        ports: Some(vec![ContainerPort {
                            container_port: i32::from(SERVER_PORT),
                            name: Some("ssh".into()),
                            ..Default::default()
                        }]),
                        readiness_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction {
                                port: IntOrString::Int(i32::from(SERVER_PORT)),
                                host: None,
                            }),
                            period_seconds: Some(2),
                            ..Default::default()
                        }),
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".to_string(), Quantity("100m".into())),
                                ("memory".to_string(), Quantity("64Mi".into())),
                            ])),
                            ..Default::default()
                        }),
                        security_context: Some(SecurityContext {
                            privileged: Some(false),
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".into()]),
                                add: None,
                            }),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "store".into(),
                            mount_path: DEFAULT_STORE.into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "store".into(),
                        // A cache: losing it on a restart costs one full upload, nothing more.
                        empty_dir: Some(EmptyDirVolumeSource {
                            size_limit: Some(Quantity(format!(
                                "{}Gi",
                                crate::share::store::STORE_LIMIT_GIB
                            ))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Service worker pods fetch from.
pub fn build_service(namespace: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(SERVER_SERVICE.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                NAME.to_string(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("ssh".into()),
                port: i32::from(SERVER_PORT),
                target_port: Some(IntOrString::Int(i32::from(SERVER_PORT))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_unprivileged_and_names_its_pod() {
        let set = build_statefulset("team", "reg/kb/agent:1");
        let spec = set.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let container = &pod.containers[0];
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.privileged, Some(false));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let caps = security.capabilities.unwrap();
        assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
        assert_eq!(caps.add, None);
        assert_eq!(
            container.command.as_ref().unwrap()[..3],
            [SERVER_KB, "share", "server"]
        );
        let service = build_service("team");
        assert_eq!(service.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 2222);
    }
}
