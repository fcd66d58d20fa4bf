//! ReceiveMessage: a broker POP on the client's virtual connection, its answer as a stream of
//! frames (status, messages, delivery timestamp).
//!
//! Followed: RocketMQ 5.3.3's proxy, `ReceiveMessageActivity` (poll time, invisible time,
//! filter), `ReceiveMessageResponseStreamWriter` (the frames) and `ReceiptHandle` (the handle:
//! the broker's extra info with the message's CommitLog offset appended). Where Vostok differs:
//!
//! * queue: a normal group's receive POPs every queue of this broker (`queueId` −1), whatever
//!   queue the request names, as the proxy does: Node's client only ever names queue 0, and
//!   would otherwise never see what remoting producers spread over the other queues. A FIFO
//!   group's receive POPs the queue it names (its push consumer has one assignment per queue),
//!   or every queue for −1; the broker's orderly POP keeps each queue with one batch anyway.
//! * invisible time: at least [`MIN_INVISIBLE_MS`] (the proxy's minimum is 10 s). The broker
//!   looks for due checkpoints every `reviveInterval` (1 s), so 1 s is the shortest invisible
//!   time it can honour, and short ones keep redelivery tests quick.
//! * auto_renew (push consumers): the proxy's default invisible time, 60 s, and no renewal: a
//!   handler slower than that sees its message again (at least once, as GRPC.md allows).
//! * delivery past the group's max attempts (`retryMaxTimes` + 1): for a normal group the
//!   broker's revive already moves such a message to `%DLQ%<group>` instead of bringing it
//!   back. An orderly POP has no revive: its redeliveries are counted in the order table, so a
//!   message popped again past the limit is sent to the DLQ and acked here and not delivered,
//!   as the proxy's `PopMessageResultFilterImpl` does on every POP.

use bytes::Bytes;

use super::message::{
    duration_of_ms, ms_of_duration, timestamp_of_ms, to_grpc_message, wrap_namespace,
};
use super::status::{of_remoting, ok, status};
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply, Pending, PendingKind};
use crate::broker::clients::Subscription;
use crate::broker::Broker;
use crate::message::{sys_flag, MessageRecord};
use crate::remoting::codes::{request, response};
use crate::remoting::pop::{
    parse_order_count_info, parse_start_offset_info, AckMessageRequestHeader, ExtraInfo,
    PopMessageRequestHeader, PopMessageResponseHeader, RetryFlag, INIT_MODE_MAX, POP_CK_PROPERTY,
    POP_MAX_MSG_NUMS,
};
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::topic::validate_topic_name;
use crate::ConnId;

/// The shortest invisible time a receive may ask for (see the module docs).
pub const MIN_INVISIBLE_MS: u64 = 1_000;
/// The longest invisible time (the proxy's `maxInvisibleTimeMills`, 12 h).
pub const MAX_INVISIBLE_MS: u64 = 12 * 3_600_000;
/// The invisible time of an `auto_renew` receive (the proxy's `defaultInvisibleTimeMills`).
pub const AUTO_RENEW_INVISIBLE_MS: u64 = 60_000;
/// The proxy's `grpcClientConsumerMinLongPollingTimeoutMillis`: without a long-polling
/// timeout in the request, a call with less time left than this is refused.
pub const MIN_LONG_POLLING_MS: u64 = 5_000;
/// The proxy's `grpcClientConsumerMaxLongPollingTimeoutMillis`.
pub const MAX_LONG_POLLING_MS: u64 = 20_000;
/// The answer leaves this long before the call's deadline: Rust 5.0.0 sets its deadline equal
/// to its long-polling timeout, and an answer racing the deadline is lost.
pub const DEADLINE_MARGIN_MS: u64 = 1_000;
/// A client's `request_timeout` when its Settings name none (every client's default, 3 s).
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 3_000;

/// The receipt handle a gRPC client gets: the broker's extra info (eight fields) with the
/// message's CommitLog offset appended, as the proxy's `ReceiptHandle` does (a dead-letter
/// forward reads the message there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptHandle {
    pub info: ExtraInfo,
    /// −1 when unknown.
    pub commit_log_offset: i64,
}

