//! The eager share and syncback on the real local cluster (`tests/cluster/up`), through the share server that
//! `kb cluster-setup` deploys: what the jobs see, what the second run moves, syncback and a conflict, and that no
//! container of the namespace runs privileged or adds a capability.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use support::cluster::{TestNs, agent_image};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Deploys the share server of `kb cluster-setup` into the test's namespace and waits for it to be Ready.
fn deploy_share_server(ns: &TestNs) {
    deploy(ns, false);
}

/// [`deploy_share_server`], and the FUSE device plugin (`kb-fuse`) the lazy share needs.
fn deploy_with_fuse(ns: &TestNs) {
    deploy(ns, true);
}

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
                    Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(
                        ns.client.clone(),
                        &ns.name,
                    )
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

/// A project: 200 files of 10 KiB, ignored files, and a file to edit.
fn make_project(dir: &Path) {
    for i in 0..200 {
        let body = format!("{i:05}\n").repeat(10 * 1024 / 6);
        std::fs::write(dir.join(format!("f{i:03}.txt")), body).unwrap();
    }
    std::fs::write(dir.join(".gitignore"), "ignored/\n*.tmp\n").unwrap();
    std::fs::write(dir.join(".kbignore"), "secret.txt\n").unwrap();
    std::fs::create_dir(dir.join("ignored")).unwrap();
    std::fs::write(dir.join("ignored/big"), vec![b'x'; 100_000]).unwrap();
    std::fs::write(dir.join("scratch.tmp"), "no").unwrap();
    std::fs::write(dir.join("secret.txt"), "no").unwrap();
    std::fs::write(dir.join("shared.txt"), "original\n").unwrap();
}

/// `kb: share: sent S of T bytes (P%: C of content in F of N files, M of lists) in X s` → (S, T, C).
fn sent(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("kb: share: sent "))
        .unwrap_or_else(|| panic!("no share line in:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> u64 {
        words[i]
            .parse()
            .unwrap_or_else(|_| panic!("word {i} of `{line}`"))
    };
    (number(3), number(5), number(8))
}

fn no_privileged_containers(ns: &TestNs) {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let list = ns.rt.block_on(pods.list(&ListParams::default())).unwrap();
    assert!(!list.items.is_empty());
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.unwrap();
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
            assert!(
                added.is_empty(),
                "{name}/{} adds {added:?}, which no doc names",
                c.name
            );
        }
    }
}

