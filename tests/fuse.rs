//! The FUSE device plugin of `kb cluster-setup` on the real local cluster (`tests/cluster/up`): the node advertises
//! `kb.dev/fuse`; a pod that requests it, with `SYS_ADMIN` and not privileged, opens `/dev/fuse` read-write and
//! mounts a FUSE filesystem; a pod without it has no usable `/dev/fuse`; the plugin registers again when its
//! socket is removed (as a kubelet restart does); a second namespace's plugin stands by and takes over when the
//! first is deleted; a deleted plugin removes its socket; no container of the namespace is privileged, and every
//! added capability is the one its pod's annotation names.
//!
//! The test runs on the node's own machine (the local cluster has one node), so it reads the kubelet's device
//! plugin directory and log directly.

// The helpers below are test code too: a failed call is the test's failure, with its message.
#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, Namespace, Node, Pod, PodSpec, ResourceRequirements, SecurityContext,
    Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, LogParams, ObjectMeta, PostParams};
use serde::Deserialize;
use support::cluster::{TestNs, agent_image, kubeconfig, test_image};
use support::process::{CommandExt as _, kb_command};

use kb::k8s::fuse_plugin::{CAPABILITIES_ANNOTATION, DEVICE_PLUGIN_DIR, socket_name};

const RESOURCE: &str = "kb.dev/fuse";
const NODE: &str = "kb-node";

/// `kb cluster-setup -n NS --agent-image IMAGE`, parsed back and created object by object (the namespace exists).
fn apply_cluster_setup(ns: &TestNs) {
    let out = kb_command()
        .args([
            "cluster-setup",
            "-n",
            &ns.name,
            "--agent-image",
            &agent_image(),
        ])
        .run();
    out.assert_success();
    let text = &out.stdout;
    let mut kinds = Vec::new();
    ns.rt.block_on(async {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value = serde_yaml_ng::Value::deserialize(doc).unwrap();
            let kind = value["kind"].as_str().unwrap().to_string();
            match kind.as_str() {
                "Namespace" => drop(serde_yaml_ng::from_value::<Namespace>(value).unwrap()),
                "ServiceAccount" => create::<ServiceAccount>(ns, value).await,
                "Role" => create::<Role>(ns, value).await,
                "RoleBinding" => create::<RoleBinding>(ns, value).await,
                "StatefulSet" => create::<StatefulSet>(ns, value).await,
                "Service" => create::<Service>(ns, value).await,
                "DaemonSet" => create::<DaemonSet>(ns, value).await,
                other => {
                    panic!("kb cluster-setup printed a {other}, which this test does not know")
                }
            }
            kinds.push(kind);
        }
    });
    out.check(kinds.iter().any(|k| k == "DaemonSet"), "no DaemonSet");
}

