//! The consumer engine shared by [`PushConsumer`](super::PushConsumer) and
//! [`PullConsumer`](super::PullConsumer): routes, heartbeats, rebalance, start offsets, the
//! long-poll pull loop, process queues, offset commits and send-back.

use std::collections::{BTreeMap, VecDeque};

use super::allocate::AllocateStrategy;
use super::base::{ClientBase, RpcTable};
use super::lite_pull::PullConsumerConfig;
use super::message::MessageExt;
use super::push::{ConsumeStatus, ConsumeToken, PushConsumerConfig};
use super::requests::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};
use super::{ClientConfig, ClientError, ClientOutput, MessageQueue};
use crate::remoting::RemotingCommand;

/// What the two consumers share, taken from their configs.
#[derive(Clone, Debug)]
pub(super) struct EngineConfig {
    pub client: ClientConfig,
    pub group: String,
    /// Lite pull: LITE_PULL_MESSAGE with the subscription, messages buffered for `poll`.
    pub lite: bool,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub consume_timestamp_ms: Option<u64>,
    pub allocate_strategy: AllocateStrategy,
    pub pull_batch_size: i32,
    pub consume_message_batch_max_size: usize,
    pub pull_threshold_for_queue: usize,
    pub pull_threshold_size_for_queue_bytes: usize,
    pub flow_control_delay_ms: u64,
    pub pull_delay_on_exception_ms: u64,
    pub broker_suspend_max_time_ms: u64,
    pub pull_timeout_ms: u64,
    pub rebalance_interval_ms: u64,
    /// Offset commit period; `None` disables periodic commits (lite pull without auto-commit).
    pub persist_offset_interval_ms: Option<u64>,
    pub max_reconsume_times: i32,
    pub delay_level_when_next_consume: i32,
    pub post_subscription_when_pull: bool,
}

impl EngineConfig {
    pub fn from_push(c: &PushConsumerConfig) -> Self {
        Self {
            client: c.client.clone(),
            group: c.consumer_group.clone(),
            lite: false,
            message_model: c.message_model,
            consume_from_where: c.consume_from_where,
            consume_timestamp_ms: c.consume_timestamp_ms,
            allocate_strategy: c.allocate_strategy.clone(),
            pull_batch_size: c.pull_batch_size,
            consume_message_batch_max_size: c.consume_message_batch_max_size.max(1),
            pull_threshold_for_queue: c.pull_threshold_for_queue,
            pull_threshold_size_for_queue_bytes: c.pull_threshold_size_for_queue_bytes,
            flow_control_delay_ms: c.flow_control_delay_ms,
            pull_delay_on_exception_ms: c.pull_delay_on_exception_ms,
            broker_suspend_max_time_ms: c.broker_suspend_max_time_ms,
            pull_timeout_ms: c.pull_timeout_ms,
            rebalance_interval_ms: c.rebalance_interval_ms,
            persist_offset_interval_ms: Some(c.persist_offset_interval_ms),
            max_reconsume_times: c.max_reconsume_times,
            delay_level_when_next_consume: c.delay_level_when_next_consume,
            post_subscription_when_pull: c.post_subscription_when_pull,
        }
    }

    pub fn from_lite(c: &PullConsumerConfig) -> Self {
        Self {
            client: c.client.clone(),
            group: c.consumer_group.clone(),
            lite: true,
            message_model: c.message_model,
            consume_from_where: c.consume_from_where,
            consume_timestamp_ms: c.consume_timestamp_ms,
            allocate_strategy: c.allocate_strategy.clone(),
            pull_batch_size: c.pull_batch_size,
            consume_message_batch_max_size: 1,
            pull_threshold_for_queue: c.pull_threshold_for_queue,
            pull_threshold_size_for_queue_bytes: usize::MAX,
            flow_control_delay_ms: c.flow_control_delay_ms,
            pull_delay_on_exception_ms: c.pull_delay_on_exception_ms,
            broker_suspend_max_time_ms: c.broker_suspend_max_time_ms,
            pull_timeout_ms: c.pull_timeout_ms,
            rebalance_interval_ms: c.rebalance_interval_ms,
            persist_offset_interval_ms: c.auto_commit.then_some(c.auto_commit_interval_ms),
            max_reconsume_times: 16,
            delay_level_when_next_consume: 0,
            post_subscription_when_pull: true,
        }
    }

    fn consume_type(&self) -> ConsumeType {
        if self.lite {
            ConsumeType::Actively
        } else {
            ConsumeType::Passively
        }
    }
}

