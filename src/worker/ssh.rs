//! Workers over SSH: one connection per host, one channel per running job. Used for `-S` hosts and, through a
//! port-forward stream, for pods.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{JobRun, RunError, Worker, WorkerEvent, WorkerSource};
use crate::model::{JobExit, JobSignal, OutputTx};
use crate::ssh::{ClientConfig, Connection, ExecError, SshLogin};

/// A worker that runs jobs on channels of one SSH connection.
pub struct SshWorker {
    name: String,
    conn: Connection,
    slots: usize,
    /// `cd DIR && ` in front of every command, when jobs must run in a given directory.
    prefix: String,
}

impl SshWorker {
    /// A worker named `name` (the joblog's `Host`) with `slots` slots; jobs run in `workdir` when given.
    pub fn new(name: String, conn: Connection, slots: usize, workdir: Option<&str>) -> Self {
        let prefix = match workdir {
            Some(dir) => format!("cd {} || exit 255; ", crate::template::quote(dir)),
            None => String::new(),
        };
        SshWorker { name, conn, slots, prefix }
    }
}

impl Worker for SshWorker {
    fn name(&self) -> &str {
        &self.name
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn run(
        self: Arc<Self>,
        job: JobRun,
        out: OutputTx,
        signals: mpsc::UnboundedReceiver<JobSignal>,
    ) -> BoxFuture<'static, Result<JobExit, RunError>> {
        async move {
            // The environment goes in the command, not in `env` requests: OpenSSH's sshd accepts only the variables
            // its `AcceptEnv` lists, and both sshd and kb's agent run the command through a POSIX shell.
            let command = format!(
                "export PARALLEL_SEQ={} PARALLEL_JOBSLOT={}; {}{}",
                job.seq, job.slot, self.prefix, job.command
            );
            self.conn.exec(&command, out, signals).await.map_err(|err| match err {
                ExecError::NotStarted(reason) => RunError::NotStarted { worker: self.name.clone(), reason },
                ExecError::Lost(reason) => RunError::CutOff { worker: self.name.clone(), reason },
            })
        }
        .boxed()
    }

    fn is_gone(&self) -> bool {
        self.conn.is_closed()
    }
}

/// Connects to `-S` hosts concurrently and announces each as it is ready.
pub struct SshSource {
    logins: Vec<SshLogin>,
    config: ClientConfig,
    /// `-j`: slots per host when the sshlogin does not say `N/`; `None` asks the host for its number of CPUs.
    jobs: Option<usize>,
}

impl SshSource {
    /// A source for `logins`.
    pub fn new(logins: Vec<SshLogin>, config: ClientConfig, jobs: Option<usize>) -> Self {
        SshSource { logins, config, jobs }
    }
}

impl WorkerSource for SshSource {
    fn start(self: Box<Self>, events: mpsc::Sender<WorkerEvent>, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        async move {
            let config = Arc::new(self.config);
            let mut connecting = JoinSet::new();
            for login in self.logins {
                let config = config.clone();
                let jobs = self.jobs;
                connecting.spawn(async move {
                    let name = login_name(&login);
                    match connect_worker(&login, &config, jobs).await {
                        Ok(worker) => WorkerEvent::Joined(Arc::new(worker)),
                        Err(err) => WorkerEvent::Failed { name, reason: crate::error::chain(&err) },
                    }
                });
            }
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => { connecting.shutdown().await; break; }
                    next = connecting.join_next() => match next {
                        Some(Ok(event)) => { let _ = events.send(event).await; }
                        Some(Err(_)) => {}
                        None => break,
                    },
                }
            }
            let _ = events.send(WorkerEvent::Done).await;
        }
        .boxed()
    }
}

async fn connect_worker(login: &SshLogin, config: &ClientConfig, jobs: Option<usize>) -> crate::ssh::Result<SshWorker> {
    let conn = Connection::connect(login, config).await?;
    let slots = match login.slots.or(jobs) {
        Some(n) => n.max(1),
        None => remote_cpus(&conn).await.unwrap_or(1),
    };
    Ok(SshWorker::new(login_name(login), conn, slots, None))
}

/// GNU parallel's default of one slot per CPU of the host, asked from the host itself.
async fn remote_cpus(conn: &Connection) -> Option<usize> {
    let (tx, mut rx) = mpsc::channel(64);
    let (_sig_tx, sig_rx) = mpsc::unbounded_channel();
    let exit = conn.exec("nproc 2>/dev/null || getconf _NPROCESSORS_ONLN", tx, sig_rx).await.ok()?;
    let mut text = Vec::new();
    while let Some((_, chunk)) = rx.recv().await {
        text.extend_from_slice(&chunk);
    }
    if !exit.success() {
        return None;
    }
    String::from_utf8_lossy(&text).trim().parse().ok()
}

/// The sshlogin as GNU parallel shows it in the joblog: `[user@]host[:port]`, without the slot count.
fn login_name(login: &SshLogin) -> String {
    let mut name = String::new();
    if let Some(user) = &login.user {
        name.push_str(user);
        name.push('@');
    }
    name.push_str(&login.host);
    if let Some(port) = login.port {
        name.push_str(&format!(":{port}"));
    }
    name
}