/// Parses `value` as a `K` and creates it in the test's namespace.
async fn create<K>(ns: &TestNs, value: serde_yaml_ng::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let object: K = serde_yaml_ng::from_value(value).unwrap();
    Api::<K>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// The node's allocatable `kb.dev/fuse`, if it has any.
fn allocatable(ns: &TestNs) -> Option<String> {
    let node = ns
        .rt
        .block_on(Api::<Node>::all(ns.client.clone()).get(NODE))
        .unwrap();
    node.status?.allocatable?.get(RESOURCE).map(|q| q.0.clone())
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    start.elapsed()
}

/// How many times the kubelet's log says a device plugin registered `kb.dev/fuse`.
fn registrations() -> usize {
    let dir = kubeconfig().parent().unwrap().join("log/kubelet.log");
    let log = std::fs::read_to_string(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    log.lines()
        .filter(|l| {
            l.contains("Got registration request from device plugin") && l.contains(RESOURCE)
        })
        .count()
}

/// A pod of the plain Debian image running `script`, with `SYS_ADMIN` added (and said why), not privileged,
/// requesting `kb.dev/fuse: 1` if `fuse`.
fn script_pod(name: &str, fuse: bool, script: &str) -> Pod {
    let resources = fuse.then(|| ResourceRequirements {
        limits: Some(BTreeMap::from([(
            RESOURCE.to_string(),
            Quantity("1".into()),
        )])),
        ..Default::default()
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                CAPABILITIES_ANNOTATION.to_string(),
                "SYS_ADMIN: mount(2) of a FUSE filesystem (the kernel asks for it in the initial user namespace)"
                    .to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            containers: vec![Container {
                name: "main".into(),
                image: Some(test_image()),
                command: Some(vec!["bash".into(), "-c".into(), script.into()]),
                resources,
                security_context: Some(SecurityContext {
                    privileged: Some(false),
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(Capabilities {
                        add: Some(vec!["SYS_ADMIN".into()]),
                        drop: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs the pod to its end and returns its phase and log.
fn run_pod(ns: &TestNs, pod: Pod) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let name = pod.metadata.name.clone().unwrap();
    ns.rt.block_on(async {
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let phase = pods
                .get(&name)
                .await
                .unwrap()
                .status
                .and_then(|s| s.phase)
                .unwrap_or_default();
            if phase == "Succeeded" || phase == "Failed" {
                let log = pods.logs(&name, &LogParams::default()).await.unwrap();
                return (phase, log);
            }
            assert!(
                Instant::now() < deadline,
                "pod {name} still {phase} after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Every container of every pod in the namespace: not privileged; each capability it adds named, with a reason,
/// in its pod's `kb.dev/capabilities` annotation. Returns (pod, added capabilities) for each pod.
fn check_capabilities(ns: &TestNs) -> Vec<(String, Vec<String>)> {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let list = ns.rt.block_on(pods.list(&ListParams::default())).unwrap();
    let mut seen = Vec::new();
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let why = pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get(CAPABILITIES_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let spec = pod.spec.unwrap();
        let mut added_all = Vec::new();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let security = c.security_context.clone().unwrap_or_default();
            assert_ne!(
                security.privileged,
                Some(true),
                "{name}/{} is privileged",
                c.name
            );
            let added = security
                .capabilities
                .and_then(|c| c.add)
                .unwrap_or_default();
            for cap in &added {
                assert!(
                    why.contains(&format!("{cap}: ")),
                    "{name}/{} adds {cap}, which its `{CAPABILITIES_ANNOTATION}` annotation (`{why}`) does not explain",
                    c.name
                );
            }
            added_all.extend(added);
        }
        seen.push((name, added_all));
    }
    seen
}

#[test]
#[ignore = "needs cluster"]
fn device_plugin_hands_dev_fuse_to_unprivileged_pods() {
    let ns = TestNs::new();
    let socket = PathBuf::from(DEVICE_PLUGIN_DIR).join(socket_name(&ns.name));
    let registered_before = registrations();
    apply_cluster_setup(&ns);

    // The plugin registers and the node advertises 64 shares of /dev/fuse.
    let took = wait_for("the node's allocatable kb.dev/fuse", 180, || {
        allocatable(&ns).as_deref() == Some("64")
    });
    eprintln!(
        "kb.dev/fuse allocatable 64 after {:.1} s",
        took.as_secs_f64()
    );
    assert!(socket.exists(), "no plugin socket {}", socket.display());
    assert!(
        registrations() > registered_before,
        "the kubelet logged no registration"
    );

    // With the resource: /dev/fuse is there, opens read-write, and a FUSE filesystem mounts on it.
    let with = r#"
        set -u
        stat -c 'dev: %F %t:%T' /dev/fuse || exit 10
        exec 3<>/dev/fuse || exit 11
        echo 'open: read-write'
        mkdir -p /mnt/f
        mount -t fuse -o fd=3,rootmode=40000,user_id=0,group_id=0 kbtest /mnt/f || exit 12
        echo "mounted: $(grep ' /mnt/f ' /proc/self/mountinfo | sed 's/.* - //')"
        exec 3<&-   # the last /dev/fuse descriptor closed: the kernel aborts the connection
        stat /mnt/f 2>&1 | sed 's/^/after close: /'
        umount /mnt/f && echo 'unmounted'
    "#;
    let (phase, log) = run_pod(&ns, script_pod("fuse-with", true, with));
    eprintln!("fuse-with ({phase}):\n{log}");
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(log.contains("dev: character special file a:e5"), "{log}"); // 10:229 in hex
    assert!(log.contains("open: read-write"), "{log}");
    assert!(log.contains("mounted: fuse kbtest rw"), "{log}");
    assert!(log.contains("Transport endpoint is not connected"), "{log}");
    assert!(log.contains("unmounted"), "{log}");

    // Without it, the same capabilities: no /dev/fuse, and a node made by hand does not open (device cgroup).
    let without = r#"
        if [ -e /dev/fuse ]; then echo 'dev: present'; else echo 'dev: absent'; fi
        mknod /tmp/fuse c 10 229 && echo 'mknod: ok'
        if ( exec 3<>/tmp/fuse ) 2>/tmp/err; then echo 'open: read-write'; else echo "open: refused: $(cat /tmp/err)"; fi
    "#;
    let (phase, log) = run_pod(&ns, script_pod("fuse-without", false, without));
    eprintln!("fuse-without ({phase}):\n{log}");
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(log.contains("dev: absent"), "{log}");
    assert!(log.contains("mknod: ok"), "{log}");
    assert!(log.contains("open: refused"), "{log}");
    assert!(!log.contains("open: read-write"), "{log}");

    // No container is privileged; the test's pods add SYS_ADMIN (annotated), kb's own pods (the plugin and the
    // share server) add nothing.
    let seen = check_capabilities(&ns);
    eprintln!("capabilities added per pod: {seen:?}");
    for (pod, added) in &seen {
        if pod.starts_with("kb-") {
            assert!(added.is_empty(), "{pod} adds {added:?}");
        } else {
            assert_eq!(added, &["SYS_ADMIN"], "{pod}");
        }
    }
    assert!(
        seen.iter().any(|(p, _)| p.starts_with("kb-fuse-")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(p, _)| p == "kb-share-0"), "{seen:?}");

    // A kubelet restart deletes every plugin socket; the plugin notices and registers again with a new one.
    let inode = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    };
    let old = inode(&socket);
    let before = registrations();
    std::fs::remove_file(&socket).unwrap();
    let took = wait_for("registration after the socket was removed", 30, || {
        registrations() > before && inode(&socket).is_some_and(|i| Some(i) != old)
    });
    eprintln!(
        "registered again {:.1} s after its socket was removed",
        took.as_secs_f64()
    );
    wait_for("kb.dev/fuse allocatable again", 60, || {
        allocatable(&ns).as_deref() == Some("64")
    });
    let (phase, log) = run_pod(
        &ns,
        script_pod("fuse-with-again", true, "exec 3<>/dev/fuse && echo open"),
    );
    assert_eq!((phase.as_str(), log.trim()), ("Succeeded", "open"));

    // A second namespace's kb-fuse stands by while the first serves, and takes over when the first is deleted.
    let ns2 = TestNs::new();
    let socket2 = PathBuf::from(DEVICE_PLUGIN_DIR).join(socket_name(&ns2.name));
    apply_cluster_setup(&ns2);
    let plugin_log = |ns: &TestNs| -> String {
        let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
        let lp = ListParams::default().labels("app.kubernetes.io/name=kb-fuse");
        ns.rt.block_on(async {
            let Some(pod) = pods.list(&lp).await.unwrap().items.into_iter().next() else {
                return String::new();
            };
            let name = pod.metadata.name.unwrap();
            pods.logs(&name, &LogParams::default())
                .await
                .unwrap_or_default()
        })
    };
    wait_for("the second plugin standing by", 120, || {
        plugin_log(&ns2).contains("standing by")
    });
    assert!(!socket2.exists(), "the second plugin serves too");
    let before = registrations();
    delete_plugin(&ns);
    wait_for("the plugin's socket removed", 60, || !socket.exists());
    let took = wait_for("the second plugin registered", 30, || {
        registrations() > before && socket2.exists()
    });
    eprintln!(
        "the second namespace's plugin registered {:.1} s after the first's socket went",
        took.as_secs_f64()
    );
    assert!(
        plugin_log(&ns2).contains("this plugin serves now"),
        "{}",
        plugin_log(&ns2)
    );
    wait_for("kb.dev/fuse allocatable 64 from the second", 60, || {
        allocatable(&ns).as_deref() == Some("64")
    });

    // Deleted, the last plugin removes its socket and the kubelet stops offering the resource.
    delete_plugin(&ns2);
    wait_for("the second plugin's socket removed", 60, || {
        !socket2.exists()
    });
    let took = wait_for("kb.dev/fuse allocatable 0", 90, || {
        allocatable(&ns).is_none_or(|q| q == "0")
    });
    eprintln!(
        "allocatable 0 {:.1} s after the last socket went",
        took.as_secs_f64()
    );
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    for name in ["fuse-with", "fuse-without", "fuse-with-again"] {
        ns.rt
            .block_on(pods.delete(name, &DeleteParams::default()))
            .unwrap();
    }
    ns.assert_clean();
    ns2.assert_clean();
}

fn delete_plugin(ns: &TestNs) {
    let sets: Api<DaemonSet> = Api::namespaced(ns.client.clone(), &ns.name);
    ns.rt
        .block_on(sets.delete("kb-fuse", &DeleteParams::foreground()))
        .unwrap();
}
