//! The lazy share: jobs read what is on this machine now and write back here; a client that stops answering makes
//! reads in the pod fail with EIO instead of hanging; over NFS, a real NFS client on the node is served and a node
//! that cannot mount is reported.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use nix::sys::signal::Signal;

use crate::support::cluster::TestNs;
use crate::support::process::{CommandExt as _, Run, wait_until};
use crate::support::share::{
    deploy_share_server, deploy_with_fuse, pod_exec, remove_fuse_plugin, start_long_lazy_run,
    wait_fuse_offered, worker_pods,
};

#[test]
#[ignore = "needs cluster"]
fn lazy_share_jobs_read_what_is_here_now_and_write_back_here() {
    let ns = TestNs::new();
    deploy_with_fuse(&ns);
    wait_fuse_offered(&ns);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(dir.join("keep.txt"), "kept\n").unwrap();
    std::fs::write(dir.join("old-name.txt"), "renamed\n").unwrap();
    std::fs::write(dir.join("gone.txt"), "deleted\n").unwrap();

    // Run 1: a file made right before the run is read by every job; what the jobs write appears here.
    std::fs::write(dir.join("now.txt"), "made just now\n").unwrap();
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "-k",
                "--pods",
                "2",
                "-j",
                "1",
                "--share",
                "lazy",
                "--",
                "cat now.txt; echo written by {} > out-{}.txt",
                ":::",
                "a",
                "b",
            ],
        )
        .run();
    out.assert_code(0)
        .assert_stdout("made just now\nmade just now\n")
        .assert_stderr_contains("kb: share: lazy");
    assert_eq!(
        std::fs::read_to_string(dir.join("out-a.txt")).unwrap(),
        "written by a\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out-b.txt")).unwrap(),
        "written by b\n"
    );

    // Run 2: a rename and a delete done here between the runs are seen.
    std::fs::rename(dir.join("old-name.txt"), dir.join("new-name.txt")).unwrap();
    std::fs::remove_file(dir.join("gone.txt")).unwrap();
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--share",
                "lazy",
                "--",
                "ls; cat new-name.txt; echo run {}",
                ":::",
                "1",
            ],
        )
        .run();
    out.assert_code(0)
        .assert_stdout_contains("new-name.txt")
        .assert_stdout_contains("renamed")
        .assert_stdout_lacks("old-name.txt")
        .assert_stdout_lacks("gone.txt");

    // What cluster-setup deployed goes (its DaemonSet's pods are labelled like kb's); then nothing of kb is left.
    remove_fuse_plugin(&ns);
    ns.assert_clean_within(60);
}

#[test]
#[ignore = "needs cluster"]
fn a_vanished_lazy_client_makes_reads_fail_with_an_io_error_not_hang() {
    let ns = TestNs::new();
    deploy_with_fuse(&ns);
    wait_fuse_offered(&ns);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().canonicalize().unwrap();
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    let mut child = start_long_lazy_run(&ns, &dir);
    let pods = worker_pods(&ns);
    assert_eq!(pods.len(), 1, "{pods:?}");
    let file = dir.join("a.txt").display().to_string();
    let read = format!("cat '{file}' 2>&1; echo \"exit $?\"");
    let (out, _) = pod_exec(&ns, &pods[0], &read);
    assert_eq!(
        out, "alpha\nexit 0\n",
        "the share should be readable while the client runs"
    );

    // The client stops answering without closing anything (a laptop that sleeps or loses its network): reads in
    // the pod fail with EIO once kb's 15 s deadline passes.
    child.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(2));
    let (out, took) = pod_exec(&ns, &pods[0], &read);
    println!("read with the client stopped: {out:?} after {took:?}");
    assert!(
        out.contains("Input/output error") && !out.ends_with("exit 0\n"),
        "{out}"
    );
    assert!(took < Duration::from_secs(25), "{took:?}");
    // Every later read fails at once, without waiting again.
    let (out, took) = pod_exec(
        &ns,
        &pods[0],
        &format!("ls '{}' 2>&1; {read}", dir.display()),
    );
    assert!(out.contains("Input/output error"), "{out}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // The client dies for good: `kb finish` removes the task, and with it the task's keys on the share server.
    child.kill();
    let rows = ns.kb(&dir, &["status", "-o", "json"]).run().json();
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let finish = ns.kb(&dir, &["finish", &id]).run();
    finish.assert_success();
    let (keys, _) = pod_exec(&ns, "kb-share-0", "cat /var/lib/kb-share/authorized_keys");
    assert!(
        !keys.contains(&id),
        "the task's keys stayed on the share server: {keys}"
    );
    remove_fuse_plugin(&ns);
    ns.assert_clean_within(60);
}

