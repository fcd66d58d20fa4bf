//! The values behind RocketMQ 5's broker metrics (`BrokerMetricsManager`,
//! `RemotingMetricsManager`, `DefaultStoreMetricsManager`), kept as plain counters so that a
//! driver can render them in whatever exposition format it serves: [`Broker::metrics_snapshot`]
//! returns them as data, sorted, with no clock read and no I/O.
//!
//! What is counted follows RocketMQ 5 (apache/rocketmq `broker/.../metrics/`,
//! `remoting/.../metrics/`, `store/.../metrics/`):
//!
//! * messages in and throughput in: after a successful put of a send, per topic, message type
//!   and `is_system`; throughput is the stored (encoded) bytes (`AppendMessageResult.wroteBytes`),
//!   and retry and dead-letter topics are not counted, as `SendMessageProcessor` skips them;
//! * the message size histogram: one sample per put of a send, the stored bytes divided by the
//!   messages the put held (a batch is one sample), RocketMQ's buckets 1 KiB, 4 KiB, 512 KiB,
//!   1 MiB, 2 MiB, 4 MiB and the rest;
//! * messages and throughput out: per pull that found messages, per topic and group (stored
//!   bytes handed out), retry and dead-letter topics skipped;
//! * sends to the DLQ: per group and original topic, from CONSUMER_SEND_MSG_BACK and from a
//!   retry topic send beyond its reconsume limit;
//! * commits and rollbacks: per real topic, when END_TRANSACTION resolves a pending half;
//! * rpc latency: see [`RPC_LATENCY_BOUNDS_MS`].

use std::collections::BTreeMap;

use super::Broker;
use crate::store::SegmentStorage;
use crate::ConnId;

/// `rocketmq_message_size` buckets (bytes), as RocketMQ's view registers them.
pub const MESSAGE_SIZE_BOUNDS_BYTES: [u64; 6] =
    [1 << 10, 4 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20];

/// `rocketmq_rpc_latency` buckets (ms), as RocketMQ's remoting view registers them.
///
/// What is measured: from the `now_ms` the request was handed to [`Broker::handle_request`] to
/// the `now_ms` of the call that produced its response. Answered at once, that is 0 ms: the core
/// does not see the time a request waited in the driver before it or the time its response
/// waits to be written. A response given later is measured to the call that produced it: a
/// long-polling pull to the send that woke it or the timeout that expired it, a SYNC_FLUSH send
/// to the `handle_synced` that made it durable, a relayed request to its answer. Oneway
/// requests are not measured (RocketMQ records them with `result=oneway`; Vostok does not
/// expose `result`).
pub const RPC_LATENCY_BOUNDS_MS: [u64; 9] = [1, 3, 5, 7, 10, 100, 1_000, 2_000, 3_000];

/// A histogram with fixed bucket bounds: `counts[i]` holds the samples `≤ bounds[i]` and above
/// `bounds[i - 1]` (not cumulative), `overflow` those above the last bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram<const B: usize> {
    pub counts: [u64; B],
    pub overflow: u64,
    pub sum: u64,
}

impl<const B: usize> Default for Histogram<B> {
    fn default() -> Self {
        Self {
            counts: [0; B],
            overflow: 0,
            sum: 0,
        }
    }
}

impl<const B: usize> Histogram<B> {
    pub fn observe(&mut self, bounds: &[u64; B], value: u64) {
        match bounds.iter().position(|b| value <= *b) {
            Some(i) => self.counts[i] += 1,
            None => self.overflow += 1,
        }
        self.sum = self.sum.saturating_add(value);
    }

    /// How many samples it holds.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.overflow
    }
}

/// RocketMQ's `TopicMessageType` metric values (`message_type` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageType {
    Normal,
    Fifo,
    Delay,
    Transaction,
}

impl MessageType {
    const ALL: [MessageType; 4] = [
        MessageType::Normal,
        MessageType::Fifo,
        MessageType::Delay,
        MessageType::Transaction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Normal => "normal",
            MessageType::Fifo => "fifo",
            MessageType::Delay => "delay",
            MessageType::Transaction => "transaction",
        }
    }

    /// The type of a sent message from its properties, as RocketMQ's
    /// `TopicMessageType.parseFromMessageProperty`: a half message, then a delay or timer, then
    /// a sharding key (FIFO).
    pub fn of_send(transactional: bool, properties: &crate::message::Properties) -> Self {
        if transactional {
            MessageType::Transaction
        } else if properties.get(crate::message::keys::DELAY).is_some()
            || properties.get("TIMER_DELIVER_MS").is_some()
            || properties.get("TIMER_DELAY_SEC").is_some()
            || properties.get("TIMER_DELAY_MS").is_some()
        {
            MessageType::Delay
        } else if properties.get("__SHARDINGKEY").is_some() {
            MessageType::Fifo
        } else {
            MessageType::Normal
        }
    }
}

