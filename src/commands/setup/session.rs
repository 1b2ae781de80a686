//! One `kb setup` session: the container with the project mounted at its path, the user's shell in it, the
//! commit of what they installed, and the cleanup that runs on every path.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CommitContainerOptionsBuilder, CreateContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, ResizeContainerTTYOptionsBuilder,
    TagImageOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use super::ask::{Answers, ask_yes_no, project_name};
use super::run::*;
use super::stdin::StdinPump;
use crate::commands::error::{Error, Result};
use crate::docker::{self, call};

/// One setup session: the container, its files, and what was made.
pub(super) struct Session {
    pub(super) docker: Docker,
    pub(super) project_dir: PathBuf,
    pub(super) answers: Answers,
    pub(super) user: Option<String>,
    pub(super) terminal: bool,
    pub(super) dir: tempfile::TempDir,
    pub(super) name: String,
}

impl Session {
    pub(super) fn new(
        docker: &Docker,
        project_dir: &Path,
        answers: &Answers,
        user: Option<String>,
        terminal: bool,
    ) -> Result<Session> {
        let io = |action: &str| {
            let action = action.to_string();
            move |source| Error::Io { action, source }
        };
        let dir = tempfile::Builder::new()
            .prefix("kb-setup-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        // The container's user may be anyone: it must read the rc file and write the environment records.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .map_err(io("set up the temporary directory"))?;
        std::fs::write(dir.path().join("rc"), RC_FILE).map_err(io("write the shell's rc file"))?;
        let pid = std::process::id();
        Ok(Session {
            docker: docker.clone(),
            project_dir: project_dir.to_owned(),
            answers: answers.clone(),
            user,
            terminal,
            dir,
            name: format!("kb-setup-{}-{pid}", host_tag()),
        })
    }

    /// The whole session; `None` when the user said it does not work.
    pub(super) async fn run(&self, agent_image: &str, yes: bool) -> Result<Option<String>> {
        let base = self
            .docker
            .inspect_image(&self.answers.base_image)
            .await
            .map_err(call(format!("inspect `{}`", self.answers.base_image)))?;
        self.create().await?;
        let status = self.shell().await?;
        if status != 0 {
            eprintln!("kb setup: the shell exited with status {status}");
        }
        let kept = self.exported_variables();
        if !kept.is_empty() {
            let names: Vec<&str> = kept.keys().map(String::as_str).collect();
            eprintln!("kb setup: keeping exported variables: {}", names.join(", "));
        }
        let image = self.commit(&base, &kept).await?;
        let checked = self.check_agent(&image, agent_image).await;
        if let Err(err) = &checked {
            eprintln!("kb setup: kb's agent does not run in the new image:");
            err.render(&mut std::io::stderr());
        } else {
            eprintln!("kb setup: kb's agent runs jobs in the new image");
        }
        let works = if yes {
            checked.is_ok()
        } else {
            ask_yes_no("Does it work? [y/n] ")?
        };
        if !works {
            let _ = self
                .docker
                .remove_image(
                    &image,
                    Some(RemoveImageOptionsBuilder::default().force(true).build()),
                    None,
                )
                .await;
            checked?;
            return Ok(None);
        }
        docker::push(&self.docker, &image).await?;
        Ok(Some(image))
    }

    pub(super) async fn create(&self) -> Result<()> {
        let project = self.project_dir.display().to_string();
        let mode = if self.terminal { "tty" } else { "pipe" };
        let mut labels = std::collections::HashMap::new();
        labels.insert(SETUP_LABEL.to_string(), "1".to_string());
        let body = ContainerCreateBody {
            image: Some(self.answers.base_image.clone()),
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec![
                "-c".into(),
                START_SCRIPT.into(),
                "kb-setup".into(),
                project.clone(),
                mode.into(),
            ]),
            user: self.user.clone(),
            tty: Some(self.terminal),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{project}:{project}"),
                    "/:/mnt".into(),
                    format!("{}:{SESSION_DIR}", self.dir.path().display()),
                ]),
                network_mode: Some("host".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&self.name)
            .build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(call("create the setup container"))?;
        Ok(())
    }

    /// Attaches this terminal (or stdin and stdout) to the container until its shell exits; returns the status.
    pub(super) async fn shell(&self) -> Result<i64> {
        let options = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = self
            .docker
            .attach_container(&self.name, Some(options))
            .await
            .map_err(call("attach to the setup container"))?;
        self.docker
            .start_container(&self.name, None)
            .await
            .map_err(call("start the setup container"))?;
        let mut output = attached.output;
        let mut input = attached.input;
        let _raw = if self.terminal {
            self.resize().await;
            crate::commands::shell::RawMode::enter()
        } else {
            None
        };
        let mut winch = signal(SignalKind::window_change()).ok();
        let mut stdin = StdinPump::start();
        let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
        let mut stdin_open = true;
        loop {
            tokio::select! {
                read = stdin.chunks.recv(), if stdin_open => match read {
                    None => {
                        stdin_open = false;
                        let _ = input.shutdown().await;
                    }
                    Some(chunk) => {
                        if input.write_all(&chunk).await.is_err() {
                            stdin_open = false;
                        }
                        let _ = input.flush().await;
                    }
                },
                _ = async { winch.as_mut().expect("checked").recv().await }, if winch.is_some() && self.terminal => {
                    self.resize().await;
                }
                chunk = output.next() => match chunk {
                    Some(Ok(log)) => write_log(log, &mut stdout, &mut stderr).await,
                    Some(Err(err)) => {
                        tracing::debug!("attach stream: {err}");
                        break;
                    }
                    None => break,
                },
            }
        }
        self.wait_shell().await
    }

    /// Waits for the container's shell to exit; returns its status.
    async fn wait_shell(&self) -> Result<i64> {
        let mut wait = self.docker.wait_container(
            &self.name,
            Some(WaitContainerOptionsBuilder::default().build()),
        );
        match wait.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(call("wait for the setup shell")(err).into()),
            None => Ok(0),
        }
    }

    pub(super) async fn resize(&self) {
        let (cols, rows) = crate::commands::shell::window_size();
        let options = ResizeContainerTTYOptionsBuilder::default()
            .w(cols as i32)
            .h(rows as i32)
            .build();
        let _ = self.docker.resize_container_tty(&self.name, options).await;
    }

    /// Variables the user's shell exported (new or changed since it started), minus the shell's own.
    pub(super) fn exported_variables(&self) -> BTreeMap<String, String> {
        let read = |name: &str| std::fs::read(self.dir.path().join(name)).ok();
        match (read("env.start"), read("env.end")) {
            (Some(start), Some(end)) => exported_diff(&start, &end),
            (_, None) => {
                eprintln!(
                    "kb setup: the shell's environment could not be read at its exit (no `env` in the image, or \
                     the shell was killed); exported variables are not kept"
                );
                BTreeMap::new()
            }
            (None, Some(end)) => exported_diff(&[], &end),
        }
    }

    /// Commits the container with the base image's command and the kept variables; returns the tagged name.
    pub(super) async fn commit(
        &self,
        base: &bollard::models::ImageInspect,
        kept: &BTreeMap<String, String>,
    ) -> Result<String> {
        let config = build_commit_config(base, kept);
        let options = CommitContainerOptionsBuilder::default()
            .container(&self.name)
            .comment("made by kb setup")
            .pause(true)
            .build();
        eprintln!("kb setup: committing the container");
        let id = self
            .docker
            .commit_container(options, config)
            .await
            .map_err(call("commit the setup container"))?
            .id;
        let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
        let repo = format!(
            "{}kb-{}-{short}",
            self.answers.prefix,
            project_name(&self.project_dir)
        );
        self.docker
            .tag_image(
                &id,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(&repo)
                        .tag("latest")
                        .build(),
                ),
            )
            .await
            .map_err(call(format!("tag the image as `{repo}`")))?;
        Ok(repo)
    }

    /// Removes the container (whatever state it is in) and the temporary files.
    pub(super) async fn cleanup(self) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(err) = self
            .docker
            .remove_container(&self.name, Some(options))
            .await
            && !matches!(
                err,
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                }
            )
        {
            eprintln!(
                "kb: warning: could not remove the container `{}`: {err}",
                self.name
            );
        }
    }
}

