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

/// The NFS listeners that could be bound, and why the others could not.
pub struct Listeners {
    share: NfsShare,
    bound: Vec<NFSTcpListener<NfsShare>>,
    /// Each address that could not be bound, and why.
    pub failed: Vec<(String, std::io::Error)>,
}

impl Listeners {
    /// The bound addresses (`IP:PORT`, the port resolved when 0).
    pub fn addresses(&self) -> Vec<String> {
        self.bound
            .iter()
            .map(|l| format!("{}:{}", l.get_listen_ip(), l.get_listen_port()))
            .collect()
    }
}

/// Binds NFS for the tasks of `store` on each of `addresses` (`IP:PORT`); an address that cannot be bound is
/// recorded in [`Listeners::failed`] and skipped.
pub async fn bind(store: Store, addresses: &[String], deadline: Duration) -> Listeners {
    let share = NfsShare::new(store, deadline);
    let mut bound = Vec::new();
    let mut failed = Vec::new();
    for address in addresses {
        match NFSTcpListener::bind(address, share.clone()).await {
            Ok(mut listener) => {
                listener.with_export_name(EXPORT);
                bound.push(listener);
            }
            Err(err) => failed.push((address.clone(), err)),
        }
    }
    Listeners {
        share,
        bound,
        failed,
    }
}

/// Serves NFS on the bound listeners, forever (even when none could be bound: the idle-handle sweep runs on).
pub async fn serve(listeners: Listeners) {
    let Listeners { share, bound, .. } = listeners;
    let accept = futures::future::join_all(bound.iter().map(|l| async move {
        if let Err(err) = l.handle_forever().await {
            tracing::error!("an NFS listener stopped: {err}");
        }
    }));
    let sweep = async {
        loop {
            tokio::time::sleep(SWEEP).await;
            share.close_idle().await;
        }
    };
    tokio::join!(accept, sweep);
}
