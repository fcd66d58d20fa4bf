//! The simple consumer state machine (RocketMQ 5's `SimpleConsumer`, over the remoting
//! protocol): the application asks for messages with [`SimpleConsumer::receive`], then
//! acknowledges each one with [`SimpleConsumer::ack`] or hides it longer with
//! [`SimpleConsumer::change_invisible_duration`]. The broker balances the group: any member
//! receives from any queue, and a message not acknowledged within its invisible time comes back
//! (to any member, from the group's POP retry topic, reconsume times + 1).
//!
//! | Call | Request | Answer |
//! |---|---|---|
//! | `receive` | POP_MESSAGE (200050): `queueId` −1, `maxMsgNums`, `invisibleTime`, `pollTime` = await duration, `bornTime` = `now_ms`, `initMode`, `expType`/`exp`, `order` (and `attemptId`) when orderly | 0: records; 209/210/19: nothing (an empty result); else an error |
//! | `ack` | ACK_MESSAGE (200051): the topic read (the POP retry topic for a redelivery), queue id and offset from the receipt handle, `extraInfo` = the handle | 0: done; else an error with the code |
//! | `change_invisible_duration` | CHANGE_MESSAGE_INVISIBLETIME (200053): the ack's fields and `invisibleTime` | 0: a new handle built from `popTime`/`invisibleTime`/`reviveQid` |
//!
//! Each receive picks a subscribed topic (round robin over the subscriptions) and a broker
//! (round robin over the masters holding readable queues of the topic, passing over the ones
//! that recently failed to answer); the broker chooses the queues. A POP waits on the broker
//! up to the await duration for messages, so its request timeout is the await duration plus
//! the client's request timeout.
//!
//! Receipt handles are built as RocketMQ's remoting clients build them
//! (`MQClientAPIImpl.processPopResponse`): a record's own `POP_CK` (the broker adds one to each
//! redelivered record), else `<startOffset> <popTime> <invisibleTime> <reviveQid> <retryFlag>
//! <brokerName> <queueId> <queueOffset>` from the answer's `startOffsetInfo` and
//! `msgOffsetInfo` (the item of the record's `<retryFlag>@<queueId>`, the offset at the record's
//! position among that queue's records), with the name of the broker asked. The handle is also
//! put in the record's `POP_CK` property, `1ST_POP_TIME` is set to the answer's `popTime` when
//! absent (Java's rule: a redelivery keeps the first one), and the record's topic is the one
//! asked for (the broker already rewrites redeliveries to it).
//!
//! A message whose invisible time has already run out when the answer is handled
//! (`now_ms − popTime ≥ invisibleTime`) is not returned: it is being handed out again, and an
//! ack of it would be too late. RocketMQ's remoting consumers drop such messages before
//! consuming them too.
//!
//! Orderly (FIFO) consumers ([`SimpleConsumerConfig::orderly`]) pop with `order=true`: the
//! broker hands out a queue's next batch only once the last one is acknowledged or its
//! invisible time is over, and a message not acknowledged comes back in its place (never
//! through the retry topic), its reconsume times taken from the answer's `orderCountInfo`.
//! Each POP carries an `attemptId`; a POP of the same topic from the same broker after one
//! that got no answer reuses it (as RocketMQ's clients do), so that the broker hands out the
//! batch the lost answer carried instead of blocking its queue until the batch's invisible
//! time is over.
//!
//! Heartbeats name the group with consume type `CONSUME_POP`, clustering, and the
//! subscriptions, so the broker and admin tools know the group; routes are refreshed every
//! `poll_namesrv_interval_ms`.
//!
//! Not implemented: BATCH_ACK_MESSAGE, client-side tag filtering of what
//! the broker returns (the broker filters tags exactly).

use std::collections::{BTreeMap, VecDeque};

use super::base::{ClientBase, RpcTable};
use super::engine::decode_records;
use super::message::MessageExt;
use super::requests::{
    self, ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel,
    SubscriptionData,
};
use super::{ClientConfig, ClientError, ClientOutput, MessageQueue};
use crate::namesrv::route::TopicRouteData;
use crate::remoting::codes::{request, response};
use crate::remoting::pop::{
    parse_msg_offset_info, parse_order_count_info, parse_start_offset_info,
    AckMessageRequestHeader, ChangeInvisibleTimeResponseHeader, ExtraInfo, PopMessageRequestHeader,
    PopMessageResponseHeader, RetryFlag, FIRST_POP_TIME_PROPERTY, INIT_MODE_MAX, INIT_MODE_MIN,
    POP_CK_PROPERTY, POP_MAX_MSG_NUMS,
};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::topic::perm;

#[cfg(test)]
mod tests;

/// Where a group new to a queue starts reading it (RocketMQ's `ConsumeInitMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsumeInitMode {
    /// At the queue's first message.
    Min,
    /// At its last message (RocketMQ 5's proxy pops this way).
    #[default]
    Max,
}

