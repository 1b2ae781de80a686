//! The NFS listeners of the share server: the same service on every address given (by default 2049, NFS's port,
//! and 111, the portmapper's: nfsserve answers PORTMAP GETPORT on any port with that port itself, so a kernel
//! client that asks the portmapper on 111 is sent back to 111 and finds NFS and MOUNT there). An address that
//! cannot be bound is reported and skipped: the SSH side of the share server does not depend on NFS.

use std::time::Duration;

use nfsserve::tcp::{NFSTcp, NFSTcpListener};

use super::fs::NfsShare;
use crate::share::store::Store;

/// The export's name: every task's share is below `/kb`.
pub const EXPORT: &str = "kb";
/// Where the share server serves NFS unless told otherwise.
pub const DEFAULT_LISTEN: [&str; 2] = ["0.0.0.0:2049", "0.0.0.0:111"];
/// How often idle SFTP handles are closed.
const SWEEP: Duration = Duration::from_secs(1);

/// The export path of a task's share: `/kb/<task>-<token>`.
pub fn export_path(task: &str, token: &str) -> String {
    format!("/{EXPORT}/{}", super::handle::share_name(task, token))
}

/// Serves NFS for the tasks of `store` on each of `addresses` (`IP:PORT`), forever; logs each bound address
/// (`kb share: NFS on IP:PORT`, the port resolved when 0) and each that could not be bound.
pub async fn serve(store: Store, addresses: &[String], deadline: Duration) {
    let share = NfsShare::new(store, deadline);
    let mut listeners = Vec::new();
    for address in addresses {
        match NFSTcpListener::bind(address, share.clone()).await {
            Ok(mut listener) => {
                listener.with_export_name(EXPORT);
                eprintln!(
                    "kb share: NFS on {}:{}",
                    listener.get_listen_ip(),
                    listener.get_listen_port()
                );
                listeners.push(listener);
            }
            Err(err) => eprintln!(
                "kb share: cannot serve NFS on `{address}` ({err}); the lazy share's NFS path is not there"
            ),
        }
    }
    let accept = futures::future::join_all(listeners.iter().map(|l| async move {
        if let Err(err) = l.handle_forever().await {
            eprintln!("kb share: an NFS listener stopped: {err}");
        }
    }));
    let sweep = async {
        loop {
            tokio::time::sleep(SWEEP).await;
            share.close_idle().await;
        }
    };
    // The sweep never ends, so neither does this, even when no address could be bound.
    tokio::join!(accept, sweep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_path_holds_the_task_and_its_token() {
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(export_path("t1", token), format!("/kb/t1-{token}"));
        assert_eq!(
            super::super::handle::parse_share_name(
                export_path("t1", token).rsplit('/').next().unwrap()
            ),
            Some(("t1", token))
        );
    }
}
