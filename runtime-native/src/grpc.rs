//! The gRPC port (`grpcServerPort`, 8081): RocketMQ 5's `apache.rocketmq.v2.MessagingService`
//! over tonic, for the 5.x clients, with no proxy in between.
//!
//! This module is transport only. Each call is decoded by tonic and handed to the broker's owner
//! task as an [`Input::Grpc`](crate::server) with a one-shot for its answer; the core's gateway
//! (`vostok_core::broker::grpc`) maps it onto the broker's own requests and answers through
//! `BrokerOutput::Grpc`. A Telemetry stream gets a channel the owner writes server commands to
//! (settings replies, transaction checks); the stream stays open until the client ends it.
//!
//! TLS: the broker's `tls.*` keys apply here too (see `crate::tls`), with ALPN `h2`. In the
//! default `permissive` mode with `tls.test.mode.enable` the port serves plaintext HTTP/2 and
//! TLS side by side with a self-signed certificate, as RocketMQ's proxy does in its TLS test
//! mode, so Java and Go clients (TLS on by default, trusting any certificate) and Node, Python
//! and Rust clients (plaintext by default) all connect unconfigured.
//!
//! Calls the service does not declare (PullMessage, the offset calls, lite subscriptions) are
//! answered UNIMPLEMENTED by tonic itself.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};
use vostok_core::broker::grpc::{v2, CallId, GrpcReply, GrpcRequest};
use vostok_proto::v2::messaging_service_server::{MessagingService, MessagingServiceServer};

use crate::server::{GrpcInput, GrpcStreamItem, Input};
use crate::tls::{TlsListener, TlsMode};

/// The largest request the port decodes: RocketMQ's largest body (4 MiB) with room for a
/// batch's framing and properties. A larger message is refused by the transport with
/// OUT_OF_RANGE ("decoded message length too large"); one within it but over
/// `maxMessageSize` by the broker, with a status.
const MAX_DECODING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Answers to the server's Telemetry commands the owner may queue for one stream before the
/// client reads them.
const TELEMETRY_QUEUE_COMMANDS: usize = 64;

/// Call ids are unique in the process.
static NEXT_CALL_ID: AtomicU64 = AtomicU64::new(1);

fn next_call_id() -> CallId {
    CallId(NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed))
}

/// The service: every call goes to the broker's owner.
#[derive(Clone)]
pub struct Service {
    inputs: mpsc::Sender<Input>,
}

/// Serves MessagingService on `listener` until `shutdown` turns true. Each connection is
/// plaintext HTTP/2 or TLS by its first byte, as `tls` says (the remoting ports' rule, which is
/// also how RocketMQ's proxy serves both on one port in its TLS test mode).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: TlsListener,
    inputs: mpsc::Sender<Input>,
    shutdown: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    let service = MessagingServiceServer::new(Service { inputs })
        .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_DECODING_MESSAGE_BYTES);
    let (conns_tx, conns_rx) = mpsc::channel::<io::Result<GrpcConn>>(ACCEPT_QUEUE_CONNS);
    tokio::spawn(accept_loop(
        listener,
        Arc::new(tls),
        conns_tx,
        shutdown.clone(),
    ));
    let mut stop = shutdown;
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(ReceiverStream::new(conns_rx), async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    match result {
        Ok(()) => debug!(?addr, "gRPC port closed"),
        Err(e) => warn!(?addr, "gRPC port failed: {e}"),
    }
}

/// Accepted connections waiting for the HTTP/2 server.
const ACCEPT_QUEUE_CONNS: usize = 64;

