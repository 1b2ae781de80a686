//! The share server's objects, printed by `kb cluster-setup`: a StatefulSet of one pod (`kb-share-0`, so that
//! RBAC can name it for `pods/exec`) running `kb share server` from the agent image, and a ClusterIP Service the
//! worker pods fetch from.
//!
//! Security: no privileged container and no added capability (the eager share needs none: it serves files over
//! SSH from an emptyDir; the lazy share's NFS server is a user-space process on ordinary TCP ports); every capability
//! is dropped, privilege escalation is off, the root filesystem is read-only, it runs as uid 65534, and it gets no
//! service-account token (it never calls the API). The one pod-level setting is the namespaced sysctl
//! `net.ipv4.ip_unprivileged_port_start=0`, so that the unprivileged server can bind the portmapper's port 111.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, Service, ServicePort, ServiceSpec, Sysctl, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::resources::{locked_down, quantities};
use crate::share::client::{SERVER_KB, SERVER_PORT, SERVER_SERVICE};
use crate::share::store::DEFAULT_STORE;

/// The StatefulSet's name (its pod is `kb-share-0`).
pub const NAME: &str = "kb-share";
/// The unprivileged user it runs as.
pub const RUN_AS: i64 = 65534;
/// NFS's port, where the lazy share's NFS server listens (`kb share server --nfs-listen`'s default).
pub const NFS_PORT: u16 = 2049;
/// The portmapper's port: a kernel NFS client asks it where NFS and MOUNT are; the same NFS server answers there.
pub const PORTMAP_PORT: u16 = 111;

/// The server's ports: (name, port), each a container port and a Service port (TCP).
fn ports() -> [(&'static str, u16); 3] {
    [
        ("ssh", SERVER_PORT),
        ("nfs", NFS_PORT),
        ("portmap", PORTMAP_PORT),
    ]
}

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
                spec: Some(build_pod_spec(image)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The server's pod: one unprivileged container, its store in an emptyDir. The one pod-level setting beyond the
/// user is the sysctl that lets it bind the portmapper's low port without a capability.
fn build_pod_spec(image: &str) -> PodSpec {
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            run_as_non_root: Some(true),
            fs_group: Some(RUN_AS),
            // Port 111 is below 1024. Rather than give the server NET_BIND_SERVICE (a capability, and
            // one that only takes effect for a non-root user with ambient capabilities), let this
            // pod's network namespace allow anyone to bind low ports: a namespaced sysctl on
            // Kubernetes' safe list (since 1.22), so it needs no kubelet flag and affects nothing
            // outside this pod, whose only listeners are the server's.
            sysctls: Some(vec![Sysctl {
                name: "net.ipv4.ip_unprivileged_port_start".into(),
                value: "0".into(),
            }]),
            ..Default::default()
        }),
        containers: vec![build_container(image)],
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
    }
}

/// The container running `kb share server`, serving SSH, NFS and the portmapper, ready once SSH answers.
fn build_container(image: &str) -> Container {
    Container {
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
        ports: Some(
            ports()
                .into_iter()
                .map(|(name, port)| ContainerPort {
                    container_port: i32::from(port),
                    name: Some(name.into()),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(SERVER_PORT)),
                host: None,
            }),
            period_seconds: Some(2),
            ..Default::default()
        }),
        resources: Some(quantities(&[("cpu", "100m"), ("memory", "64Mi")], &[])),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![VolumeMount {
            name: "store".into(),
            mount_path: DEFAULT_STORE.into(),
            ..Default::default()
        }]),
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
            ports: Some(
                ports()
                    .into_iter()
                    .map(|(name, port)| ServicePort {
                        name: Some(name.into()),
                        port: i32::from(port),
                        target_port: Some(IntOrString::Int(i32::from(port))),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
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
        crate::k8s::resources::assert_locked_down(container);
        assert_eq!(
            container.command.as_ref().unwrap()[..3],
            [SERVER_KB, "share", "server"]
        );
        let service = build_service("team");
        assert_eq!(service.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 2222);
    }

    #[test]
    fn nfs_and_the_portmapper_are_served_without_a_capability() {
        let set = build_statefulset("team", "reg/kb/agent:1");
        let pod = set.spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        let ports: Vec<(String, i32, String)> = container
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.container_port, p.protocol.unwrap()))
            .collect();
        let expected = [("ssh", 2222), ("nfs", 2049), ("portmap", 111)]
            .map(|(n, p)| (n.to_string(), p, "TCP".to_string()));
        assert_eq!(ports, expected);
        let service: Vec<(String, i32, Option<IntOrString>)> = build_service("team")
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.target_port))
            .collect();
        assert_eq!(
            service,
            [("ssh", 2222), ("nfs", 2049), ("portmap", 111)].map(|(n, p)| (
                n.to_string(),
                p,
                Some(IntOrString::Int(p))
            ))
        );
        // Port 111 through the namespaced sysctl, not a capability; still non-root.
        let security = pod.security_context.unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        let sysctls = security.sysctls.unwrap();
        assert_eq!(sysctls.len(), 1);
        assert_eq!(sysctls[0].name, "net.ipv4.ip_unprivileged_port_start");
        assert_eq!(sysctls[0].value, "0");
        let caps = container
            .security_context
            .clone()
            .unwrap()
            .capabilities
            .unwrap();
        assert_eq!(caps.add, None);
        // The server's default NFS addresses are these ports.
        assert_eq!(
            crate::share::nfs::DEFAULT_LISTEN,
            [
                format!("0.0.0.0:{NFS_PORT}").as_str(),
                &format!("0.0.0.0:{PORTMAP_PORT}")
            ]
        );
    }
}
