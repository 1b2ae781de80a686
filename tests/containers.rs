//! `kb parallel --containers N` on the real Docker engine: the same output and exit status as local jobs, jobs that
//! really run in containers sharing the working directory, bad input refused before any container exists, and no
//! container left after a run, a failed run, an interrupt, or a client killed outright.
//!
//! Needs a running Docker engine (`tests/cluster/up` starts it) with the test image (`KB_TEST_IMAGE`, default
//! `127.0.0.1:5000/kb/debian:bookworm`, which `tests/cluster/up` imports), and a static kb (`KB_STATIC_BIN`, else
//! `scripts/build-static`). A missing component is a failure, never a skip.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod containers_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use containers_support::*;

/// Jobs with output on both streams and two failures (3 and 6), in input order (`-k`).
const JOBS: &[&str] = &[
    "-k",
    "--",
    "echo out {}; echo err {} >&2; test $(( {} % 3 )) -ne 0",
    ":::",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
];

#[test]
#[ignore = "needs docker"]
fn output_and_exit_status_match_local_jobs() {
    docker_ready();
    let dir = workdir();
    let mut local_args = vec!["--local-procs", "4"];
    local_args.extend(JOBS);
    let local = Run::of(kb_parallel(dir.path(), &local_args));
    local.assert_status(2);
    let mut args = vec!["--containers", "2", "-j", "2"];
    args.extend(JOBS);
    let remote = Run::of(kb_parallel(dir.path(), &args));
    let _guard = TaskGuard(remote.task_id());
    remote.assert_status(2);
    assert_eq!(remote.stdout(), local.stdout(), "{}", remote.described);
    assert_eq!(remote.stdout().lines().count(), 7);
    assert!(remote.stderr().contains("err 5"), "{}", remote.described);
    assert_no_containers(&remote.task_id(), "after a run with failed jobs");
}

#[test]
#[ignore = "needs docker"]
fn jobs_run_in_two_containers_at_the_working_directory() {
    docker_ready();
    let dir = workdir();
    let job = "sleep 1; test -f /.dockerenv && echo \"$(hostname) $(pwd)\" {}";
    let run = Run::of(kb_parallel(
        dir.path(),
        &[
            "--containers",
            "2",
            "-j",
            "1",
            "--",
            job,
            ":::",
            "1",
            "2",
            "3",
            "4",
        ],
    ));
    let id = run.task_id();
    let _guard = TaskGuard(id.clone());
    run.assert_status(0);
    let here = dir.path().display().to_string();
    let mut hosts = BTreeSet::new();
    for line in run.stdout().lines() {
        let (host, rest) = line.split_once(' ').unwrap();
        let (pwd, _seq) = rest.rsplit_once(' ').unwrap();
        assert_eq!(pwd, here, "{}", run.described);
        // Docker names a container's host after the first 12 hex digits of its id.
        assert!(
            host.len() == 12 && host.chars().all(|c| c.is_ascii_hexdigit()),
            "`{host}` is not a container id\n{}",
            run.described
        );
        hosts.insert(host.to_string());
    }
    assert_eq!(hosts.len(), 2, "{}", run.described);
    assert_no_containers(&id, "after a successful run");
}

#[test]
#[ignore = "needs docker"]
fn files_are_shared_both_ways() {
    docker_ready();
    let dir = workdir();
    std::fs::write(dir.path().join("in.txt"), "from here\n").unwrap();
    let run = Run::of(kb_parallel(
        dir.path(),
        &[
            "--containers",
            "1",
            "--",
            "cat in.txt > out-{}.txt; echo {} >> out-{}.txt",
            ":::",
            "a",
            "b",
        ],
    ));
    let _guard = TaskGuard(run.task_id());
    run.assert_status(0);
    for name in ["a", "b"] {
        let text = std::fs::read_to_string(dir.path().join(format!("out-{name}.txt"))).unwrap();
        assert_eq!(text, format!("from here\n{name}\n"));
    }
}

#[test]
#[ignore = "needs docker"]
fn bad_input_fails_before_any_container_exists() {
    docker_ready();
    let dir = workdir();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Run::of(kb_parallel(
        dir.path(),
        &["--containers", "0", "echo", ":::", "1"],
    ))
    .assert_status(255)
    .assert_stderr_has("--containers must be at least 1")
    .assert_stderr_has("hint: give --containers N with N >= 1");
    let missing = "kb-test/no-such-image:never";
    Run::of(kb_parallel(
        dir.path(),
        &["--containers", "1", "--image", missing, "echo", ":::", "1"],
    ))
    .assert_status(255)
    .assert_stderr_has(&format!(
        "the image `{missing}` is not in the local Docker engine"
    ))
    .assert_stderr_has(&format!("docker pull {missing}"));
    Run::of(kb_parallel(
        dir.path(),
        &["--containers", "1", "--cpu", "100000", "echo", ":::", "1"],
    ))
    .assert_status(255)
    .assert_stderr_has("does not fit a container");
    let created = containers_created_for(dir.path(), since);
    assert!(created.is_empty(), "containers were created: {created}");
}

