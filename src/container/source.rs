//! The task's containers as a [`WorkerSource`]: each container's agent is reached over SSH on the Docker bridge
//! (the container's IP, the agent's port, the task's host key pinned) as soon as it listens, and announced as a
//! worker right then, so the first job does not wait for the last container. A container that ends, or whose agent
//! does not answer in time, is reported with the last lines it printed, and the run goes on with the others.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::{FutureExt, Stream, StreamExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::spec::AGENT_PORT;
use crate::ssh::{ClientConfig, Connection, SshLogin};
use crate::worker::ssh::SshWorker;
use crate::worker::{EventTx, SourceFuture, WorkerEvent, WorkerSource};

/// How long a container's agent has to answer, unless `KB_START_TIMEOUT` (seconds) says otherwise.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause between two attempts to reach an agent that does not listen yet.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How much of a container's output is kept to explain why it ended.
const LOG_TAIL: usize = 2048;

/// Announces the containers of one task as workers.
pub struct ContainerSource {
    docker: Docker,
    containers: Vec<String>,
    ssh: Arc<ClientConfig>,
    slots: usize,
    workdir: String,
    start_timeout: Duration,
}

impl ContainerSource {
    /// A source for the started `containers` (by name), reached with `ssh`; each gets `slots` job slots, and jobs
    /// run in `workdir`.
    pub fn new(
        docker: Docker,
        containers: Vec<String>,
        ssh: ClientConfig,
        slots: usize,
        workdir: std::path::PathBuf,
    ) -> Self {
        let start_timeout = std::env::var("KB_START_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_START_TIMEOUT, Duration::from_secs);
        ContainerSource {
            docker,
            containers,
            ssh: Arc::new(ssh),
            slots,
            workdir: workdir.display().to_string(),
            start_timeout,
        }
    }

    /// Joins `name`: a worker, or why it cannot be one.
    async fn join_event(self: Arc<Self>, name: String) -> WorkerEvent {
        match self.join(&name).await {
            Ok(worker) => WorkerEvent::Joined(Arc::new(worker)),
            Err(err) => WorkerEvent::Failed {
                name,
                reason: crate::error::chain(&err),
            },
        }
    }

    /// Connects to the agent of container `name` while following its output, which explains an early end.
    async fn join(&self, name: &str) -> Result<SshWorker> {
        let mut tail = LogTail::follow(&self.docker, name);
        let connect = async {
            let ip = self.container_ip(name).await?;
            self.await_agent(name, &ip).await
        };
        tokio::pin!(connect);
        let result = loop {
            tokio::select! {
                result = &mut connect => break result,
                () = tail.next() => {}
            }
        };
        let conn = match result {
            Ok(conn) => conn,
            Err(Error::Ended { name, .. }) => {
                let logs = tail.finish().await;
                return Err(Error::Ended { name, logs });
            }
            Err(err) => return Err(err),
        };
        tracing::info!(container = name, "container joined");
        Ok(SshWorker::new(
            name.to_string(),
            conn,
            self.slots,
            Some(&self.workdir),
        ))
    }

    /// Tries to log in to the agent until it answers, the container ends, or the start timeout passes.
    async fn await_agent(&self, name: &str, ip: &str) -> Result<Connection> {
        let login = SshLogin {
            slots: None,
            user: Some("kb".into()),
            host: ip.to_string(),
            port: Some(AGENT_PORT),
        };
        let deadline = tokio::time::Instant::now() + self.start_timeout;
        loop {
            let err = match Connection::connect(&login, &self.ssh).await {
                Ok(conn) => return Ok(conn),
                Err(err) => err,
            };
            tracing::debug!(container = name, "agent not answering yet: {err}");
            if !self.is_running(name).await {
                return Err(Error::Ended {
                    name: name.to_string(),
                    logs: String::new(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::AgentTimeout {
                    name: name.to_string(),
                    seconds: self.start_timeout.as_secs(),
                    source: Box::new(err),
                });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The container's address on its (first) Docker network; [`Error::Ended`] when it no longer runs (an agent
    /// that fails at once can end, and take its address with it, before kb asks).
    async fn container_ip(&self, name: &str) -> Result<String> {
        let ended = || Error::Ended {
            name: name.to_string(),
            logs: String::new(),
        };
        let found = match self.docker.inspect_container(name, None).await {
            Ok(found) => found,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(ended()),
            Err(err) => {
                return Err(crate::docker::call(format!("inspect container `{name}`"))(err).into());
            }
        };
        if !found
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false)
        {
            return Err(ended());
        }
        found
            .network_settings
            .and_then(|n| n.networks)
            .into_iter()
            .flat_map(|networks| networks.into_values())
            .filter_map(|endpoint| endpoint.ip_address)
            .find(|ip| !ip.is_empty())
            .ok_or_else(|| Error::NoAddress {
                name: name.to_string(),
            })
    }

    /// Whether the container still runs (a removed one does not).
    async fn is_running(&self, name: &str) -> bool {
        match self.docker.inspect_container(name, None).await {
            Ok(found) => found.state.and_then(|s| s.running).unwrap_or(false),
            Err(_) => false,
        }
    }
}

impl WorkerSource for ContainerSource {
    fn start(self: Box<Self>, events: EventTx, cancel: CancellationToken) -> SourceFuture {
        async move {
            let this: Arc<Self> = Arc::from(self);
            let mut joining = JoinSet::new();
            for name in this.containers.clone() {
                joining.spawn(this.clone().join_event(name));
            }
            crate::worker::announce(joining, &events, cancel).await;
        }
        .boxed()
    }
}

/// The last output of a container, followed while kb waits for its agent: with `auto_remove`, a container that
/// ended is gone with its logs a moment later, so they are read as they come.
struct LogTail {
    stream: Option<std::pin::Pin<Box<dyn Stream<Item = LogItem> + Send>>>,
    text: Vec<u8>,
}

type LogItem = std::result::Result<LogOutput, bollard::errors::Error>;

impl LogTail {
    fn follow(docker: &Docker, name: &str) -> Self {
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        LogTail {
            stream: Some(docker.logs(name, Some(options)).boxed()),
            text: Vec::new(),
        }
    }

    /// Reads the next chunk; once the stream has ended, never returns.
    async fn next(&mut self) {
        let Some(stream) = &mut self.stream else {
            return std::future::pending().await;
        };
        match stream.next().await {
            Some(Ok(output)) => {
                self.text.extend_from_slice(&output.into_bytes());
                let excess = self.text.len().saturating_sub(LOG_TAIL);
                self.text.drain(..excess);
            }
            Some(Err(_)) | None => self.stream = None,
        }
    }

    /// Reads what is left (up to a second: the stream ends with the container) and returns the tail as `: ...`.
    async fn finish(mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.stream.is_some() {
                self.next().await;
            }
        })
        .await;
        show_tail(&self.text)
    }
}

/// The last lines of a container's output on one line (`: line; line`), or nothing when it printed nothing.
fn show_tail(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let last = &lines[lines.len().saturating_sub(5)..];
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", last.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_last_lines_explain_its_end() {
        assert_eq!(show_tail(b""), "");
        assert_eq!(show_tail(b"\n \n"), "");
        assert_eq!(
            show_tail(b"exec /kb/kb: exec format error\n"),
            ": exec /kb/kb: exec format error"
        );
        let many: String = (1..=8).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            show_tail(many.as_bytes()),
            ": line 4; line 5; line 6; line 7; line 8"
        );
    }
}
