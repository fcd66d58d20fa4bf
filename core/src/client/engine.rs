//! The consumer engine shared by [`PushConsumer`](super::PushConsumer) and
//! [`PullConsumer`](super::PullConsumer): routes, heartbeats, rebalance, the long-poll pull
//! loop and process queues here; start offsets and commits in [`offsets`], push delivery and
//! send-back in [`delivery`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::allocate::AllocateStrategy;
use super::base::{ClientBase, RpcTable};
use super::lite_pull::PullConsumerConfig;
use super::message::MessageExt;
use super::push::{ConsumeStatus, ConsumeToken, PushConsumerConfig};
use super::requests::{
    self, ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel,
    SubscriptionData,
};
use super::route::subscribe_queues;
use super::{ClientConfig, ClientError, ClientOutput, MessageQueue};
use crate::message::{keys, peek_header, MessageRecord, Properties, RecordError};
use crate::namesrv::route::TopicRouteData;
use crate::remoting::codes::{request, response};
use crate::remoting::headers::{pull_sys_flag, PullMessageRequestHeader, SendMessageRequestHeader};
use crate::remoting::RemotingCommand;
use crate::topic::RETRY_GROUP_TOPIC_PREFIX;

mod delivery;
mod offsets;

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
pub(super) enum Call {
    Route {
        topic: String,
    },
    ConsumerList {
        topic: String,
    },
    QueryOffset {
        queue: MessageQueue,
        epoch: u64,
    },
    MaxOffset {
        queue: MessageQueue,
        epoch: u64,
    },
    SearchOffset {
        queue: MessageQueue,
        epoch: u64,
    },
    Pull {
        queue: MessageQueue,
        epoch: u64,
    },
    /// CONSUMER_SEND_MSG_BACK, or (`fallback`) its re-send to the retry topic, of one message.
    SendBack {
        queue: MessageQueue,
        epoch: u64,
        offset: i64,
        fallback: bool,
    },
    /// HEART_BEAT or UNREGISTER_CLIENT: the answer changes nothing.
    Fire,
    /// Queue locks and dead-letter sends of orderly consumption ([`super::orderly`]).
    Orderly(super::orderly::OrderlyCall),
}

/// The local state of one owned queue (Java's `ProcessQueue` and `PullRequest`).
#[derive(Debug)]
pub(super) struct ProcessQueue {
    /// Unique per assignment, so answers for an earlier assignment are recognised.
    pub epoch: u64,
    /// Next offset to pull; `None` until the start offset is known.
    next_offset: Option<i64>,
    /// Unconsumed messages by queue offset.
    pub msgs: BTreeMap<i64, MessageExt>,
    msg_bytes: usize,
    /// Offsets not yet handed to the application (push) or polled (lite), ascending.
    pub to_deliver: VecDeque<i64>,
    /// One past the highest offset ever put in `msgs`: the commit point once `msgs` drains.
    queue_offset_max: i64,
    pull_in_flight: bool,
    /// A pull is due at this instant.
    pull_at_ms: Option<u64>,
    paused: bool,
    /// Messages whose send-back failed, consumed again locally at the given instant.
    redeliver: Vec<(u64, i64)>,
}

pub(super) struct Engine {
    pub config: EngineConfig,
    pub base: ClientBase,
    pub(super) rpcs: RpcTable<Call>,
    /// topic → subscription.
    subscriptions: BTreeMap<String, SubscriptionData>,
    /// Lite pull `assign`: fixed queues instead of rebalancing.
    assigned: Option<Vec<MessageQueue>>,
    /// topic → readable queues from the latest route.
    topic_queues: BTreeMap<String, Vec<MessageQueue>>,
    pub(super) process_queues: BTreeMap<MessageQueue, ProcessQueue>,
    /// Committed (consumed) offsets: the next offset to consume per queue.
    pub offsets: BTreeMap<MessageQueue, i64>,
    /// Offsets changed since the last commit.
    dirty_offsets: BTreeSet<MessageQueue>,
    /// The group member each queue is pulled from next: the last pull's
    /// `suggestWhichBrokerId` (Java's `pullFromWhichNodeTable`); the master when absent.
    pull_from: BTreeMap<MessageQueue, u64>,
    /// Broadcasting: every offset ever known, kept across rebalances (the local offset store).
    local_offsets: BTreeMap<MessageQueue, i64>,
    /// Push batches with the application: token → (queue, epoch, offsets).
    consuming: BTreeMap<ConsumeToken, (MessageQueue, u64, Vec<i64>)>,
    pub(super) next_token: u64,
    next_epoch: u64,
    pub outputs: VecDeque<ClientOutput>,
    pub(super) started: bool,
    pub(super) shut_down: bool,
    created_ms: u64,
    next_route_ms: u64,
    next_heartbeat_ms: u64,
    pub(super) next_rebalance_ms: u64,
    next_persist_ms: u64,
    /// Orderly consumption (push consumers with an orderly listener).
    pub(super) orderly: Option<super::orderly::OrderlyState>,
}

