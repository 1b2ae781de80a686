//! CLI tests: the real `kb` binary in a temporary directory; usage errors, hints and exit statuses (the contract in
//! docs/exit-codes.md). No cluster, no SSH server.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::process::{CommandExt as _, Pipe, Run, kb_command};

fn kb(args: &[&str]) -> Run {
    kb_command()
        .args(args)
        .current_dir(std::env::temp_dir())
        .run()
}

#[test]
fn parallel_without_workers_runs_here_with_gnu_syntax() {
    let out = kb(&["parallel", "-j2", "-k", "echo", ":::", "a", "b"]);
    out.check(out.stdout == "a\nb\n", "two local jobs in order")
        .assert_success();
    let out = kb(&["parallel", "--will-cite", "--citation"]);
    out.check(
        out.stderr.contains("nothing to cite"),
        "says there is nothing to cite",
    )
    .assert_success();
    kb(&["parallel", "-j", "x", "echo", ":::", "a"])
        .assert_code(255)
        .assert_stderr_contains("invalid job slots `x`");
    kb(&["parallel", "-j", "-100000", "echo", ":::", "a"])
        .assert_code(255)
        .assert_stderr_contains("cannot run any jobs");
}

#[test]
fn delay_spaces_the_job_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let log_arg = log.display().to_string();
    let out = kb(&[
        "parallel", "--delay", "0.3", "-j", "3", "--joblog", &log_arg, "true", ":::", "a", "b", "c",
    ]);
    out.assert_success();
    let text = std::fs::read_to_string(&log).expect("the joblog");
    let mut starts: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split('\t')
                .nth(2)
                .expect("Starttime")
                .parse()
                .expect("a number")
        })
        .collect();
    starts.sort_by(f64::total_cmp);
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    out.check(
        gaps.len() == 2 && gaps.iter().all(|g| *g >= 0.29),
        format_args!("three starts at least 0.3 s apart with three free slots: {starts:?}"),
    );
    kb(&["parallel", "--delay", "soon", "true", ":::", "a"])
        .assert_code(255)
        .assert_stderr_contains("invalid --delay `soon`");
}

#[test]
fn parallel_usage_errors_exit_255_and_say_what_to_do() {
    for (args, needle) in [
        (
            vec!["parallel", "--local-procs", "2", "--halt", "later", "echo"],
            "invalid --halt",
        ),
        (
            vec![
                "parallel",
                "--local-procs",
                "2",
                "--timeout",
                "soon",
                "echo",
            ],
            "invalid --timeout",
        ),
        (
            vec!["parallel", "--local-procs", "0", "echo", ":::", "a"],
            "at least 1",
        ),
        (
            vec!["parallel", "-S", "1/2/3@@", "echo", ":::", "a"],
            "sshlogin",
        ),
        (
            vec!["parallel", "--no-such-option", "echo"],
            "unexpected argument",
        ),
        (
            vec![
                "parallel",
                "--identity",
                "/nonexistent/key",
                "-S",
                "host",
                "echo",
                ":::",
                "a",
            ],
            "identity file",
        ),
    ] {
        kb(&args).assert_code(255).assert_stderr_contains(needle);
    }
}

#[test]
fn other_subcommands_use_clap_usage_status() {
    kb(&["agent", "--bogus"]).assert_code(2);
    kb(&["no-such-command"]).assert_code(2);
}

#[test]
fn help_and_version_exit_zero() {
    kb(&["parallel", "--help"])
        .assert_code(0)
        .assert_stdout_contains("--keep-order")
        .assert_stdout_contains("Exit status");
    kb(&["--version"]).assert_code(0);
}

#[test]
fn exit_status_counts_failed_jobs_and_caps_at_101() {
    kb(&[
        "parallel",
        "--local-procs",
        "4",
        "exit {}",
        ":::",
        "0",
        "1",
        "2",
        "0",
        "3",
    ])
    .assert_code(3);
    let many: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    let mut args = vec!["parallel", "--local-procs", "8", "false", ":::"];
    args.extend(many.iter().map(String::as_str));
    kb(&args).assert_code(101);
}

