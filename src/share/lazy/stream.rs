//! The byte streams the lazy share runs over: a watcher that records when a stream broke (so that every later
//! file system operation fails at once), stdin/stdout as one stream, and the serving loop of the SFTP server.
//! Nothing here knows what the bytes mean.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A boxed byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A stream that sets `broken` when it ends or fails, and drops `on_drop` (a channel sender) with itself.
pub(crate) struct Watched<S> {
    inner: S,
    broken: Arc<AtomicBool>,
    _on_drop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<S> Watched<S> {
    /// Watches `inner`.
    pub(crate) fn new(
        inner: S,
        broken: Arc<AtomicBool>,
        on_drop: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Self {
        Watched {
            inner,
            broken,
            _on_drop: on_drop,
        }
    }

    fn check<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &poll {
            self.broken.store(true, Ordering::SeqCst);
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            // End of stream: the other side is gone.
            self.broken.store(true, Ordering::SeqCst);
        }
        self.check(poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// This process's stdin and stdout as one stream. Pipes (what kb's agent and a spawning parent give) are read
/// without a thread, through the reactor; anything else (a terminal, a socket, a file) through tokio's blocking
/// stdin and stdout.
pub fn stdio() -> io::Result<Box<dyn Stream>> {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let fifo = || -> io::Result<(pipe::Receiver, pipe::Sender)> {
        let input = std::io::stdin().as_fd().try_clone_to_owned()?;
        let output = std::io::stdout().as_fd().try_clone_to_owned()?;
        Ok((
            pipe::Receiver::from_file(std::fs::File::from(input))?,
            pipe::Sender::from_file(std::fs::File::from(output))?,
        ))
    };
    Ok(match fifo() {
        Ok((rx, tx)) => Box::new(tokio::io::join(rx, tx)),
        Err(_) => Box::new(tokio::io::join(tokio::io::stdin(), tokio::io::stdout())),
    })
}

/// Carries this process's stdin to `stream` and `stream` to its stdout until either direction ends: whoever is
/// on the other side (a pod's file system, a relay) sees the end at once.
pub async fn splice_stdio(stream: impl Stream) -> io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let (mut from_stdin, mut to_stdout) = tokio::io::split(stdio()?);
    let (mut from_stream, mut to_stream) = tokio::io::split(stream);
    let up = async {
        tokio::io::copy(&mut from_stdin, &mut to_stream).await?;
        to_stream.shutdown().await
    };
    let down = async {
        tokio::io::copy(&mut from_stream, &mut to_stdout).await?;
        to_stdout.flush().await
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// Serves `root` over SFTP on `stream` until the client closes it.
pub async fn serve_sftp(stream: impl Stream + 'static, root: &Path) -> io::Result<()> {
    let handler = super::server::SftpServer::new(root)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let watched = Watched::new(stream, Arc::new(AtomicBool::new(false)), Some(done_tx));
    // russh-sftp runs the session on a task of its own and drops the stream when the client is gone; the dropped
    // sender is how this function learns it.
    russh_sftp::server::run(watched, handler).await;
    let _ = done_rx.await;
    Ok(())
}