/// Messages into one topic of one type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InCounters {
    pub messages: u64,
    pub bytes: u64,
    pub size: Histogram<6>,
}

/// Messages out of one topic to one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutCounters {
    pub messages: u64,
    pub bytes: u64,
}

/// The running counters. Maps are keyed by name and nested so the hot path finds its slot by
/// `&str`, allocating only the first time a name is seen.
#[derive(Clone, Debug, Default)]
pub(super) struct Metrics {
    /// Topic → counters per [`MessageType`] (indexed as `MessageType::ALL`).
    messages_in: BTreeMap<String, [InCounters; 4]>,
    /// Group → topic → counters.
    messages_out: BTreeMap<String, BTreeMap<String, OutCounters>>,
    /// Group → original topic → messages sent to the group's DLQ.
    dlq: BTreeMap<String, BTreeMap<String, u64>>,
    /// Real topic → commits, rollbacks.
    transactions: BTreeMap<String, [u64; 2]>,
    /// (request code, response code) → latency.
    rpc: BTreeMap<(i32, i32), Histogram<9>>,
    /// Requests whose response comes later: (connection, opaque) → (request code, arrival).
    rpc_pending: BTreeMap<(ConnId, i32), (i32, u64)>,
    /// The `now_ms` of the latest input: when the outputs being drained were produced.
    pub(super) latest_ms: u64,
    /// Group → topic → queue → the next offset a pull will read (RocketMQ's pull offset).
    pull_offsets: BTreeMap<String, BTreeMap<String, BTreeMap<i32, u64>>>,
    pub(super) timer_enqueue_total: u64,
    pub(super) timer_dequeue_total: u64,
}

/// The slot of `key`, created on first use (the key is allocated only then).
fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Retry (`%RETRY%`) and dead-letter (`%DLQ%`) topics are not counted in or out.
fn is_retry_or_dlq(topic: &str) -> bool {
    topic.starts_with(crate::topic::RETRY_GROUP_TOPIC_PREFIX)
        || topic.starts_with(crate::topic::DLQ_GROUP_TOPIC_PREFIX)
}

/// RocketMQ's system consumer groups (`MixAll.isSysConsumerGroup`: the `CID_RMQ_SYS_` prefix).
fn is_system_group(group: &str) -> bool {
    group.starts_with("CID_RMQ_SYS_")
}

impl Metrics {
    /// A put of `messages` messages (`bytes` stored) sent to `topic`.
    pub(super) fn on_put(&mut self, topic: &str, kind: MessageType, messages: u64, bytes: u64) {
        if is_retry_or_dlq(topic) || messages == 0 {
            return;
        }
        let c = &mut slot(&mut self.messages_in, topic)[kind as usize];
        c.messages += messages;
        c.bytes += bytes;
        c.size.observe(&MESSAGE_SIZE_BOUNDS_BYTES, bytes / messages);
    }

    /// A pull of `group` on `topic` found `messages` (`bytes`); the next pull reads `next`.
    pub(super) fn on_pull(
        &mut self,
        group: &str,
        topic: &str,
        queue_id: i32,
        messages: u64,
        bytes: u64,
        next: u64,
    ) {
        let queues = slot(slot(&mut self.pull_offsets, group), topic);
        queues.insert(queue_id, next);
        if messages == 0 || is_retry_or_dlq(topic) {
            return;
        }
        let c = slot(slot(&mut self.messages_out, group), topic);
        c.messages += messages;
        c.bytes += bytes;
    }

    pub(super) fn on_dlq(&mut self, group: &str, original_topic: &str) {
        *slot(slot(&mut self.dlq, group), original_topic) += 1;
    }

    pub(super) fn on_end_transaction(&mut self, topic: &str, commit: bool) {
        slot(&mut self.transactions, topic)[usize::from(!commit)] += 1;
    }