#[test]
fn first_job_starts_before_stdin_ends() {
    use std::io::Write;
    let mut child = kb_command()
        .args([
            "parallel",
            "--local-procs",
            "2",
            "--line-buffer",
            "echo",
            "got",
        ])
        .stdin(Stdio::piped())
        .start();
    let mut stdin = child.take_stdin();
    writeln!(stdin, "first").expect("write");
    stdin.flush().expect("flush");
    // stdin is still open: the job for the first line must have run anyway.
    let first = child.wait_for_line(Pipe::Stdout, Duration::from_secs(30), |_| true);
    assert_eq!(first, "got first");
    drop(stdin);
    child.wait(Duration::from_secs(30)).assert_success();
}

#[test]
fn memory_stays_flat_with_millions_of_input_lines() {
    // 3 million lines through --dry-run: peak RSS (from GNU time) must stay far below what holding them would take.
    let script = format!(
        "seq 3000000 | /usr/bin/time -f %M {} parallel --dry-run echo {{}} > /dev/null",
        env!("CARGO_BIN_EXE_kb")
    );
    let out = Command::new("sh").arg("-c").arg(script).run();
    out.assert_success();
    let kib: u64 = out
        .stderr
        .trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| out.fail("no peak RSS (GNU time's %M) on stderr"));
    out.check(
        kib < 64 * 1024,
        format_args!("peak RSS {kib} KiB for 3M lines"),
    );
}

#[test]
fn broken_pipe_on_stdout_ends_the_run_quietly() {
    let script = format!(
        "seq 100000 | {} parallel --local-procs 2 echo | head -n 3",
        env!("CARGO_BIN_EXE_kb")
    );
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {script}; echo \"status ${{PIPESTATUS[1]}}\""
        ))
        .run()
        // kb exits 0 when its reader goes away.
        .assert_stdout_contains("status 0");
}

/// An SFTP packet: length, type, id, one string.
fn sftp_packet(kind: u8, id: u32, text: &[u8]) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&(text.len() as u32).to_be_bytes());
    body.extend_from_slice(text);
    let mut packet = (body.len() as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// Reads one SFTP packet (type, id or version, and the rest).
fn read_sftp(reader: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    reader.read_exact(&mut body)?;
    Ok(body)
}

#[test]
fn lazy_host_and_attach_carry_a_pod_s_sftp_session_to_the_client_and_end_with_it() {
    use std::io::Write;
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let spawn = |request: &str| {
        Command::new(env!("CARGO_BIN_EXE_kb"))
            .args(["share", request, "--store", store_arg, "--task", "t1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Without a host, attaching fails and says why.
    kb_command()
        .args(["share", "lazy-attach", "--store", store_arg, "--task", "t1"])
        .run()
        .assert_failure()
        .assert_stderr_contains("the client of task t1 is not serving its files");

    // The test plays the client: it answers the host's INIT, then a STAT of /a with a NAME.
    let mut host = spawn("lazy-host");
    let mut to_host = host.stdin.take().unwrap();
    let mut from_host = host.stdout.take().unwrap();
    let init = read_sftp(&mut from_host).unwrap();
    assert_eq!(init[0], 1, "INIT");
    to_host.write_all(&[0, 0, 0, 5, 2, 0, 0, 0, 3]).unwrap();
    let socket = store.path().join("lazy/t1.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "no socket");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The test plays a pod through `lazy-attach`.
    let mut pod = spawn("lazy-attach");
    let mut to_pod = pod.stdin.take().unwrap();
    let mut from_pod = pod.stdout.take().unwrap();
    to_pod.write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3]).unwrap();
    assert_eq!(
        read_sftp(&mut from_pod).unwrap(),
        [2, 0, 0, 0, 3],
        "VERSION"
    );
    to_pod.write_all(&sftp_packet(17, 42, b"/a")).unwrap();
    let request = read_sftp(&mut from_host).unwrap();
    assert_eq!(request[0], 17, "STAT");
    let relay_id = u32::from_be_bytes([request[1], request[2], request[3], request[4]]);
    to_host
        .write_all(&sftp_packet(104, relay_id, b"/a"))
        .unwrap();
    let answer = read_sftp(&mut from_pod).unwrap();
    assert_eq!(answer[0], 104, "NAME");
    assert_eq!(&answer[1..5], &42u32.to_be_bytes(), "the pod's own id");

    // The client goes: the host ends, and so does the pod's session.
    drop(to_host);
    drop(from_host);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if host.try_wait().unwrap().is_some() && pod.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "host or pod still running 10 s after the client went"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!socket.exists(), "the host removes its socket");
}
