//! `kb parallel`: build the input, the template and the workers from the options, then hand them to the scheduler.
//! Everything the options say is checked here, before any worker is contacted.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::ParallelOpts;
use crate::commands::error::{Error, Result};
use crate::input::{InputSpec, Inputs, Source};
use crate::output::printer::{Mode, Printer};
use crate::output::progress::Progress;
use crate::sched::{self, RunSpec, halt};
use crate::ssh::{ClientConfig, SshLogin};
use crate::template::Template;
use crate::worker::WorkerSource;
use crate::worker::local::LocalSource;
use crate::worker::ssh::SshSource;

/// Runs `kb parallel`.
pub async fn exec(opts: ParallelOpts) -> Result<u8> {
    exec_with(opts, None).await
}

/// Runs `kb parallel`; with `attach`, on the pods of that existing task (`kb coordinate`) instead of a new one.
pub async fn exec_with(mut opts: ParallelOpts, attach: Option<String>) -> Result<u8> {
    if attach.is_none() && (opts.pods.pods.is_some() || opts.containers.is_some()) {
        // kb.toml's image, share, namespace and limits, where no flag or variable says otherwise.
        let pods = &mut opts.pods;
        super::project_defaults(&mut pods.shape, &mut pods.namespace)?;
    }
    if opts.r#async && !opts.dry_run {
        return super::handover::exec(opts).await;
    }
    let (words, sources) = crate::input::split_command(&opts.command);
    let spec = input_spec(&opts, sources);
    // With no command, each input line is a command, as in GNU parallel.
    let template = if words.is_empty() {
        Template::parse_tagstring("{}")
    } else {
        Template::parse(&words)
    };
    let halt = match &opts.halt {
        Some(value) => halt::parse(value)
            .map_err(|e| Error::usage(e.to_string(), "see `kb parallel --help`"))?,
        None => None,
    };
    let timeout = opts.timeout.as_deref().map(parse_timeout).transpose()?;
    // kb.toml's limits are in `opts` already (see above), taken as if given on the command line.
    let lifetime = opts
        .pods
        .shape
        .to_shape()
        .lifetime(crate::k8s::LifetimeFallback::default())?;
    let resume = match (&opts.joblog, opts.resume || opts.resume_failed) {
        (Some(path), true) => Some(crate::joblog::read_resume(
            path.trim_start_matches('+'),
            opts.resume_failed,
        )?),
        _ => None,
    };
    if opts.dry_run {
        let inputs = Inputs::open(spec)?;
        return dry_run(
            &template,
            inputs,
            resume.as_ref(),
            opts.jobs.or(opts.local_procs).unwrap_or(1),
        );
    }
    let mut workers = worker_sources(&opts)?;
    let joblog = match &opts.joblog {
        // --resume appends to the log it resumes from, as GNU parallel does.
        Some(path) if let Some(resume) = &resume => {
            Some(crate::joblog::Writer::open_resuming(path, resume)?)
        }
        Some(path) => Some(crate::joblog::Writer::open(path)?),
        None => None,
    };
    let tag = match (&opts.tagstring, opts.tag) {
        (Some(s), _) => Some(Template::parse_tagstring(s)),
        (None, true) => Some(Template::parse_tagstring("{}")),
        (None, false) => None,
    };
    let mode = if opts.ungroup {
        Mode::Ungroup
    } else if opts.line_buffer {
        Mode::LineBuffer
    } else {
        Mode::Group
    };
    let mut run = RunSpec {
        template,
        tag,
        printer: Printer::new(mode, opts.keep_order),
        retries: opts.retries,
        halt,
        timeout,
        joblog,
        resume,
        grace: Duration::from_secs_f64(opts.grace.max(0.0)),
        progress: Progress::new(opts.bar, opts.eta, opts.progress),
        observer: None,
    };
    let inputs = Inputs::open(spec)?;
    // Interrupts are ours from here on, so a Ctrl-C while pods are being created still removes them.
    let mut signals = crate::signal::SignalHandler::standard();
    let task = match opts.pods.pods {
        Some(_) if let Some(id) = &attach => Some(
            crate::k8s::PodTask::attach(
                &opts.pods.target(),
                id,
                lifetime,
                opts.pods.procs_per_pod.or(opts.jobs).unwrap_or(1),
            )
            .await?,
        ),
        Some(_) => Some(create_pod_task(&opts, lifetime, &mut signals).await?),
        None => None,
    };
    let containers = match opts.containers {
        Some(count) => Some(create_container_task(&opts, count, lifetime, &mut signals).await?),
        None => None,
    };
    if let Some(task) = &containers {
        workers.push(task.worker_source());
        eprintln!("{}", task.announcement());
    }
    if let Some(task) = &task {
        workers.push(task.worker_source());
        let progress = task.progress();
        run.observer = Some(Box::new(move |done, total| progress.set(done, total)));
        eprintln!("{}", task.announcement());
    }
    let result = sched::run(run, inputs, workers, signals).await;
    if let Some(task) = containers {
        finish_container_task(task).await;
    }
    if let Some(task) = &task {
        task.syncback().await;
    }
    if let Some(task) = task {
        let id = task.id().to_string();
        if let Err(err) = task.finish().await {
            eprintln!(
                "kb: warning: could not remove task {id}; run `kb finish {id}`: {}",
                crate::error::chain(&err)
            );
        }
    }
    Ok(result?)
}