#[test]
#[ignore = "needs cluster"]
fn eager_share_moves_only_changes_and_syncback_keeps_conflicts() {
    let ns = TestNs::new();
    deploy_share_server(&ns);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    make_project(dir);

    // Run 1: everything not ignored goes up once; every job sees the files and none of the ignored ones.
    let out = ns
        .kb(
            dir,
            &[
                "parallel", "-k", "--pods", "2", "--share", "eager", "--",
                "sha256sum f{}.txt | cut -c1-16; ls ignored scratch.tmp secret.txt 2>/dev/null | wc -l",
                ":::", "000", "100", "199",
            ],
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (sent1, total, content1) = sent(&stderr);
    let expected_total: u64 = (0..200)
        .map(|i| format!("{i:05}\n").repeat(10 * 1024 / 6).len() as u64)
        .sum::<u64>()
        + "ignored/\n*.tmp\n".len() as u64
        + "secret.txt\n".len() as u64
        + "original\n".len() as u64;
    assert_eq!(total, expected_total, "{stderr}");
    assert_eq!(content1, total, "a fresh server gets everything: {stderr}");
    assert!(sent1 > total, "and the lists: {stderr}");
    let mut local = Vec::new();
    for i in ["000", "100", "199"] {
        let sum = Command::new("sha256sum")
            .arg(dir.join(format!("f{i}.txt")))
            .output()
            .unwrap();
        local.push(text(&sum.stdout)[..16].to_string());
        local.push("0".to_string());
    }
    let remote: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(remote, local, "{stderr}");

    // Run 2, nothing changed: under 1% of the tree moves.
    let out = ns
        .kb(
            dir,
            &[
                "parallel", "--pods", "1", "--share", "eager", "--", "true", ":::", "1",
            ],
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (sent2, total2, content2) = sent(&stderr);
    println!("second run: sent {sent2} of {total2} bytes");
    // Everything the second run moves, lists included: the manifest's hash, asked about once.
    assert!(sent2 * 100 < total2, "{stderr}");
    assert!(sent2 < 200, "{stderr}");
    assert_eq!(content2, 0, "{stderr}");

    // Run 3, one file changed: only it moves.
    std::fs::write(dir.join("f007.txt"), "changed\n").unwrap();
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--share",
                "eager",
                "--",
                "cat f007.txt",
                ":::",
                "1",
            ],
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(text(&out.stdout), "changed\n", "{stderr}");
    let (sent3, _, content3) = sent(&stderr);
    println!("one file changed: sent {sent3} bytes");
    assert_eq!(content3, "changed\n".len() as u64, "{stderr}");
    // Only the changes of the manifest go, not the whole list of 200 files.
    assert!(sent3 < 1000, "{stderr}");

    // Run 4, a rename and a delete: no content moves, and the jobs see both.
    std::fs::rename(dir.join("f008.txt"), dir.join("g008.txt")).unwrap();
    std::fs::remove_file(dir.join("f009.txt")).unwrap();
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--share",
                "eager",
                "--",
                "ls f008.txt f009.txt g008.txt 2>/dev/null; true",
                ":::",
                "1",
            ],
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(text(&out.stdout), "g008.txt\n", "{stderr}");
    let (sent4, _, content4) = sent(&stderr);
    assert_eq!(content4, 0, "{stderr}");
    assert!(sent4 < 1000, "{stderr}");

    // Syncback: outputs come back; a file edited here while a job also edits it is a conflict, both kept.
    let mut child = ns
        .kb(
            dir,
            &[
                "parallel", "--pods", "2", "--share", "syncback", "--",
                "echo result {} > out-{}.txt; if [ {} = b ]; then sleep 8; echo from-the-job > shared.txt; fi",
                ":::", "a", "b",
            ],
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    // Once the upload is done (the share line), edit the file locally, while the job sleeps.
    for line in stderr_lines.by_ref() {
        let line = line.unwrap();
        stderr.push_str(&line);
        stderr.push('\n');
        if line.starts_with("kb: share: sent ") {
            std::fs::write(dir.join("shared.txt"), "edited-here\n").unwrap();
            break;
        }
    }
    for line in stderr_lines {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("out-a.txt")).unwrap(),
        "result a\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out-b.txt")).unwrap(),
        "result b\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("shared.txt")).unwrap(),
        "edited-here\n"
    );
    let aside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shared.txt.kb-conflict-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join(&aside[0])).unwrap(),
        "from-the-job\n"
    );
    assert!(
        stderr.contains("kb: conflict: `shared.txt` changed here and in a pod"),
        "{stderr}"
    );
    assert!(stderr.contains("kb: syncback: 2 files updated"), "{stderr}");
    // Nothing local was deleted.
    assert!(dir.join("ignored/big").exists() && dir.join("secret.txt").exists());

    // --async with the eager share: the tree is uploaded before the client returns, and the coordinator's pods
    // fetch it from the share server.
    let out = ns
        .kb(
            dir,
            &[
                "parallel",
                "--pods",
                "1",
                "--async",
                "--share",
                "eager",
                "--",
                "head -c 5 f{}.txt; echo",
                ":::",
                "123",
            ],
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("kb: share: sent "), "{stderr}");
    let id = text(&out.stdout).trim().to_string();
    let logs = ns
        .kb(dir, &["logs", &id, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = wait_with_deadline(logs, Duration::from_secs(240));
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
    assert!(
        text(&logs.stdout).contains("00123\n"),
        "{}",
        text(&logs.stdout)
    );
    let finish = ns.kb(dir, &["finish", &id]).output().unwrap();
    assert!(finish.status.success(), "{}", text(&finish.stderr));
    // The lazy share and syncback need this machine after the start: refused with --async, before anything is made.
    for share in ["lazy", "syncback"] {
        let out = ns
            .kb(
                dir,
                &[
                    "parallel", "--pods", "1", "--async", "--share", share, "--", "true", ":::",
                    "1",
                ],
            )
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{stderr}");
        assert!(stderr.contains("--async does not work with"), "{stderr}");
    }

    no_privileged_containers(&ns);
    ns.assert_clean();
}

/// Waits for `child`, killing it after `limit`.
fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().unwrap()
}

/// Deletes a pod at once.
fn delete_pod(ns: &TestNs, name: &str) {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    ns.rt
        .block_on(pods.delete(name, &kube::api::DeleteParams::default().grace_period(0)))
        .unwrap();
}

/// The UID of pod `name` once it is Ready and its UID is not `old`.
fn wait_ready_pod(ns: &TestNs, name: &str, old: Option<&str>) -> String {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(stdout.next().unwrap().unwrap(), "alpha");

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
    let stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr_pipe), &mut text).unwrap();
        text
    });
    // kb says what happened and what to do, and ends: no pod can get the files now.
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kb did not end: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = reader.join().unwrap();
    assert!(
        stderr.contains("the share server (pod kb-share-0 in namespace")
            && stderr.contains("was replaced after kb uploaded the working directory")
            && stderr.contains("run the command again"),
        "{stderr}"
    );
    assert_ne!(status.code(), Some(0), "{stderr}");
    println!("kb said:\n{stderr}");
    ns.assert_clean_within(60);
}

/// Deletes the `kb-fuse` DaemonSet that `kb cluster-setup` deployed (its pods are labelled like kb's).
fn remove_fuse_plugin(ns: &TestNs) {
    let sets: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(ns.client.clone(), &ns.name);
    ns.rt
        .block_on(sets.delete("kb-fuse", &kube::api::DeleteParams::default()))
        .unwrap();
}

