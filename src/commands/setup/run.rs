//! `kb setup`: from an interactive shell in a local container to an image in a registry, without a Dockerfile.
//!
//! 1. Ask (or take from flags): share method, base image, image prefix, namespace. Check that Docker answers, the
//!    cluster is reachable with the rights a run needs, and the base and agent images are there. Nothing is created
//!    before all of that holds.
//! 2. A container from the base image, the project bind-mounted at its own path, the host's `/` at `/mnt`, host
//!    networking (the shell reaches what this machine reaches), a TTY in raw mode with resizes when stdin is a
//!    terminal; without one, the shell's commands come from stdin. An rc file kb mounts records the environment
//!    at the start and at the exit of the user's shell; what was exported in between becomes the image's.
//! 3. Commit, tag `<prefix>kb-<project>-<short image id>`, start kb's agent in the new image (from the agent image,
//!    as pods do) and run a command through it over SSH. Ask "Does it work?"; on yes push (progress bar) and write
//!    `kb.toml` and the user's prefix; on no remove the image and change nothing.
//! 4. The container, the check's container and volume are removed on every path: success, error, no, SIGINT,
//!    SIGTERM, SIGHUP. A kb killed outright leaves a container named `kb-setup-<host>-<pid>`, which the next
//!    `kb setup` on this machine removes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use super::args::SetupOpts;
use super::ask::{Answers, ask_all};
use super::session::Session;
use crate::commands::error::{Error, Result};
use crate::config::{self, ProjectConfig, UserConfig};
use crate::docker::{self};

/// The base image when neither the flag nor the project says.
pub const DEFAULT_BASE_IMAGE: &str = "debian:bookworm";
/// The label on everything `kb setup` creates in Docker.
pub(super) const SETUP_LABEL: &str = "kb.dev/setup";
/// Where kb's rc file and the environment records are mounted in the container.
pub(super) const SESSION_DIR: &str = "/run/kb-setup";
/// How long the agent in the new image has to answer.
pub(super) const AGENT_CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Variables a shell sets by itself, never kept in the image.
pub(super) const SHELL_OWN: &[&str] = &[
    "PWD", "OLDPWD", "SHLVL", "_", "TERM", "COLUMNS", "LINES", "HOSTNAME", "ENV", "BASH_ENV",
    "PS1", "PS2",
];

/// The shell started in the container: `$1` is the project directory, `$2` is `tty` or `pipe`.
pub(super) const START_SCRIPT: &str = r#"cd "$1" 2>/dev/null || cd /
env -0 > /run/kb-setup/env.start 2>/dev/null
if [ "$2" = tty ]; then
  echo "kb setup: install what the jobs need; export variables they need; exit (or Ctrl-D) when done." >&2
  if [ -x /bin/bash ]; then exec /bin/bash --rcfile /run/kb-setup/rc -i; fi
  ENV=/run/kb-setup/rc; export ENV; exec /bin/sh -i
fi
. /run/kb-setup/rc
eval "$(cat)"
"#;

/// Sourced by the user's shell: records its environment when it exits.
pub(super) const RC_FILE: &str = r#"unset ENV BASH_ENV
trap 'env -0 > /run/kb-setup/env.end 2>/dev/null' EXIT
if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi
case "$-" in *i*) PS1="(kb setup) ${PS1:-\$ }" ;; esac
"#;

/// Runs `kb setup`.
pub async fn exec(opts: SetupOpts) -> Result<u8> {
    let project_dir = std::env::current_dir().map_err(|source| Error::Io {
        action: "read the working directory".into(),
        source,
    })?;
    let terminal = std::io::stdin().is_terminal();
    if !opts.yes && !terminal {
        return Err(Error::usage(
            "kb setup asks its questions on a terminal, and stdin is not one",
            "give --yes with the answers as flags (--share, --base-image, --image-prefix, --namespace); the \
             shell's commands are then read from stdin",
        ));
    }
    let existing = read_project(&project_dir)?;
    let user = config::user_config()?;
    let answers = ask_all(&opts, &existing, &user)?;

    let (docker, agent_image) = prepare(&opts, &answers).await?;
    let run_as = run_as(opts.user.as_deref())?;

    let session = Session::new(&docker, &project_dir, &answers, run_as, terminal)?;
    let outcome = tokio::select! {
        outcome = session.run(&agent_image, opts.yes) => outcome,
        () = crate::commands::shell::interrupted() => Err(Error::Interrupted),
    };
    session.cleanup().await;
    let built = match outcome? {
        Some(built) => built,
        None => {
            eprintln!("kb setup: nothing pushed; kb.toml is unchanged");
            return Ok(crate::error::exit::FAILURE);
        }
    };

    record(&opts, &project_dir, &user, existing, &answers, &built)?;
    Ok(crate::error::exit::SUCCESS)
}

/// Checks Docker and the cluster before the user spends time in the shell, clears containers an earlier setup
/// left, and pulls the base and agent images. Returns Docker and the agent image.
async fn prepare(opts: &SetupOpts, answers: &Answers) -> Result<(Docker, String)> {
    eprintln!("kb setup: checking Docker and the cluster");
    let docker = docker::connect().await?;
    let target = crate::k8s::Target {
        context: opts.kube.context.clone(),
        namespace: Some(answers.namespace.clone()),
    };
    crate::k8s::client::connect(&target, crate::k8s::client::RUN_RIGHTS).await?;
    remove_stale_containers(&docker).await;
    docker::ensure_image(&docker, &answers.base_image).await?;
    let agent_image = opts
        .agent_image
        .clone()
        .unwrap_or_else(crate::k8s::task::default_agent_image);
    docker::ensure_image(&docker, &agent_image).await?;
    Ok((docker, agent_image))
}

