//! `kb parallel`: build the input, the template and the workers from the options, then hand them to the scheduler.
//! Everything the options say is checked here, before any worker is contacted.

use std::io::Write;
use std::time::Duration;

use super::workers::worker_sources;
use crate::backend::{Containers, Kubernetes, Request, Task, TaskBackend};
use crate::commands::error::{Error, Result};
use crate::commands::parallel::ParallelOpts;
use crate::input::{InputSpec, Inputs, Source};
use crate::output::printer::{Mode, Printer};
use crate::output::progress::Progress;
use crate::output::report::Reporter;
use crate::sched::timeout::Timeout;
use crate::sched::{self, RunSpec, halt};
use crate::template::Template;
use crate::worker::WorkerSource;

/// Runs `kb parallel`.
pub async fn exec(opts: ParallelOpts) -> Result<u8> {
    exec_with(opts, None).await
}

/// Runs `kb parallel`; with `attach`, on the pods of that existing task (`kb coordinate`) instead of a new one.
pub async fn exec_with(mut opts: ParallelOpts, attach: Option<String>) -> Result<u8> {
    refuse_pod_flags(&opts)?;
    if opts.citation {
        // GNU parallel asks to be cited in academic work; kb does not.
        eprintln!("kb: nothing to cite: kb parallel asks for no citation");
        return Ok(crate::error::exit::SUCCESS);
    }
    if attach.is_none() && (opts.pods.pods.is_some() || opts.containers.is_some()) {
        // kb.toml's image, share, namespace and limits, where no flag or variable says otherwise.
        let pods = &mut opts.pods;
        crate::commands::options::project_defaults(&mut pods.shape, &mut pods.namespace)?;
    }
    if opts.r#async && !opts.dry_run {
        return super::handover::exec(opts).await;
    }
    let plan = Plan::new(&opts)?;
    if opts.dry_run {
        let inputs = Inputs::open(plan.spec)?;
        let slots = local_slots(&opts).unwrap_or_else(cpu_count);
        return dry_run(&plan.run.template, inputs, plan.run.resume.as_ref(), slots);
    }
    let workers = worker_sources(&opts)?;
    let inputs = Inputs::open(plan.spec)?;
    // Interrupts are ours from here on, so a Ctrl-C while pods are being created still removes them.
    let mut signals = crate::signal::SignalHandler::standard();
    let task = start_task(
        &opts,
        attach,
        plan.lifetime,
        &plan.run.reporter,
        &mut signals,
    )
    .await?;
    run_on(plan.run, inputs, workers, signals, task).await
}

/// What the options say before any worker is contacted: the input, the run's rules and the pods' lifetime.
struct Plan {
    spec: InputSpec,
    run: RunSpec,
    lifetime: crate::k8s::Lifetime,
}

impl Plan {
    fn new(opts: &ParallelOpts) -> Result<Plan> {
        let (words, sources) = crate::input::split_command(&opts.command);
        let spec = input_spec(opts, sources);
        // With no command, each input line is a command, as in GNU parallel.
        let template = if words.is_empty() {
            Template::parse_tagstring("{}")
        } else {
            Template::parse_replacing(&words, opts.value_replacement())
        };
        let halt = match &opts.halt {
            Some(value) => halt::parse(value)
                .map_err(|e| Error::usage(e.to_string(), "see `kb parallel --help`"))?,
            None => None,
        };
        // kb.toml's limits are in `opts` already (see `exec_with`), taken as if given on the command line.
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
        let joblog = match &opts.joblog {
            // --dry-run writes no joblog; --resume appends to the log it resumes from, as GNU parallel does.
            _ if opts.dry_run => None,
            Some(path) if let Some(resume) = &resume => {
                Some(crate::joblog::Writer::open_resuming(path, resume)?)
            }
            Some(path) => Some(crate::joblog::Writer::open(path)?),
            None => None,
        };
        let run = RunSpec {
            template,
            tag: tag_template(opts),
            printer: Printer::new(output_mode(opts), opts.keep_order)
                .with_echo(opts.verbose_stdout > 0, opts.trace),
            retries: opts.retries,
            halt,
            timeout: opts.timeout.as_deref().map(parse_timeout).transpose()?,
            delay: opts.delay.as_deref().map(parse_delay).transpose()?,
            joblog,
            resume,
            grace: Duration::from_secs_f64(opts.grace.max(0.0)),
            reporter: Reporter::new(Progress::new(opts.bar, opts.eta, opts.progress)),
            observer: None,
        };
        Ok(Plan {
            spec,
            run,
            lifetime,
        })
    }
}

