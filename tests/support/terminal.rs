//! A command on a pseudo-terminal of its own (40 rows, 100 columns, `TERM=dumb`), the way a user runs `kb shell`
//! and `kb setup`: wait for text to appear, type lines, resize, and wait for the end with a time limit. Every
//! failure prints what the terminal showed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process on a pseudo-terminal, and what it has shown.
pub struct Terminal {
    master: std::fs::File,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: String,
    child: std::process::Child,
    command: String,
}

impl Terminal {
    /// Starts `cmd` with its stdin, stdout and stderr on a new pseudo-terminal.
    pub fn spawn(mut cmd: Command) -> Terminal {
        use std::os::fd::OwnedFd;
        let size = nix::pty::Winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        cmd.env("TERM", "dumb")
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave));
        let command = format!("{cmd:?}");
        let child = cmd.spawn().unwrap();
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut reader = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            master,
            rx,
            seen: String::new(),
            child,
            command,
        }
    }

    /// Waits for `needle` to appear after everything matched so far.
    #[track_caller]
    pub fn expect(&mut self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!(
                    "no `{needle}` within {secs} s; the terminal showed:\n{}",
                    self.seen
                ),
            }
        }
        // Later expectations look only at what comes after this match.
        let at = self.seen.find(needle).unwrap() + needle.len();
        self.seen = self.seen[at..].to_string();
    }

    /// Types `line` and Enter.
    pub fn send(&mut self, line: &str) {
        self.master.write_all(line.as_bytes()).unwrap();
        self.master.write_all(b"\r").unwrap();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Changes the terminal's size and tells kb, as a terminal emulator does.
    pub fn resize(&self, rows: u16, cols: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, size).unwrap();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH).unwrap();
    }

    /// Waits up to `secs` for the process to end: its exit code and what the terminal showed after the last match;
    /// kills it and fails when it runs longer.
    #[track_caller]
    pub fn wait(mut self, secs: u64) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            while let Ok(chunk) = self.rx.try_recv() {
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), std::mem::take(&mut self.seen));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{:?} did not end within {secs} s; it showed:\n{}",
                    self.command, self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
