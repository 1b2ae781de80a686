//! The plugin against a fake kubelet on unix sockets in a temporary directory: registration, the calls a kubelet
//! makes, and registering again after a kubelet restart or a dropped ListAndWatch stream.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tonic::body::Body;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::*;
use crate::deviceplugin::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateRequest, DevicePluginOptions, Empty,
    ListAndWatchResponse,
};
use crate::deviceplugin::grpc::{connect_unix, path};

/// The kubelet's Registration service: refuses a plugin whose socket is not in its directory (the real kubelet
/// dials it), forwards every request it accepts.
#[derive(Clone)]
struct FakeKubelet(UnboundedSender<RegisterRequest>, PathBuf);

impl tower::Service<http::Request<Body>> for FakeKubelet {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let sender = self.0.clone();
        let dir = self.1.clone();
        Box::pin(async move {
            assert_eq!(req.uri().path(), path::REGISTER);
            let svc = tower::service_fn(move |r: Request<RegisterRequest>| {
                let request = r.into_inner();
                let found = dir.join(&request.endpoint).exists();
                if found {
                    let _ = sender.send(request);
                }
                async move {
                    match found {
                        true => Ok(Response::new(Empty {})),
                        false => Err(Status::unavailable("no plugin socket")),
                    }
                }
            });
            Ok(
                tonic::server::Grpc::new(ProstCodec::<Empty, RegisterRequest>::default())
                    .unary(svc, req)
                    .await,
            )
        })
    }
}

/// A fake kubelet serving `dir/kubelet.sock` until dropped.
struct Kubelet {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Kubelet {
    fn start(dir: &Path, sender: UnboundedSender<RegisterRequest>) -> Kubelet {
        let listener = tokio::net::UnixListener::bind(dir.join(KUBELET_SOCKET)).unwrap();
        let incoming = futures::stream::unfold(listener, |l| async move {
            Some((l.accept().await.map(|(s, _)| s), l))
        });
        let stop = CancellationToken::new();
        let dir = dir.to_path_buf();
        let mut tasks = JoinSet::new();
        let until = stop.clone().cancelled_owned();
        tasks.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(FakeKubelet(sender, dir), incoming, until)
                .await;
        });
        Kubelet { stop, tasks }
    }

    /// Stops it and removes its socket, as a kubelet that exits.
    async fn stop(mut self, dir: &Path) {
        self.stop.cancel();
        self.tasks.shutdown().await;
        std::fs::remove_file(dir.join(KUBELET_SOCKET)).unwrap();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    registered: UnboundedReceiver<RegisterRequest>,
    sender: UnboundedSender<RegisterRequest>,
    kubelet: Kubelet,
    shutdown: CancellationToken,
    plugin: JoinSet<Result<()>>,
}

fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (sender, registered) = unbounded_channel();
    let kubelet = Kubelet::start(dir.path(), sender.clone());
    let shutdown = CancellationToken::new();
    let plugin = Plugin {
        resource: "kb.dev/fuse".into(),
        device: "/dev/fuse".into(),
        count: 4,
    };
    let place = Placement {
        dir: dir.path().to_path_buf(),
        socket: "kb-fuse-test.sock".into(),
        register_timeout: Duration::from_secs(10),
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(run(plugin, place, shutdown.clone()));
    Setup {
        dir,
        registered,
        sender,
        kubelet,
        shutdown,
        plugin: tasks,
    }
}

async fn next_registration(rx: &mut UnboundedReceiver<RegisterRequest>) -> RegisterRequest {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a registration within 10 s")
        .unwrap()
}

async fn plugin_client(socket: PathBuf) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = connect_unix(socket, Duration::from_secs(5)).await.unwrap();
    // Like tonic's generated clients, callers wait for `ready()` before each call.
    tonic::client::Grpc::new(channel)
}

