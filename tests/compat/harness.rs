//! Runs one compatibility case through GNU parallel and through `kb parallel`, each in a fresh directory with the
//! same files and stdin, and compares what they did.
//!
//! Normalisations (each also listed in docs/gnu-compat.md):
//! - N1 local slots: GNU gets `-j N`, kb gets `--local-procs N` (kb's `-j` counts slots per SSH host).
//! - N2 diagnostics: lines that the tool itself writes to stderr (GNU: `parallel: ...`, kb: `kb: ...` or
//!   `kb parallel: ...`, plus the command line that follows a diagnostic ending in `:`, as in GNU's
//!   `parallel: This job failed:`) are compared by presence only: both print some or both print none. Their
//!   wording names the program and differs by design. Everything else on stderr (the jobs' own stderr) is
//!   compared exactly.
//! - N3 unordered: cases whose output order depends on timing in GNU itself compare sorted lines.
//! - N4 joblog: the header is compared exactly; the lines are compared by `Seq` order on every column but
//!   `Starttime` and `JobRuntime` (checked to be a recent epoch time and a non-negative number) and `Host`
//!   (checked to be `:` for local runs, and left alone over SSH where GNU and kb name the host differently).
//! - N5 over SSH: stderr lines that mention `pyenv` are dropped. Root's `~/.bashrc` on these machines runs
//!   `pyenv init`, bash sources it for every command sshd runs, and concurrent jobs make it print lock warnings
//!   that come from the login shell, not from the job or the tool.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kb::joblog::Entry;

/// How long one tool may take on one step before the case fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// How to compare stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Byte for byte.
    Exact,
    /// As sorted lines (N3).
    Sorted,
}

/// One invocation of the tool within a case.
#[derive(Debug, Clone)]
pub struct Step {
    /// Options, command and input sources, given to both tools after their slot option.
    pub args: Vec<String>,
    /// Bytes on stdin (`None`: stdin is /dev/null).
    pub stdin: Option<Vec<u8>>,
}

/// A documented GNU parallel behaviour, as one or more invocations.
#[derive(Debug, Clone)]
pub struct Case {
    /// Test name.
    pub name: &'static str,
    /// What GNU parallel's documentation promises.
    pub doc: &'static str,
    /// Local slots (N1).
    pub jobs: usize,
    /// The invocations, run in order in the same directory.
    pub steps: Vec<Step>,
    /// Files created in the directory before the first step.
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// Files whose content is compared after the last step (e.g. written by a redirection).
    pub outputs: Vec<&'static str>,
    /// A joblog file to compare after the last step (N4).
    pub joblog: Option<&'static str>,
    /// How stdout is compared.
    pub order: Order,
    /// Part of the subset that also runs over SSH.
    pub ssh: bool,
}

/// Builds a case with one step.
pub fn case(name: &'static str, doc: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        doc,
        jobs: 1,
        steps: vec![Step {
            args: strings(args),
            stdin: None,
        }],
        files: Vec::new(),
        outputs: Vec::new(),
        joblog: None,
        order: Order::Exact,
        ssh: false,
    }
}

impl Case {
    /// Sets the number of local slots.
    pub fn jobs(mut self, n: usize) -> Case {
        self.jobs = n;
        self
    }

    /// Feeds `bytes` on stdin to the last step.
    pub fn stdin(mut self, bytes: &[u8]) -> Case {
        if let Some(step) = self.steps.last_mut() {
            step.stdin = Some(bytes.to_vec());
        }
        self
    }

    /// Adds a step after the others.
    pub fn then(mut self, args: &[&str]) -> Case {
        self.steps.push(Step {
            args: strings(args),
            stdin: None,
        });
        self
    }

    /// Creates a file before the first step.
    pub fn file(mut self, name: &'static str, content: &[u8]) -> Case {
        self.files.push((name, content.to_vec()));
        self
    }

    /// Compares a file after the last step.
    pub fn output(mut self, name: &'static str) -> Case {
        self.outputs.push(name);
        self
    }

    /// Compares a joblog after the last step.
    pub fn joblog(mut self, name: &'static str) -> Case {
        self.joblog = Some(name);
        self
    }

    /// Compares stdout as sorted lines.
    pub fn sorted(mut self) -> Case {
        self.order = Order::Sorted;
        self
    }

