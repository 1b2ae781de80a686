//! How long a task lives: pods of a SIGKILLed client end themselves after the orphan timeout (and are not
//! replaced), the limits a task announces and its Job enforces, and a max runtime that stops a live client's task.

use std::time::{Duration, Instant};

use crate::support::cluster::{TestNs, shared};
use crate::support::process::{CommandExt as _, wait_until};
use crate::support::task::{agent_command, wait_for_job, wait_two_pods_ready};

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
        .stdin(std::process::Stdio::null())
        .start();
    let id = wait_two_pods_ready(&ns, dir.path())["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Give the client time to join both pods, then kill it without any cleanup.
    std::thread::sleep(Duration::from_secs(2));
    client.kill();
    let killed = Instant::now();
    let pods = || -> Vec<String> {
        ns.leftovers()
            .into_iter()
            .filter(|n| n.starts_with("pod/"))
            .collect()
    };
    // With nobody acting, the agents notice no client for 10 s, exit, and the Job fails: no pod is left.
    wait_until(Duration::from_secs(90), Duration::from_secs(1), || {
        let left = pods();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("pods of an orphaned task still run: {left:?}"))
        }
    });
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
    let finish = ns.kb(dir.path(), &["finish", &id]).run();
    finish.assert_success();
    ns.assert_clean();
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
        .start();
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
    let out = client.wait(Duration::from_secs(300));
    out.assert_success();
    out.assert_stdout("a\n");
    let line = format!(
        "kb: task {id} in namespace `{}`: its pods end 10m after this client is gone, and after 24h in any case \
         (change with --orphan-timeout, --max-runtime)",
        ns.name
    );
    out.check(
        out.stderr.lines().any(|l| l == line),
        format_args!("wanted the line `{line}` in stderr"),
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
        .start();
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
    let out = client.wait(Duration::from_secs(300));
    out.assert_success();
    out.assert_stderr_contains(
        "its pods do not end when this client is gone, and after 1h30m in any case (change with",
    );
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
        .run();
    let took = start.elapsed();
    // Kubernetes ended the task at its deadline, long before the jobs would have ended, and kb said why.
    out.assert_code(255);
    out.check(
        took >= Duration::from_secs(18) && took < Duration::from_secs(80),
        format_args!("took {took:?}"),
    );
    out.assert_stderr_contains(
        "reached its max runtime of 20s (--max-runtime): Kubernetes stopped its pods",
    );
    out.assert_stderr_contains("kb: error: task ")
        .assert_stderr_contains("; 0 jobs done, 4 did not finish")
        .assert_stderr_contains("hint: give the task more time (`--max-runtime`)");
    out.check(out.stdout.is_empty(), "no job ran to its end");
    // The jobs that were cut off are in the joblog with Exitval -1, so --resume-failed runs them again.
    let log = std::fs::read_to_string(&joblog).unwrap();
    let cut: Vec<&str> = log.lines().skip(1).collect();
    assert!(!cut.is_empty(), "no attempt logged:\n{log}");
    for line in &cut {
        assert_eq!(line.split('\t').nth(6), Some("-1"), "{log}");
    }
    ns.assert_clean();
}