/// Records the choices once `built` is pushed: the user's image prefix, then the project's kb.toml.
fn record(
    opts: &SetupOpts,
    project_dir: &Path,
    user: &UserConfig,
    existing: Option<ProjectConfig>,
    answers: &Answers,
    built: &str,
) -> Result<()> {
    // The user's prefix first, so a project file never names an unrecorded prefix.
    if user.image_prefix.as_deref() != Some(answers.prefix.as_str())
        && let Some(path) = config::user_config_path()
    {
        let user = UserConfig {
            version: config::VERSION,
            image_prefix: Some(answers.prefix.clone()),
        };
        config::write(&path, config::USER_HEADER, &user)?;
    }
    let existing = existing.unwrap_or_default();
    // The limits are written out so that they are seen and can be changed where the project's choices live.
    let project = ProjectConfig {
        version: config::VERSION,
        image: Some(built.to_string()),
        base_image: Some(answers.base_image.clone()),
        share: Some(answers.share),
        lazy_mount: opts.lazy_mount.or(existing.lazy_mount),
        namespace: Some(answers.namespace.clone()),
        orphan_timeout: existing
            .orphan_timeout
            .clone()
            .or_else(|| Some(short_duration(crate::k8s::lifetime::DEFAULT_ORPHAN_TIMEOUT))),
        max_runtime: existing
            .max_runtime
            .clone()
            .or_else(|| Some(short_duration(crate::k8s::lifetime::DEFAULT_MAX_RUNTIME))),
    };
    let path = project_dir.join(config::PROJECT_FILE);
    config::write(&path, config::PROJECT_HEADER, &project)?;
    eprintln!(
        "kb setup: pushed {built}; {} records it, and `kb parallel` and `kb shell` here use it",
        path.display()
    );
    Ok(())
}

pub(super) fn read_project(dir: &Path) -> Result<Option<ProjectConfig>> {
    let path = dir.join(config::PROJECT_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(config::find_project(dir)?.map(|found| found.config))
}

/// Who the shell runs as: `None` for the image's user (root in most), else `uid:gid`.
pub(super) fn run_as(choice: Option<&str>) -> Result<Option<String>> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    match choice.unwrap_or("me") {
        "me" if uid == 0 => Ok(None),
        "me" => Ok(Some(format!("{uid}:{gid}"))),
        "root" => Ok(Some("0:0".into())),
        other
            if other
                .split(':')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Ok(Some(other.to_string()))
        }
        other => Err(Error::usage(
            format!("`--user {other}` is not me, root or UID[:GID]"),
            "give --user me, --user root or a numeric --user 1000:1000",
        )),
    }
}

/// This machine's name, for container names.
pub(super) fn host_tag() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

/// Removes containers a `kb setup` on this machine left when it was killed outright (its PID is gone).
pub(super) async fn remove_stale_containers(docker: &Docker) {
    let mut filters = std::collections::HashMap::new();
    filters.insert("label".to_string(), vec![SETUP_LABEL.to_string()]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(list) = docker.list_containers(Some(options)).await else {
        return;
    };
    let mine = format!("/kb-setup-{}-", host_tag());
    for container in list {
        for name in container.names.unwrap_or_default() {
            let Some(rest) = name.strip_prefix(&mine) else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
            });
            if !alive {
                tracing::info!("removing {name}, left by a kb setup that was killed");
                let _ = docker
                    .remove_container(
                        name.trim_start_matches('/'),
                        Some(
                            RemoveContainerOptionsBuilder::default()
                                .force(true)
                                .v(true)
                                .build(),
                        ),
                    )
                    .await;
            }
        }
    }
}

/// `10m`, `24h`, `90s`: the largest whole unit.
pub(super) fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(3600) && secs > 0 {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) && secs > 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

pub(super) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The variables in `end` (NUL-separated `KEY=VALUE`) that are not in `start` with the same value, minus a shell's
/// own.
pub(super) fn exported_diff(start: &[u8], end: &[u8]) -> BTreeMap<String, String> {
    let parse = |bytes: &[u8]| -> BTreeMap<String, String> {
        bytes
            .split(|b| *b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (key, value) = entry.split_once('=')?;
                Some((key.to_string(), value.to_string()))
            })
            .collect()
    };
    let start = parse(start);
    parse(end)
        .into_iter()
        .filter(|(key, value)| {
            !SHELL_OWN.contains(&key.as_str()) && !key.is_empty() && start.get(key) != Some(value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn exported_variables_are_the_new_and_changed_ones() {
        let start = b"PATH=/bin\0HOME=/root\0KEEP=same\0";
        let end = b"PATH=/opt/x/bin:/bin\0HOME=/root\0KEEP=same\0NEW=a=b\nc\0PWD=/w\0SHLVL=2\0_=/usr/bin/env\0";
        let kept = exported_diff(start, end);
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            vec![
                ("NEW".to_string(), "a=b\nc".to_string()),
                ("PATH".to_string(), "/opt/x/bin:/bin".to_string())
            ]
        );
    }

    #[test]
    pub(super) fn limits_are_written_in_their_largest_unit() {
        assert_eq!(short_duration(Duration::from_secs(600)), "10m");
        assert_eq!(short_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(short_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    pub(super) fn the_shell_user_is_me_root_or_numeric() {
        assert_eq!(run_as(Some("root")).unwrap(), Some("0:0".into()));
        assert_eq!(run_as(Some("1000:1000")).unwrap(), Some("1000:1000".into()));
        assert!(run_as(Some("alice")).is_err());
        assert!(run_as(Some("1000:")).is_err());
        let me = run_as(None).unwrap();
        if nix::unistd::getuid().is_root() {
            assert_eq!(me, None);
        } else {
            assert!(me.is_some());
        }
    }
}
