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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::base::{ClientBase, RpcTable};
use super::fault::FaultStrategy;
use super::message::Message;
use super::requests::{self, HeartbeatData};
use super::route::{default_topic_route, PublishInfo};
use super::{ClientConfig, ClientError, ClientOutput, MessageQueue};
use crate::message::{encode_batch, keys, BatchEntry, Properties, UniqKeyGenerator};
use crate::namesrv::route::TopicRouteData;
use crate::remoting::codes::response;
use crate::remoting::headers::SendMessageRequestHeader;
use crate::remoting::RemotingCommand;

/// Identifies one send call; echoed by its [`ClientOutput::SendDone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SendId(pub u64);

/// What the application's local transaction (or its checker) decided (RocketMQ's
/// `LocalTransactionState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalTransactionState {
    /// Deliver the message.
    CommitMessage,
    /// Never deliver it.
    RollbackMessage,
    /// Not decided yet: the broker asks again later (RocketMQ's spelling).
    Unknow,
}

impl LocalTransactionState {
    /// The END_TRANSACTION `commitOrRollback` value.
    pub fn sys_flag(self) -> i32 {
        use crate::message::sys_flag;
        match self {
            LocalTransactionState::CommitMessage => sys_flag::TRANSACTION_COMMIT,
            LocalTransactionState::RollbackMessage => sys_flag::TRANSACTION_ROLLBACK,
            LocalTransactionState::Unknow => sys_flag::TRANSACTION_NOT_TYPE,
        }
    }
}

/// A broker's CHECK_TRANSACTION_STATE, as [`ClientOutput::TransactionCheck`] hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionCheck {
    /// The broker that asked; the answer goes there.
    pub broker_addr: String,
    pub tran_state_table_offset: i64,
    pub commit_log_offset: i64,
    pub transaction_id: Option<String>,
    /// The half message, with its real topic and queue.
    pub message: super::MessageExt,
}

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
    Custom(SelectFn),
}