impl ConsumeInitMode {
    /// POP's `initMode`.
    pub fn code(self) -> i32 {
        match self {
            ConsumeInitMode::Min => INIT_MODE_MIN,
            ConsumeInitMode::Max => INIT_MODE_MAX,
        }
    }

    /// The `consumeFromWhere` heartbeats carry for this mode.
    fn consume_from_where(self) -> ConsumeFromWhere {
        match self {
            ConsumeInitMode::Min => ConsumeFromWhere::FirstOffset,
            ConsumeInitMode::Max => ConsumeFromWhere::LastOffset,
        }
    }
}

/// Simple consumer settings.
#[derive(Clone, Debug)]
pub struct SimpleConsumerConfig {
    pub client: ClientConfig,
    pub consumer_group: String,
    /// How long a receive waits on the broker for messages (`awaitDuration`, POP's
    /// `pollTime`); 0 answers at once.
    pub await_duration_ms: u64,
    pub init_mode: ConsumeInitMode,
    /// Receive in order (FIFO): POP with `order=true`.
    pub orderly: bool,
}

impl Default for SimpleConsumerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            consumer_group: "DEFAULT_CONSUMER".to_owned(),
            await_duration_ms: 15_000,
            init_mode: ConsumeInitMode::default(),
            orderly: false,
        }
    }
}

/// Names one `receive`, `ack` or `change_invisible_duration` call; its result comes out as
/// [`ClientOutput::SimpleDone`] with the same id, exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimpleCallId(pub u64);

/// The result of a simple consumer call.
#[derive(Debug)]
pub enum SimpleResult {
    /// `receive`: the messages (empty when none came within the await duration).
    Received(Result<Vec<ReceivedMessage>, ClientError>),
    /// `ack`.
    Acked(Result<(), ClientError>),
    /// `change_invisible_duration`: the message's new receipt handle.
    InvisibleChanged(Result<ReceiptHandle, ClientError>),
}

/// A receipt handle (RocketMQ's `POP_CK` / "extraInfo"): the text sent back verbatim with acks
/// and changes of invisible time, and its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptHandle {
    text: String,
    info: ExtraInfo,
}

impl ReceiptHandle {
    /// Reads a handle; fails unless it has RocketMQ's seven or eight fields (more are kept in
    /// the text and ignored).
    pub fn parse(text: &str) -> Result<Self, HeaderError> {
        Ok(Self {
            info: ExtraInfo::parse(text)?,
            text: text.to_owned(),
        })
    }

    fn from_info(info: ExtraInfo) -> Self {
        Self {
            text: info.encode(),
            info,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn info(&self) -> &ExtraInfo {
        &self.info
    }

    /// When the message becomes visible again (epoch ms, the broker's clock) unless
    /// acknowledged: `popTime + invisibleTime`.
    pub fn invisible_until_ms(&self) -> i64 {
        self.info
            .pop_time_ms
            .saturating_add(self.info.invisible_time_ms)
    }
}

impl std::fmt::Display for ReceiptHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A message handed out by `receive`: the message and its receipt handle.
///
/// `message.record.topic` is the topic subscribed; `message.queue` is the queue it was read
/// from: the topic's queue, or for a redelivery the queue of the group's POP retry topic
/// (`%RETRY%<group>+<topic>` or `%RETRY%<group>_<topic>`). The record's `POP_CK` property
/// holds the handle too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message: MessageExt,
    handle: ReceiptHandle,
}

impl ReceivedMessage {
    /// A message with `handle` (its `POP_CK` property is set to it).
    pub fn new(mut message: MessageExt, handle: ReceiptHandle) -> Self {
        message
            .record
            .properties
            .insert(POP_CK_PROPERTY, handle.as_str());
        Self { message, handle }
    }

    pub fn receipt_handle(&self) -> &ReceiptHandle {
        &self.handle
    }

    /// Replaces the handle (after a change of invisible time), in the `POP_CK` property too.
    pub fn set_receipt_handle(&mut self, handle: ReceiptHandle) {
        self.message
            .record
            .properties
            .insert(POP_CK_PROPERTY, handle.as_str());
        self.handle = handle;
    }

    /// The name of the broker holding the message (acks go to its master).
    pub fn broker_name(&self) -> &str {
        &self.handle.info.broker_name
    }

    /// The queue offset acks name: the handle's, else the record's.
    pub fn ack_offset(&self) -> i64 {
        self.handle
            .info
            .msg_queue_offset
            .unwrap_or(self.message.record.queue_offset)
    }

    /// The topic acks name: the topic read, a POP retry topic for a redelivery
    /// (`ExtraInfoUtil.getRealTopic`).
    pub fn ack_topic(&self, group: &str) -> String {
        self.handle
            .info
            .retry
            .real_topic(&self.message.record.topic, group)
    }
}

impl std::ops::Deref for ReceivedMessage {
    type Target = MessageExt;

