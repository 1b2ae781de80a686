//! Runs one compatibility case through GNU parallel and through `kb parallel`, each in a fresh directory with the
//! same files and stdin, and compares what they did.
//! How the outputs are compared, and what is normalised, is in `compare.rs`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{self, CommandExt as _};

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
    /// Environment variables for both tools (a relative path in a value is relative to the case's directory).
    pub env: Vec<(&'static str, &'static str)>,
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
        env: Vec::new(),
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

    /// Sets an environment variable for both tools.
    pub fn env(mut self, name: &'static str, value: &'static str) -> Case {
        self.env.push((name, value));
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
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create a case file's directory");
        }
        std::fs::write(path, content).expect("write a case file");
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
                // GNU's syntax: local slots with -j (the home is as empty as GNU's, for ~/.parallel).
                Target::Local => cmd.env("HOME", home).arg(format!("-j{}", case.jobs)),
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
        if key == "PARALLEL" || key.starts_with("PARALLEL_") || key.starts_with("XDG_CONFIG") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in &case.env {
        cmd.env(key, value);
    }
    let output = run_with_timeout(cmd, step.stdin.as_deref());
    (
        output.stdout_bytes().to_vec(),
        output.stderr_bytes().to_vec(),
        output.code(),
    )
}

/// Runs `cmd` with `stdin`, killing it and failing with its output after [`STEP_TIMEOUT`].
fn run_with_timeout(mut cmd: Command, stdin: Option<&[u8]>) -> support::Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    // GNU parallel is needed for the compat suite (`apt-get install parallel`): `start` names what is missing.
    let mut child = cmd.start();
    if let Some(bytes) = stdin {
        let mut pipe = child.take_stdin();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    child.wait(STEP_TIMEOUT)
}
