//! Stdin for the container's shell, read so that nothing typed after the shell ends is lost.

/// Reads stdin on a thread of its own that polls before each read and stops when dropped, so that nothing typed
/// after the shell ends is swallowed: the "Does it work?" answer must reach the prompt, not a reader left blocked.
pub(super) struct StdinPump {
    pub(super) chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StdinPump {
    pub(super) fn start() -> StdinPump {
        use std::sync::atomic::Ordering;
        let (tx, chunks) = tokio::sync::mpsc::channel(16);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let stdin = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                let mut fds = [nix::poll::PollFd::new(
                    stdin.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u8)) {
                    Ok(0) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                    Ok(_) => {}
                }
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                    Err(_) => break,
                }
            }
        });
        StdinPump { chunks, stop }
    }
}

impl Drop for StdinPump {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