    fn deref(&self) -> &MessageExt {
        &self.message
    }
}

/// A receive that goes out once its topic's route is known.
#[derive(Debug)]
struct Receive {
    id: SimpleCallId,
    topic: String,
    max_messages: i32,
    invisible_ms: i64,
    /// Waiting for the route: failed with a timeout past this instant.
    deadline_ms: u64,
}

/// What a request in flight was for.
#[derive(Debug)]
enum Call {
    Route {
        topic: String,
    },
    /// HEART_BEAT or UNREGISTER_CLIENT: the answer changes nothing.
    Fire,
    Pop {
        id: SimpleCallId,
        topic: String,
        broker_name: String,
        timeout_ms: u64,
        /// Orderly: the POP's `attemptId`.
        attempt_id: Option<String>,
    },
    Ack {
        id: SimpleCallId,
    },
    Change {
        id: SimpleCallId,
        /// The topic named (the one read).
        topic: String,
        queue_id: i32,
        offset: i64,
        broker_name: String,
    },
}

/// The simple consumer state machine.
pub struct SimpleConsumer {
    config: SimpleConsumerConfig,
    base: ClientBase,
    rpcs: RpcTable<Call>,
    /// topic → subscription.
    subscriptions: BTreeMap<String, SubscriptionData>,
    /// topic → names of the brokers with readable queues of it, in name order.
    topic_brokers: BTreeMap<String, Vec<String>>,
    /// Round robin over the subscriptions.
    next_topic: usize,
    /// Round robin over each topic's brokers.
    next_broker: BTreeMap<String, usize>,
    /// Receives waiting for their topic's route.
    waiting_route: Vec<Receive>,
    /// Orderly: (topic, broker name) → the `attemptId` of the last POP there that got no
    /// answer; the next POP there carries it again.
    lost_attempts: BTreeMap<(String, String), String>,
    next_attempt: u64,
    outputs: VecDeque<ClientOutput>,
    next_call: u64,
    started: bool,
    shut_down: bool,
    next_route_ms: u64,
    next_heartbeat_ms: u64,
}

impl SimpleConsumer {
    /// A consumer that does nothing until [`SimpleConsumer::start`].
    pub fn new(config: SimpleConsumerConfig, now_ms: u64) -> Self {
        Self {
            base: ClientBase::new(config.client.clone()),
            config,
            rpcs: RpcTable::default(),
            subscriptions: BTreeMap::new(),
            topic_brokers: BTreeMap::new(),
            next_topic: 0,
            next_broker: BTreeMap::new(),
            waiting_route: Vec::new(),
            lost_attempts: BTreeMap::new(),
            next_attempt: 0,
            outputs: VecDeque::new(),
            next_call: 0,
            started: false,
            shut_down: false,
            next_route_ms: now_ms,
            next_heartbeat_ms: now_ms,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.base.client_id
    }

    pub fn group(&self) -> &str {
        &self.config.consumer_group
    }

    /// Subscribes `topic` with a TAG expression (`*` or `tagA || tagB`); subscribing again
    /// replaces the expression.
    pub fn subscribe(
        &mut self,
        now_ms: u64,
        topic: &str,
        expression: &str,
    ) -> Result<(), ClientError> {
        self.subscribe_with(now_ms, topic, |version| {
            Ok(SubscriptionData::tag(topic, expression, version))
        })
    }

    /// Subscribes `topic` with an SQL92 property selector, evaluated by brokers with
    /// `enablePropertyFilter=true`; refused when it does not compile.
    pub fn subscribe_sql(
        &mut self,
        now_ms: u64,
        topic: &str,
        expression: &str,
    ) -> Result<(), ClientError> {
        self.subscribe_with(now_ms, topic, |version| {
            SubscriptionData::sql92(topic, expression, version)
                .map_err(|e| ClientError::InvalidSubscription(e.to_string()))
        })
    }

    fn subscribe_with(
        &mut self,
        now_ms: u64,
        topic: &str,
        build: impl FnOnce(i64) -> Result<SubscriptionData, ClientError>,
    ) -> Result<(), ClientError> {
        crate::topic::validate_name(topic, crate::topic::GROUP_TOPIC_NAME_MAX_BYTES)
            .map_err(ClientError::InvalidMessage)?;
        if self.shut_down {
            return Err(ClientError::ShutDown);
        }
        let subscription = build(now_ms as i64)?;
        self.subscriptions.insert(topic.to_owned(), subscription);
        if self.started {
            self.request_route(now_ms, topic);
            self.send_heartbeats(now_ms);
        }
        Ok(())
    }

    pub fn unsubscribe(&mut self, now_ms: u64, topic: &str) {
        if self.subscriptions.remove(topic).is_some() && self.started {
            self.send_heartbeats(now_ms);
        }
    }

    /// The subscribed topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.subscriptions.keys().cloned().collect()
    }

