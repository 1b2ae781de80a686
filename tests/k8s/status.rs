//! `kb status` and `kb finish`: a task that outlives its SIGKILLed client, is shown ORPHANED and removed;
//! `kb finish --orphaned` removing every orphan and nothing alive; an `--async` task followed with `kb logs`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::cluster::{TestNs, shared};
use crate::support::process::{CommandExt as _, Pipe, wait_until};
use crate::support::task::{
    apply_cluster_setup, status_rows, wait_running, wait_status, wait_two_pods_ready,
};

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
        .stdin(Stdio::null())
        .start();
    // Wait for the task to be running, through `kb status -o json`.
    let task = wait_two_pods_ready(&ns, dir.path());
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
    let table = ns.kb(dir.path(), &["status"]).run();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    table.check(
        header
            == [
                "ID", "AGE", "STATUS", "CPU", "MEM", "HEALTH", "PROGRESS", "PWD", "COMMAND",
            ],
        "the table's header",
    );
    table.check(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING") && l.contains("2/2")),
        "a RUNNING row with health 2/2",
    );
    // The client dies without cleaning up: the task stays until `kb finish`.
    client.kill();
    assert!(
        !ns.leftovers().is_empty(),
        "the task should outlive a SIGKILLed client"
    );
    // Its heartbeat stops: `kb status` says ORPHANED once the Lease is 30 s stale.
    wait_status(&ns, dir.path(), "ORPHANED", 90);
    let finish = ns.kb(dir.path(), &["finish", "--orphaned"]).run();
    finish.assert_success();
    finish.assert_stderr_contains(&format!("finished task `{id}`"));
    let again = ns.kb(dir.path(), &["finish", &id]).run();
    again.assert_success();
    again.assert_stderr_contains("has nothing left");
    ns.assert_clean();
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
            .stdin(Stdio::null())
            .start();
        // The task line (notes, about the share for one, may come before it).
        let line = child.wait_for_line(Pipe::Stderr, Duration::from_secs(120), |l| {
            l.starts_with("kb: task ")
        });
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
        client.kill();
    }
    wait_until(Duration::from_secs(90), Duration::from_secs(2), || {
        let rows = status_rows(&ns, dir.path());
        let orphaned = rows.iter().filter(|r| r["status"] == "ORPHANED").count();
        if orphaned == 2 {
            Ok(())
        } else {
            Err(format!("never 2 ORPHANED: {rows:?}"))
        }
    });
    let finish = ns.kb(dir.path(), &["finish", "--orphaned"]).run();
    finish.assert_success();
    for id in &ids {
        finish.assert_stderr_contains(&format!("kb: finished task `{id}` (ORPHANED, age "));
    }
    finish
        .assert_stderr_contains(&format!(
            "kb: finished 2 orphaned tasks in namespace `{}`",
            ns.name
        ))
        .assert_stderr_lacks(&live);
    // Only the live task is left, and it still runs.
    let rows = wait_until(Duration::from_secs(30), Duration::from_secs(1), || {
        let rows = status_rows(&ns, dir.path());
        let left: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
        if left == [live.as_str()] {
            Ok(rows)
        } else {
            Err(format!("orphans not gone: {rows:?}"))
        }
    });
    assert_eq!(rows[0]["status"], "RUNNING", "{rows:?}");
    if !alive.is_running() {
        alive.fail_running("the live client must still run");
    }
    let again = ns.kb(dir.path(), &["finish", "--orphaned"]).run();
    again.assert_success();
    again.assert_stderr_contains("no orphaned task from this machine");
    // The live client ends on Ctrl-C and removes its own task.
    alive.signal(Signal::SIGINT);
    alive.wait(Duration::from_secs(120)).assert_code(130);
    ns.assert_clean();
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
        .run();
    out.assert_success();
    // The client returns once the task is handed over, before any job could have ended.
    out.check(
        start.elapsed() < Duration::from_secs(30),
        format_args!("it took {:?}", start.elapsed()),
    );
    let id = out.stdout.trim().to_string();
    out.assert_stderr_contains(&format!("kb: task {id} runs on its own (--async)"));
    // With the client gone, the run goes on; `kb logs -f` follows it and exits with GNU parallel's status (1 failed).
    let logs = ns
        .kb(dir.path(), &["logs", &id, "-f"])
        .start()
        .wait(Duration::from_secs(240));
    logs.assert_code(1);
    logs.assert_stdout_contains("out-a from-the-laptop\n");
    logs.assert_stdout_contains("out-c from-the-laptop\n");
    logs.assert_stdout_lacks("out-b");
    // `kb status` shows the recorded status; the worker pods are gone, the coordinator's log is kept.
    let rows = status_rows(&ns, dir.path());
    assert_eq!(rows[0]["status"], "EXITED(1)", "{rows:?}");
    assert_eq!(rows[0]["exit_status"], 1, "{rows:?}");
    assert_eq!(rows[0]["progress"], "3/3", "{rows:?}");
    wait_until(Duration::from_secs(60), Duration::from_secs(1), || {
        let pods: Vec<String> = ns
            .leftovers()
            .into_iter()
            .filter(|n| n.starts_with("pod/") && !n.ends_with("-coordinator"))
            .collect();
        if pods.is_empty() {
            Ok(())
        } else {
            Err(format!("worker pods still run after the end: {pods:?}"))
        }
    });
    let again = ns.kb(dir.path(), &["logs", &id]).run();
    again
        .assert_code(1)
        .assert_stdout_contains("out-c from-the-laptop");
    let finish = ns.kb(dir.path(), &["finish", &id]).run();
    finish.assert_success();
    ns.assert_clean();
}
