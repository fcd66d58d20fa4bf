//! The producer state machine (RocketMQ's `DefaultMQProducerImpl` + `MQFaultStrategy`).
//!
//! A send call returns a [`SendId`] at once; its outcome arrives later as exactly one
//! [`ClientOutput::SendDone`]. Between the two the producer may fetch the topic's route from a
//! NameServer (falling back to the default topic `TBW102` for auto-creation, as Java does), pick
//! a queue, send, and retry on another broker.
//!
//! Queue choice (Java 4.9 semantics):
//! * a per-topic counter (`sendWhichQueue`, started at a seeded random value) picks
//!   `queues[abs(counter++) % len]`, skipping the broker of the failed previous attempt;
//! * with `send_latency_fault_enable`, brokers whose recent latency or failure put them in the
//!   fault table are skipped until their not-available window passes (`latencyMax` /
//!   `notAvailableDuration`).
//!
//! Retries: sync sends try `1 + retry_times_when_send_failed` times, async sends
//! `1 + retry_times_when_send_async_failed`, oneway sends once. A retry happens after a
//! connection failure, or a broker answer of SYSTEM_ERROR, SYSTEM_BUSY, SERVICE_NOT_AVAILABLE,
//! NO_PERMISSION, TOPIC_NOT_EXIST, NO_BUYER_ID, NOT_IN_CURRENT_UNIT or GO_AWAY, while
//! `send_msg_timeout_ms` (counted from the call) is not exhausted. Sends to an explicit queue or
//! through a [`QueueSelector`] never move to another queue (ordered sends).

use std::collections::{BTreeMap, VecDeque};

use super::base::ClientBase;
use super::fault::FaultStrategy;
use super::message::Message;
use super::route::PublishInfo;
use super::{ClientConfig, ClientError, ClientOutput, MessageQueue};
use crate::remoting::RemotingCommand;

/// Identifies one send call; echoed by its [`ClientOutput::SendDone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SendId(pub u64);

/// How the application waits for a send. The state machine treats sync and async alike (the
/// driver decides whether the caller blocks); they differ in their retry budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendMode {
    Sync,
    Async,
    /// Fire and forget: the request carries the oneway flag, is never retried, and completes as
    /// soon as it is handed to the driver, with `queue_offset == -1` and no `offset_msg_id`.
    Oneway,
}

/// RocketMQ's `SendStatus`: what a successful store reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

/// The outcome of a successful send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The client id (UNIQ_KEY) of the message; comma-joined for a batch.
    pub msg_id: String,
    /// The broker's offset id (`msgId` of the response); comma-joined for a batch. Empty for
    /// oneway sends.
    pub offset_msg_id: String,
    /// The queue written (broker name of the attempt, queue id from the response).
    pub queue: MessageQueue,
    /// Offset of the (first) message in its queue; -1 for oneway sends.
    pub queue_offset: i64,
    pub transaction_id: Option<String>,
    pub region_id: Option<String>,
    pub trace_on: bool,
}

/// How an ordered send picks its queue among the topic's writable queues (RocketMQ's
/// `MessageQueueSelector`).
pub enum QueueSelector {
    /// RocketMQ's `SelectMessageQueueByHash`: `abs(hash % len)`, where `hash` is the Java
    /// `hashCode()` of the argument (see [`java_string_hash`] for strings).
    ByHash(i32),
    /// An application function from the queue list to an index (taken modulo the length).
    Custom(Box<dyn Fn(&[MessageQueue]) -> usize + Send>),
}

impl std::fmt::Debug for QueueSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueSelector::ByHash(h) => write!(f, "ByHash({h})"),
            QueueSelector::Custom(_) => write!(f, "Custom(..)"),
        }
    }
}

impl QueueSelector {
    /// The index this selector picks among `queues` (non-empty).
    pub fn select(&self, queues: &[MessageQueue]) -> usize {
        let len = queues.len().max(1);
        match self {
            QueueSelector::ByHash(hash) => {
                // Java: value = hash % size; if (value < 0) value = Math.abs(value).
                let value = hash.wrapping_rem(len as i32);
                value.unsigned_abs() as usize % len
            }
            QueueSelector::Custom(select) => select(queues) % len,
        }
    }
}