    pub fn start(&mut self, now_ms: u64) {
        if self.started || self.shut_down {
            return;
        }
        self.started = true;
        let topics = self.topics();
        for topic in topics {
            self.request_route(now_ms, &topic);
        }
        let client = &self.config.client;
        self.next_route_ms = now_ms + client.poll_namesrv_interval_ms.max(1);
        self.next_heartbeat_ms = now_ms + client.heartbeat_broker_interval_ms.max(1);
    }

    fn next_id(&mut self) -> SimpleCallId {
        self.next_call += 1;
        SimpleCallId(self.next_call)
    }

    fn done(&mut self, id: SimpleCallId, result: SimpleResult) {
        self.outputs
            .push_back(ClientOutput::SimpleDone { id, result });
    }

    /// Why calls cannot run now, if they cannot.
    fn unusable(&self) -> Option<ClientError> {
        if self.shut_down {
            Some(ClientError::ShutDown)
        } else if !self.started {
            Some(ClientError::InvalidMessage(
                "the simple consumer is not started".to_owned(),
            ))
        } else {
            None
        }
    }

    /// Receives up to `max_messages` (1 to 32) messages of one subscribed topic, hidden from
    /// the group for `invisible_duration_ms` unless acknowledged. The broker waits up to the
    /// await duration for messages; none by then is an empty result, not an error.
    pub fn receive(
        &mut self,
        now_ms: u64,
        max_messages: usize,
        invisible_duration_ms: u64,
    ) -> SimpleCallId {
        let id = self.next_id();
        if let Some(error) = self.unusable() {
            self.done(id, SimpleResult::Received(Err(error)));
            return id;
        }
        if max_messages == 0 || max_messages > POP_MAX_MSG_NUMS as usize {
            let error = ClientError::InvalidMessage(format!(
                "max_messages must be 1 to {POP_MAX_MSG_NUMS}, not {max_messages}"
            ));
            self.done(id, SimpleResult::Received(Err(error)));
            return id;
        }
        let topics = self.topics();
        if topics.is_empty() {
            let error = ClientError::InvalidMessage("no topic subscribed".to_owned());
            self.done(id, SimpleResult::Received(Err(error)));
            return id;
        }
        let topic = topics[self.next_topic % topics.len()].clone();
        self.next_topic = self.next_topic.wrapping_add(1);
        let receive = Receive {
            id,
            topic,
            max_messages: max_messages as i32,
            invisible_ms: i64::try_from(invisible_duration_ms).unwrap_or(i64::MAX),
            deadline_ms: now_ms + self.pop_timeout_ms(),
        };
        self.pop(now_ms, receive);
        id
    }

    /// How long a POP may wait for its answer: the broker holds it up to the await duration.
    fn pop_timeout_ms(&self) -> u64 {
        self.config.await_duration_ms + self.config.client.request_timeout_ms
    }

    /// The broker a receive of `topic` goes to, and its master's address: round robin over
    /// the topic's brokers, passing over masters that recently failed while another answers.
    fn pick_broker(&mut self, now_ms: u64, topic: &str) -> Option<(String, String)> {
        let candidates: Vec<(String, String)> = self
            .topic_brokers
            .get(topic)?
            .iter()
            .filter_map(|name| {
                self.base
                    .master_addr(name)
                    .map(|addr| (name.clone(), addr.to_owned()))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let counter = self.next_broker.entry(topic.to_owned()).or_insert(0);
        let start = *counter;
        *counter = counter.wrapping_add(1);
        let len = candidates.len();
        (0..len)
            .map(|i| &candidates[(start + i) % len])
            .find(|(_, addr)| self.base.reachable(now_ms, addr))
            .or_else(|| candidates.get(start % len))
            .cloned()
    }

    /// Sends the POP of `receive`, or waits for its topic's route.
    fn pop(&mut self, now_ms: u64, receive: Receive) {
        let Some((broker_name, addr)) = self.pick_broker(now_ms, &receive.topic) else {
            if self.base.routes.contains_key(&receive.topic) {
                let error = ClientError::NoRoute {
                    topic: receive.topic,
                };
                self.done(receive.id, SimpleResult::Received(Err(error)));
            } else {
                self.request_route(now_ms, &receive.topic);
                self.waiting_route.push(receive);
            }
            return;
        };
        let Some(subscription) = self.subscriptions.get(&receive.topic) else {
            let error = ClientError::InvalidMessage(format!(
                "topic {} is no longer subscribed",
                receive.topic
            ));
            self.done(receive.id, SimpleResult::Received(Err(error)));
            return;
        };
        let attempt_id = self.config.orderly.then(|| {
            let key = (receive.topic.clone(), broker_name.clone());
            self.lost_attempts.remove(&key).unwrap_or_else(|| {
                self.next_attempt += 1;
                format!("{}-{}", self.base.client_id, self.next_attempt)
            })
        });
        let header = PopMessageRequestHeader {
            consumer_group: self.config.consumer_group.clone(),
            topic: receive.topic.clone(),
            queue_id: -1,
            max_msg_nums: receive.max_messages,
            invisible_time_ms: receive.invisible_ms,
            poll_time_ms: self.config.await_duration_ms as i64,
            born_time_ms: now_ms as i64,
            init_mode: self.config.init_mode.code(),
            exp_type: Some(subscription.expression_type.clone()),
            exp: Some(subscription.sub_string.clone()),
            order: self.config.orderly,
            attempt_id: attempt_id.clone(),
        };
        let timeout_ms = self.pop_timeout_ms();
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            pop_message(&header),
            now_ms + timeout_ms,
            Call::Pop {
                id: receive.id,
                topic: receive.topic,
                broker_name,
                timeout_ms,
                attempt_id,
            },
        );
    }

    /// Acknowledges `message`: it will not come back. Sent to the master of the broker named
    /// in its handle (or, with no route to it, the broker that handed it out).
    pub fn ack(&mut self, now_ms: u64, message: &ReceivedMessage) -> SimpleCallId {
        let id = self.next_id();
        if let Some(error) = self.unusable() {
            self.done(id, SimpleResult::Acked(Err(error)));
            return id;
        }
        let Some(addr) = self.ack_addr(message) else {
            let error = ClientError::NoRoute {
                topic: message.topic().to_owned(),
            };
            self.done(id, SimpleResult::Acked(Err(error)));
            return id;
        };
        let command = ack_message(&self.ack_header(message));
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            command,
            now_ms + self.config.client.request_timeout_ms,
            Call::Ack { id },
        );
        id
    }

