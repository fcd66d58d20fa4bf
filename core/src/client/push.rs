//! The push consumer state machine (RocketMQ's `DefaultMQPushConsumerImpl` with a concurrent
//! listener).
//!
//! Life of a queue:
//!
//! ```text
//! rebalance assigns it ──► QUERY_CONSUMER_OFFSET ──► (not found) GET_MAX_OFFSET / 0 /
//!                                   │                 SEARCH_OFFSET_BY_TIMESTAMP
//!                                   ▼
//!         ┌──────────── PULL_MESSAGE (long poll) ◄──────────────┐
//!         │ FOUND: decode, filter tags, into the process queue, │
//!         │        Consume outputs to the application           │
//!         │ NO_NEW_MSG / NO_MATCHED_MSG: pull again at next     │
//!         │ OFFSET_MOVED: commit nextBeginOffset, drop queue    │
//!         │ process queue full: retry after 50 ms ──────────────┘
//!         ▼
//! consume results ──► committed offset = smallest offset still in the process queue
//!                     (RECONSUME_LATER: CONSUMER_SEND_MSG_BACK, or a re-send to %RETRY%group)
//! ```
//!
//! Offsets go to the broker with UPDATE_CONSUMER_OFFSET every `persist_offset_interval_ms`, on
//! rebalance loss and at shutdown (clustering), or stay local (broadcasting; reported through
//! [`ClientOutput::PersistLocalOffsets`]).
//!
//! With [`PushConsumerConfig::orderly`] set the consumer is orderly (RocketMQ's
//! `MessageListenerOrderly`): queues are locked on the broker before they are pulled, each
//! queue's messages go to the application one batch at a time in queue order, and batches are
//! answered with [`PushConsumer::handle_consume_orderly_result`] ([`super::orderly`]).

use std::collections::BTreeMap;

use super::allocate::AllocateStrategy;
use super::engine::{Engine, EngineConfig};
use super::orderly::{ConsumeOrderlyStatus, OrderlyConfig, OrderlyState};
use super::requests::{ConsumeFromWhere, MessageModel};
use super::{ClientConfig, ClientError, ClientOutput, MessageQueue};
use crate::remoting::RemotingCommand;

/// Identifies one [`ClientOutput::Consume`] batch; the application answers it once with
/// [`PushConsumer::handle_consume_result`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumeToken(pub u64);

/// A concurrent listener's verdict on a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeStatus {
    /// Every message of the batch is done.
    ConsumeSuccess,
    /// Retry every message of the batch later (sent back with `delay_level_when_next_consume`).
    ReconsumeLater,
}

/// Push consumer settings (RocketMQ's `DefaultMQPushConsumer` defaults).
#[derive(Clone, Debug)]
pub struct PushConsumerConfig {
    pub client: ClientConfig,
    pub consumer_group: String,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    /// For [`ConsumeFromWhere::Timestamp`]; `None` means 30 minutes before the consumer was
    /// created (Java's default).
    pub consume_timestamp_ms: Option<u64>,
    pub allocate_strategy: AllocateStrategy,
    /// Messages asked per pull (`pullBatchSize`).
    pub pull_batch_size: i32,
    /// Most messages in one [`ClientOutput::Consume`] (`consumeMessageBatchMaxSize`).
    pub consume_message_batch_max_size: usize,
    /// Pause pulling a queue holding this many unconsumed messages (`pullThresholdForQueue`).
    pub pull_threshold_for_queue: usize,
    /// … or this many body bytes (`pullThresholdSizeForQueue`, 100 MiB).
    pub pull_threshold_size_for_queue_bytes: usize,
    /// How long a paused queue waits before checking again (`PULL_TIME_DELAY_MILLS_WHEN_FLOW_CONTROL`).
    pub flow_control_delay_ms: u64,
    /// How long a queue waits after a failed pull (`pullTimeDelayMillsWhenException`).
    pub pull_delay_on_exception_ms: u64,
    /// The broker may hold a pull this long (`brokerSuspendMaxTimeMillis`).
    pub broker_suspend_max_time_ms: u64,
    /// RPC timeout of a long-polling pull (`consumerTimeoutMillisWhenSuspend`).
    pub pull_timeout_ms: u64,
    /// Rebalance period (`rocketmq.client.rebalance.waitInterval`).
    pub rebalance_interval_ms: u64,
    /// Offset commit period (`persistConsumerOffsetInterval`).
    pub persist_offset_interval_ms: u64,
    /// Retries before the broker moves a message to the DLQ (`maxReconsumeTimes`, Java -1 =
    /// 16).
    pub max_reconsume_times: i32,
    /// Delay level of a send-back (`delayLevelWhenNextConsume`: 0 = the broker decides).
    pub delay_level_when_next_consume: i32,
    /// Send the subscription with every pull (`postSubscriptionWhenPull`).
    pub post_subscription_when_pull: bool,
    /// `Some`: an orderly consumer (queue locks, one batch per queue at a time); `None`: a
    /// concurrent one.
    pub orderly: Option<OrderlyConfig>,
}