/// Java's `String.hashCode()`, for [`QueueSelector::ByHash`] with a string argument.
pub fn java_string_hash(text: &str) -> i32 {
    crate::message::tag_hash_code(text) as i32
}

/// Producer settings (RocketMQ's `DefaultMQProducer` defaults).
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub producer_group: String,
    /// The whole budget of one send call, retries included (`sendMsgTimeout`).
    pub send_msg_timeout_ms: u64,
    pub retry_times_when_send_failed: u32,
    pub retry_times_when_send_async_failed: u32,
    /// Skip brokers that were slow or failing (`sendLatencyFaultEnable`, default off as Java).
    pub send_latency_fault_enable: bool,
    /// Retry on another broker when the store reported a flush/slave timeout
    /// (`retryAnotherBrokerWhenNotStoreOK`).
    pub retry_another_broker_when_not_store_ok: bool,
    /// Template topic for auto-creation (`createTopicKey`).
    pub create_topic_key: String,
    /// Queue count of an auto-created topic (`defaultTopicQueueNums`).
    pub default_topic_queue_nums: i32,
    /// Largest body (or batch body) accepted (`maxMessageSize`, 4 MiB).
    pub max_message_size_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            producer_group: "DEFAULT_PRODUCER".to_owned(),
            send_msg_timeout_ms: 3_000,
            retry_times_when_send_failed: 2,
            retry_times_when_send_async_failed: 2,
            send_latency_fault_enable: false,
            retry_another_broker_when_not_store_ok: false,
            create_topic_key: crate::topic::AUTO_CREATE_TOPIC_KEY.to_owned(),
            default_topic_queue_nums: 4,
            max_message_size_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What a send call targets.
#[derive(Debug)]
enum Target {
    /// Round-robin with fault avoidance; retried on another broker.
    Any,
    /// This queue only.
    Queue(MessageQueue),
    /// The selector's choice; not retried on another queue.
    Selector(QueueSelector),
}

/// One send call in progress.
#[derive(Debug)]
struct PendingSend {
    mode: SendMode,
    target: Target,
    topic: String,
    /// Request code (310 or 320), header and body, built once; each attempt clones them with
    /// its queue.
    code: i32,
    header: crate::remoting::headers::SendMessageRequestHeader,
    body: bytes::Bytes,
    /// UNIQ_KEY(s), comma-joined.
    msg_id: String,
    started_ms: u64,
    deadline_ms: u64,
    /// Attempts made so far.
    attempts: u32,
    max_attempts: u32,
    /// Broker of the previous attempt (avoided by the next).
    last_broker: Option<String>,
    /// The attempt in flight: its opaque, queue and start time.
    in_flight: Option<(i32, MessageQueue, u64)>,
    /// The error of the last attempt, reported if no attempt succeeds.
    last_error: Option<ClientError>,
}

/// The producer state machine.
pub struct Producer {
    config: ProducerConfig,
    base: ClientBase,
    /// topic → its publish info (writable queues, broker addresses, round-robin counter).
    publish: BTreeMap<String, PublishInfo>,
    fault: FaultStrategy,
    sends: BTreeMap<SendId, PendingSend>,
    /// Sends waiting for a route, by topic.
    waiting_route: BTreeMap<String, VecDeque<SendId>>,
    next_send_id: u64,
    outputs: VecDeque<ClientOutput>,
    shut_down: bool,
}

impl Producer {
    /// A started producer. The first heartbeat and route refresh happen at the first
    /// `handle_timeout` (or send).
    pub fn new(config: ProducerConfig, now_ms: u64) -> Self {
        Self::new_impl(config, now_ms)
    }

    /// Sends `message` to a queue chosen round-robin (with fault avoidance when enabled),
    /// retrying on another broker per `mode`.
    pub fn send(&mut self, now_ms: u64, message: Message, mode: SendMode) -> SendId {
        self.submit(now_ms, vec![message], false, Target::Any, mode)
    }

