//! A container task's life: `preflight` checks the request while nothing exists, `plan` turns it into the task's
//! spec (pure), `apply` writes the keys and creates and starts the containers, and [`ContainerTask::finish`] removes
//! every container carrying the task's label and the keys. `finish` is also the one rollback path of `create`.

use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};

use super::error::{Error, Result};
use super::preflight::{Checked, preflight};
use super::source::ContainerSource;
use super::spec::{
    AUTHORIZED_KEY_FILE, CLIENT_KEY_FILE, HOST_KEY_FILE, TaskSpec, build_container,
    build_task_filter,
};
use crate::docker::call;
use crate::ssh::ClientConfig;
use crate::ssh::task_keys::{TaskKeys, build_task_keys};
use crate::worker::WorkerSource;

/// How long `finish` waits for Docker to have removed every container of the task.
const REMOVE_WAIT: Duration = Duration::from_secs(10);

/// What `kb parallel --containers N` asks for, as plain data.
#[derive(Debug, Clone)]
pub struct Request {
    /// How many containers.
    pub count: usize,
    /// The image the jobs run in (it must be in the local engine).
    pub image: String,
    /// CPUs each container may use (`--cpu`, cores), when given.
    pub cpu: Option<f64>,
    /// Memory each container may use (`--mem`, bytes), when given.
    pub mem: Option<u64>,
    /// Job slots per container (`-j`), when given.
    pub slots: Option<usize>,
    /// The containers end once no client has been connected for this long; `None`: never.
    pub orphan_timeout: Option<Duration>,
    /// The working directory, shared with the containers at the same path.
    pub workdir: PathBuf,
    /// The command line, for diagnostics and `kb status`.
    pub command: String,
    /// `--cpu` and `--mem` as the user gave them, for `kb status`.
    pub shown_limits: (Option<String>, Option<String>),
    /// `--agent-binary` / `KB_AGENT_BINARY`; `None` takes the running kb when it is static.
    pub agent_binary: Option<PathBuf>,
}

/// A task whose containers run in the local Docker engine. Call [`ContainerTask::finish`] to remove them.
pub struct ContainerTask {
    docker: Docker,
    spec: TaskSpec,
    slots: usize,
    ssh: ClientConfig,
    /// The containers created so far, by name.
    containers: Vec<String>,
}

impl ContainerTask {
    /// Checks the request, then creates and starts the containers; nothing of the task is left when it fails.
    pub async fn create(request: Request) -> Result<ContainerTask> {
        let checked = preflight(&request).await?;
        super::status::sweep_key_dirs(&checked.docker).await;
        let keys = build_task_keys().map_err(|source| Error::KeyGen { source })?;
        let mut task = plan(&request, checked, &keys);
        tracing::info!(
            task = task.spec.id,
            command = request.command,
            "creating containers"
        );
        match task.apply(&keys).await {
            Ok(()) => Ok(task),
            Err(err) => {
                if let Err(cleanup) = task.finish().await {
                    tracing::warn!("rolling back: {}", crate::error::chain(&cleanup));
                }
                Err(err)
            }
        }
    }

    /// Writes the key files, creates the containers one by one, then starts them all at once.
    async fn apply(&mut self, keys: &TaskKeys) -> Result<()> {
        write_keys(&self.spec.key_dir, keys)?;
        let body = build_container(&self.spec);
        for index in 1..=self.spec.count {
            let name = self.spec.container_name(index);
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            self.docker
                .create_container(Some(options), body.clone())
                .await
                .map_err(call(format!(
                    "create container `{name}` from `{}`",
                    self.spec.image
                )))?;
            self.containers.push(name);
        }
        let docker = &self.docker;
        let starts = self.containers.iter().map(|name| async move {
            docker
                .start_container(name, None)
                .await
                .map_err(call(format!("start container `{name}`")))
        });
        futures::future::try_join_all(starts).await?;
        Ok(())
    }

    /// The task id (the containers' `kb.dev/task` label).
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The line to print when the task starts: its id, its containers and when they end.
    pub fn announcement(&self) -> String {
        let orphan = match self.spec.orphan_timeout {
            Some(timeout) => format!(
                "they end {} after this client is gone",
                humantime::format_duration(timeout)
            ),
            None => "they do not end when this client is gone".into(),
        };
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "kb: task {}: {} container{} of `{}` in the local Docker engine, {} job slot{} each; {orphan} (change \
             with --orphan-timeout)",
            self.spec.id,
            self.spec.count,
            plural(self.spec.count),
            self.spec.image,
            self.slots,
            plural(self.slots)
        )
    }

    /// Job slots per container.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The containers as workers, announced as each agent answers.
    pub fn worker_source(&self) -> Box<dyn WorkerSource> {
        Box::new(ContainerSource::new(
            self.docker.clone(),
            self.containers.clone(),
            self.ssh.clone(),
            self.slots,
            self.spec.workdir.clone(),
        ))
    }

    /// Nothing to bring back: the working directory is bind-mounted, so what the jobs wrote is already here.
    pub async fn syncback(&self) {}

    /// Removes every container of the task (by label, whatever state it is in; running it again is harmless) and
    /// the task's key files.
    pub async fn finish(self) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.spec.key_dir);
        remove_task_containers(&self.docker, &self.spec.id).await
    }
}

