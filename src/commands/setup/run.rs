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
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CommitContainerOptionsBuilder, CreateContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder, ResizeContainerTTYOptionsBuilder, TagImageOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use super::args::SetupOpts;
use crate::commands::error::{Error, Result};
use crate::config::{self, ProjectConfig, Share, UserConfig};
use crate::docker::{self, call};
use crate::k8s::resources::{AGENT_IMAGE_BUSYBOX, AGENT_IMAGE_KB};

/// The base image when neither the flag nor the project says.
pub const DEFAULT_BASE_IMAGE: &str = "debian:bookworm";
/// The label on everything `kb setup` creates in Docker.
const SETUP_LABEL: &str = "kb.dev/setup";
/// Where kb's rc file and the environment records are mounted in the container.
const SESSION_DIR: &str = "/run/kb-setup";
/// How long the agent in the new image has to answer.
const AGENT_CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Variables a shell sets by itself, never kept in the image.
const SHELL_OWN: &[&str] = &[
    "PWD", "OLDPWD", "SHLVL", "_", "TERM", "COLUMNS", "LINES", "HOSTNAME", "ENV", "BASH_ENV",
    "PS1", "PS2",
];

/// The shell started in the container: `$1` is the project directory, `$2` is `tty` or `pipe`.
const START_SCRIPT: &str = r#"cd "$1" 2>/dev/null || cd /
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
const RC_FILE: &str = r#"unset ENV BASH_ENV
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

    // Pushed: record the choices. The user's prefix first, so a project file never names an unrecorded prefix.
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
        image: Some(built.clone()),
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
    Ok(crate::error::exit::SUCCESS)
}

/// What the user chose.
#[derive(Debug, Clone)]
struct Answers {
    share: Share,
    base_image: String,
    prefix: String,
    namespace: String,
}

fn read_project(dir: &Path) -> Result<Option<ProjectConfig>> {
    let path = dir.join(config::PROJECT_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(config::find_project(dir)?.map(|found| found.config))
}

fn ask_all(
    opts: &SetupOpts,
    existing: &Option<ProjectConfig>,
    user: &UserConfig,
) -> Result<Answers> {
    let ask = !opts.yes;
    let share = match opts.share {
        Some(share) => share,
        None => {
            let default = existing
                .as_ref()
                .and_then(|c| c.share)
                .unwrap_or(Share::Eager);
            if ask { ask_share(default)? } else { default }
        }
    };
    let base_default = existing
        .as_ref()
        .and_then(|c| c.base_image.clone())
        .unwrap_or_else(|| DEFAULT_BASE_IMAGE.into());
    let base_image = answer(
        ask,
        opts.base_image.clone(),
        "The image the shell starts from (it needs /bin/sh; kb's agent is added to pods by kb)",
        Some(base_default),
    )?;
    let prefix_default = user.image_prefix.clone().or_else(|| {
        std::env::var("KB_REGISTRY")
            .ok()
            .filter(|r| !r.is_empty())
            .map(|r| format!("{}/", r.trim_end_matches('/')))
    });
    let prefix = answer(
        ask,
        opts.image_prefix.clone(),
        "Where to push the image, a registry and path prefix the cluster can pull from (remembered for you)",
        prefix_default,
    )?;
    let prefix = normalize_prefix(&prefix)?;
    let namespace_default = existing
        .as_ref()
        .and_then(|c| c.namespace.clone())
        .unwrap_or_else(|| crate::k8s::manifests::DEFAULT_NAMESPACE.into());
    let namespace = answer(
        ask,
        opts.kube.namespace.clone(),
        "The namespace tasks of this project run in (`kb cluster-setup -n NS` prepares one)",
        Some(namespace_default),
    )?;
    Ok(Answers {
        share,
        base_image,
        prefix,
        namespace,
    })
}

fn ask_share(default: Share) -> Result<Share> {
    eprintln!(
        "How should the pods see this directory?\n  \
         lazy      files are read from this machine when a job opens them (not in this version yet: uploads as \
         eager does)\n  \
         eager     the directory is uploaded before each run (only what changed): jobs read at cluster speed\n  \
         syncback  eager, and files the jobs write come back here after the run\n  \
         none      jobs see only the image"
    );
    loop {
        let line = prompt(&format!(
            "share [lazy/eager/syncback/none] ({}): ",
            default.name()
        ))?;
        if line.is_empty() {
            return Ok(default);
        }
        match <Share as clap::ValueEnum>::from_str(&line, true) {
            Ok(share) => return Ok(share),
            Err(_) => eprintln!("  please answer lazy, eager, syncback or none"),
        }
    }
}

/// The flag's value, else the answer to `question` (empty takes `default`), else `default` with `--yes`.
fn answer(
    ask: bool,
    flag: Option<String>,
    question: &str,
    default: Option<String>,
) -> Result<String> {
    if let Some(value) = flag.filter(|v| !v.is_empty()) {
        return Ok(value);
    }
    if !ask {
        return default.ok_or_else(|| {
            Error::usage(
                format!("no answer for: {question}"),
                "give it as a flag (see `kb setup --help`)",
            )
        });
    }
    loop {
        let shown = default
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let line = prompt(&format!("{question}{shown}: "))?;
        match (line.is_empty(), &default) {
            (false, _) => return Ok(line),
            (true, Some(d)) => return Ok(d.clone()),
            (true, None) => eprintln!("  an answer is needed"),
        }
    }
}

fn prompt(text: &str) -> Result<String> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{text}");
    let _ = err.flush();
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| Error::Io {
            action: "read the answer".into(),
            source,
        })?;
    if read == 0 {
        return Err(Error::Interrupted);
    }
    Ok(line.trim().to_string())
}

