//! Input sources of a run (GNU parallel's stdin, `:::`, `:::+`, `::::`, `-a`, `-0`, `-d`), read lazily: one record
//! at a time, so memory does not grow with the input and the first job can start before stdin ends.
//!
//! STUB: the signatures are the contract; bodies come with issue [engine].

use std::path::PathBuf;

/// An input failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file could not be opened or read.
    #[error("failed to read input from `{path}`")]
    Read {
        /// The file (`-` for stdin).
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How items are separated in stdin and files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Separator {
    /// Newline (the default).
    #[default]
    Newline,
    /// NUL (`-0`).
    Nul,
    /// A delimiter string (`-d`), with GNU's backslash escapes already applied.
    Delimiter(String),
}

/// One input source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Values given on the command line after `:::`.
    Args(Vec<String>),
    /// A file (`::::` or `-a`); `-` is stdin.
    File(PathBuf),
    /// Standard input (when no other source is given).
    Stdin,
}

/// The sources of a run and how they combine.
#[derive(Debug, Clone, Default)]
pub struct InputSpec {
    /// The sources, in order; each with `true` when linked to the one before it (`:::+`, `::::+`).
    pub sources: Vec<(Source, bool)>,
    /// The item separator for files and stdin.
    pub separator: Separator,
}

/// Splits the words after the options into the command and the input sources (`:::`, `:::+`, `::::`, `::::+`).
pub fn split_command(_words: &[String]) -> (Vec<String>, Vec<(Source, bool)>) {
    todo!("issue [engine]")
}

/// The records of a run: one value per (combined) source, in GNU parallel's order.
pub struct Inputs {}

impl Inputs {
    /// Opens the sources; stdin is used when `spec.sources` is empty.
    pub fn open(_spec: InputSpec) -> Result<Inputs> {
        todo!("issue [engine]")
    }
}

impl Iterator for Inputs {
    type Item = Result<Vec<String>>;

    fn next(&mut self) -> Option<Self::Item> {
        todo!("issue [engine]")
    }
}