fn tag_template(opts: &ParallelOpts) -> Option<Template> {
    match (&opts.tagstring, opts.tag) {
        (Some(s), _) => Some(Template::parse_tagstring_replacing(
            s,
            opts.value_replacement(),
        )),
        (None, true) => Some(Template::parse_tagstring("{}")),
        (None, false) => None,
    }
}

fn output_mode(opts: &ParallelOpts) -> Mode {
    if opts.ungroup {
        Mode::Ungroup
    } else if opts.line_buffer {
        Mode::LineBuffer
    } else {
        Mode::Group
    }
}

/// Creates (or, with `attach`, joins) the task of pods or containers the options ask for, if any.
async fn start_task(
    opts: &ParallelOpts,
    attach: Option<String>,
    lifetime: crate::k8s::Lifetime,
    reporter: &Reporter,
    signals: &mut crate::signal::SignalHandler,
) -> Result<Option<Box<dyn Task>>> {
    let Some((backend, slots)) = backend(opts, lifetime, reporter) else {
        return Ok(None);
    };
    let task = match &attach {
        Some(id) => backend.attach(id, slots.unwrap_or(1)).await?,
        None => {
            let command_line = opts.command.join(" ");
            let count = opts.pods.pods.or(opts.containers).unwrap_or(1);
            let request = opts.pods.request("parallel", &command_line, slots, count);
            create_task(backend.as_ref(), request, signals).await?
        }
    };
    Ok(Some(task))
}

