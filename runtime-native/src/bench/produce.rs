//! Producers of `vostok bench produce` and `e2e`: N concurrent senders sharing one client, like
//! RocketMQ's benchmark producer threads sharing one `DefaultMQProducer`.
//!
//! Two ways to send (`--via`):
//! * `client` — the Rust client [`crate::client::Producer`]: route cache, queue choice, retries.
//! * `direct` — the bench's own pipelined connections ([`super::direct`]): SEND_MESSAGE_V2
//!   round-robin over the topics' queues and nothing else, so the difference between the two is
//!   the client's own cost.
//!
//! Every body starts with the send time, so a consumer in any process on this host can compute
//! the end-to-end latency:
//!
//! ```text
//! body: | u64 BE: microseconds since the UNIX epoch at send | filler ('v'…) up to --size |
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;
use vostok_core::message::msg_id::UniqKeyGenerator;
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::headers::SendMessageRequestHeader;
use vostok_core::remoting::{encode, RemotingCommand, SerializeType};

use super::direct::{CallError, Conn};
use super::stats::Recorder;
use super::ModeArg;
use crate::client::{ClientError, Message, SendResult, SendStatus};
use crate::RunError;

/// The producer group the bench sends as (RocketMQ's benchmark uses `benchmark_producer`).
pub const PRODUCER_GROUP: &str = "benchmark_producer";

/// Microseconds since the UNIX epoch.
pub fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A body of `size` bytes stamped with the current time (see the module docs).
pub fn stamped_body(template: &Bytes) -> Bytes {
    let mut body = BytesMut::from(&template[..]);
    if body.len() >= 8 {
        body[..8].copy_from_slice(&epoch_us().to_be_bytes());
    }
    body.freeze()
}

/// The send time stamped into a body, if it has one.
pub fn stamp_of(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
}

/// The filler body of `size` bytes.
pub fn body_template(size: usize) -> Bytes {
    Bytes::from(vec![b'v'; size])
}

/// A SEND_MESSAGE_V2 request as a current Java producer sends it (UNIQ_KEY and WAIT properties).
pub fn send_request(topic: &str, queue_id: i32, body: Bytes, uniq_key: &str) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: PRODUCER_GROUP.into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp_ms: (epoch_us() / 1000) as i64,
        flag: 0,
        properties: Some(format!("UNIQ_KEY\u{1}{uniq_key}\u{2}WAIT\u{1}true\u{2}")),
        reconsume_times: Some(0),
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
        broker_name: None,
    };
    let mut cmd = RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body);
    header.write_to(&mut cmd, true);
    cmd
}

/// The encoded frame of one send of `size` body bytes: what `bench loopback` bounces.
pub fn sample_frame(size: usize, serialize_type: SerializeType) -> Bytes {
    let mut cmd = send_request(
        "BenchmarkTest",
        0,
        stamped_body(&body_template(size)),
        "7F00000100002A9F0000000000000000",
    );
    cmd.opaque = 1;
    cmd.serialize_type = serialize_type;
    let mut buf = BytesMut::new();
    encode(&cmd, &mut buf);
    buf.freeze()
}

/// One queue the producers write to.
#[derive(Clone, Debug)]
pub struct QueueTarget {
    pub topic: String,
    pub queue_id: i32,
}

/// What the producers send through.
#[derive(Clone)]
pub enum Sender {
    Direct(Vec<Arc<Conn>>),
    Client(crate::client::Producer),
}

/// How the producers run.
#[derive(Clone)]
pub struct SendPlan {
    pub sender: Sender,
    pub queues: Vec<QueueTarget>,
    pub size: usize,
    pub mode: ModeArg,
    pub producers: usize,
    /// Async mode: sends in flight at once, across all producers.
    pub inflight: usize,
    pub timeout: Duration,
    /// Stop after this long…
    pub duration: Option<Duration>,
    /// …or after this many sends were issued, whichever comes first.
    pub count: Option<u64>,
}

/// Records one answered send.
fn record(
    recorder: &Recorder,
    started: Instant,
    size: u64,
    result: Result<RemotingCommand, CallError>,
) {
    match result {
        Ok(reply) if reply.code == response::SUCCESS => {
            recorder.record_ok(started.elapsed(), 1, size)
        }
        Ok(reply) => {
            tracing::debug!(code = reply.code, remark = ?reply.remark, "send answered with an error");
            recorder.record_response_failed()
        }
        Err(e) => {
            tracing::debug!("send failed: {e}");
            recorder.record_send_failed()
        }
    }
}

