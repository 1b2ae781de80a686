//! What the user reads: job output in GNU parallel's modes (`printer`), progress on stderr (`progress`), and every
//! message about a run (`report`). It consumes plain data and events; it must not know the scheduler.

pub mod printer;
pub mod progress;
pub mod report;