/// How long a TLS client may take over its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsListener>,
    conns: mpsc::Sender<io::Result<GrpcConn>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // The TLS decision and handshake run beside the accept loop, so a slow
                    // client never holds up the others.
                    let tls = tls.clone();
                    let conns = conns.clone();
                    tokio::spawn(async move {
                        if let Some(conn) = open(stream, peer, &tls).await {
                            let _ = conns.send(Ok(conn)).await;
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("gRPC accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Decides plaintext or TLS by the connection's first byte (0x16 starts a TLS handshake; an
/// HTTP/2 client starts with its `PRI * HTTP/2.0` preface) and completes the handshake.
async fn open(stream: TcpStream, peer: SocketAddr, tls: &TlsListener) -> Option<GrpcConn> {
    let _ = stream.set_nodelay(true);
    let info = TcpConnectInfo {
        local_addr: stream.local_addr().ok(),
        remote_addr: Some(peer),
    };
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    let wants_tls = first[0] == crate::tls::TLS_HANDSHAKE_RECORD;
    let io = match (wants_tls, tls.mode, &tls.acceptor) {
        (true, TlsMode::Disabled, _) | (true, _, None) => {
            warn!(%peer, "closing a TLS connection to the gRPC port: TLS is disabled (tls.server.mode=disabled)");
            return None;
        }
        (true, _, Some(acceptor)) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => GrpcIo::Tls(Box::new(tls_stream)),
                Ok(Err(e)) => {
                    warn!(%peer, "gRPC TLS handshake failed: {e}");
                    return None;
                }
                Err(_) => {
                    warn!(%peer, "gRPC TLS handshake timed out");
                    return None;
                }
            }
        }
        (false, TlsMode::Enforcing, _) => {
            warn!(%peer, "closing a plaintext connection to the gRPC port: it accepts TLS only (tls.server.mode=enforcing)");
            return None;
        }
        (false, _, _) => GrpcIo::Plain(stream),
    };
    Some(GrpcConn { io, info })
}

/// One connection of the gRPC port, plaintext or TLS.
struct GrpcConn {
    io: GrpcIo,
    info: TcpConnectInfo,
}

enum GrpcIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for GrpcConn {
    type ConnectInfo = TcpConnectInfo;

    /// The peer's address, which `Request::remote_addr` reads (the born host of its sends).
    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for GrpcConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            GrpcIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            GrpcIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            GrpcIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            GrpcIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            GrpcIo::Plain(s) => Pin::new(s).poll_flush(cx),
            GrpcIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            GrpcIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            GrpcIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            GrpcIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            GrpcIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            GrpcIo::Plain(s) => s.is_write_vectored(),
            GrpcIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Logs where the port listens.
pub fn announce(addr: SocketAddr) {
    info!(%addr, "gRPC port listening (apache.rocketmq.v2.MessagingService)");
}

/// The call's metadata as the core wants it.
fn meta_of<T>(request: &Request<T>) -> vostok_core::broker::grpc::CallMeta {
    let header = |name: &str| {
        request
            .metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let peer = request
        .remote_addr()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    vostok_core::broker::grpc::CallMeta {
        client_id: header("x-mq-client-id"),
        peer,
        namespace: header("x-mq-namespace"),
        language: header("x-mq-language"),
        client_version: header("x-mq-client-version"),
        // Filled in by the owner from `timeout_ms`, on its own clock.
        deadline_ms: None,
    }
}

/// The call's `grpc-timeout` in ms: digits and a unit (H, M, S, m, u, n).
pub fn timeout_ms_of(value: &str) -> Option<u64> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "H" => n.saturating_mul(3_600_000),
        "M" => n.saturating_mul(60_000),
        "S" => n.saturating_mul(1_000),
        "m" => n,
        "u" => n / 1_000,
        "n" => n / 1_000_000,
        _ => return None,
    };
    Some(ms)
}

impl Service {
    /// Hands a call to the owner and waits for its answer.
    async fn call<T>(
        &self,
        request: Request<T>,
        wrap: fn(T) -> GrpcRequest,
    ) -> Result<GrpcReply, Status> {
        let meta = meta_of(&request);
        let timeout_ms = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(timeout_ms_of);
        let (tx, rx) = oneshot::channel();
        let input = Input::Grpc(Box::new(GrpcInput::Call {
            call: next_call_id(),
            meta,
            timeout_ms,
            request: wrap(request.into_inner()),
            reply: tx,
        }));
        if self.inputs.send(input).await.is_err() {
            return Err(Status::unavailable("the broker is shutting down"));
        }
        rx.await
            .map_err(|_| Status::unavailable("the broker stopped before answering"))
    }
}

/// Takes the reply of the expected kind, or fails the call (a bug: the core answers every call
/// with its own kind).
macro_rules! expect_reply {
    ($reply:expr, $kind:ident) => {
        match $reply {
            GrpcReply::$kind(r) => Ok(Response::new(r)),
            other => Err(Status::internal(format!(
                "the broker answered {} with {other:?}",
                stringify!($kind)
            ))),
        }
    };
}

type ReceiveStream =
    Pin<Box<dyn Stream<Item = Result<v2::ReceiveMessageResponse, Status>> + Send + 'static>>;
type TelemetryStream =
    Pin<Box<dyn Stream<Item = Result<v2::TelemetryCommand, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl MessagingService for Service {
    async fn query_route(
        &self,
        request: Request<v2::QueryRouteRequest>,
    ) -> Result<Response<v2::QueryRouteResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::QueryRoute).await?,
            QueryRoute
        )
    }

    async fn heartbeat(
        &self,
        request: Request<v2::HeartbeatRequest>,
    ) -> Result<Response<v2::HeartbeatResponse>, Status> {
        expect_reply!(self.call(request, GrpcRequest::Heartbeat).await?, Heartbeat)
    }

    async fn send_message(
        &self,
        request: Request<v2::SendMessageRequest>,
    ) -> Result<Response<v2::SendMessageResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::SendMessage).await?,
            SendMessage
        )
    }

    async fn query_assignment(
        &self,
        request: Request<v2::QueryAssignmentRequest>,
    ) -> Result<Response<v2::QueryAssignmentResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::QueryAssignment).await?,
            QueryAssignment
        )
    }

    type ReceiveMessageStream = ReceiveStream;

    async fn receive_message(
        &self,
        request: Request<v2::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        match self.call(request, GrpcRequest::ReceiveMessage).await? {
            GrpcReply::ReceiveMessage(frames) => {
                let stream = tokio_stream::iter(frames.into_iter().map(Ok));
                Ok(Response::new(Box::pin(stream) as ReceiveStream))
            }
            other => Err(Status::internal(format!(
                "the broker answered ReceiveMessage with {other:?}"
            ))),
        }
    }

    async fn ack_message(
        &self,
        request: Request<v2::AckMessageRequest>,
    ) -> Result<Response<v2::AckMessageResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::AckMessage).await?,
            AckMessage
        )
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<v2::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<v2::ForwardMessageToDeadLetterQueueResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::ForwardMessageToDeadLetterQueue)
                .await?,
            ForwardMessageToDeadLetterQueue
        )
    }

    async fn end_transaction(
        &self,
        request: Request<v2::EndTransactionRequest>,
    ) -> Result<Response<v2::EndTransactionResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::EndTransaction).await?,
            EndTransaction
        )
    }

    type TelemetryStream = TelemetryStream;

    async fn telemetry(
        &self,
        request: Request<Streaming<v2::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let meta = meta_of(&request);
        let stream = next_call_id();
        let (tx, rx) = mpsc::channel::<GrpcStreamItem>(TELEMETRY_QUEUE_COMMANDS);
        let opened = Input::Grpc(Box::new(GrpcInput::StreamOpened {
            stream,
            meta,
            commands: tx,
        }));
        if self.inputs.send(opened).await.is_err() {
            return Err(Status::unavailable("the broker is shutting down"));
        }
        // The client's commands go to the owner until the client ends its side.
        let mut inbound = request.into_inner();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            loop {
                match inbound.next().await {
                    Some(Ok(command)) => {
                        let input = Input::Grpc(Box::new(GrpcInput::Telemetry { stream, command }));
                        if inputs.send(input).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        debug!(stream = stream.0, "telemetry stream ended: {e}");
                        break;
                    }
                    None => break,
                }
            }
            let _ = inputs
                .send(Input::Grpc(Box::new(GrpcInput::StreamClosed { stream })))
                .await;
        });
        // The response (and its headers) goes out now: Rust 5.0.0 blocks every call until the
        // Telemetry call's headers arrive. Items follow whenever the owner writes one.
        // An error item ends the response; the owner drops its sender after one.
        let outbound = ReceiverStream::new(rx).map(|item| match item {
            GrpcStreamItem::Command(command) => Ok(*command),
            GrpcStreamItem::End(error) => {
                Err(Status::new(tonic::Code::from(error.code), error.message))
            }
        });
        Ok(Response::new(Box::pin(outbound) as TelemetryStream))
    }

    async fn notify_client_termination(
        &self,
        request: Request<v2::NotifyClientTerminationRequest>,
    ) -> Result<Response<v2::NotifyClientTerminationResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::NotifyClientTermination)
                .await?,
            NotifyClientTermination
        )
    }

    async fn change_invisible_duration(
        &self,
        request: Request<v2::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<v2::ChangeInvisibleDurationResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::ChangeInvisibleDuration)
                .await?,
            ChangeInvisibleDuration
        )
    }

    async fn recall_message(
        &self,
        request: Request<v2::RecallMessageRequest>,
    ) -> Result<Response<v2::RecallMessageResponse>, Status> {
        expect_reply!(
            self.call(request, GrpcRequest::RecallMessage).await?,
            RecallMessage
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(timeout_ms_of("23S"), Some(23_000));
        assert_eq!(timeout_ms_of("1500m"), Some(1_500));
        assert_eq!(timeout_ms_of("2M"), Some(120_000));
        assert_eq!(timeout_ms_of("1H"), Some(3_600_000));
        assert_eq!(timeout_ms_of("5000000u"), Some(5_000));
        assert_eq!(timeout_ms_of("7000000000n"), Some(7_000));
        assert_eq!(timeout_ms_of("S"), None);
        assert_eq!(timeout_ms_of(""), None);
        assert_eq!(timeout_ms_of("10x"), None);
    }
}
