//! Input sources of a run (GNU parallel's stdin, `:::`, `:::+`, `::::`, `::::+`, `-a`, `-0`, `-d`), read lazily:
//! one record at a time, so memory does not grow with the first source and the first job can start before stdin
//! ends. Blocking I/O only: callers run [`Inputs`] on a blocking thread. Knows nothing about templates or jobs.

mod combine;
mod reader;
mod spec;
mod split;

pub use combine::Inputs;
pub use spec::{Error, InputSpec, Result, Separator, Source, Trim};
pub use split::split_command;
