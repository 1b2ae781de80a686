//! `kb parallel`: GNU parallel's options, plus kb's choice of workers.

use std::path::PathBuf;

/// Shown after `kb parallel --help`.
pub const AFTER_HELP: &str = "\
Examples:
  find . -name '*.txt' | kb parallel --local-procs 4 -- wc -l {}
  kb parallel -S 8/alice@node1,node2 -- gzip -9 {} ::: *.log
  kb parallel --local-procs 2 -k -- echo {1}-{2} ::: a b ::: 1 2
  kb parallel --containers 2 --image debian:bookworm -- 'hostname; wc -l {}' ::: *.txt

Exit status: 0 all jobs succeeded; 1-100 that many jobs failed; 101 more than 100 failed; 255 any other error.";

/// Options of `kb parallel` (GNU parallel's names and meanings).
#[derive(Debug, Clone, clap::Args)]
pub struct ParallelOpts {
    /// Job slots: on this machine when no worker is named (default: its CPU count), else per worker (per SSH
    /// host, container or pod). N, 0 (as many as possible: 1024), N% (of the CPUs), +N or -N (CPUs plus or
    /// minus N).
    #[arg(
        short = 'j',
        long = "jobs",
        short_alias = 'P',
        alias = "max-procs",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub jobs: Option<crate::model::JobSlots>,
    /// Print output in the order of the input, not of completion.
    #[arg(short = 'k', long = "keep-order", alias = "keeporder")]
    pub keep_order: bool,
    /// Print a job's output when it ends, stdout then stderr (the default).
    #[arg(long, conflicts_with_all = ["line_buffer", "ungroup"])]
    pub group: bool,
    /// Print whole lines as soon as they are complete.
    #[arg(
        long = "line-buffer",
        visible_alias = "lb",
        alias = "linebuffer",
        conflicts_with = "ungroup"
    )]
    pub line_buffer: bool,
    /// Print output as soon as it arrives, even half lines.
    #[arg(short = 'u', long)]
    pub ungroup: bool,
    /// Print each job's command line on stdout before its output (`-vv` is the same for kb).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose_stdout: u8,
    /// Print each job's command line on stderr as it starts.
    #[arg(id = "trace", short = 't', long = "verbose")]
    pub trace: bool,
    /// Prefix each output line with the job's arguments and a tab.
    #[arg(long)]
    pub tag: bool,
    /// Prefix each output line with this string (replacement strings allowed) and a tab.
    #[arg(long, value_name = "STR")]
    pub tagstring: Option<String>,
    /// Write GNU parallel's tab-separated job log; `+FILE` appends.
    #[arg(long, alias = "jl", value_name = "FILE")]
    pub joblog: Option<String>,
    /// Skip jobs already in the joblog.
    #[arg(long, requires = "joblog")]
    pub resume: bool,
    /// Skip jobs the joblog shows succeeded and re-run the ones that failed.
    #[arg(long = "resume-failed", requires = "joblog")]
    pub resume_failed: bool,
    /// Try a failing job up to N times in all (0 and 1 mean once).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// When to stop: `now|soon,fail|success|done=N|N%`, or GNU's short forms 0, 1, 2.
    #[arg(long, visible_alias = "halt-on-error", value_name = "WHEN")]
    pub halt: Option<String>,
    /// Kill a job that runs longer than this (seconds, or with a unit: 90s, 5m, 2h), or than N% of the median
    /// runtime of the jobs that succeeded (`200%`).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Start no job sooner than this after the one before (seconds, or with a unit: 500ms, 2s, 1m).
    #[arg(long, value_name = "DURATION")]
    pub delay: Option<String>,
    /// Print the commands instead of running them.
    #[arg(long = "dry-run", alias = "dryrun")]
    pub dry_run: bool,
    /// Show a progress bar on stderr (only on a terminal).
    #[arg(long)]
    pub bar: bool,
    /// Show the estimated time left on stderr (only on a terminal).
    #[arg(long)]
    pub eta: bool,
    /// Show progress per worker on stderr (only on a terminal).
    #[arg(long)]
    pub progress: bool,
    /// Use STR instead of `{}` as the replacement string (`{n}` then no longer works, as in GNU parallel).
    #[arg(short = 'I', value_name = "STR")]
    pub replace_str: Option<String>,
    /// `-I STR`, and `-I {}` without STR (GNU's `-i`; the next word is taken as STR unless it starts with `-`).
    #[arg(
        short = 'i',
        long = "replace",
        value_name = "STR",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub replace: Option<String>,
    /// Input (each source) ends at an item equal to STR.
    #[arg(short = 'E', value_name = "STR")]
    pub eof_str: Option<String>,
    /// `-E STR` (GNU's `-e`; the next word is taken as STR unless it starts with `-`; an empty STR ends nothing).
    #[arg(
        short = 'e',
        long = "eof",
        value_name = "STR",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub eof: Option<String>,
    /// Remove white space around each input value: n (none), l (left), r (right), lr or rl (both).
    #[arg(long, value_name = "n|l|r|lr|rl", value_parser = ["n", "l", "r", "lr", "rl"])]
    pub trim: Option<String>,
    /// Read input from FILE (repeatable: each is one input source).
    #[arg(short = 'a', long = "arg-file", value_name = "FILE")]
    pub arg_files: Vec<PathBuf>,
    /// Input items are separated by NUL, not newline.
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Input items are separated by DELIM, not newline.
    #[arg(
        short = 'd',
        long = "delimiter",
        value_name = "DELIM",
        conflicts_with = "null"
    )]
    pub delimiter: Option<String>,
    /// SSH hosts to run on, as `[N/][user@]host[:port]` (comma-separated, repeatable).
    #[arg(
        short = 'S',
        long = "sshlogin",
        value_name = "LOGIN",
        value_delimiter = ','
    )]
    pub sshlogin: Vec<String>,
    /// A file of sshlogins, one per line (`#` starts a comment).
    #[arg(long = "sshloginfile", visible_alias = "slf", value_name = "FILE")]
    pub sshloginfile: Vec<PathBuf>,
    /// SSH private key to log in with (repeatable); default: ssh-agent, then ~/.ssh/id_*.
    #[arg(long = "identity", value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// Also run N jobs at a time on this machine.
    #[arg(long = "local-procs", value_name = "N")]
    pub local_procs: Option<usize>,
    /// Run on N containers of the local Docker engine: the image, agent and semantics of --pods, with the
    /// working directory mounted at its own path (--image, --cpu, --mem, --orphan-timeout apply).
    #[arg(long, value_name = "N", conflicts_with = "pods")]
    pub containers: Option<usize>,
    /// With --containers: the static kb binary that runs as the agent in each container (`scripts/build-static`
    /// builds one) [default: this kb, when it is static].
    #[arg(long = "agent-binary", env = "KB_AGENT_BINARY", value_name = "FILE")]
    pub agent_binary: Option<PathBuf>,
    /// Kubernetes pods as workers.
    #[command(flatten)]
    pub pods: crate::commands::options::PodOpts,
    /// With --pods: hand the run over to a coordinator pod and return once the task has started; `kb logs ID -f`
    /// follows it, `kb status` shows its exit status, `kb finish ID` removes it.
    #[arg(long = "async", requires = "pods")]
    pub r#async: bool,
    /// Read options from the profile `$PARALLEL_HOME/NAME` (or `~/.parallel/NAME`) instead of `config`
    /// (repeatable; read before the command line is parsed).
    #[arg(short = 'J', long = "profile", value_name = "NAME")]
    pub profile: Vec<String>,
    /// Ignore `$PARALLEL`, `~/.parallel/config` and profiles.
    #[arg(long)]
    pub plain: bool,
    /// Accepted for GNU parallel's scripts; kb asks for no citation.
    #[arg(long = "will-cite", alias = "bibtex", hide = true)]
    pub will_cite: bool,
    /// Says that kb asks for no citation, and exits.
    #[arg(long, hide = true)]
    pub citation: bool,
    /// Seconds to wait after SIGTERM before SIGKILL on the first Ctrl-C.
    #[arg(long = "grace", value_name = "SECONDS", default_value_t = 10.0)]
    pub grace: f64,
    /// The command, its arguments, then input sources: `::: args`, `:::+ args` (linked), `:::: files`.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// The flags of [`POD_ONLY_FLAGS`] given on the command line (not by environment or `kb.toml`); set by
    /// `cli::parse_args` from clap's matches.
    #[arg(skip)]
    pub pod_flags_given: Vec<&'static str>,
}