/// Runs a libnfs utility (`nfs-cat`, `nfs-ls`, `nfs-cp`) from this host, the cluster's node, with a time limit.
/// (`scripts/deps` installs libnfs-utils.)
fn libnfs(tool: &str, args: &[&str]) -> Run {
    Command::new(tool)
        .args(args)
        .start()
        .stop_after(Duration::from_secs(30))
}

#[test]
#[ignore = "needs cluster"]
fn lazy_share_over_nfs_serves_a_real_nfs_client_and_nodes_that_cannot_mount_are_reported() {
    let ns = TestNs::new();
    deploy_share_server(&ns);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().canonicalize().unwrap();
    std::fs::write(dir.join("a.txt"), "alpha from the laptop\n").unwrap();
    let child = ns
        .kb(
            &dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--share",
                "lazy",
                "--lazy-mount",
                "nfs",
                "--",
                "cat a.txt",
                ":::",
                "1",
            ],
        )
        .start();

    // The worker pod's spec: an NFS volume from the share server at the user's path, and no capability added.
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let pod = wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || match worker_pods(&ns).first() {
            Some(name) => Ok(ns.rt.block_on(pods.get(name)).unwrap()),
            None => Err("no worker pod".to_string()),
        },
    );
    let spec = pod.spec.unwrap();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.nfs.clone())
        .expect("an NFS volume");
    let container = &spec.containers[0];
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == dir.display().to_string() && m.read_only != Some(true)),
        "{container:?}"
    );
    assert!(
        container.security_context.is_none()
            && container
                .resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_none_or(|l| !l.contains_key("kb.dev/fuse")),
        "an NFS pod needs no capability and no device: {container:?}"
    );
    assert!(volume.path.starts_with("/kb/"), "{volume:?}");

    // This machine is the node: its user-space NFS client mounts what the kubelet would (through the share
    // server's portmapper on port 111, as a kernel client does) and reads and writes the laptop's files.
    let url = |path: &str| format!("nfs://{}{}{path}?version=3", volume.server, volume.path);
    let out = libnfs("nfs-cat", &[&url("/a.txt")]);
    out.assert_success();
    out.assert_stdout("alpha from the laptop\n");
    let written = dir.join("from-node.txt");
    let source = project.path().join("../kb-nfs-source.txt");
    std::fs::write(&source, "written over NFS\n").unwrap();
    let out = libnfs(
        "nfs-cp",
        &[source.to_str().unwrap(), &url("/from-node.txt")],
    );
    let _ = std::fs::remove_file(&source);
    out.assert_success();
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "written over NFS\n"
    );
    let out = libnfs("nfs-ls", &[&url("")]);
    out.assert_stdout_contains("from-node.txt");
    // The export's parent lists no task; another path under it is refused.
    let out = libnfs(
        "nfs-ls",
        &[&format!("nfs://{}/kb?version=3", volume.server)],
    );
    out.assert_stdout_lacks("a.txt").assert_stdout_lacks("kb-");
    let guessed = format!("nfs://{}/kb/{}?version=3", volume.server, "x".repeat(8));
    assert!(!libnfs("nfs-ls", &[&guessed]).status.success());

    // This node's kernel has no NFS client: the kubelet cannot mount the volume, and kb says so with what to do.
    let out = child.stop_after(Duration::from_secs(120));
    println!("kb said:\n{}", out.stderr);
    out.assert_failure()
        .assert_stderr_contains("cannot mount the working directory over NFS")
        .assert_stderr_contains("--lazy-mount fuse");
    ns.assert_clean_within(60);
}
