//! The backend traits and the plain request every backend takes.

use async_trait::async_trait;

use super::Result;
use crate::k8s::PodShape;
use crate::model::TaskRow;
use crate::sched::Observer;
use crate::ssh::Connection;
use crate::worker::WorkerSource;

/// What a task is for, as the user asked; each backend checks it before creating anything.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The size and image of each worker, its lifetime limits and how it sees the working directory.
    pub shape: PodShape,
    /// How many workers (pods, containers).
    pub count: usize,
    /// Job slots per worker, when given.
    pub slots: Option<usize>,
    /// `parallel` or `shell`.
    pub kind: &'static str,
    /// The command line, for `kb status`.
    pub command: &'a str,
}

/// An interactive connection to one of a task's workers (`kb shell`), the working directory in place.
pub struct Terminal {
    /// The SSH connection to the worker's agent.
    pub conn: Connection,
    /// The working directory on the worker (the user's path).
    pub workdir: String,
    /// Keeps the connection's transport (a port-forward, say) open; dropped after the connection.
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Where tasks are made: Kubernetes pods, local containers.
#[async_trait]
pub trait TaskBackend: Send + Sync {
    /// Creates a task; it checks the request first and leaves nothing behind when it fails.
    async fn create(&self, request: Request<'_>) -> Result<Box<dyn Task>>;

    /// Attaches to task `id`, created elsewhere and handed over, with `slots` job slots per worker.
    async fn attach(&self, id: &str, slots: usize) -> Result<Box<dyn Task>>;

    /// The backend's tasks for `kb status`: this machine's (`model::origin`), or everyone's with `all`.
    async fn list(&self, all: bool) -> Result<Vec<TaskRow>>;

    /// Removes the tasks `ids` and everything they own, whoever made them (`kb finish`); returns the ids that had
    /// something to remove. An id this backend does not know is not an error.
    async fn finish_ids(&self, ids: &[String]) -> Result<Vec<String>>;

    /// Where the backend keeps its tasks, for messages (`namespace `kb``), once `list` or `finish_ids` reached it.
    fn scope(&self) -> Option<String>;
}

/// One task: its workers, and everything it made, until [`Task::finish`] removes it.
#[async_trait]
pub trait Task: Send + Sync {
    /// The task id (as `kb status` and `kb finish` take it).
    fn id(&self) -> &str;

    /// One line for the user: the task, its workers, and how to follow or end it.
    fn announcement(&self) -> String;

    /// Job slots per worker.
    fn slots(&self) -> usize;

    /// The task's workers, announced as they become usable.
    fn workers(&self) -> Box<dyn WorkerSource>;

    /// Receives the run's progress (done, total) for the task's heartbeat, when the backend keeps one.
    fn observer(&self) -> Option<Observer>;

    /// Connects to the task's first worker for an interactive session.
    async fn terminal(&self) -> Result<Terminal>;

    /// Brings back what the jobs wrote, when the task was asked to (reported on stderr).
    async fn syncback(&self);

    /// Removes everything the task made (running it twice is harmless).
    async fn finish(self: Box<Self>) -> Result<()>;
}
