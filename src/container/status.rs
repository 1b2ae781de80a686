//! The container tasks of the local Docker engine for `kb status` and `kb finish`: kb's containers grouped by task
//! into rows (pure and tested), finishing tasks by id, and sweeping the key directories of tasks whose client was
//! killed outright. An engine that does not answer has no tasks: that is not an error here.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::ListContainersOptionsBuilder;

use super::error::Result;
use super::spec::{
    HOST_KEY_FILE, LABEL_CLIENT_PID, LABEL_COMMAND, LABEL_CPU, LABEL_MANAGED_BY, LABEL_MEM,
    LABEL_ORIGIN, LABEL_PWD, LABEL_TASK,
};
use crate::docker::call;
use crate::model::{CONTAINERS, TaskRow, show_age};

/// A key directory younger than this is left alone by the sweep: its task may be being created right now.
const SWEEP_AFTER: Duration = Duration::from_secs(120);

/// Lists the container tasks of the local engine: this machine's, or everyone's with `all`. No engine, no tasks.
pub async fn list_tasks(all: bool) -> Result<Vec<TaskRow>> {
    let Some(docker) = reach().await else {
        return Ok(Vec::new());
    };
    let here = crate::model::origin();
    let containers = list_managed(&docker, (!all).then_some(here.as_str())).await?;
    let now = unix_now();
    Ok(build_rows(&containers, now, &here, &pid_alive))
}