    /// A request came in at `now_ms`; `answered` is its response code when it was answered at
    /// once, `None` when its response comes later.
    pub(super) fn on_request(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        request: &crate::remoting::RemotingCommand,
        answered: Option<i32>,
    ) {
        if request.is_oneway() {
            return;
        }
        match answered {
            Some(code) => self.record_rpc(request.code, code, 0),
            None => {
                self.rpc_pending
                    .insert((conn, request.opaque), (request.code, now_ms));
            }
        }
    }

    fn record_rpc(&mut self, request_code: i32, response_code: i32, latency_ms: u64) {
        self.rpc
            .entry((request_code, response_code))
            .or_default()
            .observe(&RPC_LATENCY_BOUNDS_MS, latency_ms);
    }

    /// A command is being written on `conn`: a deferred response completes its measurement.
    pub(super) fn on_output(&mut self, conn: ConnId, command: &crate::remoting::RemotingCommand) {
        if self.rpc_pending.is_empty() || !command.is_response() {
            return;
        }
        if let Some((request_code, at_ms)) = self.rpc_pending.remove(&(conn, command.opaque)) {
            let latency = self.latest_ms.saturating_sub(at_ms);
            self.record_rpc(request_code, command.code, latency);
        }
    }

    pub(super) fn drop_connection(&mut self, conn: ConnId) {
        self.rpc_pending.retain(|(c, _), _| *c != conn);
    }

    pub(super) fn forget_topic(&mut self, topic: &str) {
        self.messages_in.remove(topic);
        for topics in self.messages_out.values_mut() {
            topics.remove(topic);
        }
        for topics in self.pull_offsets.values_mut() {
            topics.remove(topic);
        }
    }

    pub(super) fn forget_group(&mut self, group: &str) {
        self.messages_out.remove(group);
        self.pull_offsets.remove(group);
        self.dlq.remove(group);
    }

    fn pull_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<u64> {
        self.pull_offsets
            .get(group)?
            .get(topic)?
            .get(&queue_id)
            .copied()
    }
}

/// `rocketmq_messages_in_total`, `rocketmq_throughput_in_total`, `rocketmq_message_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InSample {
    pub topic: String,
    pub message_type: MessageType,
    pub is_system: bool,
    pub counters: InCounters,
}

/// `rocketmq_messages_out_total`, `rocketmq_throughput_out_total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutSample {
    pub topic: String,
    pub consumer_group: String,
    pub is_system: bool,
    pub counters: OutCounters,
}

/// The consumer gauges of one group on one topic (RocketMQ's `ConsumerLagCalculator`), summed
/// over the topic's queues:
///
/// * lag: messages from the committed offset to the queue's end;
/// * inflight: pulled but not committed (the pull offset minus the committed offset);
/// * ready: not pulled yet (the queue's end minus the pull offset);
/// * lag latency: now minus the store time of the oldest message not committed, over queues;
/// * queueing latency: now minus the store time of the oldest message not pulled yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSample {
    pub consumer_group: String,
    pub topic: String,
    pub is_retry: bool,
    pub is_system: bool,
    pub lag_messages: u64,
    pub inflight_messages: u64,
    pub ready_messages: u64,
    pub lag_latency_ms: u64,
    pub queueing_latency_ms: u64,
}

/// `rocketmq_send_to_dlq_messages_total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqSample {
    pub consumer_group: String,
    pub topic: String,
    pub is_system: bool,
    pub messages: u64,
}

/// `rocketmq_producer_connections`: connections registered by producer heartbeats, by client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConnections {
    pub language: String,
    /// The client's version ordinal (printed by its `MQVersion` name, as RocketMQ prints it:
    /// [`crate::remoting::version::version_name`]).
    pub version: i32,
    pub count: u64,
}

/// `rocketmq_consumer_connections`: one group's connections, by client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConnections {
    pub consumer_group: String,
    pub language: String,
    pub version: i32,
    /// `push` or `pull` (RocketMQ's `ConsumeType.getTypeCN()` lowercased).
    pub consume_mode: String,
    pub is_system: bool,
    pub count: u64,
}

/// One (request code, response code) latency histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcSample {
    pub request_code: i32,
    pub response_code: i32,
    pub latency_ms: Histogram<9>,
}