    /// Hides `message` for `invisible_duration_ms` from now instead of what was left of its
    /// invisible time. Its result is the message's new receipt handle (the old one no longer
    /// acknowledges it).
    pub fn change_invisible_duration(
        &mut self,
        now_ms: u64,
        message: &ReceivedMessage,
        invisible_duration_ms: u64,
    ) -> SimpleCallId {
        let id = self.next_id();
        if let Some(error) = self.unusable() {
            self.done(id, SimpleResult::InvisibleChanged(Err(error)));
            return id;
        }
        let Some(addr) = self.ack_addr(message) else {
            let error = ClientError::NoRoute {
                topic: message.topic().to_owned(),
            };
            self.done(id, SimpleResult::InvisibleChanged(Err(error)));
            return id;
        };
        let header = self.ack_header(message);
        let invisible_ms = i64::try_from(invisible_duration_ms).unwrap_or(i64::MAX);
        let command = change_invisible_time(&header, invisible_ms);
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            command,
            now_ms + self.config.client.request_timeout_ms,
            Call::Change {
                id,
                topic: header.topic,
                queue_id: header.queue_id,
                offset: header.offset,
                broker_name: message.broker_name().to_owned(),
            },
        );
        id
    }

    fn ack_addr(&self, message: &ReceivedMessage) -> Option<String> {
        self.base
            .master_addr(message.broker_name())
            .map(str::to_owned)
            .or_else(|| Some(message.served_by.clone()).filter(|a| !a.is_empty()))
    }

    fn ack_header(&self, message: &ReceivedMessage) -> AckMessageRequestHeader {
        AckMessageRequestHeader {
            consumer_group: self.config.consumer_group.clone(),
            topic: message.ack_topic(&self.config.consumer_group),
            queue_id: message.receipt_handle().info().queue_id,
            extra_info: message.receipt_handle().as_str().to_owned(),
            offset: message.ack_offset(),
        }
    }

    // ---- Answers ----

