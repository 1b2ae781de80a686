//! Who may log in where: a wrong client key, a wrong, unknown, hashed or pinned host key, an unreachable port,
//! and a key held to one forced command.

use kb::model::JobExit;
use kb::ssh::{ClientConfig, Connection, Error, SshLogin};

use crate::support::process::CommandExt as _;
use crate::support::ssh::exec;
use crate::support::{Agent, Sshd};
use crate::{both, config, connect, login};

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
    std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&server.known_hosts)
        .run()
        .assert_success();
    let text = std::fs::read_to_string(&server.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    let conn = connect(&server).await;
    assert_eq!(exec(&conn, "echo ok").await.stdout, "ok\n");
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

/// `--authorized-keys` with OpenSSH's `command="..."`: the key runs that command whatever it asks, with the request
/// in `SSH_ORIGINAL_COMMAND` (the share server holds each task's pod key to serving that task). The file is read at
/// every login: a key removed from it cannot log in again.
#[tokio::test]
async fn a_forced_command_holds_a_key_to_one_command() {
    let (server, file) = Agent::start_forced("echo \"forced:$SSH_ORIGINAL_COMMAND\"");
    let conn = connect(&server).await;
    let run = exec(&conn, "cat /etc/passwd").await;
    assert_eq!(run.stdout, "forced:cat /etc/passwd\n", "{run:?}");
    assert!(matches!(run.exit, Ok(JobExit::Code(0))), "{run:?}");
    conn.close().await;
    std::fs::write(&file, "").unwrap();
    let refused = Connection::connect(&login(&server), &config(&server)).await;
    assert!(refused.is_err(), "a removed key still logs in");
}