/// Opens the ListAndWatch stream, as the kubelet does once a plugin has registered.
async fn list_and_watch(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
) -> tonic::codec::Streaming<ListAndWatchResponse> {
    grpc.ready().await.unwrap();
    grpc.server_streaming(
        Request::new(Empty {}),
        PathAndQuery::from_static(path::LIST_AND_WATCH),
        ProstCodec::<Empty, ListAndWatchResponse>::default(),
    )
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn registers_and_answers_what_a_kubelet_asks() {
    let mut s = start();
    let request = next_registration(&mut s.registered).await;
    assert_eq!(request.version, "v1beta1");
    assert_eq!(request.resource_name, "kb.dev/fuse");
    assert_eq!(request.endpoint, "kb-fuse-test.sock");
    let mut grpc = plugin_client(s.dir.path().join(&request.endpoint)).await;
    grpc.ready().await.unwrap();
    let options = grpc
        .unary(
            Request::new(Empty {}),
            PathAndQuery::from_static(path::OPTIONS),
            ProstCodec::<Empty, DevicePluginOptions>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(options, Plugin::options());
    let mut stream = list_and_watch(&mut grpc).await;
    let list = stream.message().await.unwrap().unwrap();
    assert_eq!(list.devices.len(), 4);
    grpc.ready().await.unwrap();
    let allocated = grpc
        .unary(
            Request::new(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: vec!["fuse-3".into()],
                }],
            }),
            PathAndQuery::from_static(path::ALLOCATE),
            ProstCodec::<AllocateRequest, AllocateResponse>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        allocated.container_responses[0].devices[0].host_path,
        "/dev/fuse"
    );
    assert_eq!(
        allocated.container_responses[0].devices[0].permissions,
        "rw"
    );

    // Shut down: the stream ends and the socket goes.
    s.shutdown.cancel();
    assert!(stream.message().await.unwrap().is_none());
    s.plugin.join_next().await.unwrap().unwrap().unwrap();
    assert!(!s.dir.path().join("kb-fuse-test.sock").exists());
}

#[tokio::test]
async fn registers_again_when_kubelet_sock_is_made_again() {
    let mut s = start();
    next_registration(&mut s.registered).await;
    // A kubelet restart that (unlike a real one) leaves the plugin's socket: the new kubelet.sock is the sign.
    s.kubelet.stop(s.dir.path()).await;
    let kubelet = Kubelet::start(s.dir.path(), s.sender.clone());
    let again = next_registration(&mut s.registered).await;
    assert_eq!(again.endpoint, "kb-fuse-test.sock");
    // A slow restart, as a real one: the kubelet is gone long enough for the plugin to try and fail to register,
    // then the new kubelet deletes the plugin's socket before it makes kubelet.sock.
    kubelet.stop(s.dir.path()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let socket = s.dir.path().join("kb-fuse-test.sock");
    assert!(s.registered.try_recv().is_err());
    std::fs::remove_file(&socket).unwrap();
    let kubelet = Kubelet::start(s.dir.path(), s.sender.clone());
    next_registration(&mut s.registered).await;
    assert!(socket.exists());
    s.shutdown.cancel();
    s.plugin.join_next().await.unwrap().unwrap().unwrap();
    kubelet.stop(s.dir.path()).await;
}

#[tokio::test]
async fn registers_again_when_the_kubelet_drops_list_and_watch() {
    let mut s = start();
    let request = next_registration(&mut s.registered).await;
    let mut grpc = plugin_client(s.dir.path().join(&request.endpoint)).await;
    let mut stream = list_and_watch(&mut grpc).await;
    stream.message().await.unwrap().unwrap();
    drop(stream);
    drop(grpc);
    next_registration(&mut s.registered).await;
    s.shutdown.cancel();
    s.plugin.join_next().await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_second_plugin_of_the_resource_stands_by_until_the_first_stops() {
    let mut s = start();
    assert_eq!(
        next_registration(&mut s.registered).await.endpoint,
        "kb-fuse-test.sock"
    );
    let second = CancellationToken::new();
    let mut plugins = JoinSet::new();
    let place = Placement {
        dir: s.dir.path().to_path_buf(),
        socket: "kb-fuse-other.sock".into(),
        register_timeout: Duration::from_secs(10),
    };
    let plugin = Plugin {
        resource: "kb.dev/fuse".into(),
        device: "/dev/fuse".into(),
        count: 4,
    };
    plugins.spawn(run(plugin, place, second.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        s.registered.try_recv().is_err(),
        "the second registered too"
    );
    assert!(!s.dir.path().join("kb-fuse-other.sock").exists());
    // The first stops (its namespace was deleted): the second takes over.
    s.shutdown.cancel();
    s.plugin.join_next().await.unwrap().unwrap().unwrap();
    assert_eq!(
        next_registration(&mut s.registered).await.endpoint,
        "kb-fuse-other.sock"
    );
    second.cancel();
    plugins.join_next().await.unwrap().unwrap().unwrap();
}
