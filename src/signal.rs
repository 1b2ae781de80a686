//! The signals a run reacts to, delivered as events so the dispatcher can count them: Ctrl-C (SIGINT) and SIGTERM
//! ask for a stop (the first a graceful one, the second an immediate one); SIGHUP, as in GNU parallel, starts no
//! more jobs and lets the running ones finish.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT or SIGTERM: stop.
    Stop,
    /// SIGHUP: start no more jobs, let the running ones finish.
    HangUp,
}

/// Where interrupts come from: the process's signals, or nowhere (tests).
pub enum SignalHandler {
    /// SIGINT, SIGTERM and SIGHUP of this process.
    Standard {
        /// SIGINT.
        int: Signal,
        /// SIGTERM.
        term: Signal,
        /// SIGHUP (the terminal went away, or someone asked for a gentle end).
        hup: Signal,
    },
    /// Never fires.
    Noop,
}

impl SignalHandler {
    /// Listens for SIGINT, SIGTERM and SIGHUP; falls back to [`SignalHandler::Noop`] if they cannot be watched.
    pub fn standard() -> Self {
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(int), Ok(term), Ok(hup)) => SignalHandler::Standard { int, term, hup },
            _ => SignalHandler::Noop,
        }
    }

    /// Waits for the next signal and says what it asks.
    pub async fn recv(&mut self) -> Interrupt {
        match self {
            SignalHandler::Standard { int, term, hup } => {
                tokio::select! {
                    _ = int.recv() => Interrupt::Stop,
                    _ = term.recv() => Interrupt::Stop,
                    _ = hup.recv() => Interrupt::HangUp,
                }
            }
            SignalHandler::Noop => std::future::pending().await,
        }
    }
}
