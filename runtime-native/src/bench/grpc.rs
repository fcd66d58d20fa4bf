//! RocketMQ 5's gRPC protocol under load: `vostok bench produce --grpc` and `consume --grpc`,
//! through the broker's gRPC port (`grpcServerPort`) with a tonic client of MessagingService.
//!
//! * Producing: N producers, each sending one message per SendMessage call as the 5.x clients
//!   do (a fresh message id, type NORMAL, the body stamped with its send time like every bench
//!   body), round robin over the topics' queues, over `--connections` HTTP/2 connections.
//! * Draining: each consumer loops ReceiveMessage (a batch from any queue of the broker, short
//!   long polls) and acks everything it got with one AckMessage; a loop ends once every topic
//!   answered "nothing" in a row.
//!
//! Each call carries `x-mq-client-id`, the key the broker ties a client's calls together with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::Request;
use vostok_core::broker::grpc::message::{duration_of_ms, timestamp_of_ms};
use vostok_proto::v2;
use vostok_proto::v2::messaging_service_client::MessagingServiceClient;

use super::produce::{body_template, epoch_us, stamped_body};
use super::stats::Recorder;
use crate::RunError;

type Client = MessagingServiceClient<Channel>;

/// How long a received message stays invisible: far longer than any run's ack takes.
const INVISIBLE_MS: u64 = 60_000;
/// The long poll of a draining receive: short, so a drained topic ends its loop quickly.
const DRAIN_POLL_MS: u64 = 1_000;

/// Connects to the gRPC port at `addr` (`host:port`).
pub async fn connect(addr: &str) -> Result<Client, RunError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| RunError::Usage(format!("gRPC address {addr}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(3));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| RunError::Task(format!("cannot connect to the gRPC port {addr}: {e}")))?;
    Ok(MessagingServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

fn resource(name: &str) -> v2::Resource {
    v2::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    }
}

fn endpoints_of(addr: &str) -> v2::Endpoints {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "8081"));
    v2::Endpoints {
        scheme: v2::AddressScheme::IPv4 as i32,
        addresses: vec![v2::Address {
            host: host.to_owned(),
            port: port.parse().unwrap_or(8081),
        }],
    }
}

/// A request carrying the client id.
fn with_client<T>(message: T, client_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = client_id.parse() {
        request.metadata_mut().insert("x-mq-client-id", value);
    }
    request
}

/// The queues of `topic` as the broker's route lists them.
pub async fn route(
    client: &mut Client,
    addr: &str,
    topic: &str,
) -> Result<Vec<v2::MessageQueue>, RunError> {
    let reply = client
        .query_route(with_client(
            v2::QueryRouteRequest {
                topic: Some(resource(topic)),
                endpoints: Some(endpoints_of(addr)),
            },
            "bench-route",
        ))
        .await
        .map_err(|e| RunError::Task(format!("QueryRoute {topic}: {e}")))?
        .into_inner();
    let code = reply.status.as_ref().map_or(0, |s| s.code);
    if code != v2::Code::Ok as i32 {
        return Err(RunError::Task(format!(
            "QueryRoute {topic}: {:?}",
            reply.status
        )));
    }
    Ok(reply.message_queues)
}

