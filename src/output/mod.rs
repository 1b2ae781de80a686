//! What the user reads: job output in GNU parallel's modes (`printer`), and progress on stderr (`progress`).

pub mod printer;
pub mod progress;