/// An application queue-selection function for [`QueueSelector::Custom`].
pub type SelectFn = Box<dyn Fn(&[MessageQueue]) -> usize + Send>;

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
    /// The header and body, built once; each attempt clones them with its queue id.
    header: SendMessageRequestHeader,
    body: Bytes,
    /// UNIQ_KEY(s), comma-joined.
    msg_id: String,
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
    rpcs: RpcTable<Call>,
    uniq: UniqKeyGenerator,
    /// Topics whose route query is in flight.
    routes_in_flight: BTreeSet<String>,
    next_route_ms: u64,
    next_heartbeat_ms: u64,
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

    /// A request from a broker. CHECK_TRANSACTION_STATE about a message of this producer's
    /// group becomes a [`ClientOutput::TransactionCheck`]; other requests are answered
    /// REQUEST_CODE_NOT_SUPPORTED unless oneway.
    pub fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let _ = now_ms;
        if command.code == crate::remoting::codes::request::CHECK_TRANSACTION_STATE
            && !command.is_response()
        {
            if let Some(check) = self.parse_check(addr, &command) {
                self.outputs
                    .push_back(ClientOutput::TransactionCheck { check });
            }
            return;
        }
        self.base.reject_request(addr, &command, &mut self.outputs);
    }

    /// Sends `message` as a transactional half message (RocketMQ's
    /// `sendMessageInTransaction`, first half): `TRAN_MSG=true` and `PGROUP` are set, a delay
    /// level is dropped (a half message is never delayed). Completes with one
    /// [`ClientOutput::SendDone`]; then run the local transaction and call
    /// [`Producer::end_transaction`] with the result.
    pub fn send_in_transaction(&mut self, now_ms: u64, mut message: Message) -> SendId {
        message.properties.remove(keys::DELAY);
        message.properties.insert(keys::TRAN_MSG, "true");
        message
            .properties
            .insert(keys::PGROUP, self.config.producer_group.clone());
        self.submit(now_ms, vec![message], false, Target::Any, SendMode::Sync)
    }

    /// Ends the transaction of a half message sent with [`Producer::send_in_transaction`]:
    /// END_TRANSACTION, oneway, to the broker that stored it. `remark` may carry why the local
    /// transaction failed. [`LocalTransactionState::Unknow`] leaves the decision to the
    /// broker's check.
    pub fn end_transaction(
        &mut self,
        now_ms: u64,
        sent: &SendResult,
        state: LocalTransactionState,
        remark: Option<String>,
    ) -> Result<(), ClientError> {
        let _ = now_ms;
        let (_, commit_log_offset) = crate::message::decode_offset_msg_id(&sent.offset_msg_id)
            .map_err(|e| ClientError::InvalidMessage(format!("bad offset message id: {e}")))?;
        let addr = self
            .base
            .master_addr(&sent.queue.broker_name)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::NoRoute {
                topic: sent.queue.topic.clone(),
            })?;
        let header = crate::remoting::headers::EndTransactionRequestHeader {
            producer_group: self.config.producer_group.clone(),
            tran_state_table_offset: sent.queue_offset,
            commit_log_offset: commit_log_offset as i64,
            commit_or_rollback: state.sys_flag(),
            from_transaction_check: false,
            msg_id: sent.msg_id.clone(),
            transaction_id: sent.transaction_id.clone(),
            topic: Some(sent.queue.topic.clone()),
        };
        self.rpcs.oneway(
            &mut self.outputs,
            &addr,
            requests::end_transaction(&header, remark),
        );
        Ok(())
    }

    /// Answers a [`ClientOutput::TransactionCheck`]: END_TRANSACTION with
    /// `fromTransactionCheck=true`, oneway, to the broker that asked.
    pub fn answer_check(
        &mut self,
        now_ms: u64,
        check: &TransactionCheck,
        state: LocalTransactionState,
    ) {
        let _ = now_ms;
        let header = crate::remoting::headers::EndTransactionRequestHeader {
            producer_group: self.config.producer_group.clone(),
            tran_state_table_offset: check.tran_state_table_offset,
            commit_log_offset: check.commit_log_offset,
            commit_or_rollback: state.sys_flag(),
            from_transaction_check: true,
            msg_id: check.message.msg_id(),
            transaction_id: check.transaction_id.clone(),
            topic: Some(check.message.topic().to_owned()),
        };
        self.rpcs.oneway(
            &mut self.outputs,
            &check.broker_addr,
            requests::end_transaction(&header, None),
        );
    }

    /// A CHECK_TRANSACTION_STATE about a half message of this producer's group; `None` when
    /// malformed or another group's (as Java, ignored).
    fn parse_check(&self, addr: &str, command: &RemotingCommand) -> Option<TransactionCheck> {
        let header =
            crate::remoting::headers::CheckTransactionStateRequestHeader::parse(command).ok()?;
        let record = crate::message::MessageRecord::decode(&command.body, false).ok()?;
        if record.properties.get(keys::PGROUP) != Some(self.config.producer_group.as_str()) {
            return None;
        }
        let transaction_id = header
            .transaction_id
            .clone()
            .or_else(|| record.properties.get(keys::UNIQ_KEY).map(str::to_owned));
        let broker_name = header.broker_name.clone().unwrap_or_default();
        let queue = MessageQueue::new(record.topic.clone(), broker_name, record.queue_id);
        Some(TransactionCheck {
            broker_addr: addr.to_owned(),
            tran_state_table_offset: header.tran_state_table_offset,
            commit_log_offset: header.commit_log_offset,
            transaction_id,
            message: super::MessageExt {
                queue,
                record,
                served_by: String::new(),
            },
        })
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

/// What a producer request in flight was for.
#[derive(Debug)]
enum Call {
    /// A route query for `topic`; `via_default` when it asked for the default topic's route
    /// after `topic` had none.
    Route {
        topic: String,
        via_default: bool,
    },
    Send {
        id: SendId,
    },
    /// HEART_BEAT or UNREGISTER_CLIENT: the answer changes nothing.
    Fire,
}

/// Response codes after which a send is retried on another broker.
const RETRY_RESPONSE_CODES: [i32; 8] = [
    response::TOPIC_NOT_EXIST,
    response::SERVICE_NOT_AVAILABLE,
    response::SYSTEM_ERROR,
    response::SYSTEM_BUSY,
    response::NO_PERMISSION,
    response::NO_BUYER_ID,
    response::NOT_IN_CURRENT_UNIT,
    response::GO_AWAY,
];

/// Java's first heartbeat comes 1 s after start.
const FIRST_HEARTBEAT_DELAY_MS: u64 = 1_000;

impl Producer {
    fn new_impl(config: ProducerConfig, now_ms: u64) -> Self {
        let mut base = ClientBase::new(config.client.clone());
        let uniq = UniqKeyGenerator::from_rng(config.client.client_ip, &mut base.rng);
        Self {
            fault: FaultStrategy::new(config.send_latency_fault_enable),
            next_route_ms: now_ms + config.client.poll_namesrv_interval_ms,
            next_heartbeat_ms: now_ms + FIRST_HEARTBEAT_DELAY_MS,
            config,
            base,
            rpcs: RpcTable::default(),
            uniq,
            publish: BTreeMap::new(),
            routes_in_flight: BTreeSet::new(),
            sends: BTreeMap::new(),
            waiting_route: BTreeMap::new(),
            next_send_id: 0,
            outputs: VecDeque::new(),
            shut_down: false,
        }
    }

    fn complete(&mut self, id: SendId, result: Result<SendResult, ClientError>) {
        if self.sends.remove(&id).is_some() {
            self.outputs
                .push_back(ClientOutput::SendDone { id, result });
        }
    }

    /// Checks the application's messages (Java's `Validators.checkMessage` and batch rules).
    fn validate(&self, messages: &[Message], batch: bool) -> Result<(), ClientError> {
        let invalid = |text: String| Err(ClientError::InvalidMessage(text));
        let Some(first) = messages.first() else {
            return invalid("the batch is empty".to_owned());
        };
        crate::topic::validate_topic_name(&first.topic).map_err(ClientError::InvalidMessage)?;
        let mut total = 0usize;
        for message in messages {
            if message.topic != first.topic {
                return invalid("the topic of the messages in one batch should be the same".into());
            }
            if message.body.is_empty() {
                return invalid("the message body length is zero".to_owned());
            }
            if batch {
                if message
                    .properties
                    .get(keys::DELAY)
                    .is_some_and(|d| d != "0")
                {
                    return invalid("TimeDelayLevel is not supported for batching".to_owned());
                }
                if message
                    .topic
                    .starts_with(crate::topic::RETRY_GROUP_TOPIC_PREFIX)
                {
                    return invalid("Retry Group is not supported for batching".to_owned());
                }
            }
            total += message.body.len();
        }
        if total > self.config.max_message_size_bytes {
            return invalid(format!(
                "the message body size over max value, MAX: {}",
                self.config.max_message_size_bytes
            ));
        }
        Ok(())
    }

    fn submit(
        &mut self,
        now_ms: u64,
        messages: Vec<Message>,
        batch: bool,
        target: Target,
        mode: SendMode,
    ) -> SendId {
        self.next_send_id += 1;
        let id = SendId(self.next_send_id);
        let failure = if self.shut_down {
            Some(ClientError::ShutDown)
        } else {
            self.validate(&messages, batch).err()
        };
        if let Some(error) = failure {
            self.outputs.push_back(ClientOutput::SendDone {
                id,
                result: Err(error),
            });
            return id;
        }
        let topic = messages[0].topic.clone();
        let mut msg_ids = Vec::with_capacity(messages.len());
        let mut sys_flag = 0;
        let (body, properties, flag) = if batch {
            let mut entries = Vec::with_capacity(messages.len());
            for message in messages {
                let mut properties = message.properties;
                let uniq = match properties.get(keys::UNIQ_KEY) {
                    Some(k) => k.to_owned(),
                    None => self.uniq.next(now_ms),
                };
                properties.insert(keys::UNIQ_KEY, uniq.clone());
                if !properties.contains(keys::WAIT) {
                    properties.insert(keys::WAIT, "true");
                }
                msg_ids.push(uniq);
                entries.push(BatchEntry {
                    flag: message.flag,
                    body: message.body,
                    properties: java_map_order(&properties),
                });
            }
            let body = match encode_batch(&entries) {
                Ok(body) => Bytes::from(body),
                Err(e) => {
                    self.outputs.push_back(ClientOutput::SendDone {
                        id,
                        result: Err(ClientError::InvalidMessage(e.to_string())),
                    });
                    return id;
                }
            };
            let mut properties = Properties::new();
            properties.insert(keys::WAIT, "true");
            (body, properties, 0)
        } else {
            let Some(message) = messages.into_iter().next() else {
                return id;
            };
            let mut properties = message.properties;
            if !properties.contains(keys::UNIQ_KEY) {
                properties.insert(keys::UNIQ_KEY, self.uniq.next(now_ms));
            }
            if !properties.contains(keys::WAIT) {
                properties.insert(keys::WAIT, "true");
            }
            msg_ids.push(
                properties
                    .get(keys::UNIQ_KEY)
                    .unwrap_or_default()
                    .to_owned(),
            );
            if properties
                .get(keys::TRAN_MSG)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                sys_flag |= crate::message::sys_flag::TRANSACTION_PREPARED;
            }
            (message.body, properties, message.flag)
        };
        let properties = java_map_order(&properties);
        let header = SendMessageRequestHeader {
            producer_group: self.config.producer_group.clone(),
            topic: topic.clone(),
            default_topic: self.config.create_topic_key.clone(),
            default_topic_queue_nums: self.config.default_topic_queue_nums,
            queue_id: 0,
            sys_flag,
            born_timestamp_ms: now_ms as i64,
            flag,
            properties: Some(properties.encode()),
            reconsume_times: Some(0),
            unit_mode: false,
            max_reconsume_times: None,
            batch,
            broker_name: None,
        };
        let max_attempts = match (&target, mode) {
            (Target::Any, SendMode::Sync) => 1 + self.config.retry_times_when_send_failed,
            (Target::Any, SendMode::Async) => 1 + self.config.retry_times_when_send_async_failed,
            _ => 1,
        };
        self.sends.insert(
            id,
            PendingSend {
                mode,
                target,
                topic: topic.clone(),
                header,
                body,
                msg_id: msg_ids.join(","),
                deadline_ms: now_ms + self.config.send_msg_timeout_ms,
                attempts: 0,
                max_attempts,
                last_broker: None,
                in_flight: None,
                last_error: None,
            },
        );
        if self
            .publish
            .get(&topic)
            .is_some_and(|p| !p.queues.is_empty())
        {
            self.attempt(now_ms, id);
        } else {
            self.waiting_route
                .entry(topic.clone())
                .or_default()
                .push_back(id);
            self.request_route(now_ms, &topic);
        }
        id
    }

    /// Makes the next attempt of send `id`, or completes it when none is left.
    fn attempt(&mut self, now_ms: u64, id: SendId) {
        loop {
            let Some(send) = self.sends.get_mut(&id) else {
                return;
            };
            if send.attempts >= send.max_attempts {
                let error = send.last_error.clone().unwrap_or(ClientError::NoRoute {
                    topic: send.topic.clone(),
                });
                self.complete(id, Err(error));
                return;
            }
            if now_ms >= send.deadline_ms {
                let timeout_ms = self.config.send_msg_timeout_ms;
                self.complete(id, Err(ClientError::Timeout { timeout_ms }));
                return;
            }
            let topic = send.topic.clone();
            let Some(info) = self
                .publish
                .get_mut(&topic)
                .filter(|p| !p.queues.is_empty())
            else {
                self.complete(id, Err(ClientError::NoRoute { topic }));
                return;
            };
            let queue = match &send.target {
                Target::Any => self.fault.select(now_ms, info, send.last_broker.as_deref()),
                Target::Queue(queue) => Some(queue.clone()),
                Target::Selector(selector) => {
                    let index = selector.select(&info.queues);
                    info.queues.get(index).cloned()
                }
            };
            let Some(queue) = queue else {
                self.complete(id, Err(ClientError::NoRoute { topic }));
                return;
            };
            send.attempts += 1;
            send.last_broker = Some(queue.broker_name.clone());
            let Some(addr) = self.base.master_addr(&queue.broker_name).map(str::to_owned) else {
                send.last_error = Some(ClientError::Broker {
                    code: response::SYSTEM_ERROR,
                    remark: format!("The broker[{}] not exist", queue.broker_name),
                });
                continue;
            };
            let mut header = send.header.clone();
            header.queue_id = queue.queue_id;
            let command = requests::send_message(&header, send.body.clone());
            if send.mode == SendMode::Oneway {
                self.rpcs.oneway(&mut self.outputs, &addr, command);
                let result = SendResult {
                    status: SendStatus::SendOk,
                    msg_id: send.msg_id.clone(),
                    offset_msg_id: String::new(),
                    queue,
                    queue_offset: -1,
                    transaction_id: None,
                    region_id: None,
                    trace_on: false,
                };
                self.complete(id, Ok(result));
                return;
            }
            let deadline_ms = send.deadline_ms;
            let opaque = self.rpcs.call(
                &mut self.outputs,
                &addr,
                command,
                deadline_ms,
                Call::Send { id },
            );
            send.in_flight = Some((opaque, queue, now_ms));
            return;
        }
    }

    /// An attempt of send `id` failed with `error`: retry while allowed.
    fn attempt_failed(&mut self, now_ms: u64, id: SendId, error: ClientError, retry: bool) {
        let Some(send) = self.sends.get_mut(&id) else {
            return;
        };
        if let Some((_, queue, started_ms)) = send.in_flight.take() {
            self.fault
                .update(now_ms, &queue.broker_name, now_ms - started_ms, true);
        }
        send.last_error = Some(error.clone());
        if retry {
            self.attempt(now_ms, id);
        } else {
            self.complete(id, Err(error));
        }
    }

    fn on_send_response(&mut self, now_ms: u64, id: SendId, command: RemotingCommand) {
        let Some(send) = self.sends.get_mut(&id) else {
            return;
        };
        let Some((_, queue, started_ms)) = send.in_flight.take() else {
            return;
        };
        let status = match command.code {
            response::SUCCESS => Some(SendStatus::SendOk),
            response::FLUSH_DISK_TIMEOUT => Some(SendStatus::FlushDiskTimeout),
            response::FLUSH_SLAVE_TIMEOUT => Some(SendStatus::FlushSlaveTimeout),
            response::SLAVE_NOT_AVAILABLE => Some(SendStatus::SlaveNotAvailable),
            _ => None,
        };
        let Some(status) = status else {
            self.fault
                .update(now_ms, &queue.broker_name, now_ms - started_ms, true);
            let error = ClientError::Broker {
                code: command.code,
                remark: command.remark.clone().unwrap_or_default(),
            };
            send.last_error = Some(error.clone());
            if RETRY_RESPONSE_CODES.contains(&command.code) {
                self.attempt(now_ms, id);
            } else {
                self.complete(id, Err(error));
            }
            return;
        };
        self.fault
            .update(now_ms, &queue.broker_name, now_ms - started_ms, false);
        let parsed = (|| -> Result<SendResult, crate::remoting::HeaderError> {
            Ok(SendResult {
                status,
                msg_id: send.msg_id.clone(),
                offset_msg_id: command.ext_str("msgId")?.to_owned(),
                queue: MessageQueue::new(
                    queue.topic.clone(),
                    queue.broker_name.clone(),
                    command.ext_num("queueId")?,
                ),
                queue_offset: command.ext_num("queueOffset")?,
                transaction_id: command.ext("transactionId").map(str::to_owned),
                region_id: command.ext(keys::MSG_REGION).map(str::to_owned),
                trace_on: command.ext_bool(keys::TRACE_ON).unwrap_or(false),
            })
        })();
        match parsed {
            Ok(result) => {
                if status != SendStatus::SendOk
                    && self.config.retry_another_broker_when_not_store_ok
                    && send.attempts < send.max_attempts
                {
                    self.attempt(now_ms, id);
                } else {
                    self.complete(id, Ok(result));
                }
            }
            Err(e) => self.complete(id, Err(ClientError::MalformedResponse(e.to_string()))),
        }
    }

    fn request_route(&mut self, now_ms: u64, topic: &str) {
        self.request_route_of(now_ms, topic, false);
    }

    fn request_route_of(&mut self, now_ms: u64, topic: &str, via_default: bool) {
        if self.routes_in_flight.contains(topic) {
            return;
        }
        let Some(addr) = self.base.namesrv().map(str::to_owned) else {
            self.route_failed(topic);
            return;
        };
        let asked = if via_default {
            self.config.create_topic_key.clone()
        } else {
            topic.to_owned()
        };
        self.routes_in_flight.insert(topic.to_owned());
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            requests::get_route_info(&asked),
            now_ms + self.config.client.request_timeout_ms,
            Call::Route {
                topic: topic.to_owned(),
                via_default,
            },
        );
    }

    /// No route for `topic` could be had: its waiting sends fail.
    fn route_failed(&mut self, topic: &str) {
        for id in self.waiting_route.remove(topic).unwrap_or_default() {
            self.complete(
                id,
                Err(ClientError::NoRoute {
                    topic: topic.to_owned(),
                }),
            );
        }
    }

    fn on_route_response(
        &mut self,
        now_ms: u64,
        topic: String,
        via_default: bool,
        command: RemotingCommand,
    ) {
        self.routes_in_flight.remove(&topic);
        if command.code == response::TOPIC_NOT_EXIST && !via_default {
            if self.waiting_route.contains_key(&topic) {
                self.request_route_of(now_ms, &topic, true);
            }
            return;
        }
        let route = if command.code == response::SUCCESS {
            TopicRouteData::parse(&command.body).ok()
        } else {
            None
        };
        let Some(route) = route else {
            self.route_failed(&topic);
            return;
        };
        let route = if via_default {
            default_topic_route(&route, self.config.default_topic_queue_nums)
        } else {
            route
        };
        let start = self.base.rng.next_u64() as u32;
        let mut info = PublishInfo::from_route(&topic, &route, start);
        if let Some(old) = self.publish.get(&topic) {
            info.inherit_counter(old);
        }
        // A route learnt through the default topic is not the topic's own: the next periodic
        // refresh asks again and replaces it once the broker has created the topic.
        self.base.store_route(&topic, route);
        self.publish.insert(topic.clone(), info);
        for id in self.waiting_route.remove(&topic).unwrap_or_default() {
            self.attempt(now_ms, id);
        }
    }

    fn on_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let Some(rpc) = self.rpcs.take(addr, command.opaque) else {
            return;
        };
        match rpc.kind {
            Call::Route { topic, via_default } => {
                self.on_route_response(now_ms, topic, via_default, command)
            }
            Call::Send { id } => self.on_send_response(now_ms, id, command),
            Call::Fire => {}
        }
    }

    /// A request failed without an answer (timeout or connection loss).
    fn rpc_failed(&mut self, now_ms: u64, kind: Call, addr: &str, error: ClientError) {
        match kind {
            Call::Route { topic, .. } => {
                self.routes_in_flight.remove(&topic);
                self.base.namesrv_failed(addr);
                self.route_failed(&topic);
            }
            Call::Send { id } => {
                let retry = !matches!(error, ClientError::Timeout { .. });
                self.attempt_failed(now_ms, id, error, retry);
            }
            Call::Fire => {}
        }
    }

    fn on_connection_closed(&mut self, now_ms: u64, addr: &str) {
        for (_, rpc) in self.rpcs.take_for_addr(addr) {
            let error = ClientError::ConnectionClosed {
                addr: addr.to_owned(),
            };
            self.rpc_failed(now_ms, rpc.kind, addr, error);
        }
    }

    fn on_timeout(&mut self, now_ms: u64) {
        let timeout_ms = self.config.send_msg_timeout_ms;
        for (_, rpc) in self.rpcs.take_expired(now_ms) {
            let error = ClientError::Timeout {
                timeout_ms: match rpc.kind {
                    Call::Send { .. } => timeout_ms,
                    _ => self.config.client.request_timeout_ms,
                },
            };
            let addr = rpc.addr.clone();
            self.rpc_failed(now_ms, rpc.kind, &addr, error);
        }
        // Sends still waiting for a route when their budget ends.
        let expired: Vec<SendId> = self
            .sends
            .iter()
            .filter(|(_, s)| s.in_flight.is_none() && s.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            for queue in self.waiting_route.values_mut() {
                queue.retain(|w| *w != id);
            }
            self.complete(id, Err(ClientError::Timeout { timeout_ms }));
        }
        self.waiting_route.retain(|_, q| !q.is_empty());
        if self.shut_down {
            return;
        }
        if now_ms >= self.next_route_ms {
            let topics: Vec<String> = self.publish.keys().cloned().collect();
            for topic in topics {
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

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.base.client_id.clone(),
            producer_groups: vec![
                self.config.producer_group.clone(),
                requests::CLIENT_INNER_PRODUCER_GROUP.to_owned(),
            ],
            consumers: Vec::new(),
        }
    }

    /// HEART_BEAT to every known master.
    fn send_heartbeats(&mut self, now_ms: u64) {
        let command = requests::heartbeat(&self.heartbeat_data());
        for addr in self.base.master_addrs() {
            self.rpcs.call(
                &mut self.outputs,
                &addr,
                command.clone(),
                now_ms + self.config.client.request_timeout_ms,
                Call::Fire,
            );
        }
    }

    fn on_shutdown(&mut self, now_ms: u64) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        let ids: Vec<SendId> = self.sends.keys().copied().collect();
        for id in ids {
            self.complete(id, Err(ClientError::ShutDown));
        }
        self.waiting_route.clear();
        self.rpcs.take_all();
        let command = requests::unregister_client(
            &self.base.client_id,
            Some(&self.config.producer_group),
            None,
        );
        for addr in self.base.master_addrs() {
            self.rpcs.call(
                &mut self.outputs,
                &addr,
                command.clone(),
                now_ms + self.config.client.request_timeout_ms,
                Call::Fire,
            );
        }
    }

    fn next_timeout(&self) -> Option<u64> {
        let mut next = self.rpcs.earliest_deadline_ms();
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for send in self.sends.values() {
            if send.in_flight.is_none() {
                consider(send.deadline_ms);
            }
        }
        if !self.shut_down {
            if !self.publish.is_empty() {
                consider(self.next_route_ms);
            }
            if !self.base.broker_addrs.is_empty() {
                consider(self.next_heartbeat_ms);
            }
        }
        next
    }
}

/// `properties` in the iteration order of the Java `HashMap` a Java client keeps them in, so
/// the property string matches Java's byte for byte.
pub(crate) fn java_map_order(properties: &Properties) -> Properties {
    let pairs: Vec<(&str, &str)> = properties.iter().collect();
    requests::java_hash_set_order(pairs, |(name, _)| java_string_hash(name))
        .into_iter()
        .collect()
}
