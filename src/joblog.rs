//! GNU parallel's joblog: the tab-separated file of `--joblog` (`+FILE` appends), and reading it back for
//! `--resume` and `--resume-failed`.
//!
//! STUB: the signatures are the contract; bodies come with issue [engine].

use std::collections::HashSet;

/// A joblog failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The joblog could not be opened, read or written.
    #[error("failed to access the joblog `{path}`")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One line of the joblog.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `Seq`.
    pub seq: u64,
    /// `Host` (`:` for local).
    pub host: String,
    /// `Starttime`, seconds since the epoch.
    pub start: f64,
    /// `JobRuntime`, seconds.
    pub runtime: f64,
    /// `Send`, bytes.
    pub send: u64,
    /// `Receive`, bytes.
    pub receive: u64,
    /// `Exitval`.
    pub exitval: i32,
    /// `Signal`.
    pub signal: i32,
    /// `Command`.
    pub command: String,
}

/// Appends entries to a joblog.
pub struct Writer {}

impl Writer {
    /// Opens `spec` (`+FILE` appends; otherwise the file is truncated and the header written).
    pub fn open(_spec: &str) -> Result<Writer> {
        todo!("issue [engine]")
    }

    /// Writes one entry and flushes it.
    pub fn write(&mut self, _entry: &Entry) -> Result<()> {
        todo!("issue [engine]")
    }
}

/// What an existing joblog says about which jobs to skip.
#[derive(Debug, Default)]
pub struct Resume {
    /// Sequence numbers that must not run again.
    pub skip: HashSet<u64>,
}

/// Reads `path` for `--resume` (skip every logged job) or `--resume-failed` (skip only the ones that succeeded).
pub fn read_resume(_path: &str, _failed_too: bool) -> Result<Resume> {
    todo!("issue [engine]")
}
