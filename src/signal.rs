//! Ctrl-C (SIGINT) and SIGTERM, delivered as events so the dispatcher can count them: the first asks for a graceful
//! stop, the second for an immediate one.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Where interrupts come from: the process's signals, or nowhere (tests).
pub enum SignalHandler {
    /// SIGINT and SIGTERM of this process.
    Standard {
        /// SIGINT.
        int: Signal,
        /// SIGTERM.
        term: Signal,
    },
    /// Never fires.
    Noop,
}

impl SignalHandler {
    /// Listens for SIGINT and SIGTERM; falls back to [`SignalHandler::Noop`] if they cannot be watched.
    pub fn standard() -> Self {
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => SignalHandler::Standard { int, term },
            _ => SignalHandler::Noop,
        }
    }

    /// Waits for the next interrupt.
    pub async fn recv(&mut self) {
        match self {
            SignalHandler::Standard { int, term } => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            SignalHandler::Noop => std::future::pending().await,
        }
    }
}
