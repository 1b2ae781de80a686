//! Runs the commands of a test and explains their failures, the way ripgrep's `tests/util.rs` does: every
//! assertion is `#[track_caller]` (the failure points at the test's line, not here) and prints the command, its
//! exit status, its stdout and its stderr.
//!
//! - [`CommandExt::run`] runs a command to its end and returns a [`Run`]; [`CommandExt::run_with_stdin`] feeds it
//!   input first.
//! - [`CommandExt::start`] starts one and returns a [`Running`]: its stdout and stderr are read as they come (so
//!   the child never blocks on a full pipe), a test can wait for a line, signal it, and [`Running::wait`] for it
//!   with a time limit. A `Running` that is dropped kills its process, so a failed test leaves no `kb` behind.
//! - [`wait_until`] polls anything else with a time limit.
//!
//! It must not know about clusters or SSH servers: those fixtures are beside it.

use std::fmt;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use super::running::{Pipe, Running};

/// `kb`, the binary under test.
pub fn kb_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kb"))
}

/// What a finished command left: its status and its output as text.
pub struct Run {
    command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    bytes: (Vec<u8>, Vec<u8>),
}

impl Run {
    pub(super) fn new(
        command: String,
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    ) -> Run {
        Run {
            command,
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            bytes: (stdout, stderr),
        }
    }

    /// Stdout as it came, for comparisons that must see every byte.
    pub fn stdout_bytes(&self) -> &[u8] {
        &self.bytes.0
    }

    /// Stderr as it came.
    pub fn stderr_bytes(&self) -> &[u8] {
        &self.bytes.1
    }

    /// The exit code; `None` when a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Fails the test with `why`, the command, its status and its output.
    #[track_caller]
    pub fn fail(&self, why: impl fmt::Display) -> ! {
        panic!("{why}\n{self}")
    }

    /// Fails the test with `why` and the report unless `ok`.
    #[track_caller]
    pub fn check(&self, ok: bool, why: impl fmt::Display) -> &Self {
        if !ok {
            self.fail(why);
        }
        self
    }

    /// Fails unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.check(self.status.success(), "expected exit status 0")
    }

    /// Fails unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        self.check(
            self.code() == Some(code),
            format_args!("expected exit status {code}"),
        )
    }

    /// Fails if the command exited 0.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        self.check(
            !self.status.success(),
            "expected a failure, not exit status 0",
        )
    }

    /// Fails unless stdout is exactly `want`.
    #[track_caller]
    pub fn assert_stdout(&self, want: &str) -> &Self {
        self.check(
            self.stdout == want,
            format_args!("expected stdout {want:?}"),
        )
    }

    /// Fails unless stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        self.check(
            self.stdout.contains(needle),
            format_args!("expected `{needle}` in stdout"),
        )
    }

    /// Fails if stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_lacks(&self, needle: &str) -> &Self {
        self.check(
            !self.stdout.contains(needle),
            format_args!("expected no `{needle}` in stdout"),
        )
    }

    /// Fails unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        self.check(
            self.stderr.contains(needle),
            format_args!("expected `{needle}` in stderr"),
        )
    }

    /// Fails if stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_lacks(&self, needle: &str) -> &Self {
        self.check(
            !self.stderr.contains(needle),
            format_args!("expected no `{needle}` in stderr"),
        )
    }

    /// Stdout parsed as JSON; fails with the report when it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| self.fail(format_args!("stdout is not JSON: {e}")))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        report(
            f,
            &self.command,
            &self.status.to_string(),
            &self.stdout,
            &self.stderr,
        )
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub(super) fn report(
    f: &mut fmt::Formatter<'_>,
    command: &str,
    status: &str,
    stdout: &str,
    stderr: &str,
) -> fmt::Result {
    write!(
        f,
        "\n===== command =====\n{command}\n===== status =====\n{status}\n===== stdout =====\n{stdout}\n\
         ===== stderr =====\n{stderr}\n===================\n"
    )
}

/// Running commands the harness's way.
pub trait CommandExt {
    /// Runs the command to its end with stdin closed and its output captured.
    fn run(&mut self) -> Run;
    /// Runs the command to its end with `input` on its stdin.
    fn run_with_stdin(&mut self, input: &str) -> Run;
    /// Starts the command with stdout and stderr captured (stdin as the command says).
    fn start(&mut self) -> Running;
}

impl CommandExt for Command {
    #[track_caller]
    fn run(&mut self) -> Run {
        let command = format!("{self:?}");
        let output = self
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        Run::new(command, output.status, output.stdout, output.stderr)
    }

    #[track_caller]
    fn run_with_stdin(&mut self, input: &str) -> Run {
        self.stdin(Stdio::piped());
        let mut running = self.start();
        let mut stdin = running.take_stdin();
        // A thread of its own: a child that writes much before it reads all its input must not deadlock the test.
        let input = input.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let run = running.finish();
        if let Ok(Err(e)) = writer.join() {
            run.check(
                e.kind() == std::io::ErrorKind::BrokenPipe,
                format_args!("cannot write stdin: {e}"),
            );
        }
        run
    }

    #[track_caller]
    fn start(&mut self) -> Running {
        Running::spawn(self)
    }
}

/// Polls `probe` every `every` until it returns `Ok`, and returns that; fails with its last `Err` (what it saw)
/// once `limit` has passed.
#[track_caller]
pub fn wait_until<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) if start.elapsed() >= limit => panic!("{seen} (waited {limit:?})"),
            Err(_) => std::thread::sleep(every),
        }
    }
}