impl ReceiptHandle {
    pub fn encode(&self) -> String {
        format!("{} {}", self.info.encode(), self.commit_log_offset)
    }

    /// A handle given out by [`encode`](Self::encode): the eight extra-info fields (the
    /// queue offset is what an ack names) and, optionally, the CommitLog offset.
    pub fn parse(text: &str) -> Option<Self> {
        let info = ExtraInfo::parse(text).ok()?;
        info.msg_queue_offset?;
        if info.ck_start_offset < 0 || info.queue_id < 0 || info.broker_name.is_empty() {
            return None;
        }
        let commit_log_offset = match text.split(' ').nth(8) {
            Some(f) => f.trim().parse().ok()?,
            None => -1,
        };
        Some(Self {
            info,
            commit_log_offset,
        })
    }

    /// The queue offset of the message.
    pub fn queue_offset(&self) -> i64 {
        self.info.msg_queue_offset.unwrap_or(-1)
    }

    /// When the message becomes visible again, epoch ms.
    pub fn visible_at_ms(&self) -> i64 {
        self.info
            .pop_time_ms
            .saturating_add(self.info.invisible_time_ms)
    }
}

/// What a POP_MESSAGE of a call waits for.
#[derive(Debug)]
pub(crate) struct ReceivePending {
    /// The call's `x-mq-namespace`, split off the topic of what is delivered.
    namespace: String,
    /// The POP's invisible time, on every delivered message.
    invisible_time_ms: i64,
    /// An orderly POP: delivery attempts come from the answer's order counts.
    order: bool,
    /// The group and the topic asked for, for what goes to the DLQ.
    group: String,
    topic: String,
    /// The group's max attempts (`retryMaxTimes` + 1).
    max_attempts: i32,
    /// The client's virtual connection, for the ack of what goes to the DLQ.
    conn: ConnId,
}

/// The frames of an answer without messages: the status, then the delivery timestamp.
pub(crate) fn status_frames(now_ms: u64, status: v2::Status) -> Vec<v2::ReceiveMessageResponse> {
    use v2::receive_message_response::Content;
    vec![
        v2::ReceiveMessageResponse {
            content: Some(Content::Status(status)),
        },
        v2::ReceiveMessageResponse {
            content: Some(Content::DeliveryTimestamp(timestamp_of_ms(now_ms as i64))),
        },
    ]
}

/// A stored body as clients read it: a body stored zlib-compressed (sys flag COMPRESSED, as 4.x
/// producers send bodies above 4 KiB) inflated. A body that does not inflate is passed as is,
/// its digest telling the client it is damaged.
pub fn body_for_client(record: &MessageRecord) -> Bytes {
    if record.sys_flag & sys_flag::COMPRESSED == 0 {
        return record.body.clone();
    }
    match miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&record.body, MAX_INFLATED_BYTES)
    {
        Ok(plain) => Bytes::from(plain),
        Err(_) => record.body.clone(),
    }
}

/// Most a compressed body may inflate to (well above any message the broker accepts).
const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;

