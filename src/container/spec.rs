//! A task's containers as Docker will create them, built from plain data without I/O: names, labels, bind mounts,
//! the agent's command line and the CPU and memory limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

/// `kb` on everything kb creates.
pub const LABEL_MANAGED_BY: &str = "kb.dev/managed-by";
/// The task id: `finish` removes the containers that carry it.
pub const LABEL_TASK: &str = "kb.dev/task";
/// The machine that created the task (`model::origin`, as pods have it).
pub const LABEL_ORIGIN: &str = "kb.dev/origin";
/// The working directory, which is mounted at the same path.
pub const LABEL_PWD: &str = "kb.dev/pwd";
/// The process id of the client on the origin machine: once it is gone, the task is ORPHANED.
pub const LABEL_CLIENT_PID: &str = "kb.dev/client-pid";
/// The command line, for `kb status`.
pub const LABEL_COMMAND: &str = "kb.dev/command";
/// `--cpu` as given (a Kubernetes quantity), for `kb status`; absent without a limit.
pub const LABEL_CPU: &str = "kb.dev/cpu";
/// `--mem` as given (a Kubernetes quantity), for `kb status`; absent without a limit.
pub const LABEL_MEM: &str = "kb.dev/mem";
/// The label the style guide puts on everything kb creates, in Kubernetes and Docker alike.
const LABEL_APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The port kb's agent listens on inside each container.
pub(crate) const AGENT_PORT: u16 = 2222;
/// Where the agent binary is mounted in each container.
const AGENT_PATH: &str = "/kb/kb";
/// Where the agent's host key is mounted.
const HOST_KEY_PATH: &str = "/kb/host_key";
/// Where the client's public key (the agent's only authorized key) is mounted.
const AUTHORIZED_KEY_PATH: &str = "/kb/authorized_key";

/// The client's private key in the task's key directory (read by kb's SSH client, mode 0600).
pub(crate) const CLIENT_KEY_FILE: &str = "id_ed25519";
/// The agent's host key in the task's key directory (mounted read-only; readable by the image's user).
pub(crate) const HOST_KEY_FILE: &str = "host_key";
/// The client's public key in the task's key directory (mounted read-only).
pub(crate) const AUTHORIZED_KEY_FILE: &str = "authorized_key";

/// Everything the containers of one task are made from.
#[derive(Debug, Clone)]
pub(crate) struct TaskSpec {
    /// The task id.
    pub id: String,
    /// This machine (`model::origin`).
    pub origin: String,
    /// This client's process id.
    pub client_pid: u32,
    /// The command line.
    pub command: String,
    /// `--cpu` and `--mem` as the user gave them, for `kb status`.
    pub shown_limits: (Option<String>, Option<String>),
    /// The image the jobs run in.
    pub image: String,
    /// The working directory, mounted read-write at the same path; jobs run there.
    pub workdir: PathBuf,
    /// The static kb binary, mounted read-only at `/kb/kb`.
    pub agent_binary: PathBuf,
    /// The directory holding the task's key files.
    pub key_dir: PathBuf,
    /// `--cpu` in billionths of a CPU (Docker's `NanoCpus`), when given.
    pub nano_cpus: Option<i64>,
    /// `--mem` in bytes (Docker's `Memory`, a hard limit), when given.
    pub memory: Option<i64>,
    /// The agent exits once no client has been connected for this long.
    pub orphan_timeout: Option<Duration>,
    /// How many containers.
    pub count: usize,
}

impl TaskSpec {
    /// The name of container `index` (1-based): `kb-<task>-<index>`, also the joblog's `Host`.
    pub(crate) fn container_name(&self, index: usize) -> String {
        format!("kb-{}-{index}", self.id)
    }

