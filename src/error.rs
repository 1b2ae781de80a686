//! What every layer shares about failure: the exit statuses (`exit`) and one-line error chains (`chain`). The
//! top-level error that every module error converts into lives at the top, in `commands::error`.

/// Exit statuses, documented in `docs/exit-codes.md` and pinned by `tests/cli.rs`.
pub mod exit {
    /// Success.
    pub const SUCCESS: u8 = 0;
    /// A subcommand other than `parallel` failed.
    pub const FAILURE: u8 = 1;
    /// A usage error in a subcommand other than `parallel` (as clap).
    pub const USAGE: u8 = 2;
    /// `kb parallel`: more than 100 jobs failed.
    pub const MANY_FAILED: u8 = 101;
    /// `kb agent`: no client was logged in for `--orphan-timeout` (EX_TEMPFAIL); a task's Job fails on it.
    pub const ORPHANED: u8 = 75;
    /// Interrupted by the user.
    pub const INTERRUPTED: u8 = 130;
    /// `kb parallel`: any error other than failed jobs (usage, config, cluster or SSH unreachable).
    pub const OTHER: u8 = 255;
}

/// One line with an error and its causes (`a: b: c`), for warnings and events that carry a reason as text.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
