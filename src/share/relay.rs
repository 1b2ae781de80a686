//! The lazy share's relay in the share server: the worker pods' SFTP sessions carried over the one SFTP session the
//! client serves on its SSH channel.
//!
//! The relay speaks SFTP version 3 (draft-ietf-secsh-filexfer-02) only as far as it must: it answers each pod's
//! `INIT` with the `VERSION` the client sent, and gives every request a relay-wide request id on the way up and its
//! own id back on the way down. Handles pass through untouched (they are the client's, and all pods of a relay
//! belong to one task). Handles a pod leaves open when it goes are closed for it. When the client's session ends,
//! every pod's session is closed, so their file systems fail with an I/O error instead of waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The SFTP packet types the relay looks at.
const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_CLOSE: u8 = 4;
const FXP_OPEN: u8 = 3;
const FXP_OPENDIR: u8 = 11;
const FXP_HANDLE: u8 = 102;
/// The largest packet accepted (a 256 KiB read or write and its header, with room to spare).
const MAX_PACKET: usize = 1 << 20;

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads one packet (type and payload, without the length).
async fn read_packet(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = reader.read_u32().await? as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(invalid(format!("an SFTP packet of {len} bytes")));
    }
    let mut packet = vec![0u8; len];
    reader.read_exact(&mut packet).await?;
    Ok(packet)
}

async fn write_packet(
    writer: &mut (impl AsyncWrite + Unpin),
    packet: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(packet.len()).map_err(|_| invalid("packet too large"))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(packet).await?;
    writer.flush().await
}

/// The request or response id of a packet that has one (every type but INIT and VERSION).
fn id_of(packet: &[u8]) -> Option<u32> {
    match packet.first() {
        Some(&FXP_INIT | &FXP_VERSION) | None => None,
        Some(_) => packet
            .get(1..5)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
    }
}

fn set_id(packet: &mut [u8], id: u32) {
    packet[1..5].copy_from_slice(&id.to_be_bytes());
}

/// The string at `offset` of a packet (SFTP's uint32 length and bytes).
fn string_at(packet: &[u8], offset: usize) -> Option<&[u8]> {
    let len = packet.get(offset..offset + 4)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    packet.get(offset + 4..offset + 4 + len)
}

/// A request in flight: which pod sent it, under which id, and whether its answer is a handle to remember.
struct Pending {
    pod: u64,
    id: u32,
    opens: bool,
}

/// What the relay knows while it runs.
#[derive(Default)]
struct State {
    next_id: u32,
    pending: HashMap<u32, Pending>,
    /// Each pod's way back.
    pods: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    /// Handles each pod has open, to close when it goes.
    handles: HashMap<u64, Vec<Vec<u8>>>,
    /// The client's session has ended: no pod may join.
    ended: bool,
}

impl State {
    /// Sends the client's answer to request `id` back to the pod that asked, under the pod's own id. An answer to
    /// an OPEN or OPENDIR is a handle the pod now holds: it is remembered so that it can be closed when the pod goes.
    fn route_answer(&mut self, id: u32, mut packet: Vec<u8>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        if pending.opens
            && packet.first() == Some(&FXP_HANDLE)
            && let Some(handle) = string_at(&packet, 5)
        {
            let handle = handle.to_vec();
            self.handles.entry(pending.pod).or_default().push(handle);
        }
        set_id(&mut packet, pending.id);
        if let Some(pod) = self.pods.get(&pending.pod) {
            let _ = pod.send(packet);
        }
    }

    /// Ends every pod's session and lets no new pod join: the client's session is gone.
    fn end(&mut self) {
        self.ended = true;
        self.pods.clear();
        self.pending.clear();
    }
}

/// The client's SFTP session, shared by the pods of one task.
#[derive(Clone)]
pub struct Relay {
    state: Arc<Mutex<State>>,
    up: mpsc::UnboundedSender<Vec<u8>>,
    version: Arc<Vec<u8>>,
    next_pod: Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    /// Opens the session over `upstream` (the client serves SFTP on it): sends INIT, reads VERSION, and starts
    /// carrying packets. Returns the relay and a future that ends when the client's session does; when it ends,
    /// every pod's session is closed.
    pub async fn start<S>(
        upstream: S,
    ) -> std::io::Result<(
        Relay,
        impl std::future::Future<Output = std::io::Result<()>>,
    )>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(upstream);
        write_packet(&mut writer, &[FXP_INIT, 0, 0, 0, 3]).await?;
        let version = read_packet(&mut reader).await?;
        if version.first() != Some(&FXP_VERSION) {
            return Err(invalid("the client did not answer INIT with VERSION"));
        }
        let (up, mut up_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let state = Arc::new(Mutex::new(State::default()));
        let relay = Relay {
            state: state.clone(),
            up,
            version: Arc::new(version),
            next_pod: Arc::default(),
        };
        let run = async move {
            let upward = async move {
                while let Some(packet) = up_rx.recv().await {
                    write_packet(&mut writer, &packet).await?;
                }
                Ok::<(), std::io::Error>(())
            };
            let downward = async {
                loop {
                    let packet = read_packet(&mut reader).await?;
                    let Some(id) = id_of(&packet) else { continue };
                    let mut state = state.lock().map_err(|_| invalid("relay state poisoned"))?;
                    state.route_answer(id, packet);
                }
            };
            let result: std::io::Result<()> = tokio::select! {
                r = upward => r,
                r = downward => r,
            };
            // The client is gone: every pod's session ends with it.
            if let Ok(mut state) = state.lock() {
                state.end();
            }
            match result {
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
                other => other,
            }
        };
        Ok((relay, run))
    }

