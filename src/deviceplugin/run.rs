//! The plugin's life: serve the DevicePlugin API on its own socket in the kubelet's device plugin directory,
//! register with the kubelet, and start over whenever the registration is lost, until shut down.
//!
//! The registration is lost when the kubelet restarts (it deletes every socket in the directory and makes a new
//! `kubelet.sock`) or when it drops the ListAndWatch stream (it disconnected the plugin). kb notices the first by
//! checking both sockets every second, the second at once.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::api::{RegisterRequest, VERSION};
use super::error::{Error, RegisterError, Result};
use super::grpc::{DevicePluginService, register};
use super::plugin::Plugin;

/// The kubelet's registration socket, in the device plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// How often the sockets are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// One registration attempt's limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how long: the kubelet's device plugin directory, this plugin's socket name in it, and how long to try
/// registering before giving up.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The kubelet's device plugin directory (`/var/lib/kubelet/device-plugins`).
    pub dir: PathBuf,
    /// This plugin's socket name in `dir`.
    pub socket: String,
    /// How long to keep trying to register each time.
    pub register_timeout: Duration,
}

/// Why a registration ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// Shut down: stop.
    Shutdown,
    /// The registration was lost, for the reason given: register again.
    Lost(&'static str),
}

/// A file's identity, to tell a socket from the one made again at the same path.
type FileId = (u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Once no other plugin of the same resource on this node serves (see [`super::lock`]), serves and registers
/// `plugin` until `shutdown`, registering again each time the registration is lost. Fails only when the lock or the
/// socket cannot be made or the kubelet does not accept a registration in time.
pub async fn run(plugin: Plugin, place: Placement, shutdown: CancellationToken) -> Result<()> {
    let Some(_lock) = super::lock::acquire(&place.dir, &plugin.resource, &shutdown).await? else {
        return Ok(());
    };
    let plugin = Arc::new(plugin);
    loop {
        match serve_once(&plugin, &place, &shutdown).await? {
            Ended::Shutdown => return Ok(()),
            Ended::Lost(why) => {
                tracing::warn!(
                    "registration of `{}` lost ({why}): registering again",
                    plugin.resource
                );
                // Let the kubelet finish disconnecting the old connection first: if it noticed the old stream's end
                // after the new registration, it would disconnect the new one.
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(CHECK_EVERY) => {}
                }
            }
        }
    }
}

/// One registration: bind the socket, serve, register, watch; then stop serving and remove the socket.
async fn serve_once(
    plugin: &Arc<Plugin>,
    place: &Placement,
    shutdown: &CancellationToken,
) -> Result<Ended> {
    let socket = place.dir.join(&place.socket);
    remove_socket(&socket)?;
    let listener = tokio::net::UnixListener::bind(&socket).map_err(|source| Error::Listen {
        path: socket.clone(),
        source,
    })?;
    let ours = file_id(&socket);
    let round = shutdown.child_token();
    let (dropped_tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
    let service = DevicePluginService::new(plugin.clone(), round.clone(), dropped_tx);
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let mut server = JoinSet::new();
    let stop = round.clone().cancelled_owned();
    server.spawn(async move {
        tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(service, incoming, stop)
            .await
    });
    let ended = async {
        let kubelet = match register_until(plugin, place, ours, &round).await? {
            Registration::Accepted(kubelet) => kubelet,
            Registration::Ended(ended) => return Ok(ended),
        };
        tracing::info!(
            "registered `{}` ({} devices) with the kubelet as `{}`",
            plugin.resource,
            plugin.count,
            socket.display()
        );
        watch(
            &socket,
            ours,
            &place.dir.join(KUBELET_SOCKET),
            kubelet,
            &mut dropped,
            &mut server,
            &round,
        )
        .await
    }
    .await;
    round.cancel();
    // The ListAndWatch streams end with the round, so the graceful shutdown is quick; a stuck connection is cut.
    if tokio::time::timeout(ATTEMPT_TIMEOUT, server.join_next())
        .await
        .is_err()
    {
        server.shutdown().await;
    }
    if file_id(&socket) == ours {
        let _ = std::fs::remove_file(&socket);
    }
    ended
}

/// How [`register_until`] ended.
enum Registration {
    /// Registered with the kubelet whose socket had this identity.
    Accepted(Option<FileId>),
    /// Not registered: shut down, or the plugin's socket (identity `ours`) is gone.
    Ended(Ended),
}

/// Registers, retrying every second until it works, `round` ends, the plugin's socket is gone or the time is up.
async fn register_until(
    plugin: &Plugin,
    place: &Placement,
    ours: Option<FileId>,
    round: &CancellationToken,
) -> Result<Registration> {
    let socket = place.dir.join(&place.socket);
    let kubelet = place.dir.join(KUBELET_SOCKET);
    let request = RegisterRequest {
        version: VERSION.into(),
        endpoint: place.socket.clone(),
        resource_name: plugin.resource.clone(),
        options: Some(Plugin::options()),
    };
    let start = Instant::now();
    loop {
        // A kubelet that starts while kb waits for it deletes the plugin's socket: make it again first.
        if file_id(&socket) != ours {
            return Ok(Registration::Ended(Ended::Lost(
                "the plugin's socket was removed before the kubelet accepted it",
            )));
        }
        let id = file_id(&kubelet);
        let error: RegisterError = match register(&kubelet, request.clone(), ATTEMPT_TIMEOUT).await
        {
            Ok(()) => return Ok(Registration::Accepted(id)),
            Err(error) => error,
        };
        if start.elapsed() >= place.register_timeout {
            return Err(Error::Register {
                path: kubelet,
                resource: plugin.resource.clone(),
                waited: place.register_timeout,
                source: error,
            });
        }
        tracing::info!("registration not accepted yet: {error}");
        tokio::select! {
            () = round.cancelled() => return Ok(Registration::Ended(Ended::Shutdown)),
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// Waits until the registration is lost or `round` ends.
async fn watch(
    socket: &Path,
    ours: Option<FileId>,
    kubelet_socket: &Path,
    kubelet: Option<FileId>,
    dropped: &mut UnboundedReceiver<()>,
    server: &mut JoinSet<Result<(), tonic::transport::Error>>,
    round: &CancellationToken,
) -> Result<Ended> {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            () = round.cancelled() => return Ok(Ended::Shutdown),
            Some(()) = dropped.recv() => return Ok(Ended::Lost("the kubelet closed the ListAndWatch stream")),
            Some(joined) = server.join_next() => {
                return match joined {
                    Ok(Err(source)) => Err(Error::Serve { path: socket.to_path_buf(), source }),
                    _ => Ok(Ended::Lost("the server stopped")),
                };
            }
            _ = tick.tick() => {
                if file_id(socket) != ours {
                    return Ok(Ended::Lost("the plugin's socket was removed: the kubelet restarted"));
                }
                if file_id(kubelet_socket) != kubelet {
                    return Ok(Ended::Lost("`kubelet.sock` was made again: the kubelet restarted"));
                }
            }
        }
    }
}

/// Removes what is at `path` if it is a socket (left by an earlier run); anything else there is an error.
fn remove_socket(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|source| Error::RemoveSocket {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(Error::RemoveSocket {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "not a socket"),
        }),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
