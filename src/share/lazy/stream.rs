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

/// How many requests the laptop's SFTP server works on at once.
const LANES: usize = 4;
/// The largest request packet accepted (a WRITE of 255 KiB and its header; russh-sftp's server takes 256 KiB).
const MAX_PACKET: usize = 256 * 1024 + 64;

/// Serves `root` over SFTP on `stream` until the client closes it.
///
/// russh-sftp's server answers one request at a time, and behind the share server's relay one session carries
/// every pod's requests: one cold read on the laptop would hold up every pod. So the requests are dealt to
/// [`LANES`] servers that share one handle table, and their answers go back as they come (SFTP matches answers to
/// requests by id, in any order). Requests on one handle always take the same lane, so reads, writes, `fsync` and
/// `close` of a file keep their order; the others take the lane with the fewest requests in flight.
pub async fn serve_sftp(stream: impl Stream + 'static, root: &Path) -> io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let handler = super::server::SftpServer::new(root)?;
    let (mut from_client, mut to_client) = tokio::io::split(stream);
    let (answers_tx, mut answers_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let in_flight: Arc<[std::sync::atomic::AtomicUsize; LANES]> = Arc::new(Default::default());
    let mut lanes = Vec::with_capacity(LANES);
    let mut readers = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let (ours, theirs) = tokio::io::duplex(MAX_PACKET * 4);
        russh_sftp::server::run(theirs, handler.clone()).await;
        let (mut answers, requests) = tokio::io::split(ours);
        lanes.push(requests);
        let (answers_tx, in_flight) = (answers_tx.clone(), in_flight.clone());
        readers.spawn(async move {
            while let Ok(packet) = read_packet(&mut answers, usize::MAX).await {
                in_flight[lane].fetch_sub(1, Ordering::Relaxed);
                if answers_tx.send(packet).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(answers_tx);
    let writer = tokio::spawn(async move {
        while let Some(packet) = answers_rx.recv().await {
            to_client.write_all(&packet).await?;
            if answers_rx.is_empty() {
                to_client.flush().await?;
            }
        }
        to_client.shutdown().await
    });
    // Requests until the client closes the stream (or sends what is not SFTP).
    let mut next = 0;
    while let Ok(packet) = read_packet(&mut from_client, MAX_PACKET).await {
        let lane = match handle_of(&packet[4..]) {
            Some(handle) => {
                handle.iter().fold(0usize, |h, b| {
                    h.wrapping_mul(31).wrapping_add(usize::from(*b))
                }) % LANES
            }
            None => {
                next = (next + 1) % LANES;
                (0..LANES)
                    .map(|i| (next + i) % LANES)
                    .min_by_key(|&i| in_flight[i].load(Ordering::Relaxed))
                    .unwrap_or(0)
            }
        };
        in_flight[lane].fetch_add(1, Ordering::Relaxed);
        if lanes[lane].write_all(&packet).await.is_err() {
            break;
        }
    }
    // The servers see the end of their requests, answer what they have, and end; then the answers end.
    for mut lane in lanes {
        let _ = lane.shutdown().await;
    }
    while readers.join_next().await.is_some() {}
    writer.await.map_err(io::Error::other)?
}

/// Reads one SFTP packet (its length and then the bytes), whole, length included.
async fn read_packet(from: &mut (impl AsyncRead + Unpin), max: usize) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let len = from.read_u32().await? as usize;
    if len == 0 || len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an SFTP packet of {len} bytes"),
        ));
    }
    let mut packet = vec![0; 4 + len];
    packet[..4].copy_from_slice(&(len as u32).to_be_bytes());
    from.read_exact(&mut packet[4..]).await?;
    Ok(packet)
}

