//! Fault tests of `kb parallel` against real SSH servers on loopback (Debian's sshd and `kb agent`): a server killed
//! mid-run, Ctrl-C, unreachable hosts. They check what happened on the servers, not only what kb printed.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::process::{CommandExt as _, kb_command, wait_until};
use support::{Agent, SshServer, Sshd};

/// A `kb parallel` command with `HOME` holding the known_hosts of `servers` and `--identity` for each client key.
fn kb_parallel(servers: &[&SshServer], home: &Path) -> Command {
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).expect("home/.ssh");
    let known: String = servers
        .iter()
        .map(|s| std::fs::read_to_string(&s.known_hosts).expect("known_hosts"))
        .collect();
    std::fs::write(ssh.join("known_hosts"), known).expect("write known_hosts");
    let mut cmd = kb_command();
    cmd.env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .arg("parallel");
    for s in servers {
        cmd.arg("--identity").arg(&s.client_key);
    }
    cmd
}

/// Processes whose command line contains `marker` (from /proc, so nothing is missed by name truncation).
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !cmdline.contains("kb parallel") && pid != std::process::id()
        {
            found.push(pid);
        }
    }
    found
}

#[track_caller]
fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    wait_until(timeout, Duration::from_millis(50), || {
        ready()
            .then_some(())
            .ok_or_else(|| format!("timed out waiting for {what}"))
    });
}

#[test]
fn server_killed_mid_run_reruns_cut_off_jobs_elsewhere_and_loses_none() {
    let mut doomed = Agent::start();
    let survivor = Agent::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("started");
    let joblog = dir.path().join("joblog");
    let mut cmd = kb_parallel(&[&doomed, &survivor], &dir.path().join("home"));
    let job = format!(
        "echo {{}} >> {}; sleep 1; echo done {{}}",
        started.display()
    );
    let child = cmd
        .args([
            "-j",
            "2",
            "-S",
            &doomed.login,
            "-S",
            &survivor.login,
            "--joblog",
        ])
        .arg(&joblog)
        .arg(job)
        .arg(":::")
        .args((1..=12).map(|i| i.to_string()))
        .start();
    // Kill one server while its first jobs run.
    wait_for("the first jobs to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&started)
            .map(|s| s.lines().count() >= 4)
            .unwrap_or(false)
    });
    doomed.kill();
    let out = child.wait(Duration::from_secs(120));
    // The loss is reported.
    out.assert_code(0).assert_stderr_contains("lost worker");
    // Every job printed its output exactly once.
    let mut done: Vec<u32> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("done ")?.parse().ok())
        .collect();
    done.sort_unstable();
    out.check(
        done == (1..=12).collect::<Vec<_>>(),
        "every job's output once",
    );
    // Jobs started at most twice, and only the cut-off ones (logged with Exitval -1 on the killed host) twice.
    let mut starts: HashMap<u32, u32> = HashMap::new();
    for line in std::fs::read_to_string(&started).expect("started").lines() {
        *starts.entry(line.parse().expect("seq")).or_default() += 1;
    }
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    let cut_off: Vec<u32> = log
        .lines()
        .skip(1)
        .filter(|l| l.split('\t').nth(6) == Some("-1"))
        .map(|l| {
            l.split('\t')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("seq")
        })
        .collect();
    assert!(
        !cut_off.is_empty(),
        "some jobs were running on the killed server:\n{log}"
    );
    for (seq, n) in &starts {
        let expected = if cut_off.contains(seq) { 2 } else { 1 };
        assert_eq!(
            *n, expected,
            "job {seq} started {n} times; cut off: {cut_off:?}\n{log}"
        );
    }
    for seq in &cut_off {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(&format!("{seq}\t")))
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "both attempts of job {seq} are in the joblog:\n{log}"
        );
        assert!(
            lines[1].contains(&format!("127.0.0.1:{}", survivor.port)),
            "re-run on the other server: {log}"
        );
    }
}

fn interrupt_leaves_no_remote_process(server: &SshServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("kbtest{}x{}", std::process::id(), server.port);
    let mut cmd = kb_parallel(&[server], &dir.path().join("home"));
    // A job with a child and a grandchild, so killing only the shell would leave processes behind.
    let job =
        format!("sh -c 'sleep 300 & sleep 301; true {marker}-inner' {marker}; echo never {{}}");
    let child = cmd
        .args(["-j", "3", "--grace", "2", "-S", &server.login])
        .arg(job)
        .args([":::", "1", "2", "3", "4", "5"])
        .start();
    wait_for("three jobs on the server", Duration::from_secs(20), || {
        processes_with(&marker).len() >= 3
    });
    // Every process a job started (the sleeps included) is in the job's process group.
    let groups: Vec<i32> = processes_with(&marker)
        .into_iter()
        .filter_map(pgid_of)
        .collect();
    assert!(!groups.is_empty(), "the jobs' process groups are known");
    child.signal(Signal::SIGINT);
    let started = Instant::now();
    let out = child.wait(Duration::from_secs(60));
    out.check(
        started.elapsed() < Duration::from_secs(10),
        format_args!("kb took {:?} to stop", started.elapsed()),
    );
    out.assert_code(130).assert_stdout_lacks("never");
    // The sleeps were children of the job's shell: nothing may be left in the jobs' process groups.
    wait_for("the remote jobs to end", Duration::from_secs(5), || {
        processes_with(&marker).is_empty() && processes_in_groups(&groups).is_empty()
    });
}