/// The records of a POP answer's body, one after the other.
fn split_records(body: &Bytes) -> Vec<MessageRecord> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 4 <= body.len() {
        let size = i32::from_be_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]);
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        if size < 4 || pos + size > body.len() {
            break;
        }
        if let Ok(record) = MessageRecord::decode(&body.slice(pos..pos + size), false) {
            out.push(record);
        }
        pos += size;
    }
    out
}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_receive_message(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::ReceiveMessageRequest,
    ) {
        match self.grpc_pop_request(now_ms, client, &request) {
            Ok((header, pending)) => {
                let mut command = RemotingCommand::request(request::POP_MESSAGE);
                header.write_to(&mut command);
                self.grpc_submit(
                    now_ms,
                    client.conn,
                    command,
                    Pending {
                        call: Some(call),
                        what: PendingKind::Receive(pending),
                    },
                );
            }
            Err(refused) => self.gateway.reply(
                call,
                GrpcReply::ReceiveMessage(status_frames(now_ms, refused)),
            ),
        }
    }

    /// The POP a receive asks for, or the status that refuses it.
    fn grpc_pop_request(
        &self,
        now_ms: u64,
        client: &ClientRef,
        request: &v2::ReceiveMessageRequest,
    ) -> Result<(PopMessageRequestHeader, ReceivePending), v2::Status> {
        let namespace = client.meta.namespace.as_str();
        let group = match request.group.as_ref() {
            Some(g) if !g.name.is_empty() => wrap_namespace(g, namespace),
            _ => {
                return Err(status(
                    Code::IllegalConsumerGroup,
                    "the request names no consumer group",
                ))
            }
        };
        let Some(queue) = request.message_queue.as_ref() else {
            return Err(status(
                Code::BadRequest,
                "the request names no message queue",
            ));
        };
        let Some(topic_resource) = queue.topic.as_ref() else {
            return Err(status(
                Code::IllegalTopic,
                "the message queue names no topic",
            ));
        };
        let topic = wrap_namespace(topic_resource, namespace);
        if let Err(e) = validate_topic_name(&topic) {
            return Err(status(Code::IllegalTopic, e));
        }
        if request.batch_size < 1 || request.batch_size > POP_MAX_MSG_NUMS {
            return Err(status(
                Code::BadRequest,
                format!(
                    "batch_size {} is out of range [1, {POP_MAX_MSG_NUMS}]",
                    request.batch_size
                ),
            ));
        }
        let invisible_time_ms = if request.auto_renew {
            AUTO_RENEW_INVISIBLE_MS
        } else {
            let Some(d) = request.invisible_duration.as_ref() else {
                return Err(status(
                    Code::IllegalInvisibleTime,
                    "the request sets neither invisible_duration nor auto_renew",
                ));
            };
            let ms = ms_of_duration(d);
            if !(MIN_INVISIBLE_MS..=MAX_INVISIBLE_MS).contains(&ms) {
                return Err(status(
                    Code::IllegalInvisibleTime,
                    format!(
                        "the invisible time {ms} ms is out of range [{MIN_INVISIBLE_MS}, {MAX_INVISIBLE_MS}]"
                    ),
                ));
            }
            ms
        };
        let (exp_type, exp) = match request.filter_expression.as_ref() {
            None => ("TAG", "*".to_owned()),
            Some(f) => {
                let expression = if f.expression.trim().is_empty() {
                    "*".to_owned()
                } else {
                    f.expression.clone()
                };
                match v2::FilterType::try_from(f.r#type) {
                    Ok(v2::FilterType::Sql) => ("SQL92", expression),
                    Ok(v2::FilterType::Tag | v2::FilterType::Unspecified) => ("TAG", expression),
                    Err(_) => {
                        return Err(status(
                            Code::IllegalFilterExpression,
                            format!("unknown filter type {}", f.r#type),
                        ))
                    }
                }
            }
        };
        let subscription = Subscription::parse(&exp, Some(exp_type), 0);
        if subscription
            .selector
            .as_ref()
            .is_some_and(|s| s.filter().is_none())
        {
            return Err(status(
                Code::IllegalFilterExpression,
                format!("the {exp_type} expression {exp:?} does not parse"),
            ));
        }
        if !subscription.is_tag() && !self.config.enable_property_filter {
            return Err(status(
                Code::IllegalFilterExpression,
                "SQL92 filtering is off on this broker (enablePropertyFilter=false)",
            ));
        }
        let settings = self
            .gateway
            .clients
            .get(&client.key)
            .and_then(|c| c.settings.as_ref());
        let poll_time_ms = poll_time_ms(now_ms, client, request, settings)?;
        // The FIFO decision the client was told in its Settings reply (from its subscription),
        // else the one for this topic alone.
        let subscribed = settings
            .and_then(|s| match &s.pub_sub {
                Some(v2::settings::PubSub::Subscription(sub)) => Some(sub.clone()),
                _ => None,
            })
            .filter(|s| !s.subscriptions.is_empty())
            .unwrap_or_else(|| v2::Subscription {
                subscriptions: vec![v2::SubscriptionEntry {
                    topic: Some(topic_resource.clone()),
                    expression: None,
                }],
                ..Default::default()
            });
        let (fifo, retry_max_times) = self.grpc_group_policy(&group, &subscribed, namespace);
        let queue_id = if fifo && queue.id >= 0 { queue.id } else { -1 };
        let header = PopMessageRequestHeader {
            consumer_group: group.clone(),
            topic: topic.clone(),
            queue_id,
            max_msg_nums: request.batch_size,
            invisible_time_ms: invisible_time_ms as i64,
            poll_time_ms: poll_time_ms as i64,
            born_time_ms: now_ms as i64,
            // The proxy's `ConsumeInitMode.MAX`: a new group starts at the end of the queue.
            init_mode: INIT_MODE_MAX,
            exp_type: Some(exp_type.to_owned()),
            exp: Some(exp),
            order: fifo,
            attempt_id: request.attempt_id.clone().filter(|a| !a.is_empty()),
        };
        Ok((
            header,
            ReceivePending {
                namespace: namespace.to_owned(),
                invisible_time_ms: invisible_time_ms as i64,
                order: fifo,
                group,
                topic,
                max_attempts: retry_max_times.saturating_add(1),
                conn: client.conn,
            },
        ))
    }

    pub(super) fn grpc_receive_answered(
        &mut self,
        now_ms: u64,
        call: CallId,
        pending: ReceivePending,
        response: RemotingCommand,
    ) {
        let frames = match response.code {
            response::SUCCESS => self.grpc_received_frames(now_ms, &pending, &response),
            response::POLLING_TIMEOUT | response::NO_MESSAGE | response::PULL_NOT_FOUND => {
                status_frames(now_ms, status(Code::MessageNotFound, "no new message"))
            }
            response::POLLING_FULL => status_frames(
                now_ms,
                status(
                    Code::TooManyRequests,
                    "too many receives are waiting on this queue",
                ),
            ),
            code => status_frames(now_ms, of_remoting(code, response.remark.as_deref())),
        };
        self.gateway.reply(call, GrpcReply::ReceiveMessage(frames));
    }

    /// The frames of a POP that found messages: OK, one frame per message, the timestamp.
    fn grpc_received_frames(
        &mut self,
        now_ms: u64,
        pending: &ReceivePending,
        response: &RemotingCommand,
    ) -> Vec<v2::ReceiveMessageResponse> {
        use v2::receive_message_response::Content;
        let header = PopMessageResponseHeader::parse(response).unwrap_or_default();
        let starts = header
            .start_offset_info
            .as_deref()
            .and_then(parse_start_offset_info)
            .unwrap_or_default();
        let counts = header
            .order_count_info
            .as_deref()
            .and_then(parse_order_count_info);
        let mut messages = Vec::new();
        for record in split_records(&response.body) {
            // A redelivery carries its own handle; a first delivery's is built from the
            // answer's offset lists, as RocketMQ's clients build it.
            let info = match record.properties.get(POP_CK_PROPERTY) {
                Some(ck) => match ExtraInfo::parse(ck) {
                    Ok(info) => info,
                    Err(_) => continue,
                },
                None => {
                    let key = (RetryFlag::Normal, record.queue_id);
                    ExtraInfo {
                        ck_start_offset: starts.get(&key).copied().unwrap_or(record.queue_offset),
                        pop_time_ms: header.pop_time_ms,
                        invisible_time_ms: header.invisible_time_ms,
                        revive_qid: header.revive_qid,
                        retry: RetryFlag::Normal,
                        broker_name: self.config.broker_name.clone(),
                        queue_id: record.queue_id,
                        msg_queue_offset: Some(record.queue_offset),
                    }
                }
            };
            let delivery_attempt = match (&counts, pending.order) {
                (Some(c), true) => c
                    .count(info.retry, info.queue_id, record.queue_offset)
                    .saturating_add(1),
                _ => record.reconsume_times.saturating_add(1),
            };
            let handle = ReceiptHandle {
                commit_log_offset: record.physical_offset,
                info,
            };
            if pending.order && delivery_attempt > pending.max_attempts {
                self.grpc_dead_letter(now_ms, pending, &handle);
                continue;
            }
            let body = body_for_client(&record);
            let mut message = to_grpc_message(&record, body, &pending.namespace);
            if let Some(system) = message.system_properties.as_mut() {
                system.receipt_handle = Some(handle.encode());
                system.delivery_attempt = Some(delivery_attempt);
                system.invisible_duration =
                    Some(duration_of_ms(pending.invisible_time_ms.max(0) as u64));
            }
            messages.push(message);
        }
        if messages.is_empty() {
            return status_frames(now_ms, status(Code::MessageNotFound, "no new message"));
        }
        let mut frames = Vec::with_capacity(messages.len() + 2);
        frames.push(v2::ReceiveMessageResponse {
            content: Some(Content::Status(ok())),
        });
        frames.extend(messages.into_iter().map(|m| v2::ReceiveMessageResponse {
            content: Some(Content::Message(m)),
        }));
        frames.push(v2::ReceiveMessageResponse {
            content: Some(Content::DeliveryTimestamp(timestamp_of_ms(now_ms as i64))),
        });
        frames
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// Moves a message of an orderly POP past its max attempts to `%DLQ%<group>` (a send-back
    /// with delay level −1, as ForwardMessageToDeadLetterQueue does) and acks it, so its queue
    /// goes on. A failed send-back leaves it in flight: it is delivered again later.
    fn grpc_dead_letter(&mut self, now_ms: u64, pending: &ReceivePending, handle: &ReceiptHandle) {
        let send_back = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK)
            .with_ext("offset", handle.commit_log_offset)
            .with_ext("group", &pending.group)
            .with_ext("delayLevel", -1)
            .with_ext("originTopic", &pending.topic)
            .with_ext("maxReconsumeTimes", 0)
            .with_ext("unitMode", false);
        let sent = self
            .handle_consumer_send_msg_back(now_ms, &send_back)
            .is_ok_and(|answer| answer.code == response::SUCCESS);
        if !sent {
            return;
        }
        let mut ack = RemotingCommand::request(request::ACK_MESSAGE);
        AckMessageRequestHeader {
            consumer_group: pending.group.clone(),
            topic: handle.info.retry.real_topic(&pending.topic, &pending.group),
            queue_id: handle.info.queue_id,
            extra_info: handle.info.encode(),
            offset: handle.queue_offset(),
        }
        .write_to(&mut ack);
        self.grpc_submit(
            now_ms,
            pending.conn,
            ack,
            Pending {
                call: None,
                what: PendingKind::Ignored,
            },
        );
    }
}