/// Removes the containers (forced) and the key directory of each task in `ids`; returns the ids that had either.
pub async fn finish_ids(ids: &[String]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for id in ids {
        let dir = crate::ssh::task_keys::key_dir(id);
        if dir.join(HOST_KEY_FILE).exists() {
            found.push(id.clone());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let Some(docker) = reach().await else {
        return Ok(found);
    };
    let live = task_ids(&list_managed(&docker, None).await?);
    for id in ids.iter().filter(|id| live.contains(id.as_str())) {
        super::task::remove_task_containers(&docker, id).await?;
        if !found.contains(id) {
            found.push(id.clone());
        }
    }
    Ok(found)
}

/// Removes the key directories of container tasks that have no container left (their client was killed before it
/// could remove them). Only directories named like a task id that hold an agent host key, and not recent ones.
pub(crate) async fn sweep_key_dirs(docker: &Docker) {
    let root = crate::ssh::task_keys::key_dir("x");
    let Some(root) = root.parent() else { return };
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let live = match list_managed(docker, None).await {
        Ok(containers) => task_ids(&containers),
        Err(err) => {
            tracing::debug!(
                "not sweeping key directories: {}",
                crate::error::chain(&err)
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if is_stale_key_dir(&name, &path, age, &live) {
            tracing::debug!("removing the key directory of gone task {name}");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The sweep's rule: a container task's directory (task id form, an agent host key in it), old enough, whose task
/// has no container.
fn is_stale_key_dir(name: &str, path: &Path, age: Duration, live: &HashSet<String>) -> bool {
    crate::model::is_task_id_form(name)
        && age >= SWEEP_AFTER
        && !live.contains(name)
        && path.join(HOST_KEY_FILE).is_file()
}

/// The engine, or `None` (said at debug level) when it does not answer.
async fn reach() -> Option<Docker> {
    match crate::docker::connect().await {
        Ok(docker) => Some(docker),
        Err(err) => {
            tracing::debug!("no container tasks: {}", crate::error::chain(&err));
            None
        }
    }
}

/// kb's containers, running or not, only those made on `origin` when given.
async fn list_managed(docker: &Docker, origin: Option<&str>) -> Result<Vec<ContainerSummary>> {
    let mut labels = vec![format!("{LABEL_MANAGED_BY}=kb")];
    if let Some(origin) = origin {
        labels.push(format!("{LABEL_ORIGIN}={origin}"));
    }
    let filters = std::collections::HashMap::from([("label".to_string(), labels)]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    Ok(docker
        .list_containers(Some(options))
        .await
        .map_err(call("list kb's containers"))?)
}

fn task_ids(containers: &[ContainerSummary]) -> HashSet<String> {
    containers
        .iter()
        .filter_map(|c| label(c, LABEL_TASK))
        .map(str::to_string)
        .collect()
}

fn label<'a>(container: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    container.labels.as_ref()?.get(key).map(String::as_str)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// True when process `pid` of this machine exists (one of another user's counts: it is there).
fn pid_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// One row per task (`kb.dev/task`), sorted by id: `now` in Unix seconds, `here` this machine's origin, `alive`
/// whether a process of this machine exists.
pub(crate) fn build_rows(
    containers: &[ContainerSummary],
    now: i64,
    here: &str,
    alive: &dyn Fn(i32) -> bool,
) -> Vec<TaskRow> {
    let mut by_task: BTreeMap<&str, Vec<&ContainerSummary>> = BTreeMap::new();
    for container in containers {
        if let Some(id) = label(container, LABEL_TASK) {
            by_task.entry(id).or_default().push(container);
        }
    }
    by_task
        .into_iter()
        .map(|(id, group)| build_row(id, &group, now, here, alive))
        .collect()
}

fn build_row(
    id: &str,
    group: &[&ContainerSummary],
    now: i64,
    here: &str,
    alive: &dyn Fn(i32) -> bool,
) -> TaskRow {
    let first = group[0];
    let text = |key: &str| label(first, key).unwrap_or_default().to_string();
    let running = group
        .iter()
        .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
        .count();
    let origin = text(LABEL_ORIGIN);
    let mut status = build_status(group);
    if matches!(status, "RUNNING" | "STARTING") && origin == here {
        let pid = label(first, LABEL_CLIENT_PID)
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|&p| p > 0);
        if pid.is_some_and(|pid| !alive(pid)) {
            status = "ORPHANED";
        }
    }
    let created = group.iter().filter_map(|c| c.created).min();
    let limit = |key: &str| label(first, key).unwrap_or("-").to_string();
    TaskRow {
        id: id.to_string(),
        backend: CONTAINERS.into(),
        age: created.map_or_else(|| "-".into(), |t| show_age(now, t)),
        status: status.into(),
        cpu: limit(LABEL_CPU),
        mem: limit(LABEL_MEM),
        health: format!("{running}/{}", group.len()),
        progress: "-".into(),
        pwd: text(LABEL_PWD),
        command: text(LABEL_COMMAND),
        origin,
        kind: "parallel".into(),
        exit_status: None,
        namespace: String::new(),
    }
}

/// RUNNING while a container runs; STARTING while one is created; once all have stopped FAILED when one ended
/// badly, FINISHING while Docker removes them, else DONE.
fn build_status(group: &[&ContainerSummary]) -> &'static str {
    use ContainerSummaryStateEnum as State;
    let any = |state: State| group.iter().any(|c| c.state == Some(state));
    if any(State::RUNNING) || any(State::PAUSED) || any(State::STOPPING) {
        return "RUNNING";
    }
    if any(State::CREATED) || any(State::RESTARTING) {
        return "STARTING";
    }
    let failed = group.iter().any(|c| {
        c.state == Some(State::DEAD)
            || (c.state == Some(State::EXITED) && exit_code(c).is_some_and(|code| code != 0))
    });
    if failed {
        "FAILED"
    } else if any(State::REMOVING) {
        "FINISHING"
    } else {
        "DONE"
    }
}

/// The exit code in Docker's status text (`Exited (1) 5 seconds ago`).
fn exit_code(container: &ContainerSummary) -> Option<i64> {
    let text = container.status.as_deref()?;
    let rest = text.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn container(task: &str, state: ContainerSummaryStateEnum, pid: &str) -> ContainerSummary {
        let labels = HashMap::from(
            [
                (LABEL_MANAGED_BY, "kb"),
                (LABEL_TASK, task),
                (LABEL_ORIGIN, "laptop"),
                (LABEL_PWD, "/home/a"),
                (LABEL_CLIENT_PID, pid),
                (LABEL_COMMAND, "sleep 60"),
                (LABEL_CPU, "500m"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        ContainerSummary {
            labels: Some(labels),
            state: Some(state),
            created: Some(1000),
            ..Default::default()
        }
    }

    #[test]
    fn containers_are_grouped_into_one_row_per_task() {
        use ContainerSummaryStateEnum as State;
        let containers = [
            container("bbbbbbbb", State::RUNNING, "7"),
            container("aaaaaaaa", State::RUNNING, "7"),
            container("aaaaaaaa", State::CREATED, "7"),
        ];
        let rows = build_rows(&containers, 1190, "laptop", &|_| true);
        assert_eq!(rows.len(), 2);
        let row = &rows[0];
        assert_eq!(row.id, "aaaaaaaa");
        assert_eq!(row.backend, "containers");
        assert_eq!(row.status, "RUNNING");
        assert_eq!(row.health, "1/2");
        assert_eq!(row.age, "3m");
        assert_eq!((row.cpu.as_str(), row.mem.as_str()), ("500m", "-"));
        assert_eq!(
            (row.pwd.as_str(), row.command.as_str()),
            ("/home/a", "sleep 60")
        );
        assert_eq!(
            (row.origin.as_str(), row.namespace.as_str()),
            ("laptop", "")
        );
    }

    #[test]
    fn a_task_whose_client_is_gone_from_this_machine_is_orphaned() {
        use ContainerSummaryStateEnum as State;
        let containers = [container("aaaaaaaa", State::RUNNING, "7")];
        let dead = |pid: i32| pid != 7;
        assert_eq!(
            build_rows(&containers, 0, "laptop", &dead)[0].status,
            "ORPHANED"
        );
        // Another machine's pid says nothing here; a pid that is alive is a client.
        assert_eq!(
            build_rows(&containers, 0, "other", &dead)[0].status,
            "RUNNING"
        );
        assert_eq!(
            build_rows(&containers, 0, "laptop", &|_| true)[0].status,
            "RUNNING"
        );
        // No pid label (an older kb): not known to be orphaned. Pid 0 is never asked about.
        let unknown = [container("aaaaaaaa", State::RUNNING, "0")];
        assert_eq!(
            build_rows(&unknown, 0, "laptop", &|_| false)[0].status,
            "RUNNING"
        );
        // A task that ended is not an orphan.
        let mut ended = container("aaaaaaaa", State::EXITED, "7");
        ended.status = Some("Exited (1) 3 seconds ago".into());
        assert_eq!(build_rows(&[ended], 0, "laptop", &dead)[0].status, "FAILED");
    }

    #[test]
    fn stopped_containers_say_how_they_ended() {
        use ContainerSummaryStateEnum as State;
        let mut ok = container("a", State::EXITED, "7");
        ok.status = Some("Exited (0) 1 second ago".into());
        assert_eq!(build_status(&[&ok]), "DONE");
        let removing = container("a", State::REMOVING, "7");
        assert_eq!(build_status(&[&ok, &removing]), "FINISHING");
        assert_eq!(exit_code(&ok), Some(0));
    }

    #[test]
    fn only_old_container_key_dirs_without_containers_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("abcd1234");
        std::fs::create_dir(&dir).unwrap();
        let old = SWEEP_AFTER * 2;
        let none = HashSet::new();
        // A pod task's directory holds only the client key.
        assert!(!is_stale_key_dir("abcd1234", &dir, old, &none));
        std::fs::write(dir.join(HOST_KEY_FILE), "k").unwrap();
        assert!(is_stale_key_dir("abcd1234", &dir, old, &none));
        assert!(!is_stale_key_dir(
            "abcd1234",
            &dir,
            Duration::from_secs(5),
            &none
        ));
        let live = HashSet::from(["abcd1234".to_string()]);
        assert!(!is_stale_key_dir("abcd1234", &dir, old, &live));
        assert!(!is_stale_key_dir("Not-a-task", &dir, old, &none));
    }
}