#[test]
#[ignore = "needs docker"]
fn an_agent_that_cannot_start_is_reported_with_its_output() {
    docker_ready();
    let dir = workdir();
    // A static binary that is not kb (busybox-static, which tests/cluster/up installs): the container prints
    // busybox's complaint and ends at once.
    let mut cmd = kb_parallel(dir.path(), &["--containers", "1", "--", "echo", ":::", "1"]);
    cmd.env("KB_AGENT_BINARY", "/bin/busybox");
    let run = Run::of(cmd);
    let _guard = TaskGuard(run.task_id());
    run.assert_status(255)
        .assert_stderr_has("ended before kb's agent in it answered: kb: applet not found");
    assert_no_containers(&run.task_id(), "after an agent that could not start");
}

#[test]
#[ignore = "needs docker"]
fn an_interrupt_mid_run_removes_every_container() {
    docker_ready();
    let dir = workdir();
    let (mut kb, id, _guard) = start_two_sleepers(dir.path(), &["--cpu", "0.5", "--mem", "64Mi"]);
    // While they run: the limits, the lifetime and the labels, as Docker sees them.
    let format = "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.AutoRemove}} \
                  {{index .Config.Labels \"kb.dev/managed-by\"}} {{index .Config.Labels \"kb.dev/origin\"}}";
    let inspect = docker(&["inspect", "--format", format, &task_containers(&id)[0]]);
    let seen = String::from_utf8_lossy(&inspect.stdout);
    let fields: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(
        fields[..4],
        ["500000000", "67108864", "true", "kb"],
        "{seen}"
    );
    // The origin is this machine's name, as pods have it (`kb status` filters both the same way).
    assert!(
        !fields[4].is_empty() && !fields[4].contains('@'),
        "origin is not the host's name: {seen}"
    );
    kb.signal(nix::sys::signal::Signal::SIGINT);
    let status = kb.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "stderr: {:?}", kb.seen);
    assert_no_containers(&id, "after SIGINT");
    let keys = std::env::temp_dir()
        .join(format!("kb-{}", nix::unistd::getuid()))
        .join(&id);
    assert!(!keys.exists(), "the task's keys are left in {keys:?}");
}

#[test]
#[ignore = "needs docker"]
fn an_interrupt_while_creating_removes_what_was_made() {
    docker_ready();
    let dir = workdir();
    let mut kb = Background::spawn(kb_parallel(
        dir.path(),
        &["--containers", "4", "--", "sleep 60", ":::", "1"],
    ));
    // SIGINT as soon as the first container exists, while the others are being made or started.
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers_in(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "no container was created");
        std::thread::sleep(Duration::from_millis(20));
    }
    kb.signal(nix::sys::signal::Signal::SIGINT);
    let status = kb.wait(Duration::from_secs(30));
    let left = containers_in(dir.path());
    for id in &left {
        let _ = docker(&["rm", "-f", id]);
    }
    assert_eq!(status.code(), Some(130), "stderr: {:?}", kb.seen);
    assert!(left.is_empty(), "containers left after SIGINT: {left:?}");
}

#[test]
#[ignore = "needs docker"]
fn containers_of_a_killed_client_end_by_themselves() {
    docker_ready();
    let dir = workdir();
    let (mut kb, id, _guard) = start_two_sleepers(dir.path(), &["--orphan-timeout", "2s"]);
    kb.signal(nix::sys::signal::Signal::SIGKILL);
    kb.wait(Duration::from_secs(10));
    assert_eq!(task_containers(&id).len(), 2, "the containers went with kb");
    // A client killed outright cannot delete its keys.
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir()
            .join(format!("kb-{}", nix::unistd::getuid()))
            .join(&id),
    );
    // 2 s without a client, then the agent exits and Docker removes the container (auto_remove).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !task_containers(&id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the containers of task {id} did not end within 30 s of their client's death"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "needs docker"]
