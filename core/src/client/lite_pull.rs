//! The lite pull consumer state machine (RocketMQ's `DefaultLitePullConsumer`).
//!
//! Queues come from [`PullConsumer::assign`] (fixed) or [`PullConsumer::subscribe`]
//! (rebalanced like a push consumer). Each queue is pulled in the background with
//! LITE_PULL_MESSAGE (361, subscription in every request) into a local buffer of at most
//! `pull_threshold_for_queue` messages; [`PullConsumer::poll`] takes messages out and advances
//! the consumed offsets, which [`PullConsumer::commit`] (or auto-commit every
//! `auto_commit_interval_ms`) sends with UPDATE_CONSUMER_OFFSET.

use std::collections::BTreeMap;

use super::allocate::AllocateStrategy;
use super::engine::{Engine, EngineConfig};
use super::message::MessageExt;
use super::requests::{ConsumeFromWhere, MessageModel};
use super::{ClientConfig, ClientError, ClientOutput, MessageQueue};
use crate::remoting::RemotingCommand;

/// Lite pull consumer settings (RocketMQ's `DefaultLitePullConsumer` defaults).
#[derive(Clone, Debug)]
pub struct PullConsumerConfig {
    pub client: ClientConfig,
    pub consumer_group: String,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    /// For [`ConsumeFromWhere::Timestamp`]; `None` means 30 minutes before creation.
    pub consume_timestamp_ms: Option<u64>,
    pub allocate_strategy: AllocateStrategy,
    /// Messages asked per pull (`pullBatchSize`).
    pub pull_batch_size: i32,
    /// Buffered messages per queue before pulling pauses (`pullThresholdForQueue`).
    pub pull_threshold_for_queue: usize,
    pub flow_control_delay_ms: u64,
    pub pull_delay_on_exception_ms: u64,
    /// The broker may hold a pull this long.
    pub broker_suspend_max_time_ms: u64,
    pub pull_timeout_ms: u64,
    /// Commit consumed offsets automatically (`autoCommit`).
    pub auto_commit: bool,
    pub auto_commit_interval_ms: u64,
    pub rebalance_interval_ms: u64,
}

impl Default for PullConsumerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            consumer_group: "DEFAULT_CONSUMER".to_owned(),
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            consume_timestamp_ms: None,
            allocate_strategy: AllocateStrategy::Averagely,
            pull_batch_size: 10,
            pull_threshold_for_queue: 1_000,
            flow_control_delay_ms: 50,
            pull_delay_on_exception_ms: 1_000,
            broker_suspend_max_time_ms: 20_000,
            pull_timeout_ms: 30_000,
            auto_commit: true,
            auto_commit_interval_ms: 5_000,
            rebalance_interval_ms: 20_000,
        }
    }
}

/// The lite pull consumer state machine.
pub struct PullConsumer {
    engine: Engine,
}

impl PullConsumer {
    /// A consumer that does nothing until [`PullConsumer::start`].
    pub fn new(config: PullConsumerConfig, now_ms: u64) -> Self {
        let engine = Engine::new(EngineConfig::from_lite(&config), now_ms);
        Self { engine }
    }

    /// Subscribes `topic` (rebalanced within the group). Not combinable with `assign`.
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

    /// Pulls exactly `queues` (no rebalance). Replaces an earlier assignment.
    pub fn assign(&mut self, now_ms: u64, queues: Vec<MessageQueue>) {
        self.engine.assign(now_ms, queues)
    }

    /// Moves `queue`'s position to `offset`, dropping what is buffered.
    pub fn seek(&mut self, now_ms: u64, queue: &MessageQueue, offset: i64) {
        self.engine.seek(now_ms, queue, offset)
    }

    /// Stops pulling `queues` until resumed (buffered messages can still be polled).
    pub fn pause(&mut self, queues: &[MessageQueue]) {
        self.engine.pause(queues, true)
    }

    pub fn resume(&mut self, now_ms: u64, queues: &[MessageQueue]) {
        let _ = now_ms;
        self.engine.pause(queues, false)
    }

    /// Broadcasting only: offsets persisted by the driver in an earlier run.
    pub fn load_local_offsets(&mut self, offsets: BTreeMap<MessageQueue, i64>) {
        self.engine.load_local_offsets(offsets)
    }

    pub fn start(&mut self, now_ms: u64) {
        self.engine.start(now_ms)
    }

    /// Takes up to `max` buffered messages (queue by queue in queue order, offsets ascending).
    /// Taken messages count as consumed: the consumed offset of their queue moves past them.
    /// Empty when nothing is buffered; [`ClientOutput::MessagesAvailable`] says when to call
    /// again.
    pub fn poll(&mut self, now_ms: u64, max: usize) -> Vec<MessageExt> {
        self.engine.take_buffered(now_ms, max)
    }

    /// Sends every consumed offset that changed since the last commit (UPDATE_CONSUMER_OFFSET).
    pub fn commit(&mut self, now_ms: u64) {
        self.engine.persist_offsets(now_ms, false)
    }

    /// The consumed offset of `queue` (next offset `poll` will return).
    pub fn committed_offset(&self, queue: &MessageQueue) -> Option<i64> {
        self.engine.offsets.get(queue).copied()
    }

    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        self.engine.assigned_queues()
    }

    pub fn handle_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        self.engine.handle_response(now_ms, addr, command)
    }

    pub fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        self.engine.handle_request(now_ms, addr, command)
    }

    pub fn handle_connection_closed(&mut self, now_ms: u64, addr: &str) {
        self.engine.handle_connection_closed(now_ms, addr)
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.engine.handle_timeout(now_ms)
    }

    /// Commits offsets and unregisters from every broker.
    pub fn shutdown(&mut self, now_ms: u64) {
        self.engine.shutdown(now_ms)
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.engine.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.engine.poll_timeout()
    }

    pub fn client_id(&self) -> &str {
        &self.engine.base.client_id
    }
}