/// Creates the pods' task; an interrupt during creation lets it complete, then removes it.
async fn create_pod_task(
    opts: &ParallelOpts,
    lifetime: crate::k8s::Lifetime,
    signals: &mut crate::signal::SignalHandler,
) -> Result<crate::k8s::PodTask> {
    let command_line = opts.command.join(" ");
    // `-j` means job slots per worker, pods included, unless --procs-per-pod says otherwise.
    let mut pods = opts.pods.clone();
    pods.procs_per_pod = pods.procs_per_pod.or(opts.jobs);
    let create = crate::k8s::PodTask::create_with(pods.task_request(&command_line, lifetime));
    tokio::pin!(create);
    let mut interrupted = false;
    let task = loop {
        tokio::select! {
            task = &mut create => break task?,
            () = signals.recv(), if !interrupted => {
                interrupted = true;
                eprintln!("kb: interrupted: removing the task being created");
            }
        }
    };
    if interrupted {
        let _ = task.finish().await;
        return Err(Error::Interrupted);
    }
    Ok(task)
}

/// Creates the task of `--containers N` in the local Docker engine; an interrupt during creation lets it complete,
/// then removes it.
async fn create_container_task(
    opts: &ParallelOpts,
    count: usize,
    lifetime: crate::k8s::Lifetime,
    signals: &mut crate::signal::SignalHandler,
) -> Result<crate::container::ContainerTask> {
    let shape = &opts.pods.shape;
    let quantity = |what, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| crate::k8s::quantity::parse(what, v))
            .transpose()
    };
    let request = crate::container::Request {
        count,
        image: shape
            .image
            .clone()
            .unwrap_or_else(|| crate::k8s::task::DEFAULT_IMAGE.into()),
        cpu: quantity("cpu", &shape.cpu)?,
        mem: quantity("memory", &shape.mem)?.map(|bytes| bytes as u64),
        slots: opts.jobs,
        orphan_timeout: lifetime.orphan_timeout,
        workdir: std::env::current_dir().map_err(|source| Error::Io {
            action: "find the working directory".into(),
            source,
        })?,
        command: opts.command.join(" "),
        agent_binary: opts.agent_binary.clone(),
    };
    let create = crate::container::ContainerTask::create(request);
    let (task, interrupted) = create_through_interrupts(create, signals).await?;
    if interrupted {
        let _ = task.finish().await;
        return Err(Error::Interrupted);
    }
    Ok(task)
}

/// Runs a task's creation to its end even when interrupted meanwhile, so that what it made can be removed; returns
/// the task and whether an interrupt came (the caller then removes it and ends with [`Error::Interrupted`]).
async fn create_through_interrupts<T, E>(
    create: impl std::future::Future<Output = std::result::Result<T, E>>,
    signals: &mut crate::signal::SignalHandler,
) -> Result<(T, bool)>
where
    Error: From<E>,
{
    tokio::pin!(create);
    let mut interrupted = false;
    loop {
        tokio::select! {
            task = &mut create => return Ok((task?, interrupted)),
            () = signals.recv(), if !interrupted => {
                interrupted = true;
                eprintln!("kb: interrupted: removing the task being created");
            }
        }
    }
}

