//! `kb device-plugin`: serve and register the FUSE device plugin until SIGTERM or SIGINT, then remove its socket.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::commands::error::{Error, Result};
use crate::deviceplugin::{Placement, Plugin};
use std::path::PathBuf;
use std::time::Duration;

/// Options of `kb device-plugin`, the kubelet device plugin that hands pods `/dev/fuse` (run by the `kb-fuse`
/// DaemonSet of `kb cluster-setup`, not by hand).
#[derive(Debug, Clone, clap::Args)]
pub struct DevicePluginOpts {
    /// The kubelet's device plugin directory, holding `kubelet.sock`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/kubelet/device-plugins"
    )]
    pub dir: PathBuf,
    /// This plugin's socket name in DIR (one per namespace that runs the plugin, so that two never share one).
    #[arg(long, value_name = "NAME", default_value = "kb-fuse.sock")]
    pub socket: String,
    /// The extended resource pods request.
    #[arg(long, value_name = "NAME", default_value = crate::deviceplugin::FUSE_RESOURCE)]
    pub resource: String,
    /// The device node each allocation gives the container, at the same path.
    #[arg(long, value_name = "PATH", default_value = crate::deviceplugin::FUSE_DEVICE)]
    pub device: PathBuf,
    /// How many containers of the node may hold the resource at once (they all share the one device node).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub devices: u32,
    /// How long to keep trying to register with the kubelet before failing.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub register_timeout: Duration,
}

/// Runs `kb device-plugin`.
pub async fn exec(opts: DevicePluginOpts) -> Result<u8> {
    let plugin = Plugin {
        resource: opts.resource,
        device: opts.device,
        count: opts.devices,
    };
    let place = Placement {
        dir: opts.dir,
        socket: opts.socket,
        register_timeout: opts.register_timeout,
    };
    let listen = |kind: SignalKind| {
        signal(kind).map_err(|source| Error::Io {
            action: "listen for signals".into(),
            source,
        })
    };
    let mut term = listen(SignalKind::terminate())?;
    let mut interrupt = listen(SignalKind::interrupt())?;
    let shutdown = CancellationToken::new();
    let run = crate::deviceplugin::run(plugin, place, shutdown.clone());
    tokio::pin!(run);
    loop {
        tokio::select! {
            result = &mut run => {
                result?;
                tracing::info!("stopped; socket removed");
                return Ok(crate::error::exit::SUCCESS);
            }
            _ = term.recv() => shutdown.cancel(),
            _ = interrupt.recv() => shutdown.cancel(),
        }
    }
}