/// Everything a metrics scrape shows, at one instant. Every list is sorted by its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// `cluster` label.
    pub cluster: String,
    /// `node_id` label (the broker name).
    pub node_id: String,
    pub broker_permission: u32,
    pub topic_number: u64,
    pub consumer_group_number: u64,
    pub messages_in: Vec<InSample>,
    pub messages_out: Vec<OutSample>,
    pub consumers: Vec<ConsumerSample>,
    pub send_to_dlq: Vec<DlqSample>,
    pub producer_connections: Vec<ProducerConnections>,
    pub consumer_connections: Vec<ConsumerConnections>,
    /// Real topic → commits.
    pub commit_messages: Vec<(String, u64)>,
    /// Real topic → rollbacks.
    pub rollback_messages: Vec<(String, u64)>,
    /// Unresolved half messages (all topics: the core keeps them by offset, not by topic).
    pub half_messages: u64,
    pub rpc_latency: Vec<RpcSample>,
    /// The store's disk usage as the driver last measured it (used bytes of the store's file
    /// system, as RocketMQ measures it); before any measurement, the CommitLog bytes kept.
    pub storage_size_bytes: u64,
    /// CommitLog bytes written but not yet durable.
    pub storage_flush_behind_bytes: u64,
    /// CommitLog bytes not yet dispatched to the ConsumeQueues: always 0, dispatch is part of
    /// the put.
    pub storage_dispatch_behind_bytes: u64,
    /// How long ago the oldest message kept was stored; `None` when the store is empty.
    pub storage_message_reserve_time_ms: Option<u64>,
    pub timer_enqueue_total: u64,
    pub timer_dequeue_total: u64,
    /// Timer messages waiting in the wheel.
    pub timing_messages: u64,
}

impl<S: SegmentStorage> Broker<S> {
    /// The metric values at `now_ms` (see [`metrics`](self)); reads only, changes nothing.
    pub fn metrics_snapshot(&self, now_ms: u64) -> MetricsSnapshot {
        let m = &self.metrics;
        let mut messages_in = Vec::new();
        for (topic, by_type) in &m.messages_in {
            let is_system = self.is_system_topic(topic);
            for (kind, counters) in MessageType::ALL.iter().zip(by_type) {
                if counters.messages > 0 {
                    messages_in.push(InSample {
                        topic: topic.clone(),
                        message_type: *kind,
                        is_system,
                        counters: *counters,
                    });
                }
            }
        }
        let mut messages_out = Vec::new();
        for (group, topics) in &m.messages_out {
            for (topic, counters) in topics {
                messages_out.push(OutSample {
                    topic: topic.clone(),
                    consumer_group: group.clone(),
                    is_system: self.is_system_topic(topic) || is_system_group(group),
                    counters: *counters,
                });
            }
        }
        messages_out
            .sort_by(|a, b| (&a.topic, &a.consumer_group).cmp(&(&b.topic, &b.consumer_group)));

        let mut send_to_dlq = Vec::new();
        for (group, topics) in &m.dlq {
            for (topic, messages) in topics {
                send_to_dlq.push(DlqSample {
                    consumer_group: group.clone(),
                    topic: topic.clone(),
                    is_system: self.is_system_topic(topic) || is_system_group(group),
                    messages: *messages,
                });
            }
        }

        let mut producer_counts: BTreeMap<(String, i32), u64> = BTreeMap::new();
        for channels in self.clients.producers.values() {
            for channel in channels.values() {
                *producer_counts
                    .entry((channel.language.clone(), channel.version))
                    .or_default() += 1;
            }
        }
        let producer_connections = producer_counts
            .into_iter()
            .map(|((language, version), count)| ProducerConnections {
                language: language.to_ascii_lowercase(),
                version,
                count,
            })
            .collect();
        let mut consumer_counts: BTreeMap<(String, String, i32, String), u64> = BTreeMap::new();
        for (group, consumers) in &self.clients.consumers {
            let mode = consume_mode(&consumers.consume_type);
            for channel in consumers.channels.values() {
                *consumer_counts
                    .entry((
                        group.clone(),
                        channel.language.to_ascii_lowercase(),
                        channel.version,
                        mode.to_owned(),
                    ))
                    .or_default() += 1;
            }
        }
        let consumer_connections = consumer_counts
            .into_iter()
            .map(
                |((consumer_group, language, version, consume_mode), count)| ConsumerConnections {
                    is_system: is_system_group(&consumer_group),
                    consumer_group,
                    language,
                    version,
                    consume_mode,
                    count,
                },
            )
            .collect();

        let mut commit_messages = Vec::new();
        let mut rollback_messages = Vec::new();
        for (topic, [commits, rollbacks]) in &m.transactions {
            if *commits > 0 {
                commit_messages.push((topic.clone(), *commits));
            }
            if *rollbacks > 0 {
                rollback_messages.push((topic.clone(), *rollbacks));
            }
        }

        let rpc_latency = m
            .rpc
            .iter()
            .map(|(&(request_code, response_code), h)| RpcSample {
                request_code,
                response_code,
                latency_ms: *h,
            })
            .collect();

        let written = self.store.written_offset().0;
        let storage_size_bytes = match self.disk_usage() {
            Some(u) if u.total_bytes > 0 => u.total_bytes - u.available_bytes.min(u.total_bytes),
            _ => written.saturating_sub(self.store.min_commitlog_offset().0),
        };
        let earliest = self.earliest_message_time_ms();
        MetricsSnapshot {
            cluster: self.config.broker_cluster_name.clone(),
            node_id: self.config.broker_name.clone(),
            broker_permission: self.config.broker_permission,
            topic_number: self.topics.topics.len() as u64,
            consumer_group_number: self.subscription_groups().len() as u64,
            messages_in,
            messages_out,
            consumers: self.consumer_samples(now_ms),
            send_to_dlq,
            producer_connections,
            consumer_connections,
            commit_messages,
            rollback_messages,
            half_messages: self.pending_transaction_count(),
            rpc_latency,
            storage_size_bytes,
            storage_flush_behind_bytes: written.saturating_sub(self.store.durable_offset().0),
            storage_dispatch_behind_bytes: 0,
            storage_message_reserve_time_ms: (earliest >= 0)
                .then(|| now_ms.saturating_sub(earliest as u64)),
            timer_enqueue_total: m.timer_enqueue_total,
            timer_dequeue_total: m.timer_dequeue_total,
            timing_messages: self.timer_stats().pending,
        }
    }