impl Default for PushConsumerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            consumer_group: "DEFAULT_CONSUMER".to_owned(),
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            consume_timestamp_ms: None,
            allocate_strategy: AllocateStrategy::Averagely,
            pull_batch_size: 32,
            consume_message_batch_max_size: 1,
            pull_threshold_for_queue: 1_000,
            pull_threshold_size_for_queue_bytes: 100 * 1024 * 1024,
            flow_control_delay_ms: 50,
            pull_delay_on_exception_ms: 1_000,
            broker_suspend_max_time_ms: 15_000,
            pull_timeout_ms: 30_000,
            rebalance_interval_ms: 20_000,
            persist_offset_interval_ms: 5_000,
            max_reconsume_times: 16,
            delay_level_when_next_consume: 0,
            post_subscription_when_pull: false,
            orderly: None,
        }
    }
}

/// The push consumer state machine.
pub struct PushConsumer {
    engine: Engine,
}

impl PushConsumer {
    /// A consumer that does nothing until [`PushConsumer::start`]; subscribe first.
    pub fn new(config: PushConsumerConfig, now_ms: u64) -> Self {
        let mut engine = Engine::new(EngineConfig::from_push(&config), now_ms);
        let clustering = config.message_model == MessageModel::Clustering;
        engine.orderly = config
            .orderly
            .map(|orderly| OrderlyState::new(orderly, clustering, now_ms));
        Self { engine }
    }

    /// Subscribes `topic` with a TAG expression (`*` or `tagA || tagB`). In clustering mode
    /// the group's retry topic `%RETRY%<group>` is subscribed with `*` automatically at
    /// start. Subscribing again replaces the expression (a new `subVersion`).
    pub fn subscribe(
        &mut self,
        now_ms: u64,
        topic: &str,
        expression: &str,
    ) -> Result<(), ClientError> {
        self.engine.subscribe(now_ms, topic, expression)
    }

    /// Subscribes `topic` with an SQL92 property selector (e.g. `a BETWEEN 3 AND 5 AND
    /// color = 'red'`), evaluated by brokers with `enablePropertyFilter=true`. Fails with
    /// [`ClientError::InvalidSubscription`] when the expression does not compile. Subscribing
    /// again replaces the topic's selector.
    pub fn subscribe_sql(
        &mut self,
        now_ms: u64,
        topic: &str,
        expression: &str,
    ) -> Result<(), ClientError> {
        self.engine.subscribe_sql(now_ms, topic, expression)
    }

    /// Drops the subscription of `topic` (its queues are released at the next rebalance).
    pub fn unsubscribe(&mut self, now_ms: u64, topic: &str) {
        self.engine.unsubscribe(now_ms, topic)
    }

    /// Broadcasting only: offsets the driver persisted from [`ClientOutput::PersistLocalOffsets`]
    /// in an earlier run. Call before `start`.
    pub fn load_local_offsets(&mut self, offsets: BTreeMap<MessageQueue, i64>) {
        self.engine.load_local_offsets(offsets)
    }

    /// Starts: route queries, a heartbeat and a rebalance go out at once.
    pub fn start(&mut self, now_ms: u64) {
        self.engine.start(now_ms)
    }