    fn on_pop(
        &mut self,
        now_ms: u64,
        addr: &str,
        topic: &str,
        broker_name: &str,
        command: &RemotingCommand,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        match command.code {
            response::SUCCESS => {}
            response::POLLING_FULL | response::POLLING_TIMEOUT | response::PULL_NOT_FOUND => {
                return Ok(Vec::new())
            }
            code => {
                return Err(ClientError::Broker {
                    code,
                    remark: command.remark.clone().unwrap_or_default(),
                })
            }
        }
        let malformed = |what: String| ClientError::MalformedResponse(what);
        let header = PopMessageResponseHeader::parse(command)
            .map_err(|e| malformed(format!("POP answer header: {e}")))?;
        let records = decode_records(&command.body)
            .map_err(|e| malformed(format!("POP answer body: {e}")))?;
        let start_offsets = match header.start_offset_info.as_deref() {
            Some(text) if !text.is_empty() => Some(
                parse_start_offset_info(text)
                    .ok_or_else(|| malformed(format!("startOffsetInfo {text:?}")))?,
            ),
            _ => None,
        };
        let msg_offsets = match header.msg_offset_info.as_deref() {
            Some(text) if !text.is_empty() => Some(
                parse_msg_offset_info(text)
                    .ok_or_else(|| malformed(format!("msgOffsetInfo {text:?}")))?,
            ),
            _ => None,
        };
        let order_counts = match header.order_count_info.as_deref() {
            Some(text) if !text.is_empty() => Some(
                parse_order_count_info(text)
                    .ok_or_else(|| malformed(format!("orderCountInfo {text:?}")))?,
            ),
            _ => None,
        };
        let group = &self.config.consumer_group;
        // Records seen so far per `<flag>@<queueId>`: a record's index in its queue's list.
        let mut seen: BTreeMap<(RetryFlag, i32), usize> = BTreeMap::new();
        let mut messages = Vec::with_capacity(records.len());
        for mut record in records {
            let handle = match record.properties.get(POP_CK_PROPERTY) {
                Some(text) => ReceiptHandle::parse(text)
                    .map_err(|e| malformed(format!("POP_CK of a record: {e}")))?,
                None => {
                    let flag = RetryFlag::of_topic(&record.topic);
                    let key = (flag, record.queue_id);
                    let index = seen.entry(key).or_insert(0);
                    let position = *index;
                    *index += 1;
                    let (ck_start_offset, offset) = match &start_offsets {
                        None => (record.queue_offset, record.queue_offset),
                        Some(starts) => {
                            let start = starts.get(&key).copied().ok_or_else(|| {
                                malformed(format!(
                                    "no startOffsetInfo item for {}@{}",
                                    flag.as_str(),
                                    record.queue_id
                                ))
                            })?;
                            let offset = match &msg_offsets {
                                None => record.queue_offset,
                                Some(lists) => lists
                                    .get(&key)
                                    .and_then(|list| list.get(position))
                                    .copied()
                                    .ok_or_else(|| {
                                        malformed(format!(
                                            "no msgOffsetInfo offset {position} for {}@{}",
                                            flag.as_str(),
                                            record.queue_id
                                        ))
                                    })?,
                            };
                            (start, offset)
                        }
                    };
                    ReceiptHandle::from_info(ExtraInfo {
                        ck_start_offset,
                        pop_time_ms: header.pop_time_ms,
                        invisible_time_ms: header.invisible_time_ms,
                        revive_qid: header.revive_qid,
                        retry: flag,
                        broker_name: broker_name.to_owned(),
                        queue_id: record.queue_id,
                        msg_queue_offset: Some(offset),
                    })
                }
            };
            if !record.properties.contains(FIRST_POP_TIME_PROPERTY) {
                record
                    .properties
                    .insert(FIRST_POP_TIME_PROPERTY, header.pop_time_ms.to_string());
            }
            if let Some(counts) = &order_counts {
                let offset = handle.info.msg_queue_offset.unwrap_or(record.queue_offset);
                record.reconsume_times = counts.count(handle.info.retry, record.queue_id, offset);
            }
            let read_topic = handle.info.retry.real_topic(topic, group);
            record.topic = topic.to_owned();
            if now_ms as i64 - handle.info.pop_time_ms >= handle.info.invisible_time_ms {
                continue;
            }
            let message = MessageExt {
                queue: MessageQueue::new(read_topic, broker_name, record.queue_id),
                record,
                served_by: addr.to_owned(),
            };
            messages.push(ReceivedMessage::new(message, handle));
        }
        Ok(messages)
    }

    fn on_change(
        command: &RemotingCommand,
        topic: &str,
        queue_id: i32,
        offset: i64,
        broker_name: String,
    ) -> Result<ReceiptHandle, ClientError> {
        if command.code != response::SUCCESS {
            return Err(ClientError::Broker {
                code: command.code,
                remark: command.remark.clone().unwrap_or_default(),
            });
        }
        let header = ChangeInvisibleTimeResponseHeader::parse(command).map_err(|e| {
            ClientError::MalformedResponse(format!("CHANGE_MESSAGE_INVISIBLETIME answer: {e}"))
        })?;
        Ok(ReceiptHandle::from_info(ExtraInfo {
            ck_start_offset: offset,
            pop_time_ms: header.pop_time_ms,
            invisible_time_ms: header.invisible_time_ms,
            revive_qid: header.revive_qid,
            retry: RetryFlag::of_topic(topic),
            broker_name,
            queue_id,
            msg_queue_offset: Some(offset),
        }))
    }

    // ---- NameServer routes and heartbeats ----