/// Records one send through the client. Like RocketMQ's benchmark, a broker's error answer is a
/// "response failed", anything else that kept the send from completing a "send failed".
fn record_client(
    recorder: &Recorder,
    started: Instant,
    size: u64,
    result: Result<SendResult, ClientError>,
) {
    match result {
        Ok(r) if r.status == SendStatus::SendOk => recorder.record_ok(started.elapsed(), 1, size),
        Ok(r) => {
            tracing::debug!(status = ?r.status, "send not fully acknowledged");
            recorder.record_response_failed()
        }
        Err(ClientError::Broker { code, remark }) => {
            tracing::debug!(code, remark, "send answered with an error");
            recorder.record_response_failed()
        }
        Err(e) => {
            tracing::debug!("send failed: {e}");
            recorder.record_send_failed()
        }
    }
}

/// Runs the producers to completion; returns how long they ran.
pub async fn run(plan: SendPlan, recorder: Arc<Recorder>) -> Result<Duration, RunError> {
    let no_conns = matches!(&plan.sender, Sender::Direct(c) if c.is_empty());
    if no_conns || plan.queues.is_empty() {
        return Err(RunError::Task("nothing to send to".into()));
    }
    let issued = Arc::new(AtomicU64::new(0));
    let window = Arc::new(Semaphore::new(plan.inflight.max(1)));
    let template = body_template(plan.size);
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let mut tasks = Vec::new();
    for p in 0..plan.producers.max(1) {
        let plan = plan.clone();
        let conn = match &plan.sender {
            Sender::Direct(conns) => Some(conns[p % conns.len()].clone()),
            Sender::Client(_) => None,
        };
        let recorder = recorder.clone();
        let issued = issued.clone();
        let window = window.clone();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            let mut uniq = UniqKeyGenerator::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                std::process::id() as u16,
                p as u32,
            );
            // Producers start on different queues so they do not move in lock-step.
            let mut cursor = p;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(count) = plan.count {
                    if issued.fetch_add(1, Ordering::Relaxed) >= count {
                        break;
                    }
                }
                let q = &plan.queues[cursor % plan.queues.len()];
                cursor = cursor.wrapping_add(1);
                let size = plan.size as u64;
                if let Sender::Client(producer) = &plan.sender {
                    // The client picks the queue itself; only the topic rotates.
                    let message = Message::new(q.topic.clone(), stamped_body(&template));
                    match plan.mode {
                        ModeArg::Sync => {
                            let t = Instant::now();
                            let result = producer.send(message).await;
                            record_client(&recorder, t, size, result);
                        }
                        ModeArg::Async => {
                            let Ok(permit) = window.clone().acquire_owned().await else {
                                break;
                            };
                            let t = Instant::now();
                            let pending = producer.send_async(message);
                            let recorder = recorder.clone();
                            tokio::spawn(async move {
                                record_client(&recorder, t, size, pending.await);
                                drop(permit);
                            });
                        }
                        ModeArg::Oneway => match producer.send_oneway(message).await {
                            Ok(()) => recorder.record_unanswered(1, size),
                            Err(_) => recorder.record_send_failed(),
                        },
                    }
                    continue;
                }
                let Some(conn) = &conn else {
                    break;
                };
                let key = uniq.next(epoch_us() / 1000);
                let cmd = send_request(&q.topic, q.queue_id, stamped_body(&template), &key);
                match plan.mode {
                    ModeArg::Sync => {
                        let t = Instant::now();
                        let result = conn.call(cmd, plan.timeout).await;
                        record(&recorder, t, size, result);
                    }
                    ModeArg::Async => {
                        let Ok(permit) = window.clone().acquire_owned().await else {
                            break;
                        };
                        let conn = conn.clone();
                        let recorder = recorder.clone();
                        let timeout = plan.timeout;
                        tokio::spawn(async move {
                            let t = Instant::now();
                            let result = conn.call(cmd, timeout).await;
                            record(&recorder, t, size, result);
                            drop(permit);
                        });
                    }
                    ModeArg::Oneway => match conn.oneway(cmd).await {
                        Ok(()) => recorder.record_unanswered(1, size),
                        Err(_) => recorder.record_send_failed(),
                    },
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| RunError::Task(e.to_string()))?;
    }
    // Async sends still in flight finish (or time out) before the clock stops.
    let _all = window
        .acquire_many(plan.inflight.max(1) as u32)
        .await
        .map_err(|e| RunError::Task(e.to_string()))?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_its_send_time() {
        let body = stamped_body(&body_template(1024));
        assert_eq!(body.len(), 1024);
        let stamp = stamp_of(&body).unwrap();
        assert!(epoch_us() - stamp < 10_000_000);
        assert_eq!(stamp_of(b"short"), None);
    }

    #[test]
    fn sample_frame_is_one_remoting_frame() {
        let frame = sample_frame(1024, SerializeType::RocketMq);
        let total = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(total + 4, frame.len());
        assert!(
            frame.len() > 1024 && frame.len() < 1024 + 512,
            "{}",
            frame.len()
        );
    }
}
