//! CLI tests: the real `kb` binary in a temporary directory; usage errors, hints and exit statuses (the contract in
//! docs/exit-codes.md). No cluster, no SSH server.
// A test that cannot go on fails at once, with the value that stopped it.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

fn kb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kb"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run kb")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn parallel_without_workers_is_a_usage_error_naming_the_choices() {
    let out = kb(&["parallel", "echo", ":::", "a"]);
    assert_eq!(out.status.code(), Some(255));
    let err = stderr(&out);
    assert!(err.contains("no workers"), "{err}");
    assert!(
        err.contains("--pods N") && err.contains("-S") && err.contains("--local-procs N"),
        "{err}"
    );
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
                "-i",
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
        let out = kb(&args);
        assert_eq!(out.status.code(), Some(255), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn other_subcommands_use_clap_usage_status() {
    let out = kb(&["agent", "--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = kb(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_and_version_exit_zero() {
    let out = kb(&["parallel", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--keep-order") && help.contains("Exit status"),
        "{help}"
    );
    assert_eq!(kb(&["--version"]).status.code(), Some(0));
}

#[test]
fn exit_status_counts_failed_jobs_and_caps_at_101() {
    let out = kb(&[
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
    ]);
    assert_eq!(out.status.code(), Some(3));
    let many: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    let mut args = vec!["parallel", "--local-procs", "8", "false", ":::"];
    args.extend(many.iter().map(String::as_str));
    assert_eq!(kb(&args).status.code(), Some(101));
}

#[test]
fn first_job_starts_before_stdin_ends() {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_kb"))
        .args([
            "parallel",
            "--local-procs",
            "2",
            "--line-buffer",
            "echo",
            "got",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run kb");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "first").expect("write");
    stdin.flush().expect("flush");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // stdin is still open: the job for the first line must have run anyway.
    assert_eq!(lines.next().expect("a line").expect("utf-8"), "got first");
    drop(stdin);
    assert!(child.wait().expect("wait").success());
}

#[test]
fn memory_stays_flat_with_millions_of_input_lines() {
    // 3 million lines through --dry-run: peak RSS (from GNU time) must stay far below what holding them would take.
    let script = format!(
        "seq 3000000 | /usr/bin/time -f %M {} parallel --dry-run echo {{}} > /dev/null",
        env!("CARGO_BIN_EXE_kb")
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{}", stderr(&out));
    let kib: u64 = stderr(&out)
        .trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time's %M");
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB for 3M lines");
}

#[test]
fn broken_pipe_on_stdout_ends_the_run_quietly() {
    let script = format!(
        "seq 100000 | {} parallel --local-procs 2 echo | head -n 3",
        env!("CARGO_BIN_EXE_kb")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {script}; echo \"status ${{PIPESTATUS[1]}}\""
        ))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("status 0"),
        "kb exits 0 when its reader goes away: {stdout} {}",
        stderr(&out)
    );
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
    let out = spawn("lazy-attach").wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("the client of task t1 is not serving its files"),
        "{}",
        stderr(&out)
    );

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