/// Writes one piece of the container's output to this process's stdout or stderr, flushed at once since the
/// user is typing at a shell.
async fn write_log(log: LogOutput, stdout: &mut tokio::io::Stdout, stderr: &mut tokio::io::Stderr) {
    match log {
        LogOutput::StdErr { message } => {
            let _ = stderr.write_all(&message).await;
            let _ = stderr.flush().await;
        }
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            let _ = stdout.write_all(&message).await;
            let _ = stdout.flush().await;
        }
        LogOutput::StdIn { .. } => {}
    }
}

/// The committed image's config: the base image's command, entrypoint, user and working directory, and its
/// environment with the kept variables. Docker fills what the commit leaves unset from the container's config
/// (our shell, our user), so each is set.
fn build_commit_config(
    base: &bollard::models::ImageInspect,
    kept: &BTreeMap<String, String>,
) -> ContainerConfig {
    let base_config = base.config.clone().unwrap_or_default();
    let mut env: Vec<String> = base_config.env.clone().unwrap_or_default();
    for (key, value) in kept {
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
        env.push(format!("{key}={value}"));
    }
    let cmd = base_config
        .cmd
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into()]);
    ContainerConfig {
        env: Some(env),
        cmd: Some(cmd),
        entrypoint: Some(base_config.entrypoint.clone().unwrap_or_default()),
        user: Some(
            base_config
                .user
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "0".into()),
        ),
        working_dir: Some(
            base_config
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
        ),
        ..Default::default()
    }
}
