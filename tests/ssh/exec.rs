//! Commands through kb's SSH client on both servers: output and exit codes, signals, environment requests, 200
//! channels at once on one connection, sequential speed, SSH over a given stream, channel input, and sessions with
//! a pseudo-terminal on the agent.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kb::model::JobExit;
use kb::ssh::{Connection, Error};

use crate::support::Agent;
use crate::support::ssh::{exec, exec_with_env};
use crate::{both, config, connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_exit_code_and_separate_stderr() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let r = exec(
            &conn,
            "echo hello; echo oops >&2; printf 'no newline'; exit 3",
        )
        .await;
        assert_eq!(r.stdout, "hello\nno newline", "{name}");
        assert_eq!(r.stderr, "oops\n", "{name}");
        assert_eq!(r.exit.unwrap(), JobExit::Code(3), "{name}");
        let r = exec(&conn, "true").await;
        assert_eq!(r.exit.unwrap(), JobExit::Code(0), "{name}");
        // Jobs read no input: stdin is at its end from the start.
        let r = exec(&conn, "cat; echo done").await;
        assert_eq!(r.stdout, "done\n", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_signal_is_reported() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let r = exec(&conn, "kill -USR1 $$; sleep 5").await;
        assert_eq!(r.exit.unwrap(), JobExit::Signal(libc::SIGUSR1), "{name}");
        let r = exec(&conn, "kill -9 $$").await;
        assert_eq!(r.exit.unwrap(), JobExit::Signal(libc::SIGKILL), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_requests_reach_the_command() {
    for (name, server) in both() {
        let conn = connect(&server).await;
        let r = exec_with_env(
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
            async move { (i, exec(conn, &command).await) }
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
            let r = exec(&conn, "true").await;
            assert_eq!(r.exit.unwrap(), JobExit::Code(0));
        }
        let sequential = started.elapsed();
        let started = Instant::now();
        let mut runs = futures::stream::iter(0..count)
            .map(|_| exec(&conn, "true"))
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
            exec(&conn, "echo over a stream").await.stdout,
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