/// `registry[/path]` with a trailing `/` (or `-`) so that `kb-<project>` can follow.
fn normalize_prefix(prefix: &str) -> Result<String> {
    let prefix = prefix.trim();
    if prefix.is_empty() || prefix.contains(char::is_whitespace) || prefix.contains('@') {
        return Err(Error::usage(
            format!("`{prefix}` is not an image prefix"),
            "give a registry and path such as `registry.example.com/team/` or `127.0.0.1:5000/`",
        ));
    }
    if prefix.ends_with('/') || prefix.ends_with('-') {
        Ok(prefix.to_string())
    } else {
        Ok(format!("{prefix}/"))
    }
}

/// The project's name as it may appear in an image name: lowercase letters, digits and single dashes.
fn project_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        "project".into()
    } else {
        name
    }
}

/// Who the shell runs as: `None` for the image's user (root in most), else `uid:gid`.
fn run_as(choice: Option<&str>) -> Result<Option<String>> {
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
fn host_tag() -> String {
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
async fn remove_stale_containers(docker: &Docker) {
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

/// One setup session: the container, its files, and what was made.
struct Session {
    docker: Docker,
    project_dir: PathBuf,
    answers: Answers,
    user: Option<String>,
    terminal: bool,
    dir: tempfile::TempDir,
    name: String,
}

impl Session {
    fn new(
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
    async fn run(&self, agent_image: &str, yes: bool) -> Result<Option<String>> {
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

    async fn create(&self) -> Result<()> {
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
    async fn shell(&self) -> Result<i64> {
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
                    Some(Ok(LogOutput::StdErr { message })) => {
                        let _ = stderr.write_all(&message).await;
                        let _ = stderr.flush().await;
                    }
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        let _ = stdout.write_all(&message).await;
                        let _ = stdout.flush().await;
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(err)) => {
                        tracing::debug!("attach stream: {err}");
                        break;
                    }
                    None => break,
                },
            }
        }
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

    async fn resize(&self) {
        let (cols, rows) = crate::commands::shell::window_size();
        let options = ResizeContainerTTYOptionsBuilder::default()
            .w(cols as i32)
            .h(rows as i32)
            .build();
        let _ = self.docker.resize_container_tty(&self.name, options).await;
    }

    /// Variables the user's shell exported (new or changed since it started), minus the shell's own.
    fn exported_variables(&self) -> BTreeMap<String, String> {
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
    async fn commit(
        &self,
        base: &bollard::models::ImageInspect,
        kept: &BTreeMap<String, String>,
    ) -> Result<String> {
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
        // Docker fills what the commit leaves unset from the container's config (our shell, our user): set each.
        let config = ContainerConfig {
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
        };
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

    /// Starts kb's agent in `image` the way a pod does (copied from the agent image) and runs a command through
    /// it over SSH.
    async fn check_agent(&self, image: &str, agent_image: &str) -> Result<()> {
        let volume = format!("{}-agent", self.name);
        let install = format!("{}-install", self.name);
        let check = format!("{}-check", self.name);
        let result = self
            .run_agent_check(image, agent_image, &volume, &install, &check)
            .await;
        for name in [&install, &check] {
            let _ = self
                .docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
        }
        let _ = self
            .docker
            .remove_volume(
                &volume,
                Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
            )
            .await;
        result
    }

    async fn run_agent_check(
        &self,
        image: &str,
        agent_image: &str,
        volume: &str,
        install: &str,
        check: &str,
    ) -> Result<()> {
        let mut labels = std::collections::HashMap::new();
        labels.insert(SETUP_LABEL.to_string(), "1".to_string());
        // 1. The agent image's kb and busybox into a volume, as the pod's init container does.
        let body = ContainerCreateBody {
            image: Some(agent_image.into()),
            entrypoint: Some(vec![AGENT_IMAGE_BUSYBOX.into()]),
            cmd: Some(vec![
                "cp".into(),
                AGENT_IMAGE_KB.into(),
                AGENT_IMAGE_BUSYBOX.into(),
                "/kb-install/".into(),
            ]),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:/kb-install")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.run_to_end(install, body).await?;
        // 2. The agent in the new image, with fresh keys, on a free loopback port of this machine.
        let keys = crate::ssh::task_keys::build_task_keys()
            .map_err(|source| crate::k8s::Error::Keys { source })?;
        let keys_dir = self.dir.path().join("keys");
        let io = |source| Error::Io {
            action: "write the check's keys".into(),
            source,
        };
        std::fs::create_dir_all(&keys_dir).map_err(io)?;
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        let client_key = keys_dir.join("client");
        let client_text = keys
            .client
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(&client_key, client_text.as_bytes()).map_err(io)?;
        std::fs::set_permissions(&client_key, std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        // The image's user, whoever it is, reads these two (as it reads a pod's Secret volume).
        let host_key = keys_dir.join("host_key");
        std::fs::write(&host_key, &keys.host_private).map_err(io)?;
        std::fs::set_permissions(&host_key, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        std::fs::write(keys_dir.join("authorized_key"), &keys.client_public).map_err(io)?;
        let port = free_port().map_err(io)?;
        let body = ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(vec!["/kb/kb".into()]),
            cmd: Some(vec![
                "agent".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--host-key".into(),
                "/etc/kb/host_key".into(),
                "--authorized-key".into(),
                "/etc/kb/authorized_key".into(),
            ]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{volume}:/kb:ro"),
                    format!("{}:/etc/kb:ro", keys_dir.display()),
                ]),
                network_mode: Some("host".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(check).build()),
                body,
            )
            .await
            .map_err(call("create the agent check container"))?;
        self.docker
            .start_container(check, None)
            .await
            .map_err(call("start kb's agent in the new image"))?;
        let config = crate::ssh::ClientConfig {
            identities: vec![client_key],
            pinned_host_keys: vec![keys.host_public.clone()],
            known_hosts: Vec::new(),
        };
        let login = crate::ssh::SshLogin::parse(&format!("127.0.0.1:{port}"))?;
        let deadline = tokio::time::Instant::now() + AGENT_CHECK_TIMEOUT;
        let conn = loop {
            match crate::ssh::Connection::connect(&login, &config).await {
                Ok(conn) => break conn,
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let (_signals_tx, signals) = tokio::sync::mpsc::unbounded_channel();
        let run = conn.exec("echo kb-agent-ok", tx, signals);
        let collect = async {
            let mut out = Vec::new();
            while let Some((_, chunk)) = rx.recv().await {
                out.extend_from_slice(&chunk);
            }
            out
        };
        let (exit, out) = tokio::join!(run, collect);
        conn.close().await;
        let exit = exit.map_err(|e| Error::Io {
            action: "run a command through kb's agent in the new image".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if exit.success() && out == b"kb-agent-ok\n" {
            Ok(())
        } else {
            Err(Error::Io {
                action: "run a command through kb's agent in the new image".into(),
                source: std::io::Error::other(format!(
                    "it ended with {exit:?} and printed {:?}; the image needs a working /bin/sh",
                    String::from_utf8_lossy(&out)
                )),
            })
        }
    }

    /// Creates, starts and waits for a container; fails unless it exits 0.
    async fn run_to_end(&self, name: &str, body: ContainerCreateBody) -> Result<()> {
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .map_err(call("create a container from the agent image"))?;
        self.docker
            .start_container(name, None)
            .await
            .map_err(call("start a container from the agent image"))?;
        let mut wait = self
            .docker
            .wait_container(name, Some(WaitContainerOptionsBuilder::default().build()));
        match wait.next().await {
            Some(Ok(r)) if r.status_code == 0 => Ok(()),
            Some(Ok(r)) => Err(Error::Io {
                action: "copy kb's agent out of the agent image".into(),
                source: std::io::Error::other(format!("the copy exited with {}", r.status_code)),
            }),
            Some(Err(err)) => Err(call("copy kb's agent out of the agent image")(err).into()),
            None => Ok(()),
        }
    }

    /// Removes the container (whatever state it is in) and the temporary files.
    async fn cleanup(self) {
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

/// Reads stdin on a thread of its own that polls before each read and stops when dropped, so that nothing typed
/// after the shell ends is swallowed: the "Does it work?" answer must reach the prompt, not a reader left blocked.
struct StdinPump {
    chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StdinPump {
    fn start() -> StdinPump {
        use std::sync::atomic::Ordering;
        let (tx, chunks) = tokio::sync::mpsc::channel(16);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let stdin = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                let mut fds = [nix::poll::PollFd::new(
                    stdin.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u8)) {
                    Ok(0) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                    Ok(_) => {}
                }
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                    Err(_) => break,
                }
            }
        });
        StdinPump { chunks, stop }
    }
}

impl Drop for StdinPump {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `10m`, `24h`, `90s`: the largest whole unit.
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(3600) && secs > 0 {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) && secs > 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn ask_yes_no(question: &str) -> Result<bool> {
    loop {
        let line = prompt(question)?.to_lowercase();
        match line.as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => eprintln!("  please answer y or n"),
        }
    }
}

/// The variables in `end` (NUL-separated `KEY=VALUE`) that are not in `start` with the same value, minus a shell's
/// own.
fn exported_diff(start: &[u8], end: &[u8]) -> BTreeMap<String, String> {
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
    fn exported_variables_are_the_new_and_changed_ones() {
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
    fn prefixes_and_project_names_make_valid_image_names() {
        assert_eq!(
            normalize_prefix("127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000/"
        );
        assert_eq!(normalize_prefix("reg.io/team/").unwrap(), "reg.io/team/");
        assert_eq!(
            normalize_prefix("reg.io/team/x-").unwrap(),
            "reg.io/team/x-"
        );
        assert!(normalize_prefix("").is_err());
        assert!(normalize_prefix("a b").is_err());
        assert_eq!(
            project_name(Path::new("/home/u/My Project_2")),
            "my-project-2"
        );
        assert_eq!(project_name(Path::new("/")), "project");
        assert_eq!(project_name(Path::new("/x/--a--")), "a");
    }

    #[test]
    fn limits_are_written_in_their_largest_unit() {
        assert_eq!(short_duration(Duration::from_secs(600)), "10m");
        assert_eq!(short_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(short_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn the_shell_user_is_me_root_or_numeric() {
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
