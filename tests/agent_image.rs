//! kb's agent in its own image (busybox-static + the static kb binary, no glibc), run with the real Docker engine,
//! driven through kb's SSH client. The image is the one `scripts/test` built and pushed (`KB_AGENT_IMAGE`); run
//! alone, the test builds it from the cached static kb (see `support::static_kb`).
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use kb::model::JobExit;
use kb::ssh::{ClientConfig, Connection, SshLogin};
use support::process::{CommandExt as _, Run};
use support::ssh::exec;
use support::static_kb::local_agent_image;

/// The tag the test builds when `scripts/test` has not built the image.
const TAG: &str = "kb-agent-test:latest";

fn docker(args: &[&str]) -> Run {
    Command::new("docker").args(args).run()
}

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

async fn run(conn: &Connection, command: &str) -> (String, String, JobExit) {
    let exec = exec(conn, command).await;
    (exec.stdout, exec.stderr, exec.exit.expect("command ran"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker"]
async fn agent_runs_jobs_in_an_image_without_glibc() {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    info.check(
        info.status.success(),
        "docker is not running: start dockerd (tests/cluster/up does)",
    );
    let image = local_agent_image(TAG);

    // No glibc in the image: no loader, no libc.so.
    let probe = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        "ls /lib* /usr/lib* 2>/dev/null | wc -l",
    ]);
    probe.assert_success();
    probe.check(
        probe.stdout.trim() == "0",
        "the image has library directories",
    );

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
        &image,
        "--listen",
        "0.0.0.0:2222",
        "--host-key",
        "/keys/host_key",
        "--authorized-key",
        "/keys/client_key.pub",
    ]);
    run_out.assert_success();
    let container = Container(run_out.stdout.trim().to_owned());
    let port = docker(&["port", &container.0, "2222/tcp"]).stdout;
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
                docker(&["logs", &container.0]).fail(format_args!(
                    "cannot reach the agent in the container: {err}"
                ));
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