/// Removes the containers of a `--containers` task, warning when some could not be.
async fn finish_container_task(task: crate::container::ContainerTask) {
    let id = task.id().to_string();
    if let Err(err) = task.finish().await {
        eprintln!(
            "kb: warning: could not remove the containers of task {id}: {}",
            crate::error::chain(&err)
        );
    }
}

pub(crate) fn input_spec(opts: &ParallelOpts, sources: Vec<(Source, bool)>) -> InputSpec {
    InputSpec::from_opts(
        &opts.arg_files,
        sources,
        opts.null,
        opts.delimiter.as_deref(),
    )
}

fn parse_timeout(value: &str) -> Result<Duration> {
    let bad = || {
        Error::usage(
            format!("invalid --timeout `{value}`"),
            "give seconds (`30`, `2.5`) or a duration with a unit (`90s`, `5m`, `1h30m`)",
        )
    };
    if let Ok(secs) = value.parse::<f64>() {
        return if secs > 0.0 && secs.is_finite() {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(bad())
        };
    }
    humantime::parse_duration(value).map_err(|_| bad())
}

/// The workers the options ask for; at least one kind must be given.
fn worker_sources(opts: &ParallelOpts) -> Result<Vec<Box<dyn WorkerSource>>> {
    let mut logins = Vec::new();
    let mut local = opts.local_procs;
    for file in &opts.sshloginfile {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            action: format!("read the sshloginfile `{}`", file.display()),
            source,
        })?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            collect_login(line, opts, &mut logins, &mut local)?;
        }
    }
    for value in &opts.sshlogin {
        collect_login(value.trim(), opts, &mut logins, &mut local)?;
    }
    let mut sources: Vec<Box<dyn WorkerSource>> = Vec::new();
    if let Some(n) = local {
        if n == 0 {
            return Err(Error::usage(
                "--local-procs must be at least 1",
                "give --local-procs N with N >= 1",
            ));
        }
        sources.push(Box::new(LocalSource::new(n)));
    }
    if !logins.is_empty() {
        let config = ClientConfig {
            identities: opts.identity.clone(),
            ..ClientConfig::default()
        };
        check_identities(&opts.identity)?;
        sources.push(Box::new(SshSource::new(logins, config, opts.jobs)));
    }
    if sources.is_empty() && opts.pods.pods.is_none() && opts.containers.is_none() {
        return Err(Error::usage(
            "no workers: say where the jobs run",
            "give --pods N (Kubernetes), --containers N (local Docker), -S [user@]host (SSH hosts) or \
             --local-procs N (this machine)",
        ));
    }
    Ok(sources)
}

fn collect_login(
    value: &str,
    opts: &ParallelOpts,
    logins: &mut Vec<SshLogin>,
    local: &mut Option<usize>,
) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    let login: SshLogin = value.parse()?;
    if login.host == ":" || value == ":" {
        // GNU parallel's `-S :` is this machine.
        let slots = login
            .slots
            .or(opts.jobs)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        *local = Some(local.unwrap_or(0) + slots);
    } else {
        logins.push(login);
    }
    Ok(())
}

fn check_identities(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        if !path.is_file() {
            return Err(Error::usage(
                format!("identity file `{}` does not exist", path.display()),
                "give -i the path of an SSH private key",
            ));
        }
    }
    Ok(())
}

/// `--dry-run`: print each command instead of running it, streaming.
fn dry_run(
    template: &Template,
    inputs: Inputs,
    resume: Option<&crate::joblog::Resume>,
    slots: usize,
) -> Result<u8> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let slots = slots.max(1) as u64;
    for (i, record) in inputs.enumerate() {
        let args = record?;
        let seq = i as u64 + 1;
        if resume.is_some_and(|r| r.skip.contains(&seq)) {
            continue;
        }
        let line = template.render(&args, seq, ((seq - 1) % slots + 1) as usize);
        let written = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        if let Err(err) = written {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(crate::error::exit::SUCCESS);
            }
            return Err(Error::Io {
                action: "write to stdout".into(),
                source: err,
            });
        }
    }
    match out.flush() {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            action: "write to stdout".into(),
            source: err,
        }),
        _ => Ok(crate::error::exit::SUCCESS),
    }
}
