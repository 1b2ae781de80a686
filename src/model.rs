//! Plain data shared by the scheduler, the workers and the transports: how a job ended and what it printed, and
//! the ids of tasks (one scheme for every backend).
//! No I/O here.

use bytes::Bytes;

mod slots;
mod task;

pub use slots::{JobSlots, SlotsError, UNLIMITED_SLOTS};
pub use task::{CONTAINERS, PODS, TaskRow, label_value, origin, render_table, show_age};

/// Which output stream of a job a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The sending half a transport writes a running job's output into, chunk by chunk, in order.
pub type OutputTx = tokio::sync::mpsc::Sender<(Stream, Bytes)>;

/// How a job's command ended, when it ran to an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobExit {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal (its number on Linux).
    Signal(i32),
}

impl JobExit {
    /// True when the command exited with status 0.
    pub fn success(self) -> bool {
        self == JobExit::Code(0)
    }

    /// The `Exitval` column of GNU parallel's joblog (0 when killed by a signal, as GNU parallel writes it; a job
    /// killed by `--timeout` is logged with -1 by the scheduler).
    pub fn exitval(self) -> i32 {
        match self {
            JobExit::Code(code) => code,
            JobExit::Signal(_) => 0,
        }
    }

    /// The `Signal` column of GNU parallel's joblog (0 when it exited on its own).
    pub fn signal(self) -> i32 {
        match self {
            JobExit::Code(_) => 0,
            JobExit::Signal(sig) => sig,
        }
    }
}

/// A request sent to a running job: deliver a signal to its whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSignal {
    /// SIGTERM: ask it to stop.
    Term,
    /// SIGKILL: stop it now.
    Kill,
    /// SIGINT.
    Int,
}

impl JobSignal {
    /// The SSH name of the signal (RFC 4254 section 6.9), without the `SIG` prefix.
    pub fn ssh_name(self) -> &'static str {
        match self {
            JobSignal::Term => "TERM",
            JobSignal::Kill => "KILL",
            JobSignal::Int => "INT",
        }
    }
}

/// Maps an SSH signal name (`TERM`, `KILL`, ...) to its Linux number, 0 when unknown.
pub fn signal_number(name: &str) -> i32 {
    let name = name.trim_start_matches("SIG");
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .unwrap_or(0)
}

/// A fresh task id: 8 characters of `[a-z0-9]`, starting with a letter.
pub fn new_task_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut value: u64 = rand::random();
    let mut id = String::with_capacity(8);
    id.push(char::from(ALPHABET[(value % 26) as usize]));
    value /= 26;
    for _ in 1..8 {
        id.push(char::from(ALPHABET[(value % 36) as usize]));
        value /= 36;
    }
    id
}

/// True when `name` has the form of the ids [`new_task_id`] makes (so a directory so named is a task's).
pub fn is_task_id_form(name: &str) -> bool {
    name.len() == 8
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