/// What a request in flight was for.
#[derive(Debug)]
enum Call {
    Route { topic: String },
    Heartbeat,
    ConsumerList { topic: String },
    QueryOffset { queue: MessageQueue, epoch: u64 },
    MaxOffset { queue: MessageQueue, epoch: u64 },
    SearchOffset { queue: MessageQueue, epoch: u64 },
    Pull { queue: MessageQueue, epoch: u64 },
    SendBack { message: Box<MessageExt> },
    RetrySend,
    Unregister,
}

/// The local state of one owned queue (Java's `ProcessQueue` and `PullRequest`).
#[derive(Debug)]
struct ProcessQueue {
    /// Unique per assignment, so answers for an earlier assignment are recognised.
    epoch: u64,
    /// Next offset to pull; `None` until the start offset is known.
    next_offset: Option<i64>,
    /// Unconsumed messages by queue offset.
    msgs: BTreeMap<i64, MessageExt>,
    msg_bytes: usize,
    /// Offsets not yet handed to the application (push) or polled (lite), ascending.
    to_deliver: VecDeque<i64>,
    /// One past the highest offset ever put in `msgs`: the commit point once `msgs` drains.
    queue_offset_max: i64,
    pull_in_flight: bool,
    /// A pull is due at this instant.
    pull_at_ms: Option<u64>,
    paused: bool,
}

pub(super) struct Engine {
    pub config: EngineConfig,
    pub base: ClientBase,
    rpcs: RpcTable<Call>,
    /// topic → subscription.
    subscriptions: BTreeMap<String, SubscriptionData>,
    /// Lite pull `assign`: fixed queues instead of rebalancing.
    assigned: Option<Vec<MessageQueue>>,
    /// topic → readable queues from the latest route.
    topic_queues: BTreeMap<String, Vec<MessageQueue>>,
    process_queues: BTreeMap<MessageQueue, ProcessQueue>,
    /// Committed (consumed) offsets: the next offset to consume per queue.
    pub offsets: BTreeMap<MessageQueue, i64>,
    /// Offsets changed since the last commit.
    dirty_offsets: std::collections::BTreeSet<MessageQueue>,
    /// Push batches with the application: token → (queue, epoch, offsets).
    consuming: BTreeMap<ConsumeToken, (MessageQueue, u64, Vec<i64>)>,
    next_token: u64,
    next_epoch: u64,
    pub outputs: VecDeque<ClientOutput>,
    started: bool,
    shut_down: bool,
    created_ms: u64,
    next_route_ms: u64,
    next_heartbeat_ms: u64,
    next_rebalance_ms: u64,
    next_persist_ms: u64,
}

impl Engine {
    pub fn new(config: EngineConfig, now_ms: u64) -> Self {
        let _ = (config, now_ms);
        todo!()
    }

    pub fn subscribe(
        &mut self,
        now_ms: u64,
        topic: &str,
        expression: &str,
    ) -> Result<(), ClientError> {
        let _ = (now_ms, topic, expression);
        todo!()
    }

    pub fn unsubscribe(&mut self, now_ms: u64, topic: &str) {
        let _ = (now_ms, topic);
        todo!()
    }

    pub fn assign(&mut self, now_ms: u64, queues: Vec<MessageQueue>) {
        let _ = (now_ms, queues);
        todo!()
    }

    pub fn seek(&mut self, now_ms: u64, queue: &MessageQueue, offset: i64) {
        let _ = (now_ms, queue, offset);
        todo!()
    }

    pub fn pause(&mut self, queues: &[MessageQueue], paused: bool) {
        let _ = (queues, paused);
        todo!()
    }

    pub fn load_local_offsets(&mut self, offsets: BTreeMap<MessageQueue, i64>) {
        let _ = offsets;
        todo!()
    }

    pub fn start(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    pub fn consume_result(&mut self, now_ms: u64, token: ConsumeToken, status: ConsumeStatus) {
        let _ = (now_ms, token, status);
        todo!()
    }

    pub fn take_buffered(&mut self, now_ms: u64, max: usize) -> Vec<MessageExt> {
        let _ = (now_ms, max);
        todo!()
    }

    pub fn persist_offsets(&mut self, now_ms: u64, all: bool) {
        let _ = (now_ms, all);
        todo!()
    }

    pub fn handle_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let _ = (now_ms, addr, command);
        todo!()
    }

    pub fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let _ = (now_ms, addr, command);
        todo!()
    }

    pub fn handle_connection_closed(&mut self, now_ms: u64, addr: &str) {
        let _ = (now_ms, addr);
        todo!()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    pub fn shutdown(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }

    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        self.process_queues.keys().cloned().collect()
    }

    pub fn cached_message_count(&self) -> usize {
        self.process_queues.values().map(|pq| pq.msgs.len()).sum()
    }
}
