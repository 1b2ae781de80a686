//! Workers over SSH: one connection per host, one channel per running job. Used for `-S` hosts and, through a
//! port-forward stream, for pods.

use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    EventTx, JobAttempt, JobFuture, RunError, SourceFuture, Worker, WorkerEvent, WorkerSource,
};
use crate::model::JobSlots;
use crate::ssh::{ClientConfig, Connection, ExecError, SshLogin};

/// A worker that runs jobs on channels of one SSH connection.
pub struct SshWorker {
    name: String,
    conn: Connection,
    slots: usize,
    /// `cd DIR && ` in front of every command, when jobs must run in a given directory.
    prefix: String,
    /// The server cannot signal or kill jobs itself (not kb's agent): wrap commands with `ssh::guard_command`.
    guarded: bool,
}

impl SshWorker {
    /// A worker named `name` (the joblog's `Host`) with `slots` slots; jobs run in `workdir` when given.
    pub fn new(name: String, conn: Connection, slots: usize, workdir: Option<&str>) -> Self {
        // kb's agent takes any number of idle sessions: one spare channel per slot means no job waits for its
        // channel to open. `guarded` turns this off for other servers.
        conn.open_ahead(slots);
        let prefix = match workdir {
            Some(dir) => format!("cd {} || exit 255; ", crate::template::quote(dir)),
            None => String::new(),
        };
        SshWorker {
            name,
            conn,
            slots,
            prefix,
            guarded: false,
        }
    }

    /// The same worker for a server that is not kb's agent (OpenSSH's sshd): jobs are wrapped so that signals and
    /// a lost client still reach their whole process group.
    pub fn guarded(mut self) -> Self {
        self.guarded = true;
        self.conn.open_ahead(0);
        self
    }
}

impl Worker for SshWorker {
    fn name(&self) -> &str {
        &self.name
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn run(self: Arc<Self>, attempt: JobAttempt) -> JobFuture {
        let JobAttempt { job, out, signals } = attempt;
        async move {
            // The environment goes in the command, not in `env` requests: OpenSSH's sshd accepts only the variables
            // its `AcceptEnv` lists, and both sshd and kb's agent run the command through a POSIX shell.
            let command = format!(
                "export PARALLEL_SEQ={} PARALLEL_JOBSLOT={}; {}{}",
                job.seq, job.slot, self.prefix, job.command
            );
            let result = if self.guarded {
                self.conn
                    .exec_guarded(&crate::ssh::guard_command(&command), out, signals)
                    .await
            } else {
                self.conn.exec(&command, out, signals).await
            };
            result.map_err(|err| match err {
                ExecError::NotStarted(reason) => RunError::NotStarted {
                    worker: self.name.clone(),
                    reason,
                },
                ExecError::Lost(reason) => RunError::CutOff {
                    worker: self.name.clone(),
                    reason,
                },
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
    /// `-j`: slots per host when the sshlogin does not say `N/`, resolved against the host's number of CPUs
    /// (`None`: as many as it has).
    jobs: Option<JobSlots>,
}

impl SshSource {
    /// A source for `logins`.
    pub fn new(logins: Vec<SshLogin>, config: ClientConfig, jobs: Option<JobSlots>) -> Self {
        SshSource {
            logins,
            config,
            jobs,
        }
    }
}

impl WorkerSource for SshSource {
    fn start(self: Box<Self>, events: EventTx, cancel: CancellationToken) -> SourceFuture {
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
                        Err(err) => WorkerEvent::Failed {
                            name,
                            reason: crate::error::chain(&err),
                        },
                    }
                });
            }
            super::announce(connecting, &events, cancel).await;
        }
        .boxed()
    }
}

async fn connect_worker(
    login: &SshLogin,
    config: &ClientConfig,
    jobs: Option<JobSlots>,
) -> crate::ssh::Result<SshWorker> {
    let conn = Connection::connect(login, config).await?;
    let probe = probe(&conn).await;
    let cpus = probe.cpus.unwrap_or(1);
    let slots = login
        .slots
        .unwrap_or_else(|| jobs.map_or(cpus, |j| j.resolve(cpus)))
        .max(1);
    let worker = SshWorker::new(login_name(login), conn, slots, None);
    Ok(if probe.kb_agent {
        worker
    } else {
        worker.guarded()
    })
}

/// What one command tells of a host: whether kb's agent serves it, and its CPU count.
struct Probe {
    kb_agent: bool,
    cpus: Option<usize>,
}

/// Asks the host whether it is kb's agent and how many CPUs it has (GNU parallel's default of one slot per CPU).
async fn probe(conn: &Connection) -> Probe {
    let (tx, mut rx) = mpsc::channel(64);
    let (_sig_tx, sig_rx) = mpsc::unbounded_channel();
    let command = "echo \"${KB_AGENT:-0}\"; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN";
    let exit = conn.exec(command, tx, sig_rx).await;
    let mut text = Vec::new();
    while let Some((_, chunk)) = rx.recv().await {
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.lines().map(str::trim);
    let kb_agent = exit.is_ok() && lines.next() == Some("1");
    Probe {
        kb_agent,
        cpus: lines.next().and_then(|l| l.parse().ok()),
    }
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