/// Java waits this long before consuming locally again a batch whose send-back failed.
const REDELIVER_DELAY_MS: u64 = 5_000;
/// CONSUME_FROM_TIMESTAMP without a timestamp starts 30 minutes before the consumer was created.
const DEFAULT_CONSUME_TIMESTAMP_BACK_MS: u64 = 30 * 60 * 1_000;

impl ProcessQueue {
    fn new(epoch: u64) -> Self {
        Self {
            epoch,
            next_offset: None,
            msgs: BTreeMap::new(),
            msg_bytes: 0,
            to_deliver: VecDeque::new(),
            queue_offset_max: 0,
            pull_in_flight: false,
            pull_at_ms: None,
            paused: false,
            redeliver: Vec::new(),
        }
    }

    /// The offset to commit: the smallest offset still held, or one past the last one seen.
    fn commit_point(&self) -> Option<i64> {
        match self.msgs.keys().next() {
            Some(first) => Some(*first),
            None if self.queue_offset_max > 0 => Some(self.queue_offset_max),
            None => None,
        }
    }

    fn remove(&mut self, offsets: &[i64]) {
        for offset in offsets {
            if let Some(m) = self.msgs.remove(offset) {
                self.msg_bytes = self.msg_bytes.saturating_sub(m.body_len());
            }
        }
    }
}

impl Engine {
    pub fn new(config: EngineConfig, now_ms: u64) -> Self {
        let base = ClientBase::new(config.client.clone());
        Self {
            base,
            rpcs: RpcTable::default(),
            subscriptions: BTreeMap::new(),
            assigned: None,
            topic_queues: BTreeMap::new(),
            process_queues: BTreeMap::new(),
            offsets: BTreeMap::new(),
            dirty_offsets: BTreeSet::new(),
            pull_from: BTreeMap::new(),
            local_offsets: BTreeMap::new(),
            consuming: BTreeMap::new(),
            next_token: 0,
            next_epoch: 0,
            outputs: VecDeque::new(),
            started: false,
            shut_down: false,
            created_ms: now_ms,
            next_route_ms: now_ms,
            next_heartbeat_ms: now_ms,
            next_rebalance_ms: now_ms,
            next_persist_ms: now_ms,
            orderly: None,
            config,
        }
    }

    pub(super) fn clustering(&self) -> bool {
        self.config.message_model == MessageModel::Clustering
    }

    pub(super) fn retry_topic(&self) -> String {
        format!("{RETRY_GROUP_TOPIC_PREFIX}{}", self.config.group)
    }

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