/// The options of `kb parallel` that only pods honour, as (clap id, flag): `--containers` refuses them.
pub const POD_ONLY_FLAGS: &[(&str, &str)] = &[
    ("procs_per_pod", "--procs-per-pod"),
    ("agent_image", "--agent-image"),
    ("max_runtime", "--max-runtime"),
    ("share", "--share"),
    ("lazy_mount", "--lazy-mount"),
    ("context", "--context"),
    ("namespace", "--namespace"),
    ("async", "--async"),
];

/// The pod-only flags given on the command line of `kb parallel` (`matches` are the subcommand's).
pub fn pod_flags_given(matches: &clap::ArgMatches) -> Vec<&'static str> {
    POD_ONLY_FLAGS
        .iter()
        .filter(|(id, _)| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(|(_, flag)| *flag)
        .collect()
}

/// A whole `kb parallel ...` command line, as a coordinator reads one back from its task (`kb coordinate`).
#[derive(Debug, clap::Parser)]
#[command(name = "kb")]
pub enum ParallelLine {
    /// `kb parallel`.
    #[command(args_override_self = true)]
    Parallel(Box<ParallelOpts>),
}

impl ParallelOpts {
    /// The replacement string of the input value: `-i STR`, else `-I STR`, else `{}` (GNU applies `-I`, then a
    /// non-empty `-i`).
    pub fn value_replacement(&self) -> &str {
        self.replace
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.replace_str.as_deref())
            .unwrap_or("{}")
    }

    /// The end-of-input string: GNU's `-E` and `-e`/`--eof` set the same option, the last one given wins; kb
    /// takes `-e`/`--eof` over `-E`.
    pub fn eof_value(&self) -> Option<&str> {
        self.eof.as_deref().or(self.eof_str.as_deref())
    }
}