    /// The labels every container of the task carries.
    pub(crate) fn labels(&self) -> HashMap<String, String> {
        let (cpu, mem) = &self.shown_limits;
        [
            (LABEL_MANAGED_BY, Some("kb".to_string())),
            (LABEL_APP_MANAGED_BY, Some("kb".to_string())),
            (LABEL_TASK, Some(self.id.clone())),
            (LABEL_ORIGIN, Some(self.origin.clone())),
            (LABEL_PWD, Some(self.workdir.display().to_string())),
            (LABEL_CLIENT_PID, Some(self.client_pid.to_string())),
            (LABEL_COMMAND, Some(self.command.clone())),
            (LABEL_CPU, cpu.clone()),
            (LABEL_MEM, mem.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect()
    }
}

/// The `label=` filter that selects the containers of task `id`.
pub(crate) fn build_task_filter(id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LABEL_TASK}={id}")])])
}

/// One container of the task: the image's user runs `/kb/kb agent` (the entrypoint is replaced, so the image's own
/// does not get in the way) in the working directory, and Docker removes the container when the agent exits.
pub(crate) fn build_container(spec: &TaskSpec) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec![AGENT_PATH.to_string()]),
        cmd: Some(build_agent_args(spec.orphan_timeout)),
        working_dir: Some(spec.workdir.display().to_string()),
        labels: Some(spec.labels()),
        host_config: Some(HostConfig {
            mounts: Some(build_mounts(spec)),
            nano_cpus: spec.nano_cpus,
            memory: spec.memory,
            auto_remove: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `agent --listen 0.0.0.0:2222 --host-key ... --authorized-key ... [--orphan-timeout SECONDS]`.
fn build_agent_args(orphan_timeout: Option<Duration>) -> Vec<String> {
    let mut args: Vec<String> = [
        "agent",
        "--listen",
        &format!("0.0.0.0:{AGENT_PORT}"),
        "--host-key",
        HOST_KEY_PATH,
        "--authorized-key",
        AUTHORIZED_KEY_PATH,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(timeout) = orphan_timeout {
        args.push("--orphan-timeout".into());
        args.push(timeout.as_secs().max(1).to_string());
    }
    args
}

/// The agent binary and the two public-or-host key files read-only, the working directory read-write at its own
/// path. `Mounts`, not `Binds`: a path with `:` or `,` in it needs no escaping there.
fn build_mounts(spec: &TaskSpec) -> Vec<Mount> {
    let bind = |source: &Path, target: &str, read_only: bool| Mount {
        source: Some(source.display().to_string()),
        target: Some(target.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    };
    let workdir = spec.workdir.display().to_string();
    vec![
        bind(&spec.agent_binary, AGENT_PATH, true),
        bind(&spec.key_dir.join(HOST_KEY_FILE), HOST_KEY_PATH, true),
        bind(
            &spec.key_dir.join(AUTHORIZED_KEY_FILE),
            AUTHORIZED_KEY_PATH,
            true,
        ),
        bind(&spec.workdir, &workdir, false),
    ]
}

/// Why the working directory cannot be mounted at its own path in a container, if it cannot: the root, or a
/// directory the image itself needs (mounting there would hide the image's own files, `/bin/sh` among them).
pub(crate) fn check_workdir(path: &Path) -> Option<&'static str> {
    const SYSTEM: &[&str] = &[
        "/", "/bin", "/boot", "/dev", "/etc", "/kb", "/lib", "/lib64", "/proc", "/run", "/sbin",
        "/sys", "/usr", "/var",
    ];
    if !path.is_absolute() {
        return Some("it is not an absolute path");
    }
    if SYSTEM.iter().any(|s| Path::new(s) == path) {
        return Some("mounted at its own path, it would hide the image's own files");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            id: "abc12345".into(),
            origin: "laptop".into(),
            client_pid: 4321,
            command: "sleep 1".into(),
            shown_limits: (Some("1500m".into()), None),
            image: "debian:bookworm".into(),
            workdir: "/home/alice/project".into(),
            agent_binary: "/opt/kb-static".into(),
            key_dir: "/tmp/kb-1000/abc12345".into(),
            nano_cpus: Some(1_500_000_000),
            memory: Some(256 << 20),
            orphan_timeout: Some(Duration::from_secs(600)),
            count: 2,
        }
    }

    #[test]
    fn containers_carry_the_task_labels_and_run_the_agent() {
        let body = build_container(&spec());
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "kb");
        assert_eq!(labels[LABEL_TASK], "abc12345");
        assert_eq!(labels[LABEL_ORIGIN], "laptop");
        assert_eq!(labels[LABEL_CLIENT_PID], "4321");
        assert_eq!(labels[LABEL_COMMAND], "sleep 1");
        assert_eq!(labels[LABEL_CPU], "1500m");
        assert!(!labels.contains_key(LABEL_MEM));
        assert_eq!(labels[LABEL_PWD], "/home/alice/project");
        assert_eq!(body.entrypoint.unwrap(), vec!["/kb/kb"]);
        assert_eq!(
            body.cmd.unwrap().join(" "),
            "agent --listen 0.0.0.0:2222 --host-key /kb/host_key --authorized-key /kb/authorized_key \
             --orphan-timeout 600"
        );
        assert_eq!(body.working_dir.as_deref(), Some("/home/alice/project"));
        assert_eq!(spec().container_name(2), "kb-abc12345-2");
        assert_eq!(
            build_task_filter("abc12345")["label"],
            vec!["kb.dev/task=abc12345"]
        );
    }

    #[test]
    fn limits_and_lifetime_go_to_the_host_config() {
        let host = build_container(&spec()).host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(256 << 20));
        assert_eq!(host.auto_remove, Some(true));
        let mut open = spec();
        (open.nano_cpus, open.memory, open.orphan_timeout) = (None, None, None);
        let body = build_container(&open);
        assert!(!body.cmd.unwrap().contains(&"--orphan-timeout".to_string()));
        let host = body.host_config.unwrap();
        assert_eq!((host.nano_cpus, host.memory), (None, None));
    }

    #[test]
    fn the_binary_and_keys_are_read_only_and_the_workdir_is_shared_at_its_path() {
        let mounts = build_container(&spec())
            .host_config
            .unwrap()
            .mounts
            .unwrap();
        let seen: Vec<(String, String, bool)> = mounts
            .into_iter()
            .map(|m| {
                assert_eq!(m.typ, Some(MountType::BIND));
                (m.source.unwrap(), m.target.unwrap(), m.read_only.unwrap())
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("/opt/kb-static".into(), "/kb/kb".into(), true),
                (
                    "/tmp/kb-1000/abc12345/host_key".into(),
                    "/kb/host_key".into(),
                    true
                ),
                (
                    "/tmp/kb-1000/abc12345/authorized_key".into(),
                    "/kb/authorized_key".into(),
                    true
                ),
                (
                    "/home/alice/project".into(),
                    "/home/alice/project".into(),
                    false
                ),
            ]
        );
    }

    #[test]
    fn system_directories_cannot_be_the_share() {
        assert!(check_workdir(Path::new("/")).is_some());
        assert!(check_workdir(Path::new("/usr")).is_some());
        assert!(check_workdir(Path::new("relative")).is_some());
        assert_eq!(check_workdir(Path::new("/usr/src/project")), None);
        assert_eq!(check_workdir(Path::new("/tmp/x")), None);
    }
}