    /// Subscribes `topic` with an SQL92 selector, refused when it does not compile.
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
        self.subscriptions.remove(topic);
        if self.started {
            self.update_process_queues(now_ms, topic, BTreeSet::new());
            self.send_heartbeats(now_ms);
        }
    }

    pub fn assign(&mut self, now_ms: u64, queues: Vec<MessageQueue>) {
        self.assigned = Some(queues);
        if self.started {
            self.apply_assignment(now_ms);
        }
    }

    /// Lite `assign`: the owned queues are exactly the assigned ones.
    fn apply_assignment(&mut self, now_ms: u64) {
        let Some(assigned) = self.assigned.clone() else {
            return;
        };
        let mut by_topic: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
        for queue in self.process_queues.keys() {
            by_topic.entry(queue.topic.clone()).or_default();
        }
        for queue in assigned {
            by_topic
                .entry(queue.topic.clone())
                .or_default()
                .insert(queue);
        }
        for (topic, queues) in by_topic {
            if !self.base.routes.contains_key(&topic) {
                self.request_route(now_ms, &topic);
            }
            self.update_process_queues(now_ms, &topic, queues);
        }
    }

    pub fn seek(&mut self, now_ms: u64, queue: &MessageQueue, offset: i64) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        let Some(pq) = self.process_queues.get_mut(queue) else {
            return;
        };
        *pq = ProcessQueue::new(epoch);
        pq.next_offset = Some(offset);
        pq.pull_at_ms = Some(now_ms);
        self.offsets.insert(queue.clone(), offset);
        self.dirty_offsets.insert(queue.clone());
        self.tick(now_ms);
    }

    /// RESET_CONSUMER_CLIENT_OFFSET (220) from a broker: every owned queue of the topic named in
    /// the table drops what it holds (answers and consume results of the old epoch are then
    /// ignored), adopts the new offset, commits it and pulls from it. Java waits up to 10 s for
    /// running listeners first; the epoch makes that wait unnecessary here.
    fn on_reset_offset(&mut self, now_ms: u64, addr: &str, command: &RemotingCommand) {
        use crate::remoting::reset_offset::{decode_offset_table, ResetOffsetRequestHeader};
        let Ok(header) = ResetOffsetRequestHeader::parse(command) else {
            return;
        };
        if header.group != self.config.group || !self.started || self.shut_down {
            return;
        }
        // A body that does not decode resets nothing, as Java's empty table would.
        let table = decode_offset_table(&command.body).unwrap_or_default();
        let _ = addr;
        for (key, offset) in table {
            let queue = MessageQueue::new(key.topic, key.broker_name, key.queue_id);
            if queue.topic != header.topic || !self.process_queues.contains_key(&queue) {
                continue;
            }
            self.next_epoch += 1;
            let epoch = self.next_epoch;
            let Some(pq) = self.process_queues.get_mut(&queue) else {
                continue;
            };
            let paused = pq.paused;
            *pq = ProcessQueue::new(epoch);
            pq.paused = paused;
            pq.next_offset = Some(offset);
            pq.pull_at_ms = Some(now_ms);
            self.consuming.retain(|_, (q, _, _)| *q != queue);
            self.offsets.insert(queue.clone(), offset);
            if !self.clustering() {
                self.local_offsets.insert(queue.clone(), offset);
            }
            self.persist_one(now_ms, &queue);
        }
        self.tick(now_ms);
    }

    pub fn pause(&mut self, queues: &[MessageQueue], paused: bool) {
        for queue in queues {
            if let Some(pq) = self.process_queues.get_mut(queue) {
                pq.paused = paused;
            }
        }
    }

    pub fn load_local_offsets(&mut self, offsets: BTreeMap<MessageQueue, i64>) {
        self.local_offsets = offsets;
    }

    pub fn start(&mut self, now_ms: u64) {
        if self.started || self.shut_down {
            return;
        }
        self.started = true;
        if self.clustering() && !self.config.lite {
            let retry = self.retry_topic();
            self.subscriptions.insert(
                retry.clone(),
                SubscriptionData::tag(&retry, "*", now_ms as i64),
            );
        }
        let topics: Vec<String> = self.subscriptions.keys().cloned().collect();
        for topic in topics {
            self.request_route(now_ms, &topic);
        }
        self.apply_assignment(now_ms);
        let client = &self.config.client;
        self.next_route_ms = now_ms + client.poll_namesrv_interval_ms.max(1);
        self.next_heartbeat_ms = now_ms + client.heartbeat_broker_interval_ms.max(1);
        self.next_rebalance_ms = now_ms + self.config.rebalance_interval_ms.max(1);
        if let Some(interval) = self.config.persist_offset_interval_ms {
            self.next_persist_ms = now_ms + interval.max(1);
        }
    }

    // ---- NameServer routes ----

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

    fn on_route(&mut self, now_ms: u64, topic: String, command: &RemotingCommand) {
        if command.code != response::SUCCESS {
            return;
        }
        let Ok(route) = TopicRouteData::parse(&command.body) else {
            return;
        };
        let known_before = self.base.broker_addrs.clone();
        let queues = subscribe_queues(&topic, &route);
        self.base.store_route(&topic, route);
        let changed = self.topic_queues.get(&topic) != Some(&queues);
        self.topic_queues.insert(topic.clone(), queues);
        if self.base.broker_addrs != known_before {
            // New brokers learn about this consumer before it asks them for the group.
            self.send_heartbeats(now_ms);
        }
        if self.assigned.is_some() {
            self.apply_assignment(now_ms);
        } else if changed && self.subscriptions.contains_key(&topic) {
            self.rebalance_topic(now_ms, &topic);
        }
    }

    // ---- Heartbeat ----

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.base.client_id.clone(),
            producer_groups: vec![requests::CLIENT_INNER_PRODUCER_GROUP.to_owned()],
            consumers: vec![ConsumerData {
                consume_from_where: self.config.consume_from_where,
                consume_type: self.config.consume_type(),
                group_name: self.config.group.clone(),
                message_model: self.config.message_model,
                subscription_data_set: self.subscriptions.values().cloned().collect(),
                unit_mode: false,
            }],
        }
    }

    /// HEART_BEAT to every broker known (masters and slaves, as Java does for consumers).
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

    // ---- Rebalance ----

    fn rebalance_all(&mut self, now_ms: u64) {
        if self.assigned.is_some() {
            // Assigned queues whose start offset could not be found yet are tried again.
            self.apply_assignment(now_ms);
            return;
        }
        let topics: Vec<String> = self.subscriptions.keys().cloned().collect();
        for topic in topics {
            self.rebalance_topic(now_ms, &topic);
        }
        // Queues of topics no longer subscribed.
        let stale: BTreeSet<String> = self
            .process_queues
            .keys()
            .filter(|q| !self.subscriptions.contains_key(&q.topic))
            .map(|q| q.topic.clone())
            .collect();
        for topic in stale {
            self.update_process_queues(now_ms, &topic, BTreeSet::new());
        }
    }

    fn rebalance_topic(&mut self, now_ms: u64, topic: &str) {
        let Some(queues) = self.topic_queues.get(topic).cloned() else {
            return;
        };
        if !self.clustering() {
            self.update_process_queues(now_ms, topic, queues.into_iter().collect());
            return;
        }
        // One broker of the topic, chosen at random, names the group's members (Java's
        // findBrokerAddrByTopic: a group's master, or one of its slaves while it has none).
        let brokers: Vec<String> = self
            .base
            .routes
            .get(topic)
            .map(|r| {
                r.broker_datas
                    .iter()
                    .filter_map(|b| self.base.admin_addr(now_ms, &b.broker_name))
                    .collect()
            })
            .unwrap_or_default();
        if brokers.is_empty() {
            return;
        }
        let addr = brokers[self.base.rng.below(brokers.len() as u64) as usize].clone();
        let pending = self
            .rpcs
            .iter()
            .any(|(_, rpc)| matches!(&rpc.kind, Call::ConsumerList { topic: t } if t == topic));
        if pending {
            return;
        }
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            requests::get_consumer_list_by_group(&self.config.group),
            now_ms + self.config.client.request_timeout_ms,
            Call::ConsumerList {
                topic: topic.to_owned(),
            },
        );
    }

    fn on_consumer_list(&mut self, now_ms: u64, topic: String, command: &RemotingCommand) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            consumer_id_list: Vec<String>,
        }
        if command.code != response::SUCCESS || !self.subscriptions.contains_key(&topic) {
            return;
        }
        let Ok(body) = serde_json::from_slice::<Body>(&command.body) else {
            return;
        };
        let Some(mut mq_all) = self.topic_queues.get(&topic).cloned() else {
            return;
        };
        let mut cid_all = body.consumer_id_list;
        cid_all.sort();
        cid_all.dedup();
        mq_all.sort();
        let allocated =
            self.config
                .allocate_strategy
                .allocate(&self.base.client_id, &mq_all, &cid_all);
        let allocated = allocated.into_iter().filter(|q| q.topic == topic).collect();
        self.update_process_queues(now_ms, &topic, allocated);
    }

    /// Makes the owned queues of `topic` exactly `allocated`
    /// (`updateProcessQueueTableInRebalance`).
    fn update_process_queues(
        &mut self,
        now_ms: u64,
        topic: &str,
        allocated: BTreeSet<MessageQueue>,
    ) {
        let owned: Vec<MessageQueue> = self
            .process_queues
            .keys()
            .filter(|q| q.topic == topic)
            .cloned()
            .collect();
        for queue in owned {
            if !allocated.contains(&queue) {
                self.remove_queue(now_ms, &queue);
            }
        }
        if self.orderly.is_some() {
            // New queues are locked first (orderly.rs), then added.
            self.orderly_rebalanced(now_ms, topic, allocated);
            return;
        }
        for queue in allocated {
            self.add_process_queue(now_ms, queue);
        }
    }

    /// Starts owning `queue`: a fresh process queue whose start offset is looked up.
    pub(super) fn add_process_queue(&mut self, now_ms: u64, queue: MessageQueue) {
        if self.process_queues.contains_key(&queue) {
            return;
        }
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.process_queues
            .insert(queue.clone(), ProcessQueue::new(epoch));
        self.offsets.remove(&queue);
        self.dirty_offsets.remove(&queue);
        self.compute_start_offset(now_ms, queue, epoch);
    }

    /// Whether giving a queue up (rebalance, shutdown) commits its consumed position. A lite
    /// pull consumer with auto-commit off commits only on `commit` (Java's offset store then
    /// holds only committed offsets), so an uncommitted position is read again by whoever
    /// takes the queue next.
    fn commits_on_release(&self) -> bool {
        !self.config.lite || self.config.persist_offset_interval_ms.is_some()
    }

    /// Gives a queue up: its offset is committed (see [`Self::commits_on_release`]) and
    /// forgotten.
    fn remove_queue(&mut self, now_ms: u64, queue: &MessageQueue) {
        if self.orderly.is_some() {
            self.orderly_queue_removed(now_ms, queue);
        }
        if self.commits_on_release() {
            self.persist_one(now_ms, queue);
        }
        self.process_queues.remove(queue);
        self.pull_from.remove(queue);
        if self.clustering() {
            self.offsets.remove(queue);
            self.dirty_offsets.remove(queue);
        }
        self.consuming.retain(|_, (q, _, _)| q != queue);
    }

    // ---- The pull loop ----

    /// Runs what is due now: pulls and local redeliveries.
    pub(super) fn tick(&mut self, now_ms: u64) {
        if !self.started || self.shut_down {
            return;
        }
        let due: Vec<MessageQueue> = self
            .process_queues
            .iter()
            .filter(|(_, pq)| {
                !pq.pull_in_flight && !pq.paused && pq.pull_at_ms.is_some_and(|t| t <= now_ms)
            })
            .map(|(q, _)| q.clone())
            .collect();
        for queue in due {
            self.pull(now_ms, &queue);
        }
        let redeliver: Vec<MessageQueue> = self
            .process_queues
            .iter()
            .filter(|(_, pq)| pq.redeliver.iter().any(|(at, _)| *at <= now_ms))
            .map(|(q, _)| q.clone())
            .collect();
        for queue in redeliver {
            if let Some(pq) = self.process_queues.get_mut(&queue) {
                let (due, later): (Vec<_>, Vec<_>) =
                    pq.redeliver.drain(..).partition(|(at, _)| *at <= now_ms);
                pq.redeliver = later;
                let mut offsets: Vec<i64> = due.into_iter().map(|(_, o)| o).collect();
                offsets.sort_unstable();
                for offset in offsets.into_iter().rev() {
                    if pq.msgs.contains_key(&offset) {
                        pq.to_deliver.push_front(offset);
                    }
                }
            }
            self.deliver(&queue);
        }
        if self.orderly.is_some() {
            self.orderly_tick(now_ms);
        }
    }

    fn pull(&mut self, now_ms: u64, queue: &MessageQueue) {
        if let Some(delay_ms) = self.orderly_pull_delay_ms(queue) {
            // An orderly consumer pulls only queues it holds the lock of.
            if let Some(pq) = self.process_queues.get_mut(queue) {
                pq.pull_at_ms = Some(now_ms + delay_ms);
            }
            return;
        }
        let clustering = self.clustering();
        let lite = self.config.lite;
        let Some(pq) = self.process_queues.get_mut(queue) else {
            return;
        };
        let Some(next_offset) = pq.next_offset else {
            return;
        };
        pq.pull_at_ms = None;
        // Flow control (Java: count over pullThresholdForQueue or size over
        // pullThresholdSizeForQueue → try again in 50 ms).
        if pq.msgs.len() > self.config.pull_threshold_for_queue
            || pq.msg_bytes > self.config.pull_threshold_size_for_queue_bytes
            || (lite && pq.msgs.len() >= self.config.pull_threshold_for_queue)
        {
            pq.pull_at_ms = Some(now_ms + self.config.flow_control_delay_ms);
            return;
        }
        let epoch = pq.epoch;
        let subscription = match self.subscriptions.get(&queue.topic) {
            Some(s) => s.clone(),
            None if lite => SubscriptionData::tag(&queue.topic, "*", 0),
            None => {
                pq.pull_at_ms = Some(now_ms + self.config.pull_delay_on_exception_ms);
                return;
            }
        };
        let from = self.pull_from.get(queue).copied().unwrap_or(0);
        let Some((addr, broker_id)) = self.base.subscribe_addr(now_ms, &queue.broker_name, from)
        else {
            pq.pull_at_ms = Some(now_ms + self.config.pull_delay_on_exception_ms);
            return;
        };
        // As Java's `PullAPIWrapper`: no piggy-backed commit to a slave (commits go to the
        // group's admin member, see `persist_one`).
        let commit_offset = if clustering && !lite && broker_id == 0 {
            self.offsets.get(queue).copied().filter(|o| *o > 0)
        } else {
            None
        };
        let post_subscription = lite || self.config.post_subscription_when_pull;
        let mut sys_flag = pull_sys_flag::SUSPEND;
        if commit_offset.is_some() {
            sys_flag |= pull_sys_flag::COMMIT_OFFSET;
        }
        if post_subscription {
            sys_flag |= pull_sys_flag::SUBSCRIPTION;
        }
        if lite {
            sys_flag |= pull_sys_flag::LITE_PULL;
        }
        let header = PullMessageRequestHeader {
            consumer_group: self.config.group.clone(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: next_offset,
            max_msg_nums: self.config.pull_batch_size,
            sys_flag,
            commit_offset: commit_offset.unwrap_or(0),
            suspend_timeout_ms: self.config.broker_suspend_max_time_ms as i64,
            subscription: post_subscription.then(|| subscription.sub_string.clone()),
            sub_version: subscription.sub_version,
            expression_type: Some(subscription.expression_type.clone()),
            max_msg_bytes: None,
        };
        pq.pull_in_flight = true;
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            requests::pull_message(&header, lite),
            now_ms + self.config.pull_timeout_ms,
            Call::Pull {
                queue: queue.clone(),
                epoch,
            },
        );
    }

    fn pull_failed(&mut self, now_ms: u64, queue: &MessageQueue, epoch: u64) {
        if let Some(pq) = self
            .process_queues
            .get_mut(queue)
            .filter(|pq| pq.epoch == epoch)
        {
            pq.pull_in_flight = false;
            pq.pull_at_ms = Some(now_ms + self.config.pull_delay_on_exception_ms);
        }
    }

    fn on_pull(
        &mut self,
        now_ms: u64,
        addr: &str,
        queue: MessageQueue,
        epoch: u64,
        command: RemotingCommand,
    ) {
        let group_retry = self.retry_topic();
        let Some(pq) = self
            .process_queues
            .get_mut(&queue)
            .filter(|pq| pq.epoch == epoch)
        else {
            return;
        };
        pq.pull_in_flight = false;
        if let Ok(id) = command.ext_num::<u64>("suggestWhichBrokerId") {
            self.pull_from.insert(queue.clone(), id);
        }
        let next_begin = command.ext_num::<i64>("nextBeginOffset");
        let (code, next_begin) = match (command.code, next_begin) {
            (
                response::SUCCESS
                | response::PULL_NOT_FOUND
                | response::PULL_RETRY_IMMEDIATELY
                | response::PULL_OFFSET_MOVED,
                Ok(next),
            ) => (command.code, next),
            _ => {
                pq.pull_at_ms = Some(now_ms + self.config.pull_delay_on_exception_ms);
                return;
            }
        };
        match code {
            response::SUCCESS => {
                let min_offset = command.ext("minOffset").unwrap_or("0").to_owned();
                let max_offset = command.ext("maxOffset").unwrap_or("0").to_owned();
                let Ok(records) = decode_records(&command.body) else {
                    pq.pull_at_ms = Some(now_ms + self.config.pull_delay_on_exception_ms);
                    return;
                };
                let subscription = self.subscriptions.get(&queue.topic);
                let mut added = 0;
                for mut record in records {
                    let tags = record.properties.get(keys::TAGS);
                    if subscription.is_some_and(|s| !s.matches(tags)) {
                        continue;
                    }
                    if record.topic == group_retry {
                        if let Some(origin) = record.properties.get(keys::RETRY_TOPIC) {
                            record.topic = origin.to_owned();
                        }
                    }
                    record.properties.insert("MIN_OFFSET", min_offset.clone());
                    record.properties.insert("MAX_OFFSET", max_offset.clone());
                    let offset = record.queue_offset;
                    if offset < next_begin && !pq.msgs.contains_key(&offset) {
                        let message = MessageExt {
                            queue: queue.clone(),
                            record,
                            served_by: addr.to_owned(),
                        };
                        pq.msg_bytes += message.body_len();
                        pq.msgs.insert(offset, message);
                        pq.to_deliver.push_back(offset);
                        pq.queue_offset_max = pq.queue_offset_max.max(offset + 1);
                        added += 1;
                    }
                }
                pq.next_offset = Some(next_begin);
                pq.pull_at_ms = Some(now_ms);
                if added > 0 {
                    if self.config.lite {
                        self.outputs.push_back(ClientOutput::MessagesAvailable);
                    } else {
                        self.deliver(&queue);
                    }
                }
            }
            response::PULL_NOT_FOUND | response::PULL_RETRY_IMMEDIATELY => {
                pq.next_offset = Some(next_begin);
                pq.pull_at_ms = Some(now_ms);
                // correctTagsOffset: nothing held, so the position itself is consumed.
                if pq.msgs.is_empty() && !self.config.lite {
                    self.advance_offset(&queue, next_begin);
                }
            }
            _ => {
                // PULL_OFFSET_MOVED: commit the broker's offset, drop the queue, let the next
                // rebalance take it again from there.
                if self.config.lite {
                    *pq = ProcessQueue::new(epoch);
                    pq.next_offset = Some(next_begin);
                    pq.pull_at_ms = Some(now_ms);
                    self.offsets.insert(queue.clone(), next_begin);
                    self.dirty_offsets.insert(queue.clone());
                } else {
                    self.offsets.insert(queue.clone(), next_begin);
                    self.dirty_offsets.insert(queue.clone());
                    if !self.clustering() {
                        self.local_offsets.insert(queue.clone(), next_begin);
                    }
                    self.remove_queue(now_ms, &queue);
                    self.next_rebalance_ms = now_ms;
                }
            }
        }
    }

    // ---- Lite pull ----

    pub fn take_buffered(&mut self, now_ms: u64, max: usize) -> Vec<MessageExt> {
        let mut out = Vec::new();
        let queues: Vec<MessageQueue> = self.process_queues.keys().cloned().collect();
        for queue in queues {
            if out.len() >= max {
                break;
            }
            let Some(pq) = self.process_queues.get_mut(&queue) else {
                continue;
            };
            let take = (max - out.len()).min(pq.to_deliver.len());
            let offsets: Vec<i64> = pq.to_deliver.drain(..take).collect();
            for offset in &offsets {
                if let Some(m) = pq.msgs.remove(offset) {
                    pq.msg_bytes = pq.msg_bytes.saturating_sub(m.body_len());
                    out.push(m);
                }
            }
            if !offsets.is_empty() {
                let point = pq.commit_point();
                if let Some(point) = point {
                    self.advance_offset(&queue, point);
                }
            }
        }
        self.tick(now_ms);
        out
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
                self.on_route(now_ms, topic, &command)
            }
            Call::ConsumerList { topic } => self.on_consumer_list(now_ms, topic, &command),
            call @ (Call::QueryOffset { .. }
            | Call::MaxOffset { .. }
            | Call::SearchOffset { .. }) => self.on_offset_answer(now_ms, call, &command),
            Call::Pull { queue, epoch } => self.on_pull(now_ms, addr, queue, epoch, command),
            Call::SendBack {
                queue,
                epoch,
                offset,
                fallback,
            } => {
                let ok = command.code == response::SUCCESS;
                self.on_send_back(now_ms, queue, epoch, offset, fallback, ok)
            }
            Call::Fire => {}
            Call::Orderly(call) => self.on_orderly_response(now_ms, call, &command),
        }
        self.tick(now_ms);
    }

    /// A request failed without an answer.
    fn rpc_failed(&mut self, now_ms: u64, addr: &str, call: Call) {
        match call {
            Call::Route { .. } => self.base.namesrv_failed(addr),
            Call::ConsumerList { .. } | Call::Fire => {}
            Call::Orderly(call) => self.on_orderly_failed(now_ms, call),
            Call::QueryOffset { queue, epoch }
            | Call::MaxOffset { queue, epoch }
            | Call::SearchOffset { queue, epoch } => {
                self.broker_unreachable(now_ms, addr);
                self.start_failed(&queue, epoch)
            }
            Call::Pull { queue, epoch } => {
                self.broker_unreachable(now_ms, addr);
                self.pull_failed(now_ms, &queue, epoch)
            }
            Call::SendBack {
                queue,
                epoch,
                offset,
                fallback,
            } => self.on_send_back(now_ms, queue, epoch, offset, fallback, false),
        }
    }

    /// A read or an offset request got no answer from `addr`: read from another member of its
    /// group meanwhile, and ask for routes now rather than at the next poll, so a master the
    /// NameServer has dropped stops being tried.
    fn broker_unreachable(&mut self, now_ms: u64, addr: &str) {
        self.base.mark_unreachable(now_ms, addr);
        self.next_route_ms = self.next_route_ms.min(now_ms);
    }

    pub fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        if command.is_response() {
            return;
        }
        if command.code == request::NOTIFY_CONSUMER_IDS_CHANGED {
            if self.started && !self.shut_down {
                self.rebalance_all(now_ms);
            }
            return;
        }
        if command.code == request::RESET_CONSUMER_CLIENT_OFFSET {
            self.on_reset_offset(now_ms, addr, &command);
            return;
        }
        self.base.reject_request(addr, &command, &mut self.outputs);
    }

    pub fn handle_connection_closed(&mut self, now_ms: u64, addr: &str) {
        for (_, rpc) in self.rpcs.take_for_addr(addr) {
            self.rpc_failed(now_ms, addr, rpc.kind);
        }
        self.tick(now_ms);
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        for (_, rpc) in self.rpcs.take_expired(now_ms) {
            let addr = rpc.addr.clone();
            self.rpc_failed(now_ms, &addr, rpc.kind);
        }
        if !self.started || self.shut_down {
            return;
        }
        if now_ms >= self.next_route_ms {
            let mut topics: BTreeSet<String> = self.subscriptions.keys().cloned().collect();
            topics.extend(self.process_queues.keys().map(|q| q.topic.clone()));
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
        if now_ms >= self.next_rebalance_ms {
            self.rebalance_all(now_ms);
            self.next_rebalance_ms = now_ms + self.config.rebalance_interval_ms.max(1);
        }
        if let Some(interval) = self.config.persist_offset_interval_ms {
            if now_ms >= self.next_persist_ms {
                // Only offsets that moved since they were last sent (Java re-sends them all):
                // after a partition two instances can hold one queue until the next rebalance,
                // and the stale one re-sending its unchanged offset would move the group's
                // committed offset back over what the new owner committed.
                self.persist_offsets(now_ms, false);
                self.next_persist_ms = now_ms + interval.max(1);
            }
        }
        self.tick(now_ms);
    }

    pub fn shutdown(&mut self, now_ms: u64) {
        if self.shut_down {
            return;
        }
        if self.started {
            if self.commits_on_release() {
                self.persist_offsets(now_ms, true);
            }
            let command =
                requests::unregister_client(&self.base.client_id, None, Some(&self.config.group));
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
        self.consuming.clear();
        for pq in self.process_queues.values_mut() {
            pq.pull_at_ms = None;
            pq.redeliver.clear();
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next = self.rpcs.earliest_deadline_ms();
        if !self.started || self.shut_down {
            return next;
        }
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        consider(self.next_route_ms);
        consider(self.next_heartbeat_ms);
        consider(self.next_rebalance_ms);
        if self.config.persist_offset_interval_ms.is_some() {
            consider(self.next_persist_ms);
        }
        if let Some(t) = self.orderly.as_ref().and_then(|o| o.next_timeout_ms()) {
            consider(t);
        }
        for pq in self.process_queues.values() {
            if let Some(t) = pq.pull_at_ms.filter(|_| !pq.pull_in_flight && !pq.paused) {
                consider(t);
            }
            for (t, _) in &pq.redeliver {
                consider(*t);
            }
        }
        next
    }

    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        self.process_queues.keys().cloned().collect()
    }

    pub fn cached_message_count(&self) -> usize {
        self.process_queues.values().map(|pq| pq.msgs.len()).sum()
    }
}

/// Decodes a pull body: stored records back to back.
pub(super) fn decode_records(body: &Bytes) -> Result<Vec<MessageRecord>, RecordError> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let rest = body.slice(pos..);
        let (total_size, _) = peek_header(&rest)?;
        let record = MessageRecord::decode(&rest, false)?;
        records.push(record);
        pos += total_size as usize;
    }
    Ok(records)
}