    /// Sends `message` to exactly `queue` (no retry on another queue).
    pub fn send_to_queue(
        &mut self,
        now_ms: u64,
        message: Message,
        queue: MessageQueue,
        mode: SendMode,
    ) -> SendId {
        self.submit(now_ms, vec![message], false, Target::Queue(queue), mode)
    }

    /// Ordered send: `selector` picks among the topic's writable queues (no retry on another
    /// queue, as Java).
    pub fn send_with_selector(
        &mut self,
        now_ms: u64,
        message: Message,
        selector: QueueSelector,
        mode: SendMode,
    ) -> SendId {
        self.submit(
            now_ms,
            vec![message],
            false,
            Target::Selector(selector),
            mode,
        )
    }

    /// Sends `messages` (one topic, no delay levels, not a retry topic) as one
    /// SEND_BATCH_MESSAGE to one queue chosen like [`Producer::send`]. The result's `msg_id`
    /// and `offset_msg_id` are comma-joined.
    pub fn send_batch(&mut self, now_ms: u64, messages: Vec<Message>, mode: SendMode) -> SendId {
        self.submit(now_ms, messages, true, Target::Any, mode)
    }

    /// Sends a batch to exactly `queue`.
    pub fn send_batch_to_queue(
        &mut self,
        now_ms: u64,
        messages: Vec<Message>,
        queue: MessageQueue,
        mode: SendMode,
    ) -> SendId {
        self.submit(now_ms, messages, true, Target::Queue(queue), mode)
    }

    /// The writable queues of `topic` as the route cache knows them (empty if unknown).
    pub fn topic_queues(&self, topic: &str) -> Vec<MessageQueue> {
        self.publish
            .get(topic)
            .map(|p| p.queues.clone())
            .unwrap_or_default()
    }

    /// Asks for `topic`'s route now (e.g. before the first send).
    pub fn refresh_route(&mut self, now_ms: u64, topic: &str) {
        self.request_route(now_ms, topic);
    }

    /// A response to a request this producer sent to `addr`.
    pub fn handle_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        self.on_response(now_ms, addr, command)
    }

    /// A request from a broker (e.g. CHECK_TRANSACTION_STATE). Answered REQUEST_CODE_NOT_SUPPORTED
    /// unless oneway.
    pub fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let _ = now_ms;
        self.base.reject_request(addr, &command, &mut self.outputs);
    }

    /// The connection to `addr` failed or closed: its requests in flight fail (sends are
    /// retried on another broker if allowed).
    pub fn handle_connection_closed(&mut self, now_ms: u64, addr: &str) {
        self.on_connection_closed(now_ms, addr)
    }

    /// Runs timers: request timeouts, route refresh, heartbeats.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.on_timeout(now_ms)
    }

    /// Fails every send in progress with [`ClientError::ShutDown`] and unregisters from every
    /// known broker (UNREGISTER_CLIENT). Afterwards the producer only drains outputs.
    pub fn shutdown(&mut self, now_ms: u64) {
        self.on_shutdown(now_ms)
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// The next instant `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_timeout()
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// This client's id (`ip@instance`).
    pub fn client_id(&self) -> &str {
        &self.base.client_id
    }
}

impl Producer {
    fn new_impl(config: ProducerConfig, now_ms: u64) -> Self {
        let _ = (config, now_ms);
        todo!()
    }

    fn submit(
        &mut self,
        now_ms: u64,
        messages: Vec<Message>,
        batch: bool,
        target: Target,
        mode: SendMode,
    ) -> SendId {
        let _ = (now_ms, messages, batch, target, mode);
        todo!()
    }

    fn request_route(&mut self, now_ms: u64, topic: &str) {
        let _ = (now_ms, topic);
        todo!()
    }

    fn on_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let _ = (now_ms, addr, command);
        todo!()
    }

    fn on_connection_closed(&mut self, now_ms: u64, addr: &str) {
        let _ = (now_ms, addr);
        todo!()
    }

    fn on_timeout(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    fn on_shutdown(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    fn next_timeout(&self) -> Option<u64> {
        todo!()
    }
}
