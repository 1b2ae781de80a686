//! The gRPC plumbing of the Device Plugin API, written by hand over tonic's generic `Grpc` handlers (what
//! tonic-build would generate, for the five methods kb serves and the one it calls): the DevicePlugin service a
//! kubelet calls on the plugin's socket, and the Registration call kb makes on the kubelet's socket.
//!
//! It owns wire details (method paths, codecs, unix-socket transport); what the answers say is [`Plugin`]'s.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use http::uri::PathAndQuery;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::api::{Empty, ListAndWatchResponse, RegisterRequest};
use super::error::RegisterError;
use super::plugin::Plugin;

/// The DevicePlugin service's method paths (`/package.Service/Method`).
pub mod path {
    /// GetDevicePluginOptions.
    pub const OPTIONS: &str = "/v1beta1.DevicePlugin/GetDevicePluginOptions";
    /// ListAndWatch.
    pub const LIST_AND_WATCH: &str = "/v1beta1.DevicePlugin/ListAndWatch";
    /// GetPreferredAllocation.
    pub const PREFERRED: &str = "/v1beta1.DevicePlugin/GetPreferredAllocation";
    /// Allocate.
    pub const ALLOCATE: &str = "/v1beta1.DevicePlugin/Allocate";
    /// PreStartContainer.
    pub const PRE_START: &str = "/v1beta1.DevicePlugin/PreStartContainer";
    /// Registration.Register, served by the kubelet.
    pub const REGISTER: &str = "/v1beta1.Registration/Register";
}

/// The DevicePlugin service for one registration: answers from `plugin`; its ListAndWatch streams end when `round`
/// is cancelled, and each one that the kubelet drops first sends on `dropped`.
#[derive(Clone)]
pub struct DevicePluginService {
    plugin: Arc<Plugin>,
    round: CancellationToken,
    dropped: UnboundedSender<()>,
}

impl DevicePluginService {
    /// The service of one registration.
    pub fn new(
        plugin: Arc<Plugin>,
        round: CancellationToken,
        dropped: UnboundedSender<()>,
    ) -> Self {
        DevicePluginService {
            plugin,
            round,
            dropped,
        }
    }

    async fn route(self, req: http::Request<Body>) -> http::Response<Body> {
        let plugin = self.plugin;
        match req.uri().path() {
            path::OPTIONS => unary(req, move |_: Empty| Plugin::options()).await,
            path::LIST_AND_WATCH => {
                let signal = DropSignal(Some(self.dropped));
                let mut stream = Some(watch_stream(plugin.devices(), self.round, signal));
                let svc = tower::service_fn(move |_: Request<Empty>| {
                    let stream = stream
                        .take()
                        .unwrap_or_else(|| futures::stream::empty().boxed());
                    async move { Ok::<_, Status>(Response::new(stream)) }
                });
                tonic::server::Grpc::new(ProstCodec::<ListAndWatchResponse, Empty>::default())
                    .server_streaming(svc, req)
                    .await
            }
            path::PREFERRED => unary(req, move |r| plugin.preferred(r)).await,
            path::ALLOCATE => unary(req, move |r| plugin.allocate(r)).await,
            path::PRE_START => unary(req, move |r| plugin.pre_start(r)).await,
            other => {
                tracing::warn!("the kubelet called `{other}`, which kb does not serve");
                Status::unimplemented(format!("kb does not serve `{other}`")).into_http()
            }
        }
    }
}

impl tower::Service<http::Request<Body>> for DevicePluginService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.route(req).await) })
    }
}

/// Answers one unary call with `answer(request)`.
async fn unary<Q, R>(
    req: http::Request<Body>,
    answer: impl FnOnce(Q) -> R + Clone + Send + 'static,
) -> http::Response<Body>
where
    Q: prost::Message + Default + Send + 'static,
    R: prost::Message + Send + 'static,
{
    let svc = tower::service_fn(move |request: Request<Q>| {
        let answer = answer.clone();
        async move { Ok::<_, Status>(Response::new(answer(request.into_inner()))) }
    });
    tonic::server::Grpc::new(ProstCodec::<R, Q>::default())
        .unary(svc, req)
        .await
}

/// Sends once on its channel when dropped, unless disarmed: the kubelet dropped the ListAndWatch stream holding it.
struct DropSignal(Option<UnboundedSender<()>>);

impl DropSignal {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
}

/// The ListAndWatch stream: one list, then nothing until the round ends (the devices never change: they are
/// shares of one `/dev/fuse`). If the kubelet drops it before, `signal` reports it.
fn watch_stream(
    list: ListAndWatchResponse,
    round: CancellationToken,
    signal: DropSignal,
) -> BoxStream<'static, Result<ListAndWatchResponse, Status>> {
    futures::stream::unfold(Some((Some(list), round, signal)), |state| async move {
        let (first, round, signal) = state?;
        match first {
            Some(list) => Some((Ok(list), Some((None, round, signal)))),
            None => {
                round.cancelled().await;
                // The round ended the stream, not the kubelet: nothing to report.
                signal.disarm();
                None
            }
        }
    })
    .boxed()
}

/// Registers with the kubelet over its socket `kubelet`: one attempt, `timeout` for the connection and the call.
pub async fn register(
    kubelet: &Path,
    request: RegisterRequest,
    timeout: Duration,
) -> Result<(), RegisterError> {
    let channel = connect_unix(kubelet.to_path_buf(), timeout)
        .await
        .map_err(RegisterError::Connect)?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(RegisterError::Connect)?;
    let mut request = Request::new(request);
    request.set_timeout(timeout);
    grpc.unary::<_, Empty, _>(
        request,
        PathAndQuery::from_static(path::REGISTER),
        ProstCodec::<RegisterRequest, Empty>::default(),
    )
    .await
    .map_err(RegisterError::Refused)?;
    Ok(())
}

/// A gRPC channel over the unix socket `socket` (the URI is a placeholder: the connector ignores it).
pub async fn connect_unix(
    socket: PathBuf,
    timeout: Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}