/// The handle a request acts on, if it names one: CLOSE, READ, WRITE, FSTAT, FSETSTAT, READDIR, and the
/// `fsync@openssh.com` extension. `payload` is the packet after its length: type, request id, then the fields.
fn handle_of(payload: &[u8]) -> Option<&[u8]> {
    let string = |at: usize| -> Option<(&[u8], usize)> {
        let len = u32::from_be_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
        Some((payload.get(at + 4..at + 4 + len)?, at + 4 + len))
    };
    match payload.first()? {
        // CLOSE, READ, WRITE, FSTAT, FSETSTAT, READDIR: the handle follows the id.
        4 | 5 | 6 | 8 | 10 | 12 => string(5).map(|(handle, _)| handle),
        // EXTENDED: its name, then (for fsync) the handle.
        200 => {
            let (name, end) = string(5)?;
            (name == b"fsync@openssh.com").then(|| string(end).map(|(handle, _)| handle))?
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's payload: type, id 7, then the strings.
    fn request(kind: u8, strings: &[&[u8]]) -> Vec<u8> {
        let mut payload = vec![kind, 0, 0, 0, 7];
        for s in strings {
            payload.extend_from_slice(&(s.len() as u32).to_be_bytes());
            payload.extend_from_slice(s);
        }
        payload
    }

    #[tokio::test]
    async fn a_request_that_blocks_on_the_laptop_holds_up_no_other() {
        use russh_sftp::client::RawSftpSession;
        use russh_sftp::protocol::{FileAttributes, OpenFlags};
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::write(dir.path().join("a.txt"), "abc").unwrap();
        let (client, server) = tokio::io::duplex(1 << 20);
        let root = dir.path().to_owned();
        let serving = tokio::spawn(async move { serve_sftp(server, &root).await });
        let sftp = Arc::new(RawSftpSession::new(client));
        sftp.init().await.unwrap();
        // Opening a FIFO for reading waits for a writer, on the laptop's side.
        let opening = tokio::spawn({
            let sftp = sftp.clone();
            async move {
                sftp.open("/fifo", OpenFlags::READ, FileAttributes::default())
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!opening.is_finished());
        let stat = tokio::time::timeout(std::time::Duration::from_secs(5), sftp.lstat("/a.txt"))
            .await
            .expect("a stat waited behind the blocked open")
            .unwrap();
        assert_eq!(stat.attrs.size, Some(3));
        // A writer comes: the open is answered too.
        let _writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let handle = opening.await.unwrap().unwrap();
        sftp.close(handle.handle).await.unwrap();
        serving.abort();
    }

    #[tokio::test]
    async fn the_server_answers_what_it_was_asked_and_ends_with_the_stream() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let dir = tempfile::tempdir().unwrap();
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let root = dir.path().to_owned();
        let serving = tokio::spawn(async move { serve_sftp(server, &root).await });
        // INIT (version 3), and the client goes.
        client
            .write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3])
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer[4], 2, "a VERSION packet: {answer:?}");
        tokio::time::timeout(std::time::Duration::from_secs(5), serving)
            .await
            .expect("the server ends with the client's stream")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn requests_on_a_handle_are_known_by_it_and_others_are_not() {
        for kind in [4, 5, 6, 8, 10, 12] {
            assert_eq!(
                handle_of(&request(kind, &[b"h1"])),
                Some(&b"h1"[..]),
                "{kind}"
            );
        }
        let fsync = request(200, &[b"fsync@openssh.com", b"h2"]);
        assert_eq!(handle_of(&fsync), Some(&b"h2"[..]));
        // OPEN, STAT, RENAME... name paths; another extension; truncated packets.
        assert_eq!(handle_of(&request(3, &[b"a.txt"])), None);
        assert_eq!(handle_of(&request(17, &[b"a.txt"])), None);
        assert_eq!(
            handle_of(&request(200, &[b"statvfs@openssh.com", b"/"])),
            None
        );
        assert_eq!(handle_of(&[5, 0, 0, 0, 7, 0, 0, 0, 9, b'h']), None);
        assert_eq!(handle_of(&[]), None);
    }
}
