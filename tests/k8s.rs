//! kb on the real local cluster (`tests/cluster/up`): the README's example, `kb shell` through a pseudo-terminal,
//! `kb status` and `kb finish` after the client is SIGKILLed, and the errors found before anything is created.
//!
//! Every test uses its own `kb-test-<rand>` namespace, checks that nothing labelled
//! `app.kubernetes.io/managed-by=kb` is left in it, and deletes it. A cluster that cannot be reached is a failure,
//! never a skip. Images: `KB_TEST_IMAGE` (default `127.0.0.1:5000/kb/debian:bookworm`) and `KB_AGENT_IMAGE`
//! (default kb's own default with `KB_REGISTRY=127.0.0.1:5000`).
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kb::k8s::manifests::{Manifest, build_for_namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use support::cluster::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
#[ignore = "needs cluster"]
fn readme_example_matches_local_wc() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    for (i, lines) in [3, 10, 0, 250, 7, 1].iter().enumerate() {
        let body: String = (0..*lines).map(|n| format!("line {n}\n")).collect();
        std::fs::write(dir.path().join(format!("f{i}.txt")), body).unwrap();
    }
    std::fs::create_dir(dir.path().join("sub dir")).unwrap();
    std::fs::write(dir.path().join("sub dir/g.txt"), "a\nb\n").unwrap();
    let find = Command::new("find")
        .args([".", "-type", "f"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let files = text(&find.stdout);
    let out = run_with_stdin(
        ns.kb(
            dir.path(),
            &["parallel", "--pods", "3", "--", "wc", "-l", "{}"],
        ),
        &files,
    );
    assert!(out.status.success(), "kb failed: {}", text(&out.stderr));
    let mut local = String::new();
    for file in files.lines() {
        let wc = Command::new("wc")
            .args(["-l", file])
            .current_dir(dir.path())
            .output()
            .unwrap();
        local.push_str(&text(&wc.stdout));
    }
    assert_eq!(sorted_lines(&text(&out.stdout)), sorted_lines(&local));
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn shell_through_a_pty_reports_the_exit_status_and_leaves_nothing() {
    let _cluster = shared();
    use std::os::fd::OwnedFd;
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker.txt"), "kb-shell-marker\n").unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut cmd = ns.kb(dir.path(), &["shell"]);
    cmd.env("TERM", "dumb")
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave));
    let mut child = cmd.spawn().unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |needle: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.push_str(&text(&chunk)),
                Err(_) => panic!("no `{needle}` within {secs} s; the terminal showed:\n{seen}"),
            }
        }
    };
    // The working directory was copied in, and the shell starts in it.
    master
        .write_all(b"cat marker.txt; echo kb-$((6*7))\r")
        .unwrap();
    wait_for("kb-42", 120);
    wait_for("kb-shell-marker", 5);
    master.write_all(b"exit 3\r").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "the terminal showed:\n{seen}");
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn status_lists_a_running_task_and_finish_removes_it_after_sigkill() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    let mut client = ns
        .kb(
            dir.path(),
            &[
                "parallel", "--pods", "2", "--cpu", "200m", "--", "sleep", "600", ":::", "1",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the task to be running, through `kb status -o json`.
    let start = Instant::now();
    let task = loop {
        let out = ns
            .kb(dir.path(), &["status", "-o", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kb status failed: {}",
            text(&out.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(row) = rows.as_array().and_then(|r| r.first())
            && row["health"] == "2/2"
        {
            break row.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "task never ran: {rows}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(task["status"], "RUNNING");
    assert!(
        task["progress"].as_str().unwrap().ends_with("/1") || task["progress"] == "0/?",
        "{task}"
    );
    assert_eq!(task["cpu"], "200m");
    assert_eq!(
        task["pwd"],
        dir.path().canonicalize().unwrap().display().to_string()
    );
    assert!(
        task["command"].as_str().unwrap().contains("sleep 600"),
        "{task}"
    );
    let table = ns.kb(dir.path(), &["status"]).output().unwrap();
    let table = text(&table.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "ID", "AGE", "STATUS", "CPU", "MEM", "HEALTH", "PROGRESS", "PWD", "COMMAND"
        ]
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING") && l.contains("2/2")),
        "{table}"
    );
    // The client dies without cleaning up: the task stays until `kb finish`.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    client.wait().unwrap();
    assert!(
        !ns.leftovers().is_empty(),
        "the task should outlive a SIGKILLed client"
    );
    // Its heartbeat stops: `kb status` says ORPHANED once the Lease is 30 s stale.
    let start = Instant::now();
    loop {
        let out = ns
            .kb(dir.path(), &["status", "-o", "json"])
            .output()
            .unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if rows[0]["status"] == "ORPHANED" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never ORPHANED: {rows}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let finish = ns
        .kb(dir.path(), &["finish", "--orphaned"])
        .output()
        .unwrap();
    assert!(finish.status.success(), "{}", text(&finish.stderr));
    assert!(
        text(&finish.stderr).contains(&format!("finished task `{id}`")),
        "{}",
        text(&finish.stderr)
    );
    let again = ns.kb(dir.path(), &["finish", &id]).output().unwrap();
    assert!(
        again.status.success(),
        "finish twice is not an error: {}",
        text(&again.stderr)
    );
    assert!(
        text(&again.stderr).contains("has nothing left"),
        "{}",
        text(&again.stderr)
    );
    ns.assert_clean();
}

/// Runs `kb parallel` expecting a failure before any job: exit 255, `want` in the message, nothing left.
fn expect_error(ns: &TestNs, extra: &[&str], env: &[(&str, &str)], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["parallel", "--pods", "2"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "echo", "{}", ":::", "a", "b"]);
    let mut cmd = ns.kb(dir.path(), &args);
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{args:?}: {stderr}");
    assert!(
        stderr.contains(want),
        "{args:?}: wanted `{want}` in:\n{stderr}"
    );
    assert!(stderr.contains("hint:"), "{args:?}: no hint in:\n{stderr}");
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn errors_are_found_early_and_leave_nothing() {
    let _cluster = shared();
    let ns = TestNs::new();
    expect_error(
        &ns,
        &["--image", "127.0.0.1:5000/kb/no-such-image:1"],
        &[],
        "cannot be pulled",
    );
    expect_error(&ns, &["--cpu", "1000"], &[], "the largest node");
    expect_error(&ns, &["--mem", "1x"], &[], "invalid memory quantity `1x`");
    expect_error(
        &ns,
        &["--namespace", "kb-test-no-such-namespace"],
        &[],
        "does not exist",
    );
    let closed = closed_port_kubeconfig();
    let path = closed.path().display().to_string();
    expect_error(
        &ns,
        &[],
        &[("KUBECONFIG", path.as_str())],
        "cannot reach the Kubernetes API server",
    );
}

/// A kubeconfig whose API server is a closed port on this machine.
fn closed_port_kubeconfig() -> tempfile::NamedTempFile {
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

/// `kb` with only the given environment for Kubernetes (no cluster needed).
fn kb_offline(args: &[&str], kubeconfig: &Path) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_kb"))
        .args(args)
        .current_dir(dir.path())
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KB_NAMESPACE")
        .env_remove("KB_CONTEXT")
        .output()
        .unwrap()
}

#[test]
fn no_kubeconfig_and_a_closed_port_are_explained() {
    let missing = kb_offline(&["status"], Path::new("/nonexistent/kubeconfig"));
    assert_eq!(missing.status.code(), Some(1));
    let stderr = text(&missing.stderr);
    assert!(
        stderr.contains("no kubeconfig found (looked at `KUBECONFIG=/nonexistent/kubeconfig`)"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: point `KUBECONFIG`"), "{stderr}");
    let closed = closed_port_kubeconfig();
    for (args, code) in [
        (&["finish", "abc"][..], 1),
        (
            &["parallel", "--pods", "1", "--", "echo", ":::", "a"][..],
            255,
        ),
    ] {
        let out = kb_offline(args, closed.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach the Kubernetes API server at `https://127.0.0.1:1/`"),
            "{stderr}"
        );
        assert!(
            stderr.contains("hint: check that the cluster is up"),
            "{stderr}"
        );
    }
}

#[test]
fn cluster_setup_prints_typed_manifests_for_the_namespace() {
    let out = kb_offline(
        &["cluster-setup", "-n", "team-a"],
        Path::new("/nonexistent"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let docs: Vec<serde_yaml_ng::Value> = stdout
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "StatefulSet",
            "Service",
            "DaemonSet"
        ]
    );
    assert_eq!(docs[0]["metadata"]["name"], "team-a");
    for doc in &docs[1..] {
        assert_eq!(doc["metadata"]["namespace"], "team-a", "{doc:?}");
    }
    let role: Role = serde_yaml_ng::from_value(docs[2].clone()).unwrap();
    assert!(
        role.rules
            .unwrap()
            .iter()
            .all(|r| !r.verbs.contains(&"*".to_string()))
    );
}

/// A kubeconfig for the local cluster that logs in with `token`.
fn token_kubeconfig(token: &str) -> tempfile::NamedTempFile {
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

#[test]
#[ignore = "needs cluster"]
fn missing_rights_are_named_and_the_cluster_setup_role_is_enough() {
    let _cluster = shared();
    let ns = TestNs::new();
    let manifests = build_for_namespace(&ns.name).unwrap();
    let pp = PostParams::default();
    let sa_api: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &ns.name);
    let sa = manifests.iter().find_map(|m| {
        if let Manifest::ServiceAccount(sa) = m {
            Some(sa)
        } else {
            None
        }
    });
    let sa = ns.rt.block_on(sa_api.create(&pp, sa.unwrap())).unwrap();
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = ns
        .rt
        .block_on(sa_api.create_token_request(&name_of(&sa.metadata), &pp, &request))
        .unwrap();
    let config = token_kubeconfig(&token.status.unwrap().token);
    let dir = tempfile::tempdir().unwrap();
    let as_sa = |args: &[&str]| {
        let mut cmd = ns.kb(dir.path(), args);
        cmd.env("KUBECONFIG", config.path());
        cmd
    };
    // Without the Role: every command says which rights are missing, before creating anything.
    let status = as_sa(&["status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(1), "{}", text(&status.stderr));
    assert!(
        text(&status.stderr).contains("missing permissions in namespace"),
        "{}",
        text(&status.stderr)
    );
    assert!(
        text(&status.stderr).contains("`list batch/jobs`"),
        "{}",
        text(&status.stderr)
    );
    let run = as_sa(&["parallel", "--pods", "1", "--", "echo", "{}", ":::", "x"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(255), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("`create batch/jobs`"),
        "{}",
        text(&run.stderr)
    );
    assert!(
        text(&run.stderr).contains("hint: ask a cluster admin"),
        "{}",
        text(&run.stderr)
    );
    ns.assert_clean();
    // With the Role and RoleBinding of `kb cluster-setup`, and nothing cluster-wide, a run works end to end.
    for manifest in &manifests {
        match manifest {
            Manifest::Role(role) => {
                ns.rt
                    .block_on(
                        Api::<Role>::namespaced(ns.client.clone(), &ns.name).create(&pp, role),
                    )
                    .unwrap();
            }
            Manifest::RoleBinding(binding) => {
                let api = Api::<RoleBinding>::namespaced(ns.client.clone(), &ns.name);
                ns.rt.block_on(api.create(&pp, binding)).unwrap();
            }
            _ => {}
        }
    }
    let run = as_sa(&[
        "parallel",
        "--pods",
        "1",
        "--",
        "echo",
        "{}",
        ":::",
        "least-privilege",
    ])
    .output()
    .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "least-privilege\n");
    // The Role lets the client renew its heartbeat (a merge patch of the Lease).
    assert!(
        !text(&run.stderr).contains("cannot renew the heartbeat"),
        "{}",
        text(&run.stderr)
    );
    let status = as_sa(&["status", "-o", "yaml"]).output().unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn a_deleted_pod_is_replaced_and_its_jobs_still_run() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<String> = (1..=16).map(|i| i.to_string()).collect();
    let mut args = vec!["parallel", "--pods", "2", "--", "sleep 3; echo {}", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let client = ns
        .kb(dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let lp = ListParams::default().labels(MANAGED);
    let names = |pods: &Api<Pod>| -> Vec<String> {
        let list = ns.rt.block_on(pods.list(&lp)).unwrap();
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| name_of(&p.metadata))
            .collect()
    };
    let start = Instant::now();
    let first = loop {
        let list = ns.rt.block_on(pods.list(&lp)).unwrap();
        let ready = |p: &Pod| {
            p.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Ready" && c.status == "True")
        };
        if list.items.len() == 2 && list.items.iter().all(ready) {
            break name_of(&list.items[0].metadata);
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "pods never ready"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    std::thread::sleep(Duration::from_secs(2));
    ns.rt
        .block_on(pods.delete(&first, &DeleteParams::default()))
        .unwrap();
    // The Job replaces the pod (a stopped agent is not a success, and its exit code is not counted as a failure).
    let start = Instant::now();
    let before: Vec<String> = names(&pods);
    loop {
        let now = names(&pods);
        if now.iter().any(|n| n != &first && !before.contains(n)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no replacement pod: {now:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut got: Vec<u32> = text(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        (1..=16).collect::<Vec<u32>>(),
        "every job ran once to its end"
    );
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn pods_of_a_dead_client_end_themselves_after_the_orphan_timeout() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "parallel",
        "--pods",
        "2",
        "--orphan-timeout",
        "10s",
        "--",
        "sleep",
        "600",
        ":::",
        "1",
        "2",
    ];
    let mut client = ns
        .kb(dir.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let id = loop {
        let out = ns
            .kb(dir.path(), &["status", "-o", "json"])
            .output()
            .unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(row) = rows.as_array().and_then(|r| r.first())
            && row["health"] == "2/2"
        {
            break row["id"].as_str().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "task never ran: {rows}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    // Give the client time to join both pods, then kill it without any cleanup.
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    client.wait().unwrap();
    let killed = Instant::now();
    let pods = || -> Vec<String> {
        ns.leftovers()
            .into_iter()
            .filter(|n| n.starts_with("pod/"))
            .collect()
    };
    // With nobody acting, the agents notice no client for 10 s, exit, and the Job fails: no pod is left.
    loop {
        let left = pods();
        if left.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(90),
            "pods of an orphaned task still run: {left:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        killed.elapsed() >= Duration::from_secs(8),
        "pods ended before the orphan timeout: {:?}",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        pods(),
        Vec::<String>::new(),
        "the Job must not replace pods that ended as orphans"
    );
    let finish = ns.kb(dir.path(), &["finish", &id]).output().unwrap();
    assert!(finish.status.success(), "{}", text(&finish.stderr));
    ns.assert_clean();
}

/// The Job of the task whose id `kb status` shows first, once it exists.
fn wait_for_job(ns: &TestNs, secs: u64) -> Job {
    let jobs: Api<Job> = Api::namespaced(ns.client.clone(), &ns.name);
    let lp = ListParams::default().labels(MANAGED);
    let start = Instant::now();
    loop {
        let list = ns.rt.block_on(jobs.list(&lp)).unwrap();
        if let Some(job) = list.items.into_iter().next() {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "no Job within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The agent's command line in the Job's main container.
fn agent_command(job: &Job) -> String {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0].command.as_ref().unwrap().join(" ")
}

#[test]
#[ignore = "needs cluster"]
fn a_task_announces_its_limits_and_its_job_enforces_them() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    // Defaults: a 10 min orphan timeout and a 24 h max runtime, printed with the task id and how to change them.
    let client = ns
        .kb(
            dir.path(),
            &[
                "parallel",
                "--pods",
                "1",
                "--",
                "sleep 4; echo {}",
                ":::",
                "a",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = wait_for_job(&ns, 60);
    let id = job.metadata.labels.as_ref().unwrap()["kb.dev/task-id"].clone();
    assert_eq!(
        job.spec.as_ref().unwrap().active_deadline_seconds,
        Some(86400)
    );
    assert!(
        agent_command(&job).contains("--orphan-timeout 600 "),
        "{}",
        agent_command(&job)
    );
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a\n");
    let line = format!(
        "kb: task {id} in namespace `{}`: its pods end 10m after this client is gone, and after 24h in any case \
         (change with --orphan-timeout, --max-runtime)",
        ns.name
    );
    assert!(
        text(&out.stderr).lines().any(|l| l == line),
        "wanted `{line}` in:\n{}",
        text(&out.stderr)
    );
    ns.assert_clean();
    // Flags win over the defaults, and `off` leaves the agents without an orphan timeout.
    let client = ns
        .kb(
            dir.path(),
            &[
                "parallel",
                "--pods",
                "1",
                "--orphan-timeout",
                "off",
                "--max-runtime",
                "1h30m",
                "--",
                "sleep 4; echo {}",
                ":::",
                "b",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = wait_for_job(&ns, 60);
    assert_eq!(
        job.spec.as_ref().unwrap().active_deadline_seconds,
        Some(5400)
    );
    assert!(
        !agent_command(&job).contains("--orphan-timeout"),
        "{}",
        agent_command(&job)
    );
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "its pods do not end when this client is gone, and after 1h30m in any case (change with"
        ),
        "{}",
        text(&out.stderr)
    );
    ns.assert_clean();
}

/// `kb status -o json` rows, as JSON values.
fn status_rows(ns: &TestNs, dir: &Path) -> Vec<serde_json::Value> {
    let out = ns.kb(dir, &["status", "-o", "json"]).output().unwrap();
    assert!(
        out.status.success(),
        "kb status failed: {}",
        text(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().cloned().unwrap_or_default()
}

/// Waits until `kb status` shows `count` tasks whose every pod is ready; returns their ids.
fn wait_running(ns: &TestNs, dir: &Path, count: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let rows = status_rows(ns, dir);
        let running: Vec<String> = rows
            .iter()
            .filter(|r| r["status"] == "RUNNING")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        if running.len() == count {
            return running;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never {count} running tasks: {rows:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "needs cluster"]
fn finish_orphaned_removes_every_orphan_at_once_and_nothing_alive() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    // Three tasks; each client's first line on stderr names its task.
    let spawn = |input: &str| {
        let mut child = ns
            .kb(
                dir.path(),
                &[
                    "parallel", "--pods", "1", "--", "sleep", "600", ":::", input,
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        // The task line (notes, about the share for one, may come before it).
        let mut line = String::new();
        while !line.starts_with("kb: task ") {
            line.clear();
            let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
            assert!(read > 0, "kb ended without naming its task");
        }
        // Keep reading, so the client never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let id = line
            .strip_prefix("kb: task ")
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no task id in `{line}`"))
            .to_string();
        (child, id)
    };
    let (mut alive, live) = spawn("3");
    let mut doomed = vec![spawn("1"), spawn("2")];
    let ids: Vec<String> = doomed.iter().map(|(_, id)| id.clone()).collect();
    wait_running(&ns, dir.path(), 3);
    // Two clients die without cleaning up; their tasks' heartbeats go stale. The third lives throughout.
    for (client, _) in &mut doomed {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(client.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        client.wait().unwrap();
    }
    let start = Instant::now();
    loop {
        let rows = status_rows(&ns, dir.path());
        let orphaned = rows.iter().filter(|r| r["status"] == "ORPHANED").count();
        if orphaned == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never 2 ORPHANED: {rows:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let finish = ns
        .kb(dir.path(), &["finish", "--orphaned"])
        .output()
        .unwrap();
    let stderr = text(&finish.stderr);
    assert!(finish.status.success(), "{stderr}");
    for id in &ids {
        assert!(
            stderr.contains(&format!("kb: finished task `{id}` (ORPHANED, age ")),
            "{id} not reported removed:\n{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!(
            "kb: finished 2 orphaned tasks in namespace `{}`",
            ns.name
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&live),
        "the live task was touched:\n{stderr}"
    );
    // Only the live task is left, and it still runs.
    let start = Instant::now();
    loop {
        let rows = status_rows(&ns, dir.path());
        let left: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
        if left == [live.as_str()] {
            assert_eq!(rows[0]["status"], "RUNNING", "{rows:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "orphans not gone: {rows:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        alive.try_wait().unwrap().is_none(),
        "the live client must still run"
    );
    let again = ns
        .kb(dir.path(), &["finish", "--orphaned"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("no orphaned task from this machine"),
        "{}",
        text(&again.stderr)
    );
    // The live client ends on Ctrl-C and removes its own task.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(alive.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = alive.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    ns.assert_clean();
}

#[test]
#[ignore = "needs cluster"]
fn max_runtime_stops_a_live_client_s_task_and_says_so() {
    let _cluster = shared();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    let joblog = dir.path().join("run.log");
    let joblog_arg = joblog.display().to_string();
    let start = Instant::now();
    let out = ns
        .kb(
            dir.path(),
            &[
                "parallel",
                "--pods",
                "2",
                "--procs-per-pod",
                "3",
                "--max-runtime",
                "20s",
                "--joblog",
                &joblog_arg,
                "--",
                "sleep 90; echo {}",
                ":::",
                "1",
                "2",
                "3",
                "4",
            ],
        )
        .output()
        .unwrap();
    let took = start.elapsed();
    let stderr = text(&out.stderr);
    // Kubernetes ended the task at its deadline, long before the jobs would have ended, and kb said why.
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(
        took >= Duration::from_secs(18) && took < Duration::from_secs(80),
        "took {took:?}: {stderr}"
    );
    assert!(
        stderr.contains(
            "reached its max runtime of 20s (--max-runtime): Kubernetes stopped its pods"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("kb: error: task ") && stderr.contains("; 0 jobs done, 4 did not finish"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: give the task more time (`--max-runtime`)"),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), "", "no job ran to its end");
    // The jobs that were cut off are in the joblog with Exitval -1, so --resume-failed runs them again.
    let log = std::fs::read_to_string(&joblog).unwrap();
    let cut: Vec<&str> = log.lines().skip(1).collect();
    assert!(!cut.is_empty(), "no attempt logged:\n{log}");
    for line in &cut {
        assert_eq!(line.split('\t').nth(6), Some("-1"), "{log}");
    }
    ns.assert_clean();
}

/// Waits for `child` up to `secs`, then kills it and fails with what it printed.
/// The two API server tests stop the API server, which the node's status updates and every other test's
/// port-forwards need: they run alone (a write lock), the others together (read locks).
static CLUSTER: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    CLUSTER.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    CLUSTER.write().unwrap_or_else(|e| e.into_inner())
}

/// After an API server outage the node controller may mark the node unreachable and taint it (evicting pods and
/// refusing new ones) until the kubelet's status gets through again: waits until the node has been Ready and
/// untainted for 10 s in a row, so that the tests after this one find a working cluster.
fn wait_node_healthy(ns: &TestNs) {
    use k8s_openapi::api::core::v1::Node;
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

fn wait_or_kill(mut child: std::process::Child, secs: u64, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not end within {secs} s; stderr:\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().unwrap()
}

#[test]
#[ignore = "needs cluster"]
fn a_run_survives_a_restart_of_the_api_server() {
    let _cluster = exclusive();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    let joblog = dir.path().join("run.log");
    let joblog_arg = joblog.display().to_string();
    let mut args = vec![
        "parallel",
        "--pods",
        "2",
        "--joblog",
        &joblog_arg,
        "--",
        "sleep 2; echo {}",
        ":::",
    ];
    let inputs: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    args.extend(inputs.iter().map(String::as_str));
    let errors = dir.path().join("stderr.txt");
    let client = ns
        .kb(dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    let client_stderr = || std::fs::read_to_string(&errors).unwrap_or_default();
    // Once both pods run jobs, stop the API server for 8 s: every port-forward (and so every SSH connection) dies.
    let start = Instant::now();
    while status_rows(&ns, dir.path())
        .first()
        .is_none_or(|r| r["status"] != "RUNNING")
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the task never ran; kb said:\n{}",
            client_stderr()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(3));
    let restart = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cluster/restart-apiserver"
    ))
    .arg("8")
    .output()
    .unwrap();
    assert!(
        restart.status.success(),
        "restart-apiserver failed: {}",
        text(&restart.stderr)
    );
    let out = wait_or_kill(client, 240, "kb parallel");
    let stderr = client_stderr();
    assert!(out.status.success(), "{stderr}");
    // kb reconnected to its pods through the new API server, and every job ran to its end exactly once.
    assert!(stderr.contains("rejoined the run"), "{stderr}");
    let mut got: Vec<u32> = text(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (1..=20).collect::<Vec<u32>>(), "{stderr}");
    // Jobs cut off by the restart are in the joblog twice: Exitval -1, then 0.
    let log = std::fs::read_to_string(&joblog).unwrap();
    let exitvals: Vec<&str> = log
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(6))
        .collect();
    assert_eq!(exitvals.iter().filter(|v| **v == "0").count(), 20, "{log}");
    assert!(exitvals.iter().all(|v| *v == "0" || *v == "-1"), "{log}");
    // kb deleted everything; after a restart of the API server the controller-manager can take a minute or more
    // to resync and drop the Job's finalizers from the deleted pods.
    ns.assert_clean_within(180);
    wait_node_healthy(&ns);
}

#[test]
#[ignore = "needs cluster"]
fn a_run_stops_with_a_clear_error_when_the_api_server_stays_away() {
    let _cluster = exclusive();
    let ns = TestNs::new();
    let dir = tempfile::tempdir().unwrap();
    let client = ns
        .kb(
            dir.path(),
            &[
                "parallel",
                "--pods",
                "1",
                "--",
                "sleep 60; echo {}",
                ":::",
                "1",
                "2",
            ],
        )
        .env("KB_API_RETRY", "10")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&ns, dir.path(), 1);
    std::thread::sleep(Duration::from_secs(2));
    let id = status_rows(&ns, dir.path())[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The API server stays away longer than kb waits for it (KB_API_RETRY=10).
    let restart = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cluster/restart-apiserver"
    ))
    .arg("30")
    .output()
    .unwrap();
    assert!(
        restart.status.success(),
        "restart-apiserver failed: {}",
        text(&restart.stderr)
    );
    let out = wait_or_kill(client, 120, "kb parallel");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("does not answer; retrying (up to 10 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "kb: error: lost the Kubernetes API server at `https://127.0.0.1:6443/`: kb could not reconnect to \
             the pods of task {id} for 10 s; 0 jobs done, 1 did not finish"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("could not remove task {id}; run `kb finish {id}`")),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check that the cluster is up"),
        "{stderr}"
    );
    // kb could not remove the task with no API server and said how to; once it is back, `kb finish` does.
    let finish = ns.kb(dir.path(), &["finish", &id]).output().unwrap();
    assert!(finish.status.success(), "{}", text(&finish.stderr));
    assert!(
        text(&finish.stderr).contains(&format!("finished task `{id}`")),
        "{}",
        text(&finish.stderr)
    );
    ns.assert_clean_within(180);
    wait_node_healthy(&ns);
}

/// Applies what `kb cluster-setup` makes for the test namespace (ServiceAccount, Role, RoleBinding).
fn apply_cluster_setup(ns: &TestNs) {
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

#[test]
#[ignore = "needs cluster"]
fn an_async_run_goes_on_without_its_client_and_kb_logs_returns_its_status() {
    let _cluster = shared();
    let ns = TestNs::new();
    apply_cluster_setup(&ns);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "from-the-laptop\n").unwrap();
    let start = Instant::now();
    let out = ns
        .kb(
            dir.path(),
            &[
                "parallel",
                "--pods",
                "2",
                "--async",
                "--",
                "sleep 3; test {} != b && echo out-{} $(cat data.txt)",
                ":::",
                "a",
                "b",
                "c",
            ],
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The client returns once the task is handed over, before any job could have ended.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let id = text(&out.stdout).trim().to_string();
    assert!(
        stderr.contains(&format!("kb: task {id} runs on its own (--async)")),
        "{stderr}"
    );
    // With the client gone, the run goes on; `kb logs -f` follows it and exits with GNU parallel's status (1 failed).
    let logs = ns
        .kb(dir.path(), &["logs", &id, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = wait_or_kill(logs, 240, "kb logs -f");
    let output = text(&logs.stdout);
    assert_eq!(
        logs.status.code(),
        Some(1),
        "{output}\n{}",
        text(&logs.stderr)
    );
    assert!(output.contains("out-a from-the-laptop\n"), "{output}");
    assert!(output.contains("out-c from-the-laptop\n"), "{output}");
    assert!(!output.contains("out-b"), "{output}");
    // `kb status` shows the recorded status; the worker pods are gone, the coordinator's log is kept.
    let rows = status_rows(&ns, dir.path());
    assert_eq!(rows[0]["status"], "EXITED(1)", "{rows:?}");
    assert_eq!(rows[0]["exit_status"], 1, "{rows:?}");
    assert_eq!(rows[0]["progress"], "3/3", "{rows:?}");
    let start = Instant::now();
    loop {
        let pods: Vec<String> = ns
            .leftovers()
            .into_iter()
            .filter(|n| n.starts_with("pod/") && !n.ends_with("-coordinator"))
            .collect();
        if pods.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "worker pods still run after the end: {pods:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let again = ns.kb(dir.path(), &["logs", &id]).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("out-c from-the-laptop"));
    let finish = ns.kb(dir.path(), &["finish", &id]).output().unwrap();
    assert!(finish.status.success(), "{}", text(&finish.stderr));
    ns.assert_clean();
}
