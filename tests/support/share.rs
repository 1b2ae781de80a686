//! What `kb cluster-setup` deploys for the share tests, in a test's namespace: the share server (and, for the lazy
//! share, the `kb-fuse` device plugin); the pods of a task; commands run in a pod; and a long lazy run to break.
//! It must not assert on what kb printed: the tests do, through [`super::process`].

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};

use super::cluster::{TestNs, agent_image};
use super::process::{CommandExt as _, Pipe, Running};

/// Deploys the share server of `kb cluster-setup` into the test's namespace and waits for it to be Ready.
pub fn deploy_share_server(ns: &TestNs) {
    deploy(ns, false);
}

/// [`deploy_share_server`], and the FUSE device plugin (`kb-fuse`) the lazy share needs.
pub fn deploy_with_fuse(ns: &TestNs) {
    deploy(ns, true);
}

/// Creates every manifest of `kb cluster-setup` in the namespace (the DaemonSet only with `fuse`) and waits for
/// the share server's pod to be Ready.
fn deploy(ns: &TestNs, fuse: bool) {
    let manifests = kb::k8s::manifests::build_all(&ns.name, &agent_image()).unwrap();
    ns.rt.block_on(async {
        for manifest in manifests {
            match manifest {
                kb::k8s::manifests::Manifest::StatefulSet(set) => {
                    Api::<StatefulSet>::namespaced(ns.client.clone(), &ns.name)
                        .create(&PostParams::default(), &set)
                        .await
                        .unwrap();
                }
                kb::k8s::manifests::Manifest::Service(service) => {
                    Api::<Service>::namespaced(ns.client.clone(), &ns.name)
                        .create(&PostParams::default(), &service)
                        .await
                        .unwrap();
                }
                // The coordinator's identity, for --async.
                kb::k8s::manifests::Manifest::ServiceAccount(sa) => {
                    Api::<ServiceAccount>::namespaced(ns.client.clone(), &ns.name)
                        .create(&PostParams::default(), &sa)
                        .await
                        .unwrap();
                }
                kb::k8s::manifests::Manifest::Role(role) => {
                    Api::<Role>::namespaced(ns.client.clone(), &ns.name)
                        .create(&PostParams::default(), &role)
                        .await
                        .unwrap();
                }
                kb::k8s::manifests::Manifest::RoleBinding(binding) => {
                    Api::<RoleBinding>::namespaced(ns.client.clone(), &ns.name)
                        .create(&PostParams::default(), &binding)
                        .await
                        .unwrap();
                }
                // The namespace exists.
                kb::k8s::manifests::Manifest::Namespace(_) => {}
                // The FUSE device plugin, for the lazy share only.
                kb::k8s::manifests::Manifest::DaemonSet(set) if fuse => {
                    Api::<DaemonSet>::namespaced(ns.client.clone(), &ns.name)
                        .create(&PostParams::default(), &set)
                        .await
                        .unwrap();
                }
                kb::k8s::manifests::Manifest::DaemonSet(_) => {}
            }
        }
        let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let ready = pods
                .get_opt("kb-share-0")
                .await
                .unwrap()
                .and_then(|p| p.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "kb-share-0 not Ready in 180 s");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Deletes the `kb-fuse` DaemonSet that `kb cluster-setup` deployed (its pods are labelled like kb's).
pub fn remove_fuse_plugin(ns: &TestNs) {
    let sets: Api<DaemonSet> = Api::namespaced(ns.client.clone(), &ns.name);
    ns.rt
        .block_on(sets.delete("kb-fuse", &kube::api::DeleteParams::default()))
        .unwrap();
}

/// Waits until a node offers `kb.dev/fuse` (the device plugin advertises it within a few seconds of starting).
pub fn wait_fuse_offered(ns: &TestNs) {
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let offered = ns
            .rt
            .block_on(nodes.list(&ListParams::default()))
            .unwrap()
            .items
            .iter()
            .any(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref())
                    .and_then(|a| a.get("kb.dev/fuse"))
                    .is_some_and(|q| q.0 != "0")
            });
        if offered {
            return;
        }
        assert!(Instant::now() < deadline, "no node offers kb.dev/fuse");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Deletes a pod at once.
pub fn delete_pod(ns: &TestNs, name: &str) {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    ns.rt
        .block_on(pods.delete(name, &kube::api::DeleteParams::default().grace_period(0)))
        .unwrap();
}

/// The UID of pod `name` once it is Ready and its UID is not `old`.
pub fn wait_ready_pod(ns: &TestNs, name: &str, old: Option<&str>) -> String {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(pod) = ns.rt.block_on(pods.get_opt(name)).unwrap() {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let ready = pod
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && Some(uid.as_str()) != old {
                return uid;
            }
        }
        assert!(Instant::now() < deadline, "{name} not Ready in 120 s");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The names of the task's worker pods (kb's pods other than the share server and the device plugin).
pub fn worker_pods(ns: &TestNs) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    ns.rt
        .block_on(pods.list(&ListParams::default().labels("app.kubernetes.io/managed-by=kb")))
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| n.starts_with("kb-") && n != "kb-share-0" && !n.starts_with("kb-fuse"))
        .collect()
}

/// Runs `script` with `sh -c` in `pod` through the exec API: its stdout and how long it took.
pub fn pod_exec(ns: &TestNs, pod: &str, script: &str) -> (String, Duration) {
    use tokio::io::AsyncReadExt as _;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let start = Instant::now();
    let out = ns.rt.block_on(async {
        let params = kube::api::AttachParams::default()
            .stdin(false)
            .stdout(true)
            .stderr(false);
        let mut attached = pods.exec(pod, ["sh", "-c", script], &params).await.unwrap();
        let mut out = String::new();
        let mut stdout = attached.stdout().unwrap();
        let read = stdout.read_to_string(&mut out);
        // A hang is the failure this guards against: give up well after kb's 15 s deadline.
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the command in the pod hung")
            .unwrap();
        out
    });
    (out, start.elapsed())
}

/// Starts a lazy run of one pod whose jobs read `a.txt` one after another for a minute; returns it once the
/// first job printed what it read (`alpha`).
#[track_caller]
pub fn start_long_lazy_run(ns: &TestNs, dir: &Path) -> Running {
    let inputs: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    let mut args = vec![
        "parallel",
        "--pods",
        "1",
        "-j",
        "1",
        "--line-buffer",
        "--share",
        "lazy",
        "--",
        "cat a.txt; sleep 2",
        ":::",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let mut child = ns.kb(dir, &args).start();
    let first = child.wait_for_line(Pipe::Stdout, Duration::from_secs(300), |_| true);
    if first != "alpha" {
        child.fail_running(format_args!("the first job printed `{first}`, not `alpha`"));
    }
    child
}
