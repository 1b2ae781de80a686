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
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

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
    fn new(command: String, status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>) -> Run {
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

fn report(
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
        let command = format!("{self:?}");
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take().expect("piped stdout"), stdout.clone()),
            drain(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running {
            command,
            child,
            stdout,
            stderr,
            readers,
        }
    }
}

/// Reads `pipe` to its end into `buffer`, on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static, buffer: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buffer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    })
}

/// Which of a child's outputs to look at.
#[derive(Clone, Copy, Debug)]
pub enum Pipe {
    /// Its stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

/// A started command whose output is being collected; killed on drop.
pub struct Running {
    command: String,
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    #[track_caller]
    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to {}: {e}", self.command));
    }

    /// SIGKILLs the process (it gets no chance to clean up) and reaps it.
    #[track_caller]
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// The process's stdin, when the command asked for a pipe (`.stdin(Stdio::piped())`); dropping it closes it.
    #[track_caller]
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.child
            .stdin
            .take()
            .unwrap_or_else(|| self.fail_running("stdin is not a pipe, or was taken"))
    }

    /// True until the process has ended.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the process wrote to `pipe` so far.
    pub fn so_far(&self, pipe: Pipe) -> String {
        let buffer = match pipe {
            Pipe::Stdout => &self.stdout,
            Pipe::Stderr => &self.stderr,
        };
        String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits up to `limit` for a whole line on `pipe` for which `wanted` holds, and returns it; fails with the
    /// report if the process ends first or the time runs out.
    #[track_caller]
    pub fn wait_for_line(
        &mut self,
        pipe: Pipe,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.so_far(pipe);
            let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            if let Some(line) = whole.lines().find(|l| wanted(l)) {
                return line.to_owned();
            }
            if !self.is_running() {
                // The readers may still hold the last lines.
                let ended = self.finish_ref();
                if let Some(line) = match pipe {
                    Pipe::Stdout => &ended.stdout,
                    Pipe::Stderr => &ended.stderr,
                }
                .lines()
                .find(|l| wanted(l))
                {
                    return line.to_owned();
                }
                ended.fail(format_args!("it ended without the line wanted on {pipe:?}"));
            }
            if Instant::now() > deadline {
                self.fail_running(format_args!("no line wanted on {pipe:?} within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for the process to end and returns what it left; kills it and fails with the report
    /// when it runs longer.
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let run = self.finish();
                run.fail(format_args!("it did not end within {limit:?}; killed"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.finish()
    }

    /// Waits up to `limit` for the process to end, kills it if it has not, and returns what it left either way
    /// (for tools that may hang where the test only needs their output so far).
    pub fn stop_after(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        self.finish()
    }

    /// Fails with the report of the process as it is now (still running).
    #[track_caller]
    pub fn fail_running(&self, why: impl fmt::Display) -> ! {
        struct Now<'a>(&'a Running);
        impl fmt::Display for Now<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                report(
                    f,
                    &self.0.command,
                    "still running",
                    &self.0.so_far(Pipe::Stdout),
                    &self.0.so_far(Pipe::Stderr),
                )
            }
        }
        panic!("{why}\n{}", Now(self))
    }

    /// Waits for the process and its output (its readers get a few seconds: a grandchild may hold the pipes).
    fn finish(mut self) -> Run {
        self.finish_ref()
    }

    fn finish_ref(&mut self) -> Run {
        let status = self.child.wait().expect("wait for a child");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let take = |buffer: &Mutex<Vec<u8>>| {
            std::mem::take(&mut *buffer.lock().unwrap_or_else(|e| e.into_inner()))
        };
        Run::new(
            self.command.clone(),
            status,
            take(&self.stdout),
            take(&self.stderr),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
