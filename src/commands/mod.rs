//! One file or folder per user command, holding its options (clap types) and its run; the commands kb runs itself
//! (in pods, in the share server, in the `kb-fuse` DaemonSet) are apart in `internal` and hidden from the help.
//! Options shared by several commands are in `options`; the top-level error is `error`.

pub mod cluster_setup;
pub mod error;
pub mod finish;
pub mod internal;
pub mod logs;
pub mod options;
pub mod parallel;
pub mod setup;
pub mod shell;
pub mod status;
