//! kb's SSH client against real servers on 127.0.0.1: Debian's OpenSSH sshd and `kb agent`.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use kb::model::{JobExit, JobSignal, Stream};
use kb::ssh::{ClientConfig, Connection, Error, ExecError, SshLogin};
use support::{Agent, SshServer, Sshd};
use tokio::sync::mpsc;

fn config(server: &SshServer) -> ClientConfig {
    ClientConfig {
        identities: vec![server.client_key.clone()],
        pinned_host_keys: Vec::new(),
        known_hosts: vec![server.known_hosts.clone()],
    }
}

fn login(server: &SshServer) -> SshLogin {
    server.login.parse().expect("fixture login parses")
}

async fn connect(server: &SshServer) -> Connection {
    Connection::connect(&login(server), &config(server))
        .await
        .expect("connect")
}

/// Both servers, named for assertion messages.
fn both() -> Vec<(&'static str, SshServer)> {
    vec![("sshd", Sshd::start()), ("agent", Agent::start())]
}

#[derive(Debug)]
struct Run {
    stdout: String,
    stderr: String,
    exit: Result<JobExit, ExecError>,
}

async fn collect(mut rx: mpsc::Receiver<(Stream, Bytes)>) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some((stream, data)) = rx.recv().await {
        match stream {
            Stream::Stdout => out.extend_from_slice(&data),
            Stream::Stderr => err.extend_from_slice(&data),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

async fn run_env(conn: &Connection, command: &str, env: &[(&str, &str)]) -> Run {
    let (tx, rx) = mpsc::channel(64);
    let (_signals_tx, signals) = mpsc::unbounded_channel();
    let (exit, (stdout, stderr)) =
        tokio::join!(conn.exec_with_env(command, env, tx, signals), collect(rx));
    Run {
        stdout,
        stderr,
        exit,
    }
}

async fn run(conn: &Connection, command: &str) -> Run {
    run_env(conn, command, &[]).await
}

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
async fn exec_output_exit_code_and_separate_stderr() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let r = run(
            &conn,
            "echo hello; echo oops >&2; printf 'no newline'; exit 3",
        )
        .await;
        assert_eq!(r.stdout, "hello\nno newline", "{name}");
        assert_eq!(r.stderr, "oops\n", "{name}");
        assert_eq!(r.exit.unwrap(), JobExit::Code(3), "{name}");
        let r = run(&conn, "true").await;
        assert_eq!(r.exit.unwrap(), JobExit::Code(0), "{name}");
        // Jobs read no input: stdin is at its end from the start.
        let r = run(&conn, "cat; echo done").await;
        assert_eq!(r.stdout, "done\n", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_signal_is_reported() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let r = run(&conn, "kill -USR1 $$; sleep 5").await;
        assert_eq!(r.exit.unwrap(), JobExit::Signal(libc::SIGUSR1), "{name}");
        let r = run(&conn, "kill -9 $$").await;
        assert_eq!(r.exit.unwrap(), JobExit::Signal(libc::SIGKILL), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_requests_reach_the_command() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let r = run_env(
            &conn,
            "echo \"[$KB_TEST_VALUE]\"",
            &[("KB_TEST_VALUE", "a b  c")],
        )
        .await;
        assert_eq!(r.stdout, "[a b  c]\n", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_channels_on_one_connection() {
    const JOBS: usize = 200;
    for (name, server) in both() {
        let conn = connect(&server).await;
        let barrier = server.dir().join("barrier");
        std::fs::create_dir(&barrier).unwrap();
        // Each job checks in, then waits (up to 60 s) until all have: they can only all finish if all ran at once.
        let runs = (0..JOBS).map(|i| {
            let conn = &conn;
            let command = format!(
                "cd {dir} && touch {i} && n=0; while [ $(ls | wc -l) -lt {JOBS} ] && [ $n -lt 120 ]; do sleep 0.5; \
                 n=$((n+1)); done; echo job {i} saw $(ls | wc -l)",
                dir = barrier.display()
            );
            async move { (i, run(conn, &command).await) }
        });
        for (i, r) in futures::future::join_all(runs).await {
            assert_eq!(
                r.stdout,
                format!("job {i} saw {JOBS}\n"),
                "{name}: {}",
                r.stderr
            );
            assert_eq!(r.exit.unwrap(), JobExit::Code(0), "{name}");
        }
    }
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
    let r = run(&conn, "true").await;
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
async fn pty_and_window_change_on_the_agent() {
    let server = Agent::start();
    let conn = connect(&server).await;
    let mut channel = conn.open_session().await.expect("channel");
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .expect("pty-req");
    channel
        .exec(
            true,
            "stty size; tty; read line; stty size; echo \"got $line\"",
        )
        .await
        .expect("exec");
    let mut output = String::new();
    let mut resized = false;
    let mut exit = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, channel.wait()).await {
        match msg {
            russh::ChannelMsg::Data { data } => {
                output.push_str(&String::from_utf8_lossy(&data));
                if !resized && output.contains("/dev/pts/") {
                    resized = true;
                    channel
                        .window_change(100, 40, 0, 0)
                        .await
                        .expect("window-change");
                    channel.data(&b"hello\n"[..]).await.expect("stdin");
                }
            }
            russh::ChannelMsg::ExitStatus { exit_status } => exit = Some(exit_status),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"24 80"), "{output:?}");
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("/dev/pts/")),
        "{output:?}"
    );
    assert!(lines.contains(&"40 100"), "{output:?}");
    assert!(lines.contains(&"got hello"), "{output:?}");
    assert_eq!(exit, Some(0), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_key_is_refused() {
    for (name, server) in both() {
        let other = Sshd::start();
        let mut config = config(&server);
        config.identities = vec![other.client_key.clone()];
        let err = Connection::connect(&login(&server), &config)
            .await
            .err()
            .expect("login must fail");
        assert!(matches!(err, Error::AuthRefused { .. }), "{name}: {err:?}");
        assert!(
            err.hint().unwrap_or_default().contains("authorized_keys"),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_unknown_host_key_is_refused() {
    for (name, server) in both() {
        let other = Agent::start();
        // A known_hosts entry for this host with another key: a mismatch.
        let mut config = config(&server);
        config.known_hosts = vec![server.dir().join("other_known_hosts")];
        std::fs::write(
            &config.known_hosts[0],
            format!("[127.0.0.1]:{} {}\n", server.port, other.host_public_key),
        )
        .unwrap();
        let err = Connection::connect(&login(&server), &config)
            .await
            .err()
            .expect("must refuse");
        assert!(
            matches!(err, Error::HostKeyMismatch { .. }),
            "{name}: {err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("[127.0.0.1]:{}", server.port)),
            "{name}: {err}"
        );
        // No entry at all: unknown.
        std::fs::write(&config.known_hosts[0], "").unwrap();
        let err = Connection::connect(&login(&server), &config)
            .await
            .err()
            .expect("must refuse");
        assert!(
            matches!(err, Error::HostKeyUnknown { .. }),
            "{name}: {err:?}"
        );
        assert!(
            err.hint().unwrap_or_default().contains("known_hosts"),
            "{name}"
        );
        // A pinned key wins over known_hosts: the wrong one is refused, the right one accepted.
        config.pinned_host_keys = vec![other.host_public_key.clone()];
        let err = Connection::connect(&login(&server), &config)
            .await
            .err()
            .expect("must refuse");
        assert!(
            matches!(err, Error::HostKeyMismatch { .. }),
            "{name}: {err:?}"
        );
        config.pinned_host_keys = vec![server.host_public_key.clone()];
        Connection::connect(&login(&server), &config)
            .await
            .expect("pinned key accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entry_is_accepted() {
    let server = Sshd::start();
    let status = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&server.known_hosts)
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = std::fs::read_to_string(&server.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    let conn = connect(&server).await;
    assert_eq!(run(&conn, "echo ok").await.stdout, "ok\n");
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
        let r = run(&conn, "true").await;
        assert!(
            matches!(r.exit, Err(ExecError::NotStarted(_))),
            "{name}: {:?}",
            r.exit
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let login: SshLogin = format!("root@127.0.0.1:{port}").parse().unwrap();
    let err = Connection::connect(&login, &ClientConfig::default())
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot reach `127.0.0.1:{port}`"));
    assert!(err.hint().unwrap_or_default().contains("port"));
}

/// Not a benchmark, but it prints the numbers: sequential `true` over one connection (200, or `KB_SSH_EXECS`), then
/// as many with 16 at once. Run with `--nocapture` to see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_execs_are_fast() {
    let count: usize = std::env::var("KB_SSH_EXECS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    for (name, server) in both() {
        let conn = connect(&server).await;
        let started = Instant::now();
        for _ in 0..count {
            let r = run(&conn, "true").await;
            assert_eq!(r.exit.unwrap(), JobExit::Code(0));
        }
        let sequential = started.elapsed();
        let started = Instant::now();
        let mut runs = futures::stream::iter(0..count)
            .map(|_| run(&conn, "true"))
            .buffer_unordered(16);
        while let Some(r) = runs.next().await {
            assert_eq!(r.exit.unwrap(), JobExit::Code(0));
        }
        let concurrent = started.elapsed();
        eprintln!(
            "{name}: {count} sequential `true`: {sequential:?}; {count} with 16 at once: {concurrent:?}"
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
    assert_eq!(run(&conn, "echo ok").await.stdout, "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_stream_runs_ssh_over_a_given_stream() {
    for (name, server) in both() {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        // The label is the name looked up in known_hosts.
        let label = format!("[127.0.0.1]:{}", server.port);
        let conn = Connection::connect_stream(stream, &server.user, &label, &config(&server))
            .await
            .expect("connect over the stream");
        assert_eq!(conn.label(), label);
        assert_eq!(
            run(&conn, "echo over a stream").await.stdout,
            "over a stream\n",
            "{name}"
        );
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let err = Connection::connect_stream(stream, &server.user, "elsewhere", &config(&server))
            .await
            .err()
            .expect("no known_hosts entry for `elsewhere`");
        assert!(
            matches!(err, Error::HostKeyUnknown { .. }),
            "{name}: {err:?}"
        );
    }
}

/// The defaults: the key and known_hosts under `$HOME/.ssh`, no `-i` (through the kb binary, whose environment
/// the test controls).
#[test]
fn kb_uses_the_key_and_known_hosts_under_home() {
    for (name, server) in both() {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kb"))
            .args(["parallel", "-S", &server.login, "echo", "hi", ":::", "x"])
            .env("HOME", &server.home)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run kb");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "hi x\n",
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{name}");
    }
}

/// Reads a bare channel to its end: its stdout as text and its exit status.
async fn drain(channel: &mut russh::Channel<russh::client::Msg>) -> (String, Option<u32>) {
    let (mut output, mut exit) = (String::new(), None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, channel.wait()).await {
        match msg {
            russh::ChannelMsg::Data { data } => output.push_str(&String::from_utf8_lossy(&data)),
            russh::ChannelMsg::ExitStatus { exit_status } => exit = Some(exit_status),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    (output, exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_input_reaches_the_command() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let mut channel = conn.open_session().await.expect("channel");
        channel.exec(true, "cat; echo end").await.expect("exec");
        channel.data(&b"abc "[..]).await.expect("stdin");
        channel.eof().await.expect("eof");
        assert_eq!(
            drain(&mut channel).await,
            ("abc end\n".into(), Some(0)),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_shell_on_the_agent() {
    let server = Agent::start();
    let conn = connect(&server).await;
    let mut channel = conn.open_session().await.expect("channel");
    channel
        .request_pty(true, "xterm", 120, 30, 0, 0, &[])
        .await
        .expect("pty-req");
    channel.request_shell(true).await.expect("shell");
    channel
        .data(&b"stty size; echo term=$TERM; exit 5\n"[..])
        .await
        .expect("stdin");
    let (output, exit) = drain(&mut channel).await;
    assert!(output.contains("30 120"), "{output:?}");
    assert!(output.contains("term=xterm"), "{output:?}");
    assert_eq!(exit, Some(5), "{output:?}");
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

#[test]
fn kb_logs_in_with_a_key_from_ssh_agent() {
    let server = Agent::start();
    let home = server.dir().join("agent-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(&server.known_hosts, home.join(".ssh/known_hosts")).unwrap();
    let socket = server.dir().join("ssh-agent.sock");
    let mut ssh_agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run ssh-agent: install openssh-client");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&server.client_key)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    // No key under HOME and no -i: the key can only come from the agent.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kb"))
        .args([
            "parallel",
            "-S",
            &server.login,
            "echo",
            "via",
            ":::",
            "agent",
        ])
        .env("HOME", &home)
        .env("SSH_AUTH_SOCK", &socket)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = ssh_agent.kill();
    let _ = ssh_agent.wait();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "via agent\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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

/// The fixtures' `ssh -F` config lets OpenSSH's client, and so GNU parallel, use the same servers (kb's agent
/// included: it must serve OpenSSH's client too).
#[test]
fn openssh_client_and_gnu_parallel_reach_both_servers() {
    for (name, server) in both() {
        let ssh = std::process::Command::new("ssh")
            .arg("-F")
            .arg(&server.ssh_config)
            .args(["kbtest", "echo out; echo err >&2; exit 4"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh: install openssh-client");
        assert_eq!(String::from_utf8_lossy(&ssh.stdout), "out\n", "{name}");
        assert_eq!(String::from_utf8_lossy(&ssh.stderr), "err\n", "{name}");
        assert_eq!(ssh.status.code(), Some(4), "{name}");
        // sshd's login variables, which GNU parallel's remote wrapper needs ($SHELL) even when the server's own
        // environment has none.
        let login = std::process::Command::new("ssh")
            .arg("-F")
            .arg(&server.ssh_config)
            .args(["kbtest", "echo \"$SHELL $USER $LOGNAME\""])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh");
        let user = &server.user;
        let login = String::from_utf8_lossy(&login.stdout);
        let fields: Vec<&str> = login.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{name}: {login:?}");
        assert!(fields[0].starts_with('/'), "{name}: SHELL {login:?}");
        assert_eq!(&fields[1..], [user.as_str(), user.as_str()], "{name}");
        let parallel = std::process::Command::new("parallel")
            .arg("--ssh")
            .arg(format!("ssh -F {}", server.ssh_config.display()))
            .args(["-k", "-S", "kbtest", "echo", "hi", ":::", "x", "y"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run GNU parallel: install parallel");
        assert_eq!(
            String::from_utf8_lossy(&parallel.stdout),
            "hi x\nhi y\n",
            "{name}: {}",
            String::from_utf8_lossy(&parallel.stderr)
        );
    }
}

#[test]
fn kb_agent_startup_errors_say_what_to_fix() {
    let keys = support::Keys::new();
    let kb = env!("CARGO_BIN_EXE_kb");
    let missing = std::process::Command::new(kb)
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--host-key",
            "/nonexistent/key",
            "--authorized-key",
        ])
        .arg(keys.client_key.with_extension("pub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot load the agent's host key `/nonexistent/key`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let busy = std::process::Command::new(kb)
        .args(["agent", "--listen", &address, "--host-key"])
        .arg(&keys.host_key)
        .arg("--authorized-key")
        .arg(keys.client_key.with_extension("pub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(busy.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("kb agent cannot listen on `{address}`")),
        "{stderr}"
    );
}

/// `--authorized-keys` with OpenSSH's `command="..."`: the key runs that command whatever it asks, with the request
/// in `SSH_ORIGINAL_COMMAND` (the share server holds each task's pod key to serving that task). The file is read at
/// every login: a key removed from it cannot log in again.
#[tokio::test]
async fn a_forced_command_holds_a_key_to_one_command() {
    let (server, file) = Agent::start_forced("echo \"forced:$SSH_ORIGINAL_COMMAND\"");
    let conn = connect(&server).await;
    let run = run(&conn, "cat /etc/passwd").await;
    assert_eq!(run.stdout, "forced:cat /etc/passwd\n", "{run:?}");
    assert!(matches!(run.exit, Ok(JobExit::Code(0))), "{run:?}");
    conn.close().await;
    std::fs::write(&file, "").unwrap();
    let refused = Connection::connect(&login(&server), &config(&server)).await;
    assert!(refused.is_err(), "a removed key still logs in");
}