/// Waits until a node offers `kb.dev/fuse` (the device plugin advertises it within a few seconds of starting).
fn wait_fuse_offered(ns: &TestNs) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(ns.client.clone());
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

/// The names of the task's worker pods (kb's pods other than the share server and the device plugin).
fn worker_pods(ns: &TestNs) -> Vec<String> {
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
fn pod_exec(ns: &TestNs, pod: &str, script: &str) -> (String, Duration) {
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
/// first job printed what it read.
fn start_long_lazy_run(
    ns: &TestNs,
    dir: &Path,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
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
    let mut child = ns
        .kb(dir, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let Some(Ok(first)) = stdout.next() else {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        panic!("the run printed nothing: {stderr}");
    };
    assert_eq!(first, "alpha");
    (child, stdout)
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
    let (mut child, _stdout) = start_long_lazy_run(&ns, &dir);
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
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
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
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let status = ns.kb(&dir, &["status", "-o", "json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let finish = ns.kb(&dir, &["finish", &id]).output().unwrap();
    assert!(finish.status.success(), "{}", text(&finish.stderr));
    let (keys, _) = pod_exec(&ns, "kb-share-0", "cat /var/lib/kb-share/authorized_keys");
    assert!(
        !keys.contains(&id),
        "the task's keys stayed on the share server: {keys}"
    );
    remove_fuse_plugin(&ns);
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
    let (mut child, _stdout) = start_long_lazy_run(&ns, dir);
    let stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr_pipe), &mut text).unwrap();
        text
    });
    delete_pod(&ns, "kb-share-0");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("kb did not stop: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = reader.join().unwrap();
    println!(
        "kb stopped {:?} after the server's pod was deleted:\n{stderr}",
        started.elapsed()
    );
    assert_ne!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("share server `kb-share-0` in namespace")
            && stderr.contains("during the run")
            && stderr.contains("run again once"),
        "{stderr}"
    );
    wait_ready_pod(&ns, "kb-share-0", Some(&first_server));
    remove_fuse_plugin(&ns);
    ns.assert_clean_within(60);
}

/// Runs a libnfs utility (`nfs-cat`, `nfs-ls`, `nfs-cp`) from this host, the cluster's node, with a time limit.
fn libnfs(tool: &str, args: &[&str]) -> std::process::Output {
    let child = Command::new(tool)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/deps installs libnfs-utils)"));
    wait_with_deadline(child, Duration::from_secs(30))
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The worker pod's spec: an NFS volume from the share server at the user's path, and no capability added.
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pod = loop {
        if let Some(name) = worker_pods(&ns).first() {
            break ns.rt.block_on(pods.get(name)).unwrap();
        }
        assert!(Instant::now() < deadline, "no worker pod");
        std::thread::sleep(Duration::from_millis(200));
    };
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
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "alpha from the laptop\n");
    let written = dir.join("from-node.txt");
    let source = project.path().join("../kb-nfs-source.txt");
    std::fs::write(&source, "written over NFS\n").unwrap();
    let out = libnfs(
        "nfs-cp",
        &[source.to_str().unwrap(), &url("/from-node.txt")],
    );
    let _ = std::fs::remove_file(&source);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "written over NFS\n"
    );
    let out = libnfs("nfs-ls", &[&url("")]);
    assert!(
        text(&out.stdout).contains("from-node.txt"),
        "{}",
        text(&out.stdout)
    );
    // The export's parent lists no task; another path under it is refused.
    let out = libnfs(
        "nfs-ls",
        &[&format!("nfs://{}/kb?version=3", volume.server)],
    );
    assert!(
        !text(&out.stdout).contains("a.txt") && !text(&out.stdout).contains("kb-"),
        "{}",
        text(&out.stdout)
    );
    let guessed = format!("nfs://{}/kb/{}?version=3", volume.server, "x".repeat(8));
    assert!(!libnfs("nfs-ls", &[&guessed]).status.success());

    // This node's kernel has no NFS client: the kubelet cannot mount the volume, and kb says so with what to do.
    let out = wait_with_deadline(child, Duration::from_secs(120));
    let stderr = text(&out.stderr);
    println!("kb said:\n{stderr}");
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("cannot mount the working directory over NFS")
            && stderr.contains("--lazy-mount fuse"),
        "{stderr}"
    );
    ns.assert_clean_within(60);
}

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
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        text(&out.stdout),
        "made just now\nmade just now\n",
        "{stderr}"
    );
    assert!(stderr.contains("kb: share: lazy"), "{stderr}");
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
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let listing = text(&out.stdout);
    assert!(
        listing.contains("new-name.txt") && listing.contains("renamed"),
        "{listing}"
    );
    assert!(
        !listing.contains("old-name.txt") && !listing.contains("gone.txt"),
        "{listing}"
    );

    // What cluster-setup deployed goes (its DaemonSet's pods are labelled like kb's); then nothing of kb is left.
    remove_fuse_plugin(&ns);
    ns.assert_clean_within(60);
}