    /// Lag, inflight and ready messages of every group with committed offsets or pulls, per
    /// topic.
    fn consumer_samples(&self, now_ms: u64) -> Vec<ConsumerSample> {
        // (group, topic) → queues with a committed offset.
        let mut pairs: BTreeMap<(&str, &str), BTreeMap<i32, u64>> = BTreeMap::new();
        for (topic, group, queue_id, offset) in self.offsets.entries() {
            pairs
                .entry((group, topic))
                .or_default()
                .insert(queue_id, offset.max(0) as u64);
        }
        for (group, topics) in &self.metrics.pull_offsets {
            for topic in topics.keys() {
                pairs.entry((group.as_str(), topic.as_str())).or_default();
            }
        }
        let mut out = Vec::new();
        for ((group, topic), committed) in pairs {
            if !self.topics.topics.contains_key(topic) {
                continue;
            }
            let mut sample = ConsumerSample {
                consumer_group: group.to_owned(),
                topic: topic.to_owned(),
                is_retry: topic.starts_with(crate::topic::RETRY_GROUP_TOPIC_PREFIX),
                is_system: self.is_system_topic(topic) || is_system_group(group),
                lag_messages: 0,
                inflight_messages: 0,
                ready_messages: 0,
                lag_latency_ms: 0,
                queueing_latency_ms: 0,
            };
            for queue_id in self.store.queue_ids(topic) {
                let end = self.store.max_offset(topic, queue_id).0;
                let min = self.store.min_offset(topic, queue_id).0;
                let committed = committed
                    .get(&queue_id)
                    .copied()
                    .unwrap_or(min)
                    .clamp(min, end);
                let pulled = self
                    .metrics
                    .pull_offset(group, topic, queue_id)
                    .unwrap_or(committed)
                    .clamp(committed, end);
                sample.lag_messages += end - committed;
                sample.inflight_messages += pulled - committed;
                sample.ready_messages += end - pulled;
                let age = |offset: u64| {
                    if offset >= end {
                        return 0;
                    }
                    self.store
                        .store_time_ms_at(topic, queue_id, offset)
                        .map_or(0, |t| now_ms.saturating_sub(t.max(0) as u64))
                };
                sample.lag_latency_ms = sample.lag_latency_ms.max(age(committed));
                sample.queueing_latency_ms = sample.queueing_latency_ms.max(age(pulled));
            }
            out.push(sample);
        }
        out
    }
}

/// `consume_mode` from a heartbeat's `consumeType` (`CONSUME_ACTIVELY` is pull).
fn consume_mode(consume_type: &str) -> &'static str {
    match consume_type {
        "CONSUME_ACTIVELY" => "pull",
        "CONSUME_POP" => "pop",
        _ => "push",
    }
}