/// The process group of `pid`, from /proc (field 5 of `stat`, counted after the parenthesised command name).
fn pgid_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Live processes (not zombies) in any of `groups`.
fn processes_in_groups(groups: &[i32]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let live = fields.first().is_some_and(|state| *state != "Z");
        if live
            && fields
                .get(2)
                .and_then(|g| g.parse().ok())
                .is_some_and(|g: i32| groups.contains(&g))
        {
            found.push(pid);
        }
    }
    found
}

#[test]
fn interrupt_leaves_no_process_on_kb_agent() {
    interrupt_leaves_no_remote_process(&Agent::start());
}

#[test]
fn interrupt_leaves_no_process_on_openssh_sshd() {
    interrupt_leaves_no_remote_process(&Sshd::start());
}

#[test]
fn unreachable_host_is_dropped_with_a_warning_and_the_run_goes_on() {
    let server = Agent::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = kb_parallel(&[&server], &dir.path().join("home"))
        .args([
            "-S",
            &server.login,
            "-S",
            &format!("127.0.0.1:{closed}"),
            "echo",
            ":::",
            "a",
            "b",
        ])
        .run();
    out.assert_code(0);
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    out.check(lines == ["a", "b"], "the output of both jobs")
        .assert_stderr_contains(&format!("127.0.0.1:{closed}"));
}

#[test]
fn no_reachable_host_fails_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    kb_parallel(&[], &dir.path().join("home"))
        .args(["-S", &format!("127.0.0.1:{closed}"), "echo", ":::", "a"])
        .run()
        .assert_code(255)
        .assert_stderr_contains("no worker left")
        // The reason names the host.
        .assert_stderr_contains(&closed.to_string());
}

#[test]
fn unknown_host_key_is_refused_with_a_hint() {
    let server = Agent::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let mut cmd = kb_parallel(&[&server], &home);
    std::fs::write(home.join(".ssh/known_hosts"), "").expect("empty known_hosts");
    let out = cmd.args(["-S", &server.login, "echo", ":::", "a"]).run();
    out.assert_code(255).check(
        out.stderr.contains("known_hosts") || out.stderr.contains("host key"),
        "expected `known_hosts` or `host key` in stderr",
    );
}

#[test]
fn second_interrupt_kills_at_once_jobs_that_ignore_sigterm() {
    let server = Agent::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("kbstubborn{}", std::process::id());
    let mut cmd = kb_parallel(&[&server], &dir.path().join("home"));
    // The job survives SIGTERM; only the second Ctrl-C (SIGKILL, before the 60 s grace) can stop it quickly.
    let job =
        format!("trap '' TERM; sh -c 'trap \"\" TERM; sleep 300; true {marker}'; echo never {{}}");
    let child = cmd
        .args(["-j", "2", "--grace", "60", "-S", &server.login])
        .arg(job)
        .args([":::", "1", "2"])
        .start();
    // Each job is two processes with the marker: the job's shell and the inner `sh -c`.
    wait_for("two stubborn jobs", Duration::from_secs(20), || {
        processes_with(&marker).len() >= 4
    });
    child.signal(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    if processes_with(&marker).len() != 4 {
        child.fail_running("SIGTERM is ignored, so the jobs still run during the grace period");
    }
    child.signal(Signal::SIGINT);
    let started = Instant::now();
    let out = child.wait(Duration::from_secs(60));
    out.check(
        started.elapsed() < Duration::from_secs(10),
        format_args!("kb took {:?} after the second Ctrl-C", started.elapsed()),
    );
    out.assert_code(130);
    wait_for(
        "the stubborn jobs to be killed",
        Duration::from_secs(5),
        || processes_with(&marker).is_empty(),
    );
}

/// SIGHUP (the terminal went away): as GNU parallel, no new job starts, the running ones finish and print, and the
/// exit status counts failed jobs only. GNU parallel itself is run the same way beside kb as the reference.
fn hangup_lets_running_jobs_finish(
    program: &str,
    remote: Option<&SshServer>,
) -> support::process::Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = match remote {
        Some(server) => {
            let mut cmd = kb_parallel(&[server], &dir.path().join("home"));
            cmd.args(["-S", &server.login]);
            cmd
        }
        None if program == "kb" => {
            let mut cmd = kb_command();
            cmd.env("HOME", dir.path()).arg("parallel");
            cmd
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.env("HOME", dir.path()).arg("--will-cite");
            cmd
        }
    };
    // Each job leaves a file as it starts (the jobs run in the same directory, locally or on the loopback host).
    let child = cmd
        .current_dir(dir.path())
        .args(["-j", "2", "-k"])
        .arg(format!(
            "touch {}/{{}}.started; sleep 1.5; echo {{}}",
            dir.path().display()
        ))
        .args([":::", "1", "2", "3", "4", "5"])
        .start();
    let started = || {
        std::fs::read_dir(dir.path())
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".started"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for("two jobs running", Duration::from_secs(20), || {
        started() >= 2
    });
    child.signal(Signal::SIGHUP);
    let out = child.wait(Duration::from_secs(30));
    out.assert_code(0);
    let stdout: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    out.check(
        stdout == ["1", "2"],
        "the two running jobs finished and printed, no other started",
    );
    out.check(
        out.stderr
            .contains("SIGHUP received. No new jobs will be started.")
            && out
                .stderr
                .contains("Waiting for these 2 jobs to finish. Send SIGTERM to stop now."),
        "GNU parallel's notice",
    );
    out
}

#[test]
fn hangup_lets_running_jobs_finish_as_gnu_parallel_does() {
    hangup_lets_running_jobs_finish("parallel", None);
    hangup_lets_running_jobs_finish("kb", None);
}

#[test]
fn hangup_lets_running_remote_jobs_finish() {
    let server = Agent::start();
    hangup_lets_running_jobs_finish("kb", Some(&server));
}