fn status_lists_a_running_container_task_and_finish_removes_it() {
    docker_ready();
    let dir = workdir();
    let (_kb, id, _guard) = start_two_sleepers(dir.path(), &["--cpu", "0.5", "--mem", "64Mi"]);
    let row = wait_status_row(dir.path(), &id, "RUNNING");
    assert_eq!(row["backend"], "containers", "{row}");
    assert_eq!(row["health"], "2/2", "{row}");
    assert_eq!(
        (&row["cpu"], &row["mem"]),
        (&"0.5".into(), &"64Mi".into()),
        "{row}"
    );
    assert_eq!(
        row["pwd"],
        dir.path().canonicalize().unwrap().display().to_string()
    );
    assert!(
        row["command"].as_str().unwrap().contains("sleep 60"),
        "{row}"
    );
    assert_eq!(row["progress"], "-", "{row}");
    // The cluster cannot be reached (no kubeconfig): the containers are shown all the same, with a warning.
    let table = Run::of(kb_without_cluster(dir.path(), &["status"]));
    table
        .assert_status(0)
        .assert_stderr_has("kb: warning: no kubeconfig found");
    let header: Vec<String> = table
        .stdout()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(header[..3], ["ID", "BACKEND", "AGE"], "{}", table.described);
    assert!(
        table
            .stdout()
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("containers") && l.contains("RUNNING")),
        "{}",
        table.described
    );
    Run::of(kb_without_cluster(dir.path(), &["finish", &id]))
        .assert_status(0)
        .assert_stderr_has(&format!("kb: finished task `{id}`"));
    assert_no_containers(&id, "after `kb finish`");
    assert!(!key_dir(&id).exists(), "the task's keys are left");
    // Gone from Docker, and the cluster cannot be asked: its error, as `kb finish` gave it before containers.
    Run::of(kb_without_cluster(dir.path(), &["finish", &id]))
        .assert_status(1)
        .assert_stderr_has("no kubeconfig found");
}

#[test]
#[ignore = "needs docker"]
fn a_killed_clients_task_is_orphaned_and_finish_orphaned_removes_it() {
    docker_ready();
    let dir = workdir();
    let (mut kb, id, _guard) = start_two_sleepers(dir.path(), &[]);
    kb.signal(nix::sys::signal::Signal::SIGKILL);
    kb.wait(Duration::from_secs(10));
    // The containers outlive the client (for the orphan timeout, 10 minutes): `kb status` says why they are there.
    let row = wait_status_row(dir.path(), &id, "ORPHANED");
    assert_eq!(row["health"], "2/2", "{row}");
    assert!(
        key_dir(&id).exists(),
        "a killed client cannot remove its keys"
    );
    let finish = Run::of(kb_without_cluster(dir.path(), &["finish", "--orphaned"]));
    finish
        .assert_status(0)
        .assert_stderr_has(&format!("kb: finished task `{id}` (ORPHANED, age "))
        .assert_stderr_has("2/2 containers running")
        .assert_stderr_has("orphaned task")
        .assert_stderr_has("in the local Docker engine");
    assert_no_containers(&id, "after `kb finish --orphaned`");
    assert!(!key_dir(&id).exists(), "the task's keys are left");
}

/// No Docker and no cluster: `kb status` reports the cluster's error, as without the container backend.
#[test]
fn status_without_docker_or_cluster_reports_the_cluster() {
    let dir = workdir();
    let mut cmd = kb_without_cluster(dir.path(), &["status"]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
    Run::of(cmd)
        .assert_status(1)
        .assert_stderr_has("no kubeconfig found");
}

/// No Docker needed: these fail before kb contacts the engine.
#[test]
fn bad_input_is_refused_before_docker_is_asked() {
    let dir = workdir();
    let no_docker = |args: &[&str]| {
        let mut cmd = kb_parallel_without_agent(dir.path(), args);
        cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
        cmd
    };
    Run::of(no_docker(&["--containers", "1", "--pods", "1", "echo"]))
        .assert_status(255)
        .assert_stderr_has("cannot be used with");
    Run::of(no_docker(&["--containers", "0", "echo", ":::", "1"]))
        .assert_status(255)
        .assert_stderr_has("--containers must be at least 1");
    // Pod-only flags typed with --containers are refused, not ignored.
    Run::of(no_docker(&[
        "--containers",
        "1",
        "--max-runtime",
        "5m",
        "echo",
        ":::",
        "1",
    ]))
    .assert_status(255)
    .assert_stderr_has("--max-runtime applies to pods (--pods), not to --containers");
    // The kb under test is dynamically linked: without --agent-binary it cannot be the agent.
    Run::of(no_docker(&["--containers", "1", "echo", ":::", "1"]))
        .assert_status(255)
        .assert_stderr_has("cannot be kb's agent in the containers")
        .assert_stderr_has("scripts/build-static");
}