    /// Also runs the case over SSH.
    pub fn ssh(mut self) -> Case {
        self.ssh = true;
        self
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Where and how the tools run the jobs.
#[derive(Debug, Clone)]
pub enum Target {
    /// Local slots.
    Local,
    /// SSH: GNU parallel through `ssh -F config`, kb with `HOME` holding the key and known_hosts.
    Ssh {
        /// The sshlogin kb uses (`user@127.0.0.1:port`).
        kb_login: String,
        /// The `ssh -F` config for GNU parallel.
        ssh_config: PathBuf,
        /// `HOME` for kb.
        kb_home: PathBuf,
    },
}

/// Which tool to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Debian's GNU parallel.
    Gnu,
    /// `kb parallel`.
    Kb,
}

/// What a tool did in one case.
#[derive(Debug)]
pub struct Run {
    /// Per step: stdout, stderr, exit code.
    pub steps: Vec<(Vec<u8>, Vec<u8>, Option<i32>)>,
    /// The case's output files, by name.
    pub outputs: Vec<(String, Option<Vec<u8>>)>,
    /// The joblog's text.
    pub joblog: Option<String>,
}

/// Runs `case` with `tool` on `target` in a fresh directory.
pub fn run(case: &Case, tool: Tool, target: &Target) -> Run {
    let dir = tempfile::Builder::new()
        .prefix(&format!("kb-compat-{}-", case.name))
        .tempdir()
        .expect("temp dir");
    for (name, content) in &case.files {
        std::fs::write(dir.path().join(name), content).expect("write a case file");
    }
    let home = tempfile::tempdir().expect("temp home");
    let steps = case
        .steps
        .iter()
        .map(|step| run_step(case, step, tool, target, dir.path(), home.path()))
        .collect();
    let outputs = case
        .outputs
        .iter()
        .map(|name| (name.to_string(), std::fs::read(dir.path().join(name)).ok()))
        .collect();
    let joblog = case
        .joblog
        .map(|name| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default());
    Run {
        steps,
        outputs,
        joblog,
    }
}

fn run_step(
    case: &Case,
    step: &Step,
    tool: Tool,
    target: &Target,
    dir: &Path,
    home: &Path,
) -> (Vec<u8>, Vec<u8>, Option<i32>) {
    let mut cmd = match tool {
        Tool::Gnu => {
            let mut cmd = Command::new("parallel");
            cmd.arg("--will-cite").env("HOME", home);
            match target {
                Target::Local => cmd.arg(format!("-j{}", case.jobs)),
                Target::Ssh { ssh_config, .. } => cmd
                    .arg("--ssh")
                    .arg(format!("ssh -F {}", ssh_config.display()))
                    .arg("-S")
                    .arg(format!("{}/kbtest", case.jobs)),
            };
            cmd
        }
        Tool::Kb => {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_kb"));
            cmd.arg("parallel");
            match target {
                Target::Local => cmd.arg("--local-procs").arg(case.jobs.to_string()),
                Target::Ssh {
                    kb_login, kb_home, ..
                } => cmd
                    .env("HOME", kb_home)
                    .arg("-S")
                    .arg(format!("{}/{kb_login}", case.jobs)),
            };
            cmd
        }
    };
    cmd.args(&step.args).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key == "PARALLEL" || key.starts_with("PARALLEL_") {
            cmd.env_remove(key);
        }
    }
    let output = run_with_timeout(
        cmd,
        step.stdin.as_deref(),
        &format!("{tool:?} on case {}", case.name),
    );
    (output.stdout, output.stderr, output.status.code())
}

fn run_with_timeout(mut cmd: Command, stdin: Option<&[u8]>, what: &str) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {what}: {e}; GNU parallel is needed for the compat suite (apt-get install parallel)")
    });
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(STEP_TIMEOUT) {
        Ok(output) => output.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            // Only the process this harness started, by its PID.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{what} did not finish within {STEP_TIMEOUT:?}");
        }
    }
}

