//! Bad input on the gRPC port: garbage instead of HTTP/2, undecodable and oversized messages,
//! calls the broker does not serve, a Telemetry stream that never sends settings and one that
//! sends empty settings. Each gets a clear gRPC status (or a closed connection), and the port
//! keeps serving everyone else.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::{Buf, BufMut};
use tokio::time::timeout;
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use vostok_proto::v2;
use vostok_proto::v2::messaging_service_client::MessagingServiceClient;

use common::*;

const TOPIC: &str = "GrpcBadInput";
const LIMIT: Duration = Duration::from_secs(20);

async fn client(addr: &str) -> MessagingServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects to the gRPC port");
    MessagingServiceClient::new(channel).max_encoding_message_size(usize::MAX)
}

fn resource(name: &str) -> v2::Resource {
    v2::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    }
}

/// A QueryRoute of the test topic must still be answered OK: the port serves on.
async fn still_served(addr: &str) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let reply = client(addr)
        .await
        .query_route(v2::QueryRouteRequest {
            topic: Some(resource(TOPIC)),
            endpoints: Some(v2::Endpoints {
                scheme: v2::AddressScheme::IPv4 as i32,
                addresses: vec![v2::Address {
                    host: host.to_owned(),
                    port: port.parse().unwrap(),
                }],
            }),
        })
        .await
        .expect("QueryRoute answered")
        .into_inner();
    assert_eq!(reply.status.unwrap().code, v2::Code::Ok as i32);
    assert!(!reply.message_queues.is_empty());
}

/// Bytes in, bytes out: lets a test put anything in a gRPC message.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// A unary call of `method` with `body` as its message bytes.
async fn raw_call(addr: &str, method: &str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects");
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    grpc.ready().await.expect("ready");
    let path =
        PathAndQuery::try_from(format!("/apache.rocketmq.v2.MessagingService/{method}")).unwrap();
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

fn start() -> Standalone {
    let broker = Standalone::start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, TOPIC, 4);
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_http2_closes_only_that_connection() {
    let broker = start();
    let addr = broker.grpc_addr.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\nthis is not a gRPC client\x00\xff\x16")
            .unwrap();
        // The server ends the connection (possibly after an HTTP/2 GOAWAY): read to EOF.
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    })
    .await
    .unwrap();
    timeout(LIMIT, still_served(&broker.grpc_addr))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_invalid_and_the_port_serves_on() {
    let broker = start();
    timeout(LIMIT, async {
        // Field 1 (messages) announced as 100 bytes long, with 3 present.
        let status = raw_call(&broker.grpc_addr, "SendMessage", vec![0x0a, 100, 1, 2, 3])
            .await
            .expect_err("undecodable");
        assert!(
            matches!(
                status.code(),
                tonic::Code::Internal | tonic::Code::InvalidArgument
            ),
            "{status:?}"
        );
        still_served(&broker.grpc_addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_by_the_transport() {
    let broker = start();
    timeout(LIMIT, async {
        // Over the port's 64 MiB decoding limit: refused before it reaches the broker.
        let body = vec![0u8; 65 * 1024 * 1024];
        let status = raw_call(&broker.grpc_addr, "SendMessage", body)
            .await
            .expect_err("too large");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");
        still_served(&broker.grpc_addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_the_broker_does_not_serve_are_unimplemented() {
    let broker = start();
    timeout(LIMIT, async {
        for method in [
            "PullMessage",
            "UpdateOffset",
            "GetOffset",
            "QueryOffset",
            "NoSuchCall",
        ] {
            let status = raw_call(&broker.grpc_addr, method, Vec::new())
                .await
                .expect_err("not served");
            assert_eq!(
                status.code(),
                tonic::Code::Unimplemented,
                "{method}: {status:?}"
            );
        }
        still_served(&broker.grpc_addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetry_stream_without_settings_stays_open_and_quiet() {
    let broker = start();
    timeout(LIMIT, async {
        let mut c = client(&broker.grpc_addr).await;
        // The client never writes: the outbound stream stays pending.
        let outbound = tokio_stream::pending::<v2::TelemetryCommand>();
        // The response (its headers) arrives at once, as Rust 5.0.0 clients need.
        let mut inbound = c.telemetry(outbound).await.expect("headers").into_inner();
        let quiet = timeout(Duration::from_secs(1), inbound.message()).await;
        assert!(
            quiet.is_err(),
            "nothing is written before settings: {quiet:?}"
        );
        still_served(&broker.grpc_addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_settings_end_the_stream_with_invalid_argument() {
    let broker = start();
    timeout(LIMIT, async {
        let mut c = client(&broker.grpc_addr).await;
        let settings = v2::TelemetryCommand {
            status: None,
            command: Some(v2::telemetry_command::Command::Settings(
                v2::Settings::default(),
            )),
        };
        let outbound = tokio_stream::iter(vec![settings]).chain(tokio_stream::pending());
        let mut inbound = c.telemetry(outbound).await.expect("headers").into_inner();
        let ended = inbound
            .message()
            .await
            .expect_err("the stream ends with an error");
        assert_eq!(ended.code(), tonic::Code::InvalidArgument, "{ended:?}");
        still_served(&broker.grpc_addr).await;
    })
    .await
    .unwrap();
}
