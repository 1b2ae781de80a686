//! A pod as a worker: kb's SSH client over a Kubernetes port-forward to the pod's agent, the host key pinned.
//! Jobs run through [`crate::worker::ssh::SshWorker`]; this file only makes the connection and keeps the
//! port-forward alive as long as the worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Portforwarder};

use super::error::{Error, Result};
use super::resources::AGENT_PORT;
use crate::ssh::{ClientConfig, Connection};
use crate::worker::ssh::SshWorker;
use crate::worker::{JobAttempt, JobFuture, Worker};

/// How many times kb tries to reach the agent of a Ready pod before it gives up on the pod.
const CONNECT_TRIES: u32 = 3;
/// How long kb keeps trying to reconnect to a pod whose connection was lost while it still runs, unless
/// `KB_API_RETRY` (seconds) says otherwise: long enough for an API server to restart or fail over.
pub const DEFAULT_RECONNECT_LIMIT: Duration = Duration::from_secs(120);
/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// How kb reaches the agents of one task.
#[derive(Clone)]
pub struct AgentAccess {
    /// The Kubernetes client and namespace.
    pub kube: super::Kube,
    /// The client key file and the pinned host key.
    pub ssh: ClientConfig,
}

/// A pod that runs jobs.
pub struct PodWorker {
    inner: Arc<SshWorker>,
    forward: Portforwarder,
}

impl Drop for PodWorker {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

impl Worker for PodWorker {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn slots(&self) -> usize {
        self.inner.slots()
    }

    fn run(self: Arc<Self>, attempt: JobAttempt) -> JobFuture {
        self.inner.clone().run(attempt)
    }

    fn is_gone(&self) -> bool {
        self.inner.is_gone()
    }
}

/// An SSH connection to the agent of `pod` and the port-forward it rides on.
pub async fn connect_agent(access: &AgentAccess, pod: &str) -> Result<(Connection, Portforwarder)> {
    let mut last = None;
    for attempt in 0..CONNECT_TRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        match try_connect(access, pod).await {
            Ok(pair) => return Ok(pair),
            Err(err) => {
                tracing::debug!(
                    pod,
                    attempt,
                    "cannot reach the agent yet: {}",
                    crate::error::chain(&err)
                );
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Timeout {
        what: format!("kb's agent in pod `{pod}`"),
        seconds: 0,
    }))
}

async fn try_connect(access: &AgentAccess, pod: &str) -> Result<(Connection, Portforwarder)> {
    let pods: Api<Pod> = Api::namespaced(access.kube.client.clone(), &access.kube.namespace);
    let agent = |source: Box<dyn std::error::Error + Send + Sync>| Error::Agent {
        pod: pod.to_string(),
        source,
    };
    let mut forward = pods
        .portforward(pod, &[AGENT_PORT])
        .await
        .map_err(|e| agent(Box::new(e)))?;
    let stream = forward
        .take_stream(AGENT_PORT)
        .ok_or_else(|| agent("the port-forward gave no stream".into()))?;
    match Connection::connect_stream(stream, "kb", pod, &access.ssh).await {
        Ok(conn) => Ok((conn, forward)),
        Err(err) => {
            forward.abort();
            Err(agent(Box::new(err)))
        }
    }
}

/// Connects to `pod`, puts the working directory into it when `share` is given, and returns it as a worker
/// with `slots` slots whose jobs run in `workdir`.
pub async fn join_pod(
    access: &AgentAccess,
    pod: &str,
    slots: usize,
    workdir: Option<PathBuf>,
    share: Option<crate::k8s::share::PodShare>,
) -> Result<PodWorker> {
    let (conn, forward) = connect_agent(access, pod).await?;
    if let Some(share) = &share
        && let Err(err) = share.prepare(&conn, pod).await
    {
        forward.abort();
        return Err(err);
    }
    let workdir = workdir.map(|d| d.display().to_string());
    let inner = Arc::new(SshWorker::new(
        pod.to_string(),
        conn,
        slots,
        workdir.as_deref(),
    ));
    if let Some(share) = &share {
        share.joined(pod);
    }
    Ok(PodWorker { inner, forward })
}

/// `KB_API_RETRY` seconds, else [`DEFAULT_RECONNECT_LIMIT`].
pub fn reconnect_limit() -> Duration {
    std::env::var("KB_API_RETRY")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RECONNECT_LIMIT)
}

/// Connects again to `pod`, which had joined the run and lost its connection while it still runs, with
/// exponential backoff (0.5 s doubling up to 8 s) for up to `limit`; gives up early once the pod is gone. The
/// working directory is not copied again: it is still in the pod, with whatever the jobs wrote there.
pub async fn rejoin_pod(
    access: &AgentAccess,
    pod: &str,
    slots: usize,
    workdir: Option<PathBuf>,
    limit: Duration,
) -> Result<PodWorker> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut delay = Duration::from_millis(500);
    loop {
        let err = match join_pod(access, pod, slots, workdir.clone(), None).await {
            Ok(worker) => return Ok(worker),
            Err(err) => err,
        };
        if tokio::time::Instant::now() + delay > deadline || pod_is_gone(access, pod).await {
            return Err(err);
        }
        tracing::info!(
            pod,
            "reconnecting in {} ms: {}",
            delay.as_millis(),
            crate::error::chain(&err)
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// True when the API server says the pod no longer runs (deleted, or not Ready); false when it cannot say.
async fn pod_is_gone(access: &AgentAccess, pod: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(access.kube.client.clone(), &access.kube.namespace);
    match pods.get_opt(pod).await {
        Ok(None) => true,
        Ok(Some(found)) => super::pod_state::observe(&found) != super::pod_state::PodState::Ready,
        Err(_) => false,
    }
}

/// True when the API server answers a version request within 5 s.
pub async fn api_answers(kube: &super::Kube) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), kube.client.apiserver_version()).await,
        Ok(Ok(_))
    )
}