/// What the gRPC producers do.
#[derive(Clone)]
pub struct GrpcSendPlan {
    pub addr: String,
    pub topics: Vec<String>,
    pub size: usize,
    pub producers: usize,
    pub connections: usize,
    pub timeout: Duration,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

/// Message ids: 34 upper-case hex digits as the 5.x clients make them (version 01, then
/// process and counter here), unique in the run.
fn message_id(counter: u64) -> String {
    format!("01{:08X}{:024X}", std::process::id(), counter)
}

/// Runs the gRPC producers to completion; returns how long they ran.
pub async fn produce(plan: GrpcSendPlan, recorder: Arc<Recorder>) -> Result<Duration, RunError> {
    let mut clients = Vec::new();
    for _ in 0..plan.connections.max(1) {
        clients.push(connect(&plan.addr).await?);
    }
    let mut queues = Vec::new();
    for topic in &plan.topics {
        for q in route(&mut clients[0], &plan.addr, topic).await? {
            if q.permission == v2::Permission::ReadWrite as i32
                || q.permission == v2::Permission::Write as i32
            {
                queues.push((topic.clone(), q.id));
            }
        }
    }
    if queues.is_empty() {
        return Err(RunError::Task(
            "no writable queue to send to over gRPC".into(),
        ));
    }
    let queues = Arc::new(queues);
    let issued = Arc::new(AtomicU64::new(0));
    let template = body_template(plan.size);
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let born_host = "127.0.0.1".to_owned();
    let mut tasks = Vec::new();
    for p in 0..plan.producers.max(1) {
        let mut client = clients[p % clients.len()].clone();
        let recorder = recorder.clone();
        let issued = issued.clone();
        let queues = queues.clone();
        let template = template.clone();
        let plan = plan.clone();
        let born_host = born_host.clone();
        let client_id = format!("bench-producer-{p}");
        tasks.push(tokio::spawn(async move {
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if plan.count.is_some_and(|c| n >= c) {
                    return;
                }
                let (topic, queue_id) = &queues[(n as usize) % queues.len()];
                let body = stamped_body(&template);
                let message = v2::Message {
                    topic: Some(resource(topic)),
                    user_properties: Default::default(),
                    system_properties: Some(v2::SystemProperties {
                        message_id: message_id(n),
                        message_type: v2::MessageType::Normal as i32,
                        body_encoding: v2::Encoding::Identity as i32,
                        born_timestamp: Some(timestamp_of_ms((epoch_us() / 1_000) as i64)),
                        born_host: born_host.clone(),
                        queue_id: *queue_id,
                        ..Default::default()
                    }),
                    body: body.to_vec(),
                };
                let t = Instant::now();
                let mut request = with_client(
                    v2::SendMessageRequest {
                        messages: vec![message],
                    },
                    &client_id,
                );
                request.set_timeout(plan.timeout);
                match client.send_message(request).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        let ok = reply
                            .entries
                            .first()
                            .and_then(|e| e.status.as_ref())
                            .is_some_and(|s| s.code == v2::Code::Ok as i32);
                        if ok {
                            recorder.record_ok(t.elapsed(), 1, plan.size as u64);
                        } else {
                            tracing::debug!(status = ?reply.status, "gRPC send answered with an error");
                            recorder.record_response_failed();
                        }
                    }
                    Err(e) => {
                        tracing::debug!("gRPC send failed: {e}");
                        recorder.record_send_failed();
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| RunError::Task(e.to_string()))?;
    }
    Ok(started.elapsed())
}

/// What the gRPC consumers do.
#[derive(Clone)]
pub struct GrpcDrainPlan {
    pub addr: String,
    pub group: String,
    pub topics: Vec<String>,
    /// Messages per ReceiveMessage (at most 32).
    pub batch: i32,
    pub timeout: Duration,
    /// Stop once this many messages were received in all.
    pub count: Option<u64>,
}

/// Drains the topics with `consumers` loops, each on its own connection; returns how long it
/// took. Each receive plus its ack is one measured round trip.
pub async fn drain(
    plan: GrpcDrainPlan,
    consumers: usize,
    recorder: Arc<Recorder>,
) -> Result<Duration, RunError> {
    let mut first = connect(&plan.addr).await?;
    let mut queues = Vec::new();
    for topic in &plan.topics {
        let route = route(&mut first, &plan.addr, topic).await?;
        // "Any queue of this broker": the broker of the route, queue id −1, as RocketMQ's
        // push consumers receive.
        if let Some(q) = route.into_iter().next() {
            queues.push(v2::MessageQueue { id: -1, ..q });
        }
    }
    let queues = Arc::new(queues);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..consumers.max(1) {
        let mut client = if c == 0 {
            first.clone()
        } else {
            connect(&plan.addr).await?
        };
        let plan = plan.clone();
        let queues = queues.clone();
        let recorder = recorder.clone();
        let client_id = format!("bench-consumer-{c}");
        tasks.push(tokio::spawn(async move {
            let mut empty_in_a_row = 0usize;
            let mut turn = 0usize;
            while empty_in_a_row < queues.len()
                && plan.count.is_none_or(|c| recorder.messages() < c)
            {
                let queue = queues[turn % queues.len()].clone();
                turn += 1;
                let t = Instant::now();
                let topic = queue.topic.clone().unwrap_or_default();
                let mut request = with_client(
                    v2::ReceiveMessageRequest {
                        group: Some(resource(&plan.group)),
                        message_queue: Some(queue),
                        filter_expression: Some(v2::FilterExpression {
                            r#type: v2::FilterType::Tag as i32,
                            expression: "*".to_owned(),
                        }),
                        batch_size: plan.batch.clamp(1, 32),
                        invisible_duration: Some(duration_of_ms(INVISIBLE_MS)),
                        auto_renew: false,
                        long_polling_timeout: Some(duration_of_ms(DRAIN_POLL_MS)),
                        attempt_id: None,
                    },
                    &client_id,
                );
                request.set_timeout(plan.timeout + Duration::from_millis(DRAIN_POLL_MS));
                let frames = match client.receive_message(request).await {
                    Ok(stream) => collect_frames(stream.into_inner()).await,
                    Err(e) => Err(e),
                };
                let (status, messages) = match frames {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!("gRPC receive failed: {e}");
                        recorder.record_send_failed();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if messages.is_empty() {
                    if status != v2::Code::MessageNotFound as i32 && status != v2::Code::Ok as i32 {
                        tracing::debug!(status, "gRPC receive answered with an error");
                        recorder.record_response_failed();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    empty_in_a_row += 1;
                    continue;
                }
                empty_in_a_row = 0;
                let bytes: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
                let n = messages.len() as u64;
                let entries = messages
                    .iter()
                    .filter_map(|m| {
                        let p = m.system_properties.as_ref()?;
                        Some(v2::AckMessageEntry {
                            message_id: p.message_id.clone(),
                            receipt_handle: p.receipt_handle.clone()?,
                            lite_topic: None,
                        })
                    })
                    .collect();
                let mut ack = with_client(
                    v2::AckMessageRequest {
                        group: Some(resource(&plan.group)),
                        topic: Some(resource(&topic.name)),
                        entries,
                    },
                    &client_id,
                );
                ack.set_timeout(plan.timeout);
                match client.ack_message(ack).await {
                    Ok(r)
                        if r.get_ref()
                            .status
                            .as_ref()
                            .is_some_and(|s| s.code == v2::Code::Ok as i32) => {}
                    _ => recorder.record_response_failed(),
                }
                recorder.record_ok(t.elapsed(), n, bytes);
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| RunError::Task(e.to_string()))?;
    }
    Ok(started.elapsed())
}

/// The status code and messages of one ReceiveMessage answer stream.
async fn collect_frames(
    mut stream: tonic::Streaming<v2::ReceiveMessageResponse>,
) -> Result<(i32, Vec<v2::Message>), tonic::Status> {
    let mut status = 0;
    let mut messages = Vec::new();
    while let Some(frame) = stream.message().await? {
        match frame.content {
            Some(v2::receive_message_response::Content::Status(s)) => status = s.code,
            Some(v2::receive_message_response::Content::Message(m)) => messages.push(m),
            Some(v2::receive_message_response::Content::DeliveryTimestamp(_)) | None => {}
        }
    }
    Ok((status, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_34_hex_digits_and_unique() {
        let a = message_id(1);
        let b = message_id(2);
        assert_eq!(a.len(), 34);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