/// The task as it will be created; creates nothing.
fn plan(request: &Request, checked: Checked, keys: &TaskKeys) -> ContainerTask {
    let id = crate::model::new_task_id();
    let key_dir = crate::ssh::task_keys::key_dir(&id);
    let spec = TaskSpec {
        origin: crate::model::origin(),
        client_pid: std::process::id(),
        command: request.command.clone(),
        shown_limits: request.shown_limits.clone(),
        image: request.image.clone(),
        workdir: request.workdir.clone(),
        agent_binary: checked.agent.path.clone(),
        key_dir: key_dir.clone(),
        nano_cpus: request.cpu.map(|c| (c * 1e9).round() as i64),
        memory: request.mem.and_then(|m| i64::try_from(m).ok()),
        orphan_timeout: request.orphan_timeout,
        count: request.count,
        id,
    };
    let ssh = ClientConfig {
        identities: vec![key_dir.join(CLIENT_KEY_FILE)],
        pinned_host_keys: vec![keys.host_public.clone()],
        known_hosts: Vec::new(),
    };
    ContainerTask {
        docker: checked.docker,
        spec,
        slots: checked.slots,
        ssh,
        containers: Vec::new(),
    }
}

/// Force-removes the containers labelled with task `id` and waits until Docker lists none.
pub(super) async fn remove_task_containers(docker: &Docker, id: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + REMOVE_WAIT;
    loop {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&build_task_filter(id))
            .build();
        let found = docker
            .list_containers(Some(options))
            .await
            .map_err(call(format!("list the containers of task {id}")))?;
        let ids: Vec<String> = found.into_iter().filter_map(|c| c.id).collect();
        if ids.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Leftover {
                task: id.to_string(),
                count: ids.len(),
            });
        }
        let removals = ids.iter().map(|cid| remove_container(docker, cid));
        for result in futures::future::join_all(removals).await {
            result?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Force-removes one container; one that is already gone or being removed (by `auto_remove`) counts as removed.
async fn remove_container(docker: &Docker, id: &str) -> Result<()> {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => Ok(()),
        Err(err) => Err(call(format!("remove container `{id}`"))(err).into()),
    }
}

/// Writes the task's keys: the client key only this user reads (0600), the agent's two files readable by
/// anyone (0644) because the image's user, whoever it is, reads them through the bind mounts; the directory is
/// this user's alone (0700), so on this machine nobody else can reach them.
fn write_keys(dir: &std::path::Path, keys: &TaskKeys) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed = |source| Error::KeyFiles {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let client = keys
        .client
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|source| Error::KeyGen { source })?;
    let files = [
        (CLIENT_KEY_FILE, client.as_bytes(), 0o600),
        (HOST_KEY_FILE, keys.host_private.as_bytes(), 0o644),
        (AUTHORIZED_KEY_FILE, keys.client_public.as_bytes(), 0o644),
    ];
    for (name, text, mode) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(failed)?;
        // Set after writing: the umask may have taken bits away at creation.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn task_ids_are_fresh_docker_names() {
        let (a, b) = (crate::model::new_task_id(), crate::model::new_task_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 8);
        assert!(a.starts_with(|c: char| c.is_ascii_lowercase()));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn keys_are_written_for_the_client_and_the_image_user() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("kb-0").join("task");
        let keys = build_task_keys().unwrap();
        write_keys(&keys_dir, &keys).unwrap();
        let mode = |name: &str| {
            std::fs::metadata(keys_dir.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CLIENT_KEY_FILE), 0o600);
        assert_eq!(mode(HOST_KEY_FILE), 0o644);
        assert_eq!(mode(AUTHORIZED_KEY_FILE), 0o644);
        let dir_mode = std::fs::metadata(&keys_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let host = std::fs::read_to_string(keys_dir.join(HOST_KEY_FILE)).unwrap();
        assert_eq!(host, keys.host_private);
        russh::keys::load_secret_key(keys_dir.join(CLIENT_KEY_FILE), None).unwrap();
    }
}