    /// The application's verdict on a [`ClientOutput::Consume`] batch. Unknown or repeated
    /// tokens are ignored. On an orderly consumer `ConsumeSuccess` means
    /// [`ConsumeOrderlyStatus::Success`] and `ReconsumeLater` means
    /// [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`].
    pub fn handle_consume_result(
        &mut self,
        now_ms: u64,
        token: ConsumeToken,
        status: ConsumeStatus,
    ) {
        if self.engine.orderly.is_some() {
            let status = match status {
                ConsumeStatus::ConsumeSuccess => ConsumeOrderlyStatus::Success,
                ConsumeStatus::ReconsumeLater => ConsumeOrderlyStatus::SuspendCurrentQueueAMoment,
            };
            self.handle_consume_orderly_result(now_ms, token, status, None);
        } else {
            self.engine.consume_result(now_ms, token, status)
        }
    }

    /// An orderly consumer's verdict on a [`ClientOutput::Consume`] batch.
    /// `suspend_time_ms` overrides [`OrderlyConfig::suspend_current_queue_time_ms`] for this
    /// batch (the listener context's `suspendCurrentQueueTimeMillis`). Unknown or repeated
    /// tokens are ignored; on a concurrent consumer `Success` means `ConsumeSuccess` and a
    /// suspend means `ReconsumeLater`.
    pub fn handle_consume_orderly_result(
        &mut self,
        now_ms: u64,
        token: ConsumeToken,
        status: ConsumeOrderlyStatus,
        suspend_time_ms: Option<u64>,
    ) {
        if self.engine.orderly.is_none() {
            let status = match status {
                ConsumeOrderlyStatus::Success => ConsumeStatus::ConsumeSuccess,
                ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => ConsumeStatus::ReconsumeLater,
            };
            self.engine.consume_result(now_ms, token, status);
            return;
        }
        self.engine
            .orderly_consume_result(now_ms, token, status, suspend_time_ms)
    }

    /// Whether this consumer is orderly ([`PushConsumerConfig::orderly`]).
    pub fn is_orderly(&self) -> bool {
        self.engine.orderly.is_some()
    }

    /// Orderly consumers: the owned queues whose broker lock this consumer holds, sorted
    /// (every owned queue when broadcasting). Empty for a concurrent consumer.
    pub fn locked_queues(&self) -> Vec<MessageQueue> {
        self.engine.orderly_locked_queues()
    }

    /// A response to a request this consumer sent to `addr`.
    pub fn handle_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        self.engine.handle_response(now_ms, addr, command)
    }

    /// A request from a broker: NOTIFY_CONSUMER_IDS_CHANGED triggers a rebalance; others are
    /// answered REQUEST_CODE_NOT_SUPPORTED unless oneway.
    pub fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        self.engine.handle_request(now_ms, addr, command)
    }

    /// The connection to `addr` failed or closed: requests in flight to it fail (pulls are
    /// retried after `pull_delay_on_exception_ms`).
    pub fn handle_connection_closed(&mut self, now_ms: u64, addr: &str) {
        self.engine.handle_connection_closed(now_ms, addr)
    }

    /// Runs timers: pulls, request timeouts, route refresh, heartbeat, rebalance, offset commit.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.engine.handle_timeout(now_ms)
    }

    /// Commits offsets (UPDATE_CONSUMER_OFFSET, oneway) and unregisters from every broker
    /// (UNREGISTER_CLIENT). Batches still with the application are not committed. An orderly
    /// consumer first unlocks its queues (UNLOCK_BATCH_MQ).
    pub fn shutdown(&mut self, now_ms: u64) {
        self.engine.orderly_shutdown(now_ms);
        self.engine.shutdown(now_ms)
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.engine.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.engine.poll_timeout()
    }

    /// The queues this consumer currently owns, sorted.
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        self.engine.assigned_queues()
    }

    /// The in-memory committed offset of `queue` (next offset to consume).
    pub fn committed_offset(&self, queue: &MessageQueue) -> Option<i64> {
        self.engine.offsets.get(queue).copied()
    }

    /// Messages pulled but not yet consumed successfully, over all queues.
    pub fn cached_message_count(&self) -> usize {
        self.engine.cached_message_count()
    }

    pub fn client_id(&self) -> &str {
        &self.engine.base.client_id
    }

    /// Switches the allocation strategy; the next periodic rebalance (or a
    /// NOTIFY_CONSUMER_IDS_CHANGED) applies it.
    pub fn set_allocate_strategy(&mut self, strategy: AllocateStrategy) {
        self.engine.config.allocate_strategy = strategy;
    }
}