    fn request_route(&mut self, now_ms: u64, topic: &str) {
        let in_flight = self
            .rpcs
            .iter()
            .any(|(_, rpc)| matches!(&rpc.kind, Call::Route { topic: t } if t == topic));
        if in_flight {
            return;
        }
        let Some(addr) = self.base.namesrv().map(str::to_owned) else {
            return;
        };
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            requests::get_route_info(topic),
            now_ms + self.config.client.request_timeout_ms,
            Call::Route {
                topic: topic.to_owned(),
            },
        );
    }

    fn on_route(&mut self, now_ms: u64, topic: &str, command: &RemotingCommand) {
        if command.code == response::SUCCESS {
            if let Ok(route) = TopicRouteData::parse(&command.body) {
                let known_before = self.base.broker_addrs.clone();
                self.topic_brokers
                    .insert(topic.to_owned(), readable_brokers(&route));
                self.base.store_route(topic, route);
                if self.base.broker_addrs != known_before {
                    // New brokers learn about the group before its POPs reach them.
                    self.send_heartbeats(now_ms);
                }
            }
        }
        self.route_settled(now_ms, topic);
    }

    /// A route query of `topic` ended: receives waiting for it go out, or fail when there is
    /// still no route.
    fn route_settled(&mut self, now_ms: u64, topic: &str) {
        let (ready, waiting): (Vec<Receive>, Vec<Receive>) =
            std::mem::take(&mut self.waiting_route)
                .into_iter()
                .partition(|r| r.topic == topic);
        self.waiting_route = waiting;
        for receive in ready {
            if self.base.routes.contains_key(topic) {
                self.pop(now_ms, receive);
            } else {
                let error = ClientError::NoRoute {
                    topic: topic.to_owned(),
                };
                self.done(receive.id, SimpleResult::Received(Err(error)));
            }
        }
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.base.client_id.clone(),
            producer_groups: vec![requests::CLIENT_INNER_PRODUCER_GROUP.to_owned()],
            consumers: vec![ConsumerData {
                consume_from_where: self.config.init_mode.consume_from_where(),
                consume_type: ConsumeType::Pop,
                group_name: self.config.consumer_group.clone(),
                message_model: MessageModel::Clustering,
                subscription_data_set: self.subscriptions.values().cloned().collect(),
                unit_mode: false,
            }],
        }
    }

    /// HEART_BEAT to every broker known.
    fn send_heartbeats(&mut self, now_ms: u64) {
        if !self.started || self.shut_down {
            return;
        }
        let command = requests::heartbeat(&self.heartbeat_data());
        for addr in self.base.all_broker_addrs() {
            self.rpcs.call(
                &mut self.outputs,
                &addr,
                command.clone(),
                now_ms + self.config.client.request_timeout_ms,
                Call::Fire,
            );
        }
    }

    // ---- Inputs ----

    pub fn handle_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let Some(rpc) = self.rpcs.take(addr, command.opaque) else {
            return;
        };
        self.base.mark_reachable(addr);
        match rpc.kind {
            Call::Route { topic } => {
                if command.code != response::SUCCESS && command.code != response::TOPIC_NOT_EXIST {
                    self.base.namesrv_failed(addr);
                }
                self.on_route(now_ms, &topic, &command);
            }
            Call::Fire => {}
            Call::Pop {
                id,
                topic,
                broker_name,
                attempt_id,
                ..
            } => {
                let result = self.on_pop(now_ms, addr, &topic, &broker_name, &command);
                // An answer that cannot be read leaves its batch to the attempt's next POP.
                if let (Some(attempt), Err(ClientError::MalformedResponse(_))) =
                    (attempt_id, &result)
                {
                    self.lost_attempts.insert((topic, broker_name), attempt);
                }
                self.done(id, SimpleResult::Received(result));
            }
            Call::Ack { id } => {
                let result = match command.code {
                    response::SUCCESS => Ok(()),
                    code => Err(ClientError::Broker {
                        code,
                        remark: command.remark.clone().unwrap_or_default(),
                    }),
                };
                self.done(id, SimpleResult::Acked(result));
            }
            Call::Change {
                id,
                topic,
                queue_id,
                offset,
                broker_name,
            } => {
                let result = Self::on_change(&command, &topic, queue_id, offset, broker_name);
                self.done(id, SimpleResult::InvisibleChanged(result));
            }
        }
    }

    /// A request got no answer: `error` says why.
    fn rpc_failed(&mut self, now_ms: u64, addr: &str, call: Call, error: ClientError) {
        match call {
            Call::Route { topic } => {
                self.base.namesrv_failed(addr);
                self.route_settled(now_ms, &topic);
            }
            Call::Fire => {}
            Call::Pop {
                id,
                topic,
                broker_name,
                attempt_id,
                ..
            } => {
                if let Some(attempt) = attempt_id {
                    self.lost_attempts.insert((topic, broker_name), attempt);
                }
                self.broker_unreachable(now_ms, addr);
                self.done(id, SimpleResult::Received(Err(error)));
            }
            Call::Ack { id } => {
                self.broker_unreachable(now_ms, addr);
                self.done(id, SimpleResult::Acked(Err(error)));
            }
            Call::Change { id, .. } => {
                self.broker_unreachable(now_ms, addr);
                self.done(id, SimpleResult::InvisibleChanged(Err(error)));
            }
        }
    }

    /// A broker did not answer: receive from the topic's other brokers meanwhile, and ask for
    /// routes now rather than at the next refresh.
    fn broker_unreachable(&mut self, now_ms: u64, addr: &str) {
        self.base.mark_unreachable(now_ms, addr);
        self.next_route_ms = self.next_route_ms.min(now_ms);
    }

    fn timeout_of(&self, call: &Call) -> u64 {
        match call {
            Call::Pop { timeout_ms, .. } => *timeout_ms,
            _ => self.config.client.request_timeout_ms,
        }
    }

    /// Brokers send consumers NOTIFY_CONSUMER_IDS_CHANGED (nothing to do: the broker
    /// balances POP groups); other requests are answered "not supported".
    pub fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let _ = now_ms;
        if command.is_response() || command.code == request::NOTIFY_CONSUMER_IDS_CHANGED {
            return;
        }
        self.base.reject_request(addr, &command, &mut self.outputs);
    }

    pub fn handle_connection_closed(&mut self, now_ms: u64, addr: &str) {
        for (_, rpc) in self.rpcs.take_for_addr(addr) {
            let error = ClientError::ConnectionClosed {
                addr: addr.to_owned(),
            };
            self.rpc_failed(now_ms, addr, rpc.kind, error);
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        for (_, rpc) in self.rpcs.take_expired(now_ms) {
            let error = ClientError::Timeout {
                timeout_ms: self.timeout_of(&rpc.kind),
            };
            self.rpc_failed(now_ms, &rpc.addr, rpc.kind, error);
        }
        let (expired, waiting): (Vec<Receive>, Vec<Receive>) =
            std::mem::take(&mut self.waiting_route)
                .into_iter()
                .partition(|r| r.deadline_ms <= now_ms);
        self.waiting_route = waiting;
        for receive in expired {
            let error = ClientError::Timeout {
                timeout_ms: self.pop_timeout_ms(),
            };
            self.done(receive.id, SimpleResult::Received(Err(error)));
        }
        if !self.started || self.shut_down {
            return;
        }
        if now_ms >= self.next_route_ms {
            for topic in self.topics() {
                self.request_route(now_ms, &topic);
            }
            self.next_route_ms = now_ms + self.config.client.poll_namesrv_interval_ms.max(1);
        }
        if now_ms >= self.next_heartbeat_ms {
            self.send_heartbeats(now_ms);
            self.next_heartbeat_ms =
                now_ms + self.config.client.heartbeat_broker_interval_ms.max(1);
        }
    }

    /// Fails every call still waiting ([`ClientError::ShutDown`]; messages being received
    /// come back after their invisible time) and unregisters from every broker.
    pub fn shutdown(&mut self, now_ms: u64) {
        if self.shut_down {
            return;
        }
        for (_, rpc) in self.rpcs.take_all() {
            let result = match rpc.kind {
                Call::Pop { id, .. } => {
                    Some((id, SimpleResult::Received(Err(ClientError::ShutDown))))
                }
                Call::Ack { id } => Some((id, SimpleResult::Acked(Err(ClientError::ShutDown)))),
                Call::Change { id, .. } => Some((
                    id,
                    SimpleResult::InvisibleChanged(Err(ClientError::ShutDown)),
                )),
                Call::Route { .. } | Call::Fire => None,
            };
            if let Some((id, result)) = result {
                self.done(id, result);
            }
        }
        for receive in std::mem::take(&mut self.waiting_route) {
            self.done(
                receive.id,
                SimpleResult::Received(Err(ClientError::ShutDown)),
            );
        }
        if self.started {
            let command = requests::unregister_client(
                &self.base.client_id,
                None,
                Some(&self.config.consumer_group),
            );
            for addr in self.base.all_broker_addrs() {
                self.rpcs.call(
                    &mut self.outputs,
                    &addr,
                    command.clone(),
                    now_ms + self.config.client.request_timeout_ms,
                    Call::Fire,
                );
            }
        }
        self.shut_down = true;
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next = self.rpcs.earliest_deadline_ms();
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for receive in &self.waiting_route {
            consider(receive.deadline_ms);
        }
        if self.started && !self.shut_down {
            consider(self.next_route_ms);
            consider(self.next_heartbeat_ms);
        }
        next
    }
}

/// The brokers with readable queues of a topic, in name order.
fn readable_brokers(route: &TopicRouteData) -> Vec<String> {
    let mut names: Vec<String> = route
        .queue_datas
        .iter()
        .filter(|qd| qd.perm & perm::READ != 0 && qd.read_queue_nums > 0)
        .map(|qd| qd.broker_name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// POP_MESSAGE (200050).
pub fn pop_message(header: &PopMessageRequestHeader) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::POP_MESSAGE);
    header.write_to(&mut cmd);
    cmd
}

/// ACK_MESSAGE (200051).
pub fn ack_message(header: &AckMessageRequestHeader) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::ACK_MESSAGE);
    header.write_to(&mut cmd);
    cmd
}

/// CHANGE_MESSAGE_INVISIBLETIME (200053): the ack's fields and the new invisible time.
pub fn change_invisible_time(
    header: &AckMessageRequestHeader,
    invisible_time_ms: i64,
) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::CHANGE_MESSAGE_INVISIBLETIME);
    header.write_to(&mut cmd);
    cmd.with_ext("invisibleTime", invisible_time_ms)
}
