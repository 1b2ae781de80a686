//! A job's processes end with it: a signal reaches its whole process group, giving up on it kills the group,
//! closing the connection or dropping the exec kills the agent's jobs, a killed server or a silent peer is noticed,
//! and a terminated agent takes its jobs with it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kb::model::{JobExit, JobSignal, Stream};
use kb::ssh::{Connection, ExecError};
use tokio::sync::mpsc;

use crate::support::Agent;
use crate::support::ssh;
use crate::{both, connect};

/// True while `pid` runs (a zombie, dead but not yet reaped, counts as gone; see [`zombies_of`]).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The zombie children of `parent`: processes it has not reaped.
fn zombies_of(parent: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str()) {
            found.push(stat);
        }
    }
    found
}

/// Fails when `parent` still has unreaped children 2 s from now.
async fn assert_no_zombies(parent: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !zombies_of(parent).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        zombies_of(parent),
        Vec::<String>::new(),
        "zombie children of {parent}"
    );
}

/// Runs `command` as kb does on `server`: plainly on kb's agent, wrapped by `guard_command` on OpenSSH's sshd.
async fn exec_as_kb(
    name: &str,
    conn: &Connection,
    command: &str,
    out: mpsc::Sender<(Stream, Bytes)>,
    signals: mpsc::UnboundedReceiver<JobSignal>,
) -> Result<JobExit, ExecError> {
    if name == "sshd" {
        conn.exec_guarded(&kb::ssh::guard_command(command), out, signals)
            .await
    } else {
        conn.exec(command, out, signals).await
    }
}

async fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_kills_the_job_process_group() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let (tx, mut rx) = mpsc::channel(64);
        let (signals_tx, signals) = mpsc::unbounded_channel();
        let command = "sleep 300 & echo $!; sleep 300; echo not reached";
        let exec = exec_as_kb(name, &conn, command, tx, signals);
        let watcher = async {
            let (_, first) = rx.recv().await.expect("the grandchild's pid");
            let grandchild: i32 = String::from_utf8_lossy(&first)
                .trim()
                .parse()
                .expect("a pid");
            assert!(alive(grandchild), "{name}");
            signals_tx.send(JobSignal::Term).expect("send TERM");
            let mut rest = String::new();
            while let Some((_, data)) = rx.recv().await {
                rest.push_str(&String::from_utf8_lossy(&data));
            }
            (grandchild, rest)
        };
        let (exit, (grandchild, rest)) = tokio::join!(exec, watcher);
        assert_eq!(exit.unwrap(), JobExit::Signal(libc::SIGTERM), "{name}");
        assert_eq!(rest, "", "{name}");
        assert!(
            wait_gone(grandchild, Duration::from_secs(5)).await,
            "{name}: background child {grandchild} still running"
        );
        if name == "agent" {
            assert_no_zombies(server.pid).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_on_a_job_kills_its_process_group() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let (tx, mut rx) = mpsc::channel(64);
        let (signals_tx, signals) = mpsc::unbounded_channel();
        // The job ignores SIGTERM, so it takes SIGKILL to stop it.
        let command = "trap '' TERM; sleep 300 & echo $!; sh -c 'echo $$; exec sleep 300' & wait";
        let exec = exec_as_kb(name, &conn, command, tx, signals);
        let watcher = async {
            let mut text = String::new();
            while text.lines().count() < 2 {
                let (_, data) = rx.recv().await.expect("two pids");
                text.push_str(&String::from_utf8_lossy(&data));
            }
            drop(signals_tx);
            while rx.recv().await.is_some() {}
            text.lines()
                .map(|l| l.trim().parse::<i32>().expect("a pid"))
                .collect::<Vec<_>>()
        };
        let (exit, pids) = tokio::join!(exec, watcher);
        assert!(
            exit.is_err() || exit.as_ref().is_ok_and(|e| !e.success()),
            "{name}: {exit:?}"
        );
        for pid in pids {
            assert!(
                wait_gone(pid, Duration::from_secs(6)).await,
                "{name}: process {pid} survived the channel close"
            );
        }
        if name == "agent" {
            assert_no_zombies(server.pid).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_kills_the_agent_jobs() {
    let server = Agent::start();
    let conn = connect(&server).await;
    let r = ssh::exec(&conn, "true").await;
    assert!(r.exit.is_ok());
    let (tx, mut rx) = mpsc::channel(64);
    let (_signals_tx, signals) = mpsc::unbounded_channel();
    let exec = conn.exec("echo $$; sleep 300", tx, signals);
    let watcher = async {
        let (_, first) = rx.recv().await.expect("the pid");
        let pid: i32 = String::from_utf8_lossy(&first)
            .trim()
            .parse()
            .expect("a pid");
        conn.close().await;
        pid
    };
    let (exit, pid) = tokio::join!(exec, watcher);
    assert!(matches!(exit, Err(ExecError::Lost(_))), "{exit:?}");
    assert!(
        wait_gone(pid, Duration::from_secs(6)).await,
        "process {pid} survived the connection"
    );
    assert_no_zombies(server.pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_exec_is_lost() {
    for (name, mut server) in both() {
        let conn = connect(&server).await;
        let (tx, rx) = mpsc::channel(64);
        let (_signals_tx, signals) = mpsc::unbounded_channel();
        let exec = conn.exec("echo started; sleep 5", tx, signals);
        let killer = async {
            // Kill the server once the command has surely started.
            let mut rx = rx;
            let (_, first) = rx.recv().await.expect("output before the kill");
            server.kill();
            while rx.recv().await.is_some() {}
            String::from_utf8_lossy(&first).into_owned()
        };
        let (exit, stdout) = tokio::join!(exec, killer);
        assert_eq!(stdout, "started\n", "{name}");
        assert!(matches!(exit, Err(ExecError::Lost(_))), "{name}: {exit:?}");
        assert!(conn.is_closed(), "{name}");
        let r = ssh::exec(&conn, "true").await;
        assert!(
            matches!(r.exit, Err(ExecError::NotStarted(_))),
            "{name}: {:?}",
            r.exit
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_exec_kills_the_agent_job() {
    let server = Agent::start();
    let conn = connect(&server).await;
    let pid_file = server.dir().join("pid");
    let (tx, _rx) = mpsc::channel(64);
    let (_signals_tx, signals) = mpsc::unbounded_channel();
    let command = format!("echo $$ > {}; exec sleep 300", pid_file.display());
    let exec = conn.exec(&command, tx, signals);
    let timed_out = tokio::time::timeout(Duration::from_secs(3), exec).await;
    assert!(timed_out.is_err(), "{timed_out:?}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(6)).await,
        "process {pid} survived the dropped exec"
    );
    // The connection is still good for more jobs.
    assert_eq!(ssh::exec(&conn, "echo ok").await.stdout, "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_detected_by_keepalives() {
    let server = Agent::start();
    let conn = connect(&server).await;
    let (tx, mut rx) = mpsc::channel(64);
    let (_signals_tx, signals) = mpsc::unbounded_channel();
    let exec = conn.exec("echo started; sleep 120", tx, signals);
    let agent = nix::unistd::Pid::from_raw(server.pid as i32);
    let freezer = async {
        rx.recv().await.expect("output before freezing the agent");
        // A stopped agent keeps the TCP connection open but answers nothing, like a vanished host.
        nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGSTOP).unwrap();
        Instant::now()
    };
    let (exit, frozen_at) = tokio::join!(exec, freezer);
    let detected_after = frozen_at.elapsed();
    let _ = nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGCONT);
    assert!(matches!(exit, Err(ExecError::Lost(_))), "{exit:?}");
    assert!(
        detected_after < Duration::from_secs(25),
        "took {detected_after:?}"
    );
    assert!(conn.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_kills_its_jobs_when_terminated() {
    let server = Agent::start();
    let conn = connect(&server).await;
    let (tx, mut rx) = mpsc::channel(64);
    let (_signals_tx, signals) = mpsc::unbounded_channel();
    let exec = conn.exec("echo $$; sleep 300", tx, signals);
    let terminator = async {
        let (_, first) = rx.recv().await.expect("the pid");
        let pid: i32 = String::from_utf8_lossy(&first)
            .trim()
            .parse()
            .expect("a pid");
        let agent = nix::unistd::Pid::from_raw(server.pid as i32);
        nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGTERM).unwrap();
        pid
    };
    let (exit, pid) = tokio::join!(exec, terminator);
    assert!(matches!(exit, Err(ExecError::Lost(_))), "{exit:?}");
    assert!(
        wait_gone(pid, Duration::from_secs(5)).await,
        "job {pid} outlived the agent"
    );
    assert!(
        wait_gone(server.pid as i32, Duration::from_secs(5)).await,
        "the agent did not exit"
    );
}
