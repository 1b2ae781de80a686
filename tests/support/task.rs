//! A kb task on the local cluster, seen through `kb status` and the Kubernetes API, and the kubeconfigs and
//! rights the cluster tests give kb. It builds on [`super::cluster::TestNs`] and must not start tasks itself: the
//! tests do, through [`super::process`].

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kb::k8s::manifests::{Manifest, build_for_namespace};
use kube::api::{Api, ListParams, PostParams};

use super::cluster::{MANAGED, TestNs, kubeconfig};
use super::process::{CommandExt as _, wait_until};

/// `kb status -o json` rows, as JSON values.
#[track_caller]
pub fn status_rows(ns: &TestNs, dir: &Path) -> Vec<serde_json::Value> {
    let run = ns.kb(dir, &["status", "-o", "json"]).run();
    run.assert_success();
    run.json().as_array().cloned().unwrap_or_default()
}

/// Waits until `kb status` shows `count` tasks whose every pod is ready; returns their ids.
#[track_caller]
pub fn wait_running(ns: &TestNs, dir: &Path, count: usize) -> Vec<String> {
    wait_until(Duration::from_secs(120), Duration::from_secs(1), || {
        let rows = status_rows(ns, dir);
        let running: Vec<String> = rows
            .iter()
            .filter(|r| r["status"] == "RUNNING")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        if running.len() == count {
            Ok(running)
        } else {
            Err(format!("never {count} running tasks: {rows:?}"))
        }
    })
}

/// Waits until `kb status` shows a first task whose health is `2/2` (both pods ready); returns its row.
#[track_caller]
pub fn wait_two_pods_ready(ns: &TestNs, dir: &Path) -> serde_json::Value {
    wait_until(Duration::from_secs(120), Duration::from_secs(1), || {
        let run = ns.kb(dir, &["status", "-o", "json"]).run();
        run.assert_success();
        let rows = run.json();
        match rows.as_array().and_then(|r| r.first()) {
            Some(row) if row["health"] == "2/2" => Ok(row.clone()),
            _ => Err(format!("task never ran: {rows}")),
        }
    })
}

/// Waits up to `secs` until the first task's status in `kb status` is `status`.
#[track_caller]
pub fn wait_status(ns: &TestNs, dir: &Path, status: &str, secs: u64) {
    wait_until(Duration::from_secs(secs), Duration::from_secs(2), || {
        let rows = ns.kb(dir, &["status", "-o", "json"]).run().json();
        if rows[0]["status"] == status {
            Ok(())
        } else {
            Err(format!("never {status}: {rows}"))
        }
    })
}

/// The Job of the task whose id `kb status` shows first, once it exists.
#[track_caller]
pub fn wait_for_job(ns: &TestNs, secs: u64) -> Job {
    let jobs: Api<Job> = Api::namespaced(ns.client.clone(), &ns.name);
    let lp = ListParams::default().labels(MANAGED);
    wait_until(
        Duration::from_secs(secs),
        Duration::from_millis(300),
        || {
            let list = ns.rt.block_on(jobs.list(&lp)).unwrap();
            list.items
                .into_iter()
                .next()
                .ok_or_else(|| format!("no Job within {secs} s"))
        },
    )
}

/// The agent's command line in the Job's main container.
pub fn agent_command(job: &Job) -> String {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0].command.as_ref().unwrap().join(" ")
}

/// Applies what `kb cluster-setup` makes for the test namespace (ServiceAccount, Role, RoleBinding).
pub fn apply_cluster_setup(ns: &TestNs) {
    let pp = PostParams::default();
    for manifest in build_for_namespace(&ns.name).unwrap() {
        let created = match manifest {
            Manifest::ServiceAccount(sa) => ns
                .rt
                .block_on(
                    Api::<ServiceAccount>::namespaced(ns.client.clone(), &ns.name).create(&pp, &sa),
                )
                .map(|_| ()),
            Manifest::Role(role) => ns
                .rt
                .block_on(Api::<Role>::namespaced(ns.client.clone(), &ns.name).create(&pp, &role))
                .map(|_| ()),
            Manifest::RoleBinding(binding) => ns
                .rt
                .block_on(
                    Api::<RoleBinding>::namespaced(ns.client.clone(), &ns.name)
                        .create(&pp, &binding),
                )
                .map(|_| ()),
            _ => Ok(()),
        };
        created.unwrap();
    }
}

/// A kubeconfig whose API server is a closed port on this machine.
pub fn closed_port_kubeconfig() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n\
         current-context: c\n",
    )
    .unwrap();
    file
}

/// A kubeconfig for the local cluster that logs in with `token`.
pub fn token_kubeconfig(token: &str) -> tempfile::NamedTempFile {
    let admin = kube::config::Kubeconfig::read_from(kubeconfig()).unwrap();
    let cluster = admin.clusters[0].cluster.clone().unwrap();
    let server = cluster.server.unwrap();
    let ca = cluster
        .certificate_authority_data
        .expect("the admin kubeconfig embeds its CA");
    let file = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
         users:\n- name: u\n  user:\n    token: {token}\ncurrent-context: c\n"
    );
    std::fs::write(file.path(), text).unwrap();
    file
}

/// After an API server outage the node controller may mark the node unreachable and taint it (evicting pods and
/// refusing new ones) until the kubelet's status gets through again: waits until the node has been Ready and
/// untainted for 10 s in a row, so that the tests after this one find a working cluster.
#[track_caller]
pub fn wait_node_healthy(ns: &TestNs) {
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let start = Instant::now();
    let mut healthy_since: Option<Instant> = None;
    loop {
        let healthy = ns
            .rt
            .block_on(nodes.list(&ListParams::default()))
            .map(|list| {
                list.items.iter().all(|node| {
                    let spec = node.spec.clone().unwrap_or_default();
                    let ready = node
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    ready && spec.taints.unwrap_or_default().is_empty()
                })
            })
            .unwrap_or(false);
        match (healthy, healthy_since) {
            (true, Some(since)) if since.elapsed() >= Duration::from_secs(10) => return,
            (true, None) => healthy_since = Some(Instant::now()),
            (false, _) => healthy_since = None,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the node did not come back Ready and untainted within 180 s of the API server's restart"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
