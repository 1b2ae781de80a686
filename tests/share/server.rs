//! The share server replaced under a run: after an eager upload (a replacement worker pod cannot fetch the tree,
//! and kb says to run again) and during a lazy run (kb stops and says what to do).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::support::cluster::TestNs;
use crate::support::process::{CommandExt as _, Pipe};
use crate::support::share::{
    delete_pod, deploy_share_server, deploy_with_fuse, remove_fuse_plugin, start_long_lazy_run,
    wait_fuse_offered, wait_ready_pod,
};

#[test]
#[ignore = "needs cluster"]
fn a_replaced_share_server_is_reported_with_what_to_do() {
    let ns = TestNs::new();
    deploy_share_server(&ns);
    let first_server = wait_ready_pod(&ns, "kb-share-0", None);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();

    // One pod, one job at a time, each a few seconds: the pod is replaced mid-run.
    let mut child = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "-j",
                "1",
                "--line-buffer",
                "--share",
                "eager",
                "--",
                "cat a.txt; sleep 3",
                ":::",
                "1",
                "2",
                "3",
                "4",
                "5",
                "6",
                "7",
                "8",
            ],
        )
        .start();
    let first = child.wait_for_line(Pipe::Stdout, Duration::from_secs(300), |_| true);
    assert_eq!(first, "alpha");

    // The server's pod goes (and its store with it); then the worker pod, whose replacement must fetch.
    delete_pod(&ns, "kb-share-0");
    wait_ready_pod(&ns, "kb-share-0", Some(&first_server));
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let workers = ns
        .rt
        .block_on(pods.list(&ListParams::default().labels("app.kubernetes.io/managed-by=kb")))
        .unwrap();
    for pod in workers.items {
        let name = pod.metadata.name.unwrap_or_default();
        if name.starts_with("kb-") && name != "kb-share-0" {
            delete_pod(&ns, &name);
        }
    }
    // kb says what happened and what to do, and ends: no pod can get the files now.
    let out = child.wait(Duration::from_secs(150));
    out.assert_stderr_contains("the share server (pod kb-share-0 in namespace")
        .assert_stderr_contains("was replaced after kb uploaded the working directory")
        .assert_stderr_contains("run the command again")
        .assert_failure();
    println!("kb said:\n{}", out.stderr);
    ns.assert_clean_within(60);
}

#[test]
#[ignore = "needs cluster"]
fn a_share_server_restart_during_a_lazy_run_stops_it_with_what_to_do() {
    let ns = TestNs::new();
    deploy_with_fuse(&ns);
    wait_fuse_offered(&ns);
    let first_server = wait_ready_pod(&ns, "kb-share-0", None);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    let child = start_long_lazy_run(&ns, dir);
    delete_pod(&ns, "kb-share-0");
    let started = Instant::now();
    let out = child.wait(Duration::from_secs(60));
    println!(
        "kb stopped {:?} after the server's pod was deleted:\n{}",
        started.elapsed(),
        out.stderr
    );
    out.assert_failure()
        .assert_stderr_contains("share server `kb-share-0` in namespace")
        .assert_stderr_contains("during the run")
        .assert_stderr_contains("run again once");
    wait_ready_pod(&ns, "kb-share-0", Some(&first_server));
    remove_fuse_plugin(&ns);
    ns.assert_clean_within(60);
}
