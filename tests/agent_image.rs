//! kb's agent in its own image (busybox-static + the static kb binary, no glibc), built and run with the real
//! Docker engine, driven through kb's SSH client.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kb::model::{JobExit, Stream};
use kb::ssh::{ClientConfig, Connection, SshLogin};
use tokio::sync::mpsc;

const TAG: &str = "kb-agent-test:latest";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker: install docker.io")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

async fn run(conn: &Connection, command: &str) -> (String, String, JobExit) {
    let (tx, mut rx) = mpsc::channel::<(Stream, Bytes)>(64);
    let (_signals_tx, signals) = mpsc::unbounded_channel();
    let collect = async {
        let (mut out, mut err) = (String::new(), String::new());
        while let Some((stream, data)) = rx.recv().await {
            let text = String::from_utf8_lossy(&data);
            match stream {
                Stream::Stdout => out.push_str(&text),
                Stream::Stderr => err.push_str(&text),
            }
        }
        (out, err)
    };
    let (exit, (out, err)) = tokio::join!(conn.exec(command, tx, signals), collect);
    (out, err, exit.expect("command ran"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker"]
async fn agent_runs_jobs_in_an_image_without_glibc() {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "docker is not running: start dockerd (tests/cluster/up does): {}",
        String::from_utf8_lossy(&info.stderr)
    );
    let build = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/images/agent/build"))
        .arg(TAG)
        .output()
        .expect("run images/agent/build");
    assert!(
        build.status.success(),
        "images/agent/build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );

    // No glibc in the image: no loader, no libc.so.
    let probe = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        TAG,
        "-c",
        "ls /lib* /usr/lib* 2>/dev/null | wc -l",
    ]);
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(stdout(&probe), "0", "the image has library directories");

    // Keys made on the host, mounted read-only; the host key is pinned by the client.
    let keys = support::Keys::new();
    let dir = keys.dir.path().to_str().expect("utf-8 temp dir").to_owned();
    let run_out = docker(&[
        "run",
        "-d",
        "--label",
        "app.kubernetes.io/managed-by=kb",
        "-p",
        "127.0.0.1::2222",
        "-v",
        &format!("{dir}:/keys:ro"),
        TAG,
        "--listen",
        "0.0.0.0:2222",
        "--host-key",
        "/keys/host_key",
        "--authorized-key",
        "/keys/client_key.pub",
    ]);
    assert!(
        run_out.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&run_out.stderr)
    );
    let container = Container(stdout(&run_out));
    let port = stdout(&docker(&["port", &container.0, "2222/tcp"]));
    let port: u16 = port
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next()?.parse().ok())
        .expect("published port");

    let config = ClientConfig {
        identities: vec![keys.client_key.clone()],
        pinned_host_keys: vec![keys.host_public_key()],
        known_hosts: Vec::new(),
    };
    let login: SshLogin = format!("root@127.0.0.1:{port}").parse().expect("login");
    let deadline = Instant::now() + Duration::from_secs(20);
    let conn = loop {
        match Connection::connect(&login, &config).await {
            Ok(conn) => break conn,
            Err(err) if Instant::now() < deadline => {
                eprintln!("waiting for the agent: {err}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(err) => {
                let logs = docker(&["logs", &container.0]);
                panic!(
                    "cannot reach the agent in the container: {err}; logs: {}",
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
    };

    let (out, err, exit) = run(
        &conn,
        "echo hello from $(uname -s); echo to-stderr >&2; exit 7",
    )
    .await;
    assert_eq!(
        (out.as_str(), err.as_str(), exit),
        ("hello from Linux\n", "to-stderr\n", JobExit::Code(7))
    );
    let (out, _, exit) = run(
        &conn,
        "pwd; ls /lib/x86_64-linux-gnu/libc.so.6 2>/dev/null || echo no glibc",
    )
    .await;
    assert_eq!(
        (out.as_str(), exit),
        ("/root\nno glibc\n", JobExit::Code(0))
    );
    let jobs = (0..20).map(|i| {
        let conn = &conn;
        async move { (i, run(conn, &format!("sleep 0.1; echo {i}")).await) }
    });
    for (i, (out, _, exit)) in futures::future::join_all(jobs).await {
        assert_eq!((out, exit), (format!("{i}\n"), JobExit::Code(0)));
    }
}