/// Compares GNU's run with kb's; returns the differences (empty when they match).
pub fn compare(case: &Case, gnu: &Run, kb: &Run, target: &Target) -> Vec<String> {
    let mut diffs = Vec::new();
    for (i, (g, k)) in gnu.steps.iter().zip(&kb.steps).enumerate() {
        let step = format!("step {} ({})", i + 1, case.steps[i].args.join(" "));
        let (g_out, k_out) = (stdout_view(&g.0, case.order), stdout_view(&k.0, case.order));
        if g_out != k_out {
            diffs.push(format!(
                "{step}: stdout differs\n  GNU: {g_out:?}\n  kb:  {k_out:?}"
            ));
        }
        let remote = !matches!(target, Target::Local);
        let (g_jobs, g_diag) = split_stderr(&g.1, Tool::Gnu, remote);
        let (k_jobs, k_diag) = split_stderr(&k.1, Tool::Kb, remote);
        if g_jobs != k_jobs {
            diffs.push(format!(
                "{step}: job stderr differs\n  GNU: {g_jobs:?}\n  kb:  {k_jobs:?}"
            ));
        }
        if g_diag.is_empty() != k_diag.is_empty() {
            diffs.push(format!(
                "{step}: diagnostics on stderr differ (N2)\n  GNU: {g_diag:?}\n  kb:  {k_diag:?}"
            ));
        }
        if g.2 != k.2 {
            diffs.push(format!(
                "{step}: exit status differs: GNU {:?}, kb {:?}",
                g.2, k.2
            ));
        }
    }
    for ((name, g), (_, k)) in gnu.outputs.iter().zip(&kb.outputs) {
        if g != k {
            let show =
                |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            diffs.push(format!(
                "file `{name}` differs\n  GNU: {:?}\n  kb:  {:?}",
                show(g),
                show(k)
            ));
        }
    }
    if let (Some(g), Some(k)) = (&gnu.joblog, &kb.joblog) {
        diffs.extend(compare_joblogs(g, k, matches!(target, Target::Local)));
    }
    diffs
}

fn stdout_view(bytes: &[u8], order: Order) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match order {
        Order::Exact => text,
        Order::Sorted => {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        }
    }
}

/// Splits stderr into the jobs' lines and the tool's own diagnostics (N2).
fn split_stderr(bytes: &[u8], tool: Tool, remote: bool) -> (String, Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    let mut jobs = String::new();
    let mut diagnostics = Vec::new();
    let mut in_diagnostic = false;
    let mut takes_next_line = false;
    for line in text.split_inclusive('\n') {
        if remote && line.contains("pyenv") {
            // N5: the remote login shell's startup noise on this machine, not the job's.
            continue;
        }
        let own = match tool {
            Tool::Gnu => line.starts_with("parallel: "),
            Tool::Kb => line.starts_with("kb: ") || line.starts_with("kb parallel: "),
        };
        // GNU's `parallel: This job failed:` is followed by the job's command on a line of its own (kb copies
        // that), and kb's rendered errors go on with indented `caused by:` / `hint:` lines.
        let follow =
            takes_next_line || (in_diagnostic && tool == Tool::Kb && line.starts_with("  "));
        if own || follow {
            diagnostics.push(line.trim_end().to_string());
        } else {
            jobs.push_str(line);
        }
        in_diagnostic = own || follow;
        takes_next_line = own && line.trim_end().ends_with(':');
    }
    (jobs, diagnostics)
}

fn compare_joblogs(gnu: &str, kb: &str, local: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    let header = |s: &str| s.lines().next().unwrap_or_default().to_string();
    if header(gnu) != header(kb) {
        diffs.push(format!(
            "joblog header differs\n  GNU: {:?}\n  kb:  {:?}",
            header(gnu),
            header(kb)
        ));
    }
    let headers = |s: &str| s.lines().filter(|l| l.starts_with("Seq\t")).count();
    if headers(gnu) != headers(kb) {
        diffs.push(format!(
            "joblog has {} header lines in GNU, {} in kb",
            headers(gnu),
            headers(kb)
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    let entries = |s: &str| -> Vec<Entry> {
        let mut v: Vec<Entry> = s.lines().skip(1).filter_map(Entry::parse).collect();
        v.sort_by_key(|e| e.seq);
        v
    };
    let (g, k) = (entries(gnu), entries(kb));
    let unparsed = kb
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("Seq\t") && Entry::parse(l).is_none())
        .count();
    if unparsed > 0 {
        diffs.push(format!(
            "kb's joblog has {unparsed} lines not in the joblog format:\n{kb}"
        ));
    }
    let key = |e: &Entry| {
        (
            e.seq,
            e.send,
            e.receive,
            e.exitval,
            e.signal,
            e.command.clone(),
        )
    };
    let (gk, kk): (Vec<_>, Vec<_>) = (g.iter().map(key).collect(), k.iter().map(key).collect());
    if gk != kk {
        diffs.push(format!("joblog entries differ (seq, send, receive, exitval, signal, command)\n  GNU: {gk:?}\n  kb:  {kk:?}"));
    }
    for e in &k {
        if !(now - 3600.0..=now + 60.0).contains(&e.start) || e.runtime < 0.0 {
            diffs.push(format!(
                "kb joblog times look wrong: start {} runtime {}",
                e.start, e.runtime
            ));
        }
        if local && e.host != ":" {
            diffs.push(format!(
                "kb joblog host is `{}`, GNU writes `:` for local jobs",
                e.host
            ));
        }
    }
    diffs
}
