//! A started command whose stdout and stderr are read as they come (see [`super::process`], which starts it): wait
//! for a line, signal it, wait for its end with a time limit. It is killed on drop, so a failed test leaves no
//! process behind.

use std::fmt;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::process::{Run, report};

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
    /// Starts `cmd` with stdout and stderr piped, and a reader thread on each.
    #[track_caller]
    pub(super) fn spawn(cmd: &mut Command) -> Running {
        let command = format!("{cmd:?}");
        let mut child = cmd
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
    pub(super) fn finish(mut self) -> Run {
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
