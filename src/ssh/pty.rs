//! Pseudo-terminals for the agent: open a pair, read and write the master without blocking, resize it, and make
//! the slave a child's controlling terminal. The only unsafe code of the agent lives here, in three small functions.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::pty::{Winsize, openpty};
use tokio::io::unix::AsyncFd;

/// The master side of a pseudo-terminal.
pub(crate) struct Pty {
    master: AsyncFd<OwnedFd>,
}

/// Opens a pseudo-terminal of `cols` x `rows`; returns the master and the slave (for the child's stdio).
pub(crate) fn open(cols: u32, rows: u32) -> io::Result<(Pty, OwnedFd)> {
    let pair = openpty(&winsize(cols, rows), None).map_err(io::Error::from)?;
    for fd in [&pair.master, &pair.slave] {
        // Other jobs spawned meanwhile must not inherit either end, or the master never sees the end of output.
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    }
    fcntl(&pair.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    Ok((
        Pty {
            master: register(pair.master)?,
        },
        pair.slave,
    ))
}

#[expect(
    unsafe_code,
    reason = "AsyncFd::register is unsafe: the descriptor must stay open while registered"
)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which owns it until dropped: the descriptor stays open and
    // `as_raw_fd` returns the same number for the `AsyncFd`'s whole life.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

fn winsize(cols: u32, rows: u32) -> Winsize {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    Winsize {
        ws_row: clamp(rows),
        ws_col: clamp(cols),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Reads output; 0 at the end (every slave descriptor closed).
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` (the terminal's input).
    pub(crate) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the window size (the foreground process gets SIGWINCH).
    pub(crate) fn resize(&self, cols: u32, rows: u32) -> io::Result<()> {
        set_winsize(self.master.get_ref(), &winsize(cols, rows))
    }
}

#[expect(unsafe_code, reason = "TIOCSWINSZ has no safe wrapper in nix")]
fn set_winsize(fd: &OwnedFd, size: &Winsize) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor owned by the caller for the whole call, and `size` points to a valid
    // `winsize` that outlives it; TIOCSWINSZ only reads that struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size as *const Winsize) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes the child start a new session whose controlling terminal is its stdin (the pty slave).
#[expect(
    unsafe_code,
    reason = "pre_exec is unsafe: the closure runs in the child between fork and exec"
)]
pub(crate) fn set_controlling_terminal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure calls only async-signal-safe functions (setsid, ioctl), allocates nothing and touches no
    // lock; std has already made the slave the child's fd 0 when it runs.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
