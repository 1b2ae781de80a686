//! `kb device-plugin`: serve and register the FUSE device plugin until SIGTERM or SIGINT, then remove its socket.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::device_plugin::DevicePluginOpts;
use crate::commands::error::{Error, Result};
use crate::deviceplugin::{Placement, Plugin};

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
