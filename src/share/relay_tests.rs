use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, duplex};

use super::*;

const FXP_STAT: u8 = 17;
const FXP_STATUS: u8 = 101;
const FXP_NAME: u8 = 104;

/// A packet of `kind` with `id` and one string.
fn packet(kind: u8, id: u32, text: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&(text.len() as u32).to_be_bytes());
    p.extend_from_slice(text);
    p
}

/// A client that serves SFTP as far as the tests need: VERSION for INIT; for STAT of a path, a NAME naming the
/// path; for OPEN, a HANDLE `h<path>`; for CLOSE, a STATUS; answers of a pair of requests come back in reverse
/// order, to show that ids route them. Records the handles it was asked to close.
fn fake_client(stream: DuplexStream, closed: Arc<Mutex<Vec<Vec<u8>>>>) {
    tokio::spawn(async move {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut held: Option<Vec<u8>> = None;
        while let Ok(request) = read_packet(&mut reader).await {
            let answer = match request[0] {
                FXP_INIT => vec![FXP_VERSION, 0, 0, 0, 3],
                FXP_STAT => {
                    let path = string_at(&request, 5).unwrap().to_vec();
                    packet(FXP_NAME, id_of(&request).unwrap(), &path)
                }
                FXP_OPEN => {
                    let mut handle = b"h".to_vec();
                    handle.extend_from_slice(string_at(&request, 5).unwrap());
                    packet(FXP_HANDLE, id_of(&request).unwrap(), &handle)
                }
                FXP_CLOSE => {
                    closed
                        .lock()
                        .unwrap()
                        .push(string_at(&request, 5).unwrap().to_vec());
                    packet(FXP_STATUS, id_of(&request).unwrap(), b"")
                }
                _ => packet(FXP_STATUS, id_of(&request).unwrap(), b"unsupported"),
            };
            if request[0] == FXP_STAT {
                match held.take() {
                    None => {
                        held = Some(answer);
                        continue;
                    }
                    Some(first) => {
                        write_packet(&mut writer, &answer).await.unwrap();
                        write_packet(&mut writer, &first).await.unwrap();
                        continue;
                    }
                }
            }
            write_packet(&mut writer, &answer).await.unwrap();
        }
    });
}

async fn pod_session(relay: &Relay) -> DuplexStream {
    let (pod, relay_end) = duplex(1 << 16);
    let relay = relay.clone();
    tokio::spawn(async move { relay.serve_pod(relay_end).await });
    let mut pod = pod;
    write_packet(&mut pod, &[FXP_INIT, 0, 0, 0, 3])
        .await
        .unwrap();
    let version = read_packet(&mut pod).await.unwrap();
    assert_eq!(version, [FXP_VERSION, 0, 0, 0, 3]);
    pod
}

async fn start() -> (Relay, Arc<Mutex<Vec<Vec<u8>>>>) {
    let (client_end, relay_end) = duplex(1 << 16);
    let closed = Arc::new(Mutex::new(Vec::new()));
    fake_client(client_end, closed.clone());
    let (relay, run) = Relay::start(relay_end).await.unwrap();
    tokio::spawn(run);
    (relay, closed)
}

async fn answer_of<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), read_packet(stream))
        .await
        .expect("an answer within 5 s")
        .unwrap()
}

#[tokio::test]
async fn answers_go_back_to_the_pod_that_asked_under_its_own_id() {
    let (relay, _) = start().await;
    let mut a = pod_session(&relay).await;
    let mut b = pod_session(&relay).await;
    // Both pods use id 7; the client answers the second request first.
    write_packet(&mut a, &packet(FXP_STAT, 7, b"/a"))
        .await
        .unwrap();
    write_packet(&mut b, &packet(FXP_STAT, 7, b"/b"))
        .await
        .unwrap();
    assert_eq!(answer_of(&mut b).await, packet(FXP_NAME, 7, b"/b"));
    assert_eq!(answer_of(&mut a).await, packet(FXP_NAME, 7, b"/a"));
}

#[tokio::test]
async fn handles_a_pod_leaves_open_are_closed_for_it() {
    let (relay, closed) = start().await;
    let mut a = pod_session(&relay).await;
    write_packet(&mut a, &packet(FXP_OPEN, 1, b"/kept"))
        .await
        .unwrap();
    assert_eq!(answer_of(&mut a).await, packet(FXP_HANDLE, 1, b"h/kept"));
    write_packet(&mut a, &packet(FXP_OPEN, 2, b"/closed"))
        .await
        .unwrap();
    assert_eq!(answer_of(&mut a).await, packet(FXP_HANDLE, 2, b"h/closed"));
    write_packet(&mut a, &packet(FXP_CLOSE, 3, b"h/closed"))
        .await
        .unwrap();
    assert_eq!(answer_of(&mut a).await[0], FXP_STATUS);
    assert_eq!(*closed.lock().unwrap(), [b"h/closed".to_vec()]);
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while closed.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the left handle was not closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *closed.lock().unwrap(),
        [b"h/closed".to_vec(), b"h/kept".to_vec()]
    );
}

#[tokio::test]
async fn pods_sessions_end_when_the_client_s_does() {
    let (client_end, relay_end) = duplex(1 << 16);
    let (mut reader, mut writer) = tokio::io::split(client_end);
    let started = tokio::spawn(Relay::start(relay_end));
    let init = read_packet(&mut reader).await.unwrap();
    assert_eq!(init[0], FXP_INIT);
    write_packet(&mut writer, &[FXP_VERSION, 0, 0, 0, 3])
        .await
        .unwrap();
    let (relay, run) = started.await.unwrap().unwrap();
    let ended = tokio::spawn(run);
    let mut a = pod_session(&relay).await;
    // A request is in flight when the client goes away.
    write_packet(&mut a, &packet(FXP_STAT, 1, b"/x"))
        .await
        .unwrap();
    assert_eq!(read_packet(&mut reader).await.unwrap()[0], FXP_STAT);
    drop((reader, writer));
    tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the relay ends with its client")
        .unwrap()
        .unwrap();
    // The pod's session is closed: its read ends instead of waiting for the answer.
    let read = tokio::time::timeout(Duration::from_secs(5), read_packet(&mut a))
        .await
        .expect("the pod's session ends within 5 s");
    assert!(read.is_err(), "{read:?}");
    // And no pod can join any more.
    let (mut late, relay_end) = duplex(1 << 16);
    let relay2 = relay.clone();
    let joined = tokio::spawn(async move { relay2.serve_pod(relay_end).await });
    write_packet(&mut late, &[FXP_INIT, 0, 0, 0, 3])
        .await
        .unwrap();
    assert!(joined.await.unwrap().is_err());
}

#[test]
fn ids_and_strings_are_read_where_sftp_puts_them() {
    let p = packet(FXP_OPEN, 0x01020304, b"name");
    assert_eq!(id_of(&p), Some(0x01020304));
    assert_eq!(string_at(&p, 5), Some(&b"name"[..]));
    assert_eq!(id_of(&[FXP_INIT, 0, 0, 0, 3]), None);
    assert_eq!(string_at(&p[..8], 5), None);
    let mut q = p.clone();
    set_id(&mut q, 9);
    assert_eq!(id_of(&q), Some(9));
}