/// How long the broker may hold a receive (see GRPC.md §2.5): the request's long-polling
/// timeout, or without one the proxy's rule (time left − half the client's request timeout),
/// within the proxy's bounds; never past the call's deadline less [`DEADLINE_MARGIN_MS`].
fn poll_time_ms(
    now_ms: u64,
    client: &ClientRef,
    request: &v2::ReceiveMessageRequest,
    settings: Option<&v2::Settings>,
) -> Result<u64, v2::Status> {
    let remaining_ms = client.meta.deadline_ms.map(|d| d.saturating_sub(now_ms));
    let wanted_ms = match request.long_polling_timeout.as_ref() {
        Some(d) => ms_of_duration(d).min(MAX_LONG_POLLING_MS),
        None => {
            let Some(remaining) = remaining_ms else {
                return Ok(MAX_LONG_POLLING_MS);
            };
            if remaining < MIN_LONG_POLLING_MS {
                return Err(status(
                    Code::IllegalPollingTime,
                    "the deadline time remaining is not enough for polling",
                ));
            }
            let request_timeout_ms = settings
                .and_then(|s| s.request_timeout.as_ref())
                .map_or(DEFAULT_REQUEST_TIMEOUT_MS, ms_of_duration);
            remaining
                .saturating_sub(request_timeout_ms / 2)
                .clamp(MIN_LONG_POLLING_MS, MAX_LONG_POLLING_MS)
        }
    };
    Ok(match remaining_ms {
        Some(remaining) => wanted_ms.min(remaining.saturating_sub(DEADLINE_MARGIN_MS)),
        None => wanted_ms,
    })
}
