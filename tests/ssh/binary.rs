//! The `kb` binary and OpenSSH's tools against the same servers: kb's default key and known_hosts under `HOME`, a
//! key from ssh-agent, `kb agent`'s startup errors, and OpenSSH's client and GNU parallel reaching both servers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::both;
use crate::support::process::{CommandExt as _, kb_command};
use crate::support::{Agent, Keys};

/// The defaults: the key and known_hosts under `$HOME/.ssh`, no `-i` (through the kb binary, whose environment
/// the test controls).
#[test]
fn kb_uses_the_key_and_known_hosts_under_home() {
    for (name, server) in both() {
        let run = kb_command()
            .args(["parallel", "-S", &server.login, "echo", "hi", ":::", "x"])
            .env("HOME", &server.home)
            .env_remove("SSH_AUTH_SOCK")
            .run();
        run.check(run.stdout == "hi x\n", format_args!("{name}: stdout"))
            .assert_success();
    }
}

#[test]
fn kb_logs_in_with_a_key_from_ssh_agent() {
    let server = Agent::start();
    let home = server.dir().join("agent-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(&server.known_hosts, home.join(".ssh/known_hosts")).unwrap();
    let socket = server.dir().join("ssh-agent.sock");
    // ssh-agent comes with openssh-client; killed when `ssh_agent` is dropped.
    let _ssh_agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdin(Stdio::null())
        .start();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("ssh-add")
        .arg(&server.client_key)
        .env("SSH_AUTH_SOCK", &socket)
        .run()
        .assert_success();
    // No key under HOME and no -i: the key can only come from the agent.
    kb_command()
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
        .run()
        .assert_stdout("via agent\n");
}

/// The fixtures' `ssh -F` config lets OpenSSH's client, and so GNU parallel, use the same servers (kb's agent
/// included: it must serve OpenSSH's client too).
#[test]
fn openssh_client_and_gnu_parallel_reach_both_servers() {
    for (name, server) in both() {
        // ssh comes with openssh-client.
        let ssh = Command::new("ssh")
            .arg("-F")
            .arg(&server.ssh_config)
            .args(["kbtest", "echo out; echo err >&2; exit 4"])
            .run();
        ssh.check(ssh.stderr == "err\n", format_args!("{name}: stderr"))
            .check(ssh.stdout == "out\n", format_args!("{name}: stdout"))
            .assert_code(4);
        // sshd's login variables, which GNU parallel's remote wrapper needs ($SHELL) even when the server's own
        // environment has none.
        let login = Command::new("ssh")
            .arg("-F")
            .arg(&server.ssh_config)
            .args(["kbtest", "echo \"$SHELL $USER $LOGNAME\""])
            .run();
        let user = &server.user;
        let fields: Vec<&str> = login.stdout.split_whitespace().collect();
        login
            .check(fields.len() == 3, format_args!("{name}: three fields"))
            .check(fields[0].starts_with('/'), format_args!("{name}: SHELL"))
            .check(
                fields[1..] == [user.as_str(), user.as_str()],
                format_args!("{name}: USER and LOGNAME"),
            );
        // GNU parallel: apt-get install parallel.
        let parallel = Command::new("parallel")
            .arg("--ssh")
            .arg(format!("ssh -F {}", server.ssh_config.display()))
            .args(["-k", "-S", "kbtest", "echo", "hi", ":::", "x", "y"])
            .run();
        parallel.check(
            parallel.stdout == "hi x\nhi y\n",
            format_args!("{name}: stdout"),
        );
    }
}

#[test]
fn kb_agent_startup_errors_say_what_to_fix() {
    let keys = Keys::new();
    let missing = kb_command()
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--host-key",
            "/nonexistent/key",
            "--authorized-key",
        ])
        .arg(keys.client_key.with_extension("pub"))
        .run();
    missing
        .assert_code(1)
        .assert_stderr_contains("cannot load the agent's host key `/nonexistent/key`")
        .assert_stderr_contains("hint:");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    kb_command()
        .args(["agent", "--listen", &address, "--host-key"])
        .arg(&keys.host_key)
        .arg("--authorized-key")
        .arg(keys.client_key.with_extension("pub"))
        .run()
        .assert_code(1)
        .assert_stderr_contains(&format!("kb agent cannot listen on `{address}`"));
}
