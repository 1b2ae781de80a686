//! Runs across an outage of the API server: one that comes back in 8 s (kb reconnects, every job runs to its end
//! once) and one that stays away longer than kb waits (kb stops, says so, and `kb finish` cleans up later). Both
//! stop the API server: they hold the cluster alone (`exclusive`) and end only once the node is healthy again.

use std::process::Command;
use std::time::Duration;

use crate::support::cluster::{TestNs, exclusive};
use crate::support::process::{CommandExt as _, Pipe, wait_until};
use crate::support::task::{status_rows, wait_node_healthy, wait_running};

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
    let client = ns.kb(dir.path(), &args).start();
    // Once both pods run jobs, stop the API server for 8 s: every port-forward (and so every SSH connection) dies.
    // The wait allows for pods of the tests before this one still terminating on the single node.
    wait_until(Duration::from_secs(240), Duration::from_secs(1), || {
        let rows = status_rows(&ns, dir.path());
        if rows.first().is_none_or(|r| r["status"] != "RUNNING") {
            Err(format!(
                "the task never ran; kb status said {rows:?}; kb said:\n{}",
                client.so_far(Pipe::Stderr)
            ))
        } else {
            Ok(())
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let restart = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cluster/restart-apiserver"
    ))
    .arg("8")
    .run();
    restart.assert_success();
    let out = client.wait(Duration::from_secs(240));
    out.assert_success();
    // kb reconnected to its pods through the new API server, and every job ran to its end exactly once.
    out.assert_stderr_contains("rejoined the run");
    let mut got: Vec<u32> = out.stdout.lines().map(|l| l.parse().unwrap()).collect();
    got.sort();
    out.check(
        got == (1..=20).collect::<Vec<u32>>(),
        "every job once, to its end",
    );
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
        .start();
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
    .run();
    restart.assert_success();
    let out = client.wait(Duration::from_secs(120));
    out.assert_code(255)
        .assert_stderr_contains("does not answer; retrying (up to 10 s")
        .assert_stderr_contains(&format!(
            "kb: error: lost the Kubernetes API server at `https://127.0.0.1:6443/`: kb could not reconnect to \
             the pods of task {id} for 10 s; 0 jobs done, 1 did not finish"
        ))
        .assert_stderr_contains(&format!(
            "could not remove task {id}; run `kb finish {id}`"
        ));
    out.assert_stderr_contains("hint: check that the cluster is up");
    // kb could not remove the task with no API server and said how to; once it is back, `kb finish` does.
    let finish = ns.kb(dir.path(), &["finish", &id]).run();
    finish.assert_success();
    finish.assert_stderr_contains(&format!("finished task `{id}`"));
    ns.assert_clean_within(180);
    wait_node_healthy(&ns);
}