    /// Carries one pod's SFTP session over `pod` until either end stops.
    pub async fn serve_pod<P>(&self, pod: P) -> std::io::Result<()>
    where
        P: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(pod);
        let init = read_packet(&mut reader).await?;
        if init.first() != Some(&FXP_INIT) {
            return Err(invalid("a pod's session did not start with INIT"));
        }
        let (key, mut rx) = self.register_pod()?;
        write_packet(&mut writer, &self.version).await?;
        let downward = async move {
            while let Some(packet) = rx.recv().await {
                write_packet(&mut writer, &packet).await?;
            }
            // The client's session ended.
            Err::<(), _>(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client's session ended",
            ))
        };
        let upward = async {
            loop {
                let packet = read_packet(&mut reader).await?;
                self.forward_up(key, packet)?;
            }
        };
        let result = tokio::select! {
            r = upward => r,
            r = downward => r,
        };
        self.forget_pod(key);
        match result {
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
            other => other,
        }
    }

    /// Gives a new pod a key and a way back for its answers; refused once the client's session has ended, since
    /// nothing would answer the pod.
    fn register_pod(&self) -> std::io::Result<(u64, mpsc::UnboundedReceiver<Vec<u8>>)> {
        let key = self
            .next_pod
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut state = self.lock()?;
        if state.ended {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client's session has ended",
            ));
        }
        state.pods.insert(key, tx);
        Ok((key, rx))
    }

    /// Sends one of pod `key`'s requests to the client under a relay-wide id, remembering whose it was so that the
    /// answer finds its way back; a CLOSE also drops the handle from the pod's open ones.
    fn forward_up(&self, key: u64, mut packet: Vec<u8>) -> std::io::Result<()> {
        let Some(id) = id_of(&packet) else {
            return Err(invalid("an SFTP request without an id"));
        };
        let opens = matches!(packet.first(), Some(&FXP_OPEN | &FXP_OPENDIR));
        let closes = (packet.first() == Some(&FXP_CLOSE))
            .then(|| string_at(&packet, 5).map(<[u8]>::to_vec))
            .flatten();
        {
            let mut state = self.lock()?;
            if !state.pods.contains_key(&key) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the client's session ended",
                ));
            }
            let up_id = state.next_id;
            state.next_id = state.next_id.wrapping_add(1);
            state.pending.insert(
                up_id,
                Pending {
                    pod: key,
                    id,
                    opens,
                },
            );
            if let Some(handle) = closes
                && let Some(open) = state.handles.get_mut(&key)
            {
                open.retain(|h| *h != handle);
            }
            set_id(&mut packet, up_id);
        }
        self.up
            .send(packet)
            .map_err(|_| invalid("the client's session ended"))
    }

    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| invalid("relay state poisoned"))
    }

    /// Drops a pod's way back and closes the handles it left open (their answers go nowhere).
    fn forget_pod(&self, key: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.pods.remove(&key);
        state.pending.retain(|_, p| p.pod != key);
        for handle in state.handles.remove(&key).unwrap_or_default() {
            let id = state.next_id;
            state.next_id = state.next_id.wrapping_add(1);
            let mut packet = vec![FXP_CLOSE];
            packet.extend_from_slice(&id.to_be_bytes());
            packet.extend_from_slice(&(handle.len() as u32).to_be_bytes());
            packet.extend_from_slice(&handle);
            let _ = self.up.send(packet);
        }
    }
}

/// `kb share lazy-host`: the client's SFTP session is this process's stdin and stdout; pods reach it through the
/// task's socket in the store until the client's session ends.
pub async fn host(store: &super::store::Store, task: &str) -> std::io::Result<()> {
    let socket = store.lazy_socket(task)?;
    // A socket left by an earlier host of the same task (a client that reconnected) is replaced.
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let upstream = super::lazy::stdio()?;
    let (relay, run) = Relay::start(upstream).await?;
    let accept = async {
        loop {
            let (pod, _) = listener.accept().await?;
            let relay = relay.clone();
            tokio::spawn(async move {
                if let Err(err) = relay.serve_pod(pod).await {
                    tracing::debug!("lazy share: a pod's session ended: {err}");
                }
            });
        }
    };
    let result = tokio::select! {
        r = run => r,
        r = accept => r,
    };
    let _ = std::fs::remove_file(&socket);
    result
}

/// `kb share lazy-attach`: carries this process's stdin and stdout to the task's relay.
pub async fn attach(store: &super::store::Store, task: &str) -> std::io::Result<()> {
    let socket = store.lazy_socket(task)?;
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("the client of task {task} is not serving its files ({e})"),
            )
        })?;
    super::lazy::splice_stdio(stream).await
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