/// Runs the jobs on `workers` and the task's, then brings the task's files back and removes it.
async fn run_on(
    mut run: RunSpec,
    inputs: Inputs,
    mut workers: Vec<Box<dyn WorkerSource>>,
    signals: crate::signal::SignalHandler,
    task: Option<Box<dyn Task>>,
) -> Result<u8> {
    if let Some(task) = &task {
        workers.push(task.workers());
        run.observer = task.observer();
        eprintln!("{}", task.announcement());
    }
    let result = sched::run(run, inputs, workers, signals).await;
    if let Some(task) = task {
        task.syncback().await;
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

/// The backend the options ask for (`--pods`, `--containers`) and the job slots per worker: `-j`, for pods unless
/// `--procs-per-pod` says otherwise.
fn backend(
    opts: &ParallelOpts,
    lifetime: crate::k8s::Lifetime,
    reporter: &Reporter,
) -> Option<(Box<dyn TaskBackend>, Option<usize>)> {
    if opts.pods.pods.is_some() {
        let backend = Kubernetes::new(opts.pods.target(), lifetime, reporter.clone());
        return Some((
            Box::new(backend),
            opts.pods.procs_per_pod.or(jobs_here(opts)),
        ));
    }
    opts.containers?;
    let backend = Containers {
        agent_binary: opts.agent_binary.clone(),
        orphan_timeout: lifetime.orphan_timeout,
    };
    Some((Box::new(backend), jobs_here(opts)))
}

/// The number of CPUs of this machine, which `-j` counts from (GNU parallel's default is one slot per CPU).
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `-j` resolved against this machine's CPUs (pods and containers count from them too).
pub(crate) fn jobs_here(opts: &ParallelOpts) -> Option<usize> {
    opts.jobs.map(|j| j.resolve(cpu_count()))
}

/// The local slots when jobs run on this machine only: `--local-procs`, else `-j` (default: the CPU count).
pub(super) fn local_slots(opts: &ParallelOpts) -> Option<usize> {
    opts.local_procs.or_else(|| jobs_here(opts))
}

/// With `--containers`, the pod-only flags typed on the command line are refused, not ignored (environment
/// variables and `kb.toml` are defaults, not requests, and do not count).
fn refuse_pod_flags(opts: &ParallelOpts) -> Result<()> {
    if opts.containers.is_none() || opts.pod_flags_given.is_empty() {
        return Ok(());
    }
    let flags = opts.pod_flags_given.join(", ");
    let (it, applies) = if opts.pod_flags_given.len() == 1 {
        ("it", "applies")
    } else {
        ("them", "apply")
    };
    Err(Error::usage(
        format!("{flags} {applies} to pods (--pods), not to --containers"),
        format!("drop {it}, or run on pods with --pods N"),
    ))
}

/// Creates the task's workers; an interrupt during creation lets it complete, then removes it.
async fn create_task(
    backend: &dyn TaskBackend,
    request: Request<'_>,
    signals: &mut crate::signal::SignalHandler,
) -> Result<Box<dyn Task>> {
    let create = backend.create(request);
    tokio::pin!(create);
    let mut interrupted = false;
    let task = loop {
        tokio::select! {
            task = &mut create => break task?,
            _ = signals.recv(), if !interrupted => {
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

pub(crate) fn input_spec(opts: &ParallelOpts, sources: Vec<(Source, bool)>) -> InputSpec {
    let mut spec = InputSpec::from_opts(
        &opts.arg_files,
        sources,
        opts.null,
        opts.delimiter.as_deref(),
    );
    spec.eof = opts.eof_value().map(str::to_string);
    spec.trim = opts
        .trim
        .as_deref()
        .and_then(crate::input::Trim::parse)
        .unwrap_or_default();
    spec
}

/// `--delay`: seconds (`0.5`) or a duration with units (`500ms`, `2s`, `1m30s`), as GNU parallel's.
fn parse_delay(value: &str) -> Result<Duration> {
    let secs = value
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0 && s.is_finite());
    secs.map(Duration::from_secs_f64)
        .or_else(|| humantime::parse_duration(value).ok())
        .ok_or_else(|| {
            Error::usage(
                format!("invalid --delay `{value}`"),
                "give seconds (`0.5`, `2`) or a duration with a unit (`500ms`, `2s`, `1m30s`)",
            )
        })
}

/// `--timeout`: seconds, a duration with units, or GNU parallel's `N%` of the median runtime.
fn parse_timeout(value: &str) -> Result<Timeout> {
    let bad = || {
        Error::usage(
            format!("invalid --timeout `{value}`"),
            "give seconds (`30`, `2.5`), a duration with a unit (`90s`, `5m`, `1h30m`) or a percentage of the \
             median runtime (`200%`)",
        )
    };
    if let Some(percent) = value.strip_suffix('%') {
        let (int, frac) = percent.split_once('.').unwrap_or((percent, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        return match percent.parse::<f64>() {
            Ok(p) if digits(int) && digits(frac) && p > 0.0 => Ok(Timeout::OfMedian(p / 100.0)),
            _ => Err(bad()),
        };
    }
    if let Ok(secs) = value.parse::<f64>() {
        return if secs > 0.0 && secs.is_finite() {
            Ok(Timeout::After(Duration::from_secs_f64(secs)))
        } else {
            Err(bad())
        };
    }
    humantime::parse_duration(value)
        .map(Timeout::After)
        .map_err(|_| bad())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `kb parallel ARGS` parsed as `cli::parse_args` does, the typed pod-only flags found from clap's matches.
    fn parallel(args: &[&str]) -> ParallelOpts {
        use crate::commands::parallel::ParallelLine;
        use clap::{CommandFactory, FromArgMatches};
        let argv: Vec<&str> = ["kb", "parallel"].iter().chain(args).copied().collect();
        let matches = ParallelLine::command().try_get_matches_from(argv).unwrap();
        let ParallelLine::Parallel(mut opts) = ParallelLine::from_arg_matches(&matches).unwrap();
        opts.pod_flags_given = crate::commands::parallel::pod_flags_given(
            matches.subcommand_matches("parallel").unwrap(),
        );
        *opts
    }

    #[test]
    fn containers_refuse_typed_pod_only_flags() {
        let opts = parallel(&[
            "--containers",
            "1",
            "--max-runtime",
            "5m",
            "--namespace",
            "x",
            "echo",
        ]);
        assert_eq!(opts.pod_flags_given, ["--max-runtime", "--namespace"]);
        let err = refuse_pod_flags(&opts).unwrap_err().to_string();
        assert_eq!(
            err,
            "--max-runtime, --namespace apply to pods (--pods), not to --containers"
        );
        let share = parallel(&["--containers", "1", "--share", "none", "echo"]);
        assert!(
            refuse_pod_flags(&share)
                .unwrap_err()
                .to_string()
                .starts_with("--share applies")
        );
    }

    #[test]
    fn what_containers_honour_and_pods_are_not_refused() {
        let opts = parallel(&[
            "--containers",
            "2",
            "--cpu",
            "1",
            "--mem",
            "64Mi",
            "--image",
            "x",
            "--orphan-timeout",
            "1m",
            "-j",
            "2",
            "echo",
        ]);
        assert!(opts.pod_flags_given.is_empty());
        refuse_pod_flags(&opts).unwrap();
        let pods = parallel(&[
            "--pods",
            "1",
            "--max-runtime",
            "5m",
            "--namespace",
            "x",
            "echo",
        ]);
        refuse_pod_flags(&pods).unwrap();
    }

    #[test]
    fn every_pod_only_flag_is_an_argument_of_parallel() {
        use clap::CommandFactory;
        let line = crate::commands::parallel::ParallelLine::command();
        let parallel = line.find_subcommand("parallel").unwrap();
        for (id, flag) in crate::commands::parallel::POD_ONLY_FLAGS {
            let arg = parallel.get_arguments().find(|a| a.get_id() == *id);
            let long = arg.and_then(|a| a.get_long()).unwrap_or_default();
            assert_eq!(format!("--{long}"), *flag, "{id}");
        }
    }
}
