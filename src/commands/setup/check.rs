//! The check of a new image: kb's agent started in it the way a pod starts it (copied from the agent image),
//! and one command run through it over SSH.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures::StreamExt;

use super::run::*;
use super::session::Session;
use crate::commands::error::{Error, Result};
use crate::docker::call;
use crate::k8s::resources::{AGENT_IMAGE_BUSYBOX, AGENT_IMAGE_KB};
use crate::ssh::task_keys::TaskKeys;

impl Session {
    /// Starts kb's agent in `image` the way a pod does (copied from the agent image) and runs a command through
    /// it over SSH.
    pub(super) async fn check_agent(&self, image: &str, agent_image: &str) -> Result<()> {
        let volume = format!("{}-agent", self.name);
        let install = format!("{}-install", self.name);
        let check = format!("{}-check", self.name);
        let result = self
            .run_agent_check(image, agent_image, &volume, &install, &check)
            .await;
        for name in [&install, &check] {
            let _ = self
                .docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
        }
        let _ = self
            .docker
            .remove_volume(
                &volume,
                Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
            )
            .await;
        result
    }

    /// The check proper, in its three steps; `check_agent` removes what it leaves behind, whatever the outcome.
    pub(super) async fn run_agent_check(
        &self,
        image: &str,
        agent_image: &str,
        volume: &str,
        install: &str,
        check: &str,
    ) -> Result<()> {
        let labels = std::collections::HashMap::from([(SETUP_LABEL.to_string(), "1".to_string())]);
        self.install_agent(agent_image, volume, install, &labels)
            .await?;
        let (keys, keys_dir, client_key) = self.write_check_keys()?;
        let port = free_port().map_err(|source| Error::Io {
            action: "write the check's keys".into(),
            source,
        })?;
        self.start_agent(image, volume, check, &keys_dir, port, labels)
            .await?;
        echo_through_agent(port, client_key, &keys).await
    }

    /// Step 1: copies the agent image's kb and busybox into `volume`, as the pod's init container does.
    async fn install_agent(
        &self,
        agent_image: &str,
        volume: &str,
        install: &str,
        labels: &std::collections::HashMap<String, String>,
    ) -> Result<()> {
        let body = ContainerCreateBody {
            image: Some(agent_image.into()),
            entrypoint: Some(vec![AGENT_IMAGE_BUSYBOX.into()]),
            cmd: Some(vec![
                "cp".into(),
                AGENT_IMAGE_KB.into(),
                AGENT_IMAGE_BUSYBOX.into(),
                "/kb-install/".into(),
            ]),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:/kb-install")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.run_to_end(install, body).await
    }

    /// Writes fresh task keys for the check into the session's directory, readable as a pod's Secret volume is:
    /// the keys, their directory and the client key's path.
    fn write_check_keys(&self) -> Result<(TaskKeys, PathBuf, PathBuf)> {
        let keys = crate::ssh::task_keys::build_task_keys()
            .map_err(|source| crate::k8s::Error::Keys { source })?;
        let keys_dir = self.dir.path().join("keys");
        let io = |source| Error::Io {
            action: "write the check's keys".into(),
            source,
        };
        std::fs::create_dir_all(&keys_dir).map_err(io)?;
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        let client_key = keys_dir.join("client");
        let client_text = keys
            .client
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(&client_key, client_text.as_bytes()).map_err(io)?;
        std::fs::set_permissions(&client_key, std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        // The image's user, whoever it is, reads these two (as it reads a pod's Secret volume).
        let host_key = keys_dir.join("host_key");
        std::fs::write(&host_key, &keys.host_private).map_err(io)?;
        std::fs::set_permissions(&host_key, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        std::fs::write(keys_dir.join("authorized_key"), &keys.client_public).map_err(io)?;
        Ok((keys, keys_dir, client_key))
    }

    /// Step 2: starts the agent in the new `image` with the check's keys, on `port` of this machine's loopback.
    async fn start_agent(
        &self,
        image: &str,
        volume: &str,
        check: &str,
        keys_dir: &Path,
        port: u16,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<()> {
        let body = ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(vec!["/kb/kb".into()]),
            cmd: Some(vec![
                "agent".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--host-key".into(),
                "/etc/kb/host_key".into(),
                "--authorized-key".into(),
                "/etc/kb/authorized_key".into(),
            ]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{volume}:/kb:ro"),
                    format!("{}:/etc/kb:ro", keys_dir.display()),
                ]),
                network_mode: Some("host".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(check).build()),
                body,
            )
            .await
            .map_err(call("create the agent check container"))?;
        self.docker
            .start_container(check, None)
            .await
            .map_err(call("start kb's agent in the new image"))?;
        Ok(())
    }

    /// Creates, starts and waits for a container; fails unless it exits 0.
    pub(super) async fn run_to_end(&self, name: &str, body: ContainerCreateBody) -> Result<()> {
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .map_err(call("create a container from the agent image"))?;
        self.docker
            .start_container(name, None)
            .await
            .map_err(call("start a container from the agent image"))?;
        let mut wait = self
            .docker
            .wait_container(name, Some(WaitContainerOptionsBuilder::default().build()));
        match wait.next().await {
            Some(Ok(r)) if r.status_code == 0 => Ok(()),
            Some(Ok(r)) => Err(Error::Io {
                action: "copy kb's agent out of the agent image".into(),
                source: std::io::Error::other(format!("the copy exited with {}", r.status_code)),
            }),
            Some(Err(err)) => Err(call("copy kb's agent out of the agent image")(err).into()),
            None => Ok(()),
        }
    }
}

/// Step 3: connects to the agent on `port` (retrying until it listens) and runs `echo` through it; the image
/// passes when the echo comes back.
async fn echo_through_agent(port: u16, client_key: PathBuf, keys: &TaskKeys) -> Result<()> {
    let config = crate::ssh::ClientConfig {
        identities: vec![client_key],
        pinned_host_keys: vec![keys.host_public.clone()],
        known_hosts: Vec::new(),
    };
    let login = crate::ssh::SshLogin::parse(&format!("127.0.0.1:{port}"))?;
    let deadline = tokio::time::Instant::now() + AGENT_CHECK_TIMEOUT;
    let conn = loop {
        match crate::ssh::Connection::connect(&login, &config).await {
            Ok(conn) => break conn,
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (_signals_tx, signals) = tokio::sync::mpsc::unbounded_channel();
    let run = conn.exec("echo kb-agent-ok", tx, signals);
    let collect = async {
        let mut out = Vec::new();
        while let Some((_, chunk)) = rx.recv().await {
            out.extend_from_slice(&chunk);
        }
        out
    };
    let (exit, out) = tokio::join!(run, collect);
    conn.close().await;
    let exit = exit.map_err(|e| Error::Io {
        action: "run a command through kb's agent in the new image".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    if exit.success() && out == b"kb-agent-ok\n" {
        Ok(())
    } else {
        Err(Error::Io {
            action: "run a command through kb's agent in the new image".into(),
            source: std::io::Error::other(format!(
                "it ended with {exit:?} and printed {:?}; the image needs a working /bin/sh",
                String::from_utf8_lossy(&out)
            )),
        })
    }
}
