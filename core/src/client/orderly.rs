//! Orderly consumption: queue locks and the one-batch-at-a-time consume loop of a push consumer
//! with an orderly listener (RocketMQ's `ConsumeMessageOrderlyService` and the lock half of
//! `RebalanceImpl`).
//!
//! In clustering mode a queue is consumed only by the client holding its broker-side lock:
//!
//! ```text
//! rebalance allocates q ──► LOCK_BATCH_MQ {q} ──(not in lockOKMQSet)──► rebalance again in 500 ms
//!                                │ locked
//!                                ▼
//!        process queue created, start offset looked up, pulls run while locked
//!                                │
//!   every lock_interval_ms: LOCK_BATCH_MQ of every owned queue per broker; queues missing
//!   from the answer are marked unlocked (no pulls, no consumption)
//!                                │
//!   consume loop per queue: the head batch of the process queue (≤ batch size, in offset order)
//!   goes to the application only when no batch of the queue is out and the lock is held and
//!   younger than lock_max_live_time_ms (otherwise: relock that queue, 3 s between failures)
//!        SUCCESS ──► the batch leaves the process queue, the offset moves past it
//!        SUSPEND_CURRENT_QUEUE_A_MOMENT ──► each message below max_reconsume_times gets
//!            reconsumeTimes + 1; a message at the limit is sent to %RETRY%<group> (which the
//!            broker routes to %DLQ%<group>, the group holding locks); if any message stays,
//!            the same batch is offered again after suspend_current_queue_time_ms, else the
//!            batch counts as consumed
//!                                │
//! rebalance drops q ──► UNLOCK_BATCH_MQ (oneway): at once, after the batch out, or after
//!                       unlock_delay_ms if messages were still cached; shutdown unlocks all
//! ```
//!
//! Broadcasting consumers take no locks: every queue counts as locked.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::engine::Engine;
use super::push::ConsumeToken;
use super::requests;
use super::{ClientOutput, MessageQueue};
use crate::message::{keys, Properties};
use crate::remoting::codes::response;
use crate::remoting::headers::SendMessageRequestHeader;
use crate::remoting::RemotingCommand;

/// An orderly listener's verdict on a batch (RocketMQ's `ConsumeOrderlyStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeOrderlyStatus {
    /// The batch is done; the queue's next messages follow.
    Success,
    /// Offer the same batch again after the suspend time, with reconsumeTimes + 1; the queue's
    /// later messages wait.
    SuspendCurrentQueueAMoment,
}

/// Orderly consumption settings (RocketMQ's defaults).
#[derive(Clone, Debug)]
pub struct OrderlyConfig {
    /// Period of the lock refresh of every owned queue (`rocketmq.client.rebalance.lockInterval`).
    pub lock_interval_ms: u64,
    /// A lock not refreshed for this long is not trusted for consumption
    /// (`rocketmq.client.rebalance.lockMaxLiveTime`; the broker's own expiry is 60 s).
    pub lock_max_live_time_ms: u64,
    /// How long a suspended queue waits (`suspendCurrentQueueTimeMillis`).
    pub suspend_current_queue_time_ms: u64,
    /// Local redeliveries before a message is sent to the DLQ (`maxReconsumeTimes`; Java's
    /// -1 means `Integer.MAX_VALUE` for orderly consumers: never).
    pub max_reconsume_times: i32,
    /// A queue given up while messages of it were still cached is unlocked this much later
    /// (`rocketmq.client.unlockDelayTimeMills`).
    pub unlock_delay_ms: u64,
}

impl Default for OrderlyConfig {
    fn default() -> Self {
        Self {
            lock_interval_ms: 20_000,
            lock_max_live_time_ms: 30_000,
            suspend_current_queue_time_ms: 1_000,
            max_reconsume_times: i32::MAX,
            unlock_delay_ms: 20_000,
        }
    }
}

/// The first lock refresh comes this long after start (Java's initial delay).
const FIRST_LOCK_ALL_DELAY_MS: u64 = 1_000;
/// A rebalance whose locks failed runs again this soon (`rebalanceLater(500)`).
const REBALANCE_LATER_MS: u64 = 500;
/// An unlocked queue is pulled again this much later (`PULL_TIME_DELAY_MILLS_WHEN_EXCEPTION`).
const PULL_DELAY_WHEN_UNLOCKED_MS: u64 = 3_000;
/// A failed relock of a queue with messages waiting is tried again this much later.
const RELOCK_DELAY_MS: u64 = 3_000;

/// What an orderly request in flight was for.
#[derive(Debug)]
pub(crate) enum OrderlyCall {
    /// LOCK_BATCH_MQ of newly allocated queues.
    LockNew { queues: Vec<MessageQueue> },
    /// LOCK_BATCH_MQ of owned queues: the periodic refresh, or (`single`) the relock of one
    /// queue whose consumption found its lock missing or stale.
    Relock {
        queues: Vec<MessageQueue>,
        single: bool,
    },
    /// UNLOCK_BATCH_MQ at shutdown.
    Unlock,
    /// The dead-letter send of one message of a suspended batch.
    SendBack { token: ConsumeToken, offset: i64 },
}

/// Lock and consumption state of one owned queue.
#[derive(Debug)]
struct QueueState {
    /// The process queue's epoch this state belongs to.
    epoch: u64,
    locked: bool,
    last_lock_ms: u64,
    /// The batch with the application (or waiting for its dead-letter sends).
    consuming: Option<ConsumeToken>,
    /// Suspended or waiting to relock until then.
    resume_at_ms: Option<u64>,
    relock_in_flight: bool,
}

/// A batch handed to the application.
#[derive(Debug)]
struct Batch {
    queue: MessageQueue,
    epoch: u64,
    offsets: Vec<i64>,
    /// Dead-letter sends not yet answered.
    pending_send_backs: usize,
    /// The batch is offered again (some message is below the limit or its send failed).
    suspend: bool,
    suspend_ms: u64,
}

/// The orderly part of a push consumer's engine.
#[derive(Debug)]
pub(crate) struct OrderlyState {
    config: OrderlyConfig,
    clustering: bool,
    queues: BTreeMap<MessageQueue, QueueState>,
    batches: BTreeMap<ConsumeToken, Batch>,
    /// The latest allocation (over all topics).
    allocated: BTreeSet<MessageQueue>,
    /// Queues with a LOCK_BATCH_MQ in flight for adding them.
    locking: BTreeSet<MessageQueue>,
    /// Given-up queues to unlock once their batch is answered.
    unlock_after_batch: BTreeSet<MessageQueue>,
    /// Given-up queues to unlock at the instant.
    delayed_unlocks: Vec<(u64, MessageQueue)>,
    next_lock_all_ms: u64,
}

impl OrderlyState {
    pub(crate) fn new(config: OrderlyConfig, clustering: bool, now_ms: u64) -> Self {
        let first = FIRST_LOCK_ALL_DELAY_MS.min(config.lock_interval_ms.max(1));
        Self {
            config,
            clustering,
            queues: BTreeMap::new(),
            batches: BTreeMap::new(),
            allocated: BTreeSet::new(),
            locking: BTreeSet::new(),
            unlock_after_batch: BTreeSet::new(),
            delayed_unlocks: Vec::new(),
            next_lock_all_ms: now_ms + first,
        }
    }

    /// The next instant the orderly loop has something to do.
    pub(crate) fn next_timeout_ms(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        if self.clustering {
            consider(self.next_lock_all_ms);
        }
        for (at, _) in &self.delayed_unlocks {
            consider(*at);
        }
        for state in self.queues.values() {
            if let Some(at) = state.resume_at_ms.filter(|_| state.consuming.is_none()) {
                consider(at);
            }
        }
        next
    }

    fn is_locked(&self, queue: &MessageQueue, epoch: u64) -> bool {
        !self.clustering
            || self
                .queues
                .get(queue)
                .is_some_and(|s| s.epoch == epoch && s.locked)
    }
}

/// `{"lockOKMQSet":[…]}`.
#[derive(Deserialize)]
struct LockResponse {
    #[serde(rename = "lockOKMQSet", default)]
    lock_ok_mq_set: Vec<LockedQueue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockedQueue {
    #[serde(default)]
    broker_name: String,
    #[serde(default)]
    queue_id: i32,
    #[serde(default)]
    topic: String,
}

fn locked_set(command: &RemotingCommand) -> Option<BTreeSet<MessageQueue>> {
    if command.code != response::SUCCESS {
        return None;
    }
    let body: LockResponse = serde_json::from_slice(&command.body).ok()?;
    Some(
        body.lock_ok_mq_set
            .into_iter()
            .map(|q| MessageQueue::new(q.topic, q.broker_name, q.queue_id))
            .collect(),
    )
}

/// `queues` grouped by broker name.
fn by_broker(
    queues: impl IntoIterator<Item = MessageQueue>,
) -> BTreeMap<String, Vec<MessageQueue>> {
    let mut grouped: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
    for queue in queues {
        grouped
            .entry(queue.broker_name.clone())
            .or_default()
            .push(queue);
    }
    grouped
}

impl Engine {
    fn orderly_config(&self) -> Option<&OrderlyConfig> {
        self.orderly.as_ref().map(|o| &o.config)
    }

    /// Rebalance result for `topic`: queues no longer allocated were already removed; new ones
    /// are locked before they are added (broadcasting: added at once).
    pub(super) fn orderly_rebalanced(
        &mut self,
        now_ms: u64,
        topic: &str,
        allocated: BTreeSet<MessageQueue>,
    ) {
        let clustering = self.clustering();
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        orderly.allocated.retain(|q| q.topic != topic);
        orderly.allocated.extend(allocated.iter().cloned());
        let new: Vec<MessageQueue> = allocated
            .into_iter()
            .filter(|q| !self.process_queues.contains_key(q) && !orderly.locking.contains(q))
            .collect();
        if !clustering {
            for queue in new {
                self.orderly_add_locked(now_ms, queue);
            }
            return;
        }
        for (broker, queues) in by_broker(new) {
            let Some(addr) = self.base.master_addr(&broker).map(str::to_owned) else {
                continue;
            };
            let command =
                requests::lock_batch_mq(&self.config.group, &self.base.client_id, &queues);
            if let Some(orderly) = self.orderly.as_mut() {
                orderly.locking.extend(queues.iter().cloned());
            }
            self.rpcs.call(
                &mut self.outputs,
                &addr,
                command,
                now_ms + self.config.client.request_timeout_ms,
                super::engine::Call::Orderly(OrderlyCall::LockNew { queues }),
            );
        }
    }

    /// Adds `queue` as owned and locked now.
    fn orderly_add_locked(&mut self, now_ms: u64, queue: MessageQueue) {
        self.add_process_queue(now_ms, queue.clone());
        let Some(epoch) = self.process_queues.get(&queue).map(|pq| pq.epoch) else {
            return;
        };
        if let Some(orderly) = self.orderly.as_mut() {
            orderly.queues.insert(
                queue,
                QueueState {
                    epoch,
                    locked: true,
                    last_lock_ms: now_ms,
                    consuming: None,
                    resume_at_ms: None,
                    relock_in_flight: false,
                },
            );
        }
    }

    /// `queue` is being given up (its process queue still exists).
    pub(super) fn orderly_queue_removed(&mut self, now_ms: u64, queue: &MessageQueue) {
        let clustering = self.clustering();
        let cached = self
            .process_queues
            .get(queue)
            .is_some_and(|pq| !pq.msgs.is_empty());
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        let state = orderly.queues.remove(queue);
        if !clustering {
            return;
        }
        if state.is_some_and(|s| s.consuming.is_some()) {
            // The application still works on a batch of it: keep the lock until it answers,
            // so no other consumer starts on the next messages meanwhile.
            orderly.unlock_after_batch.insert(queue.clone());
        } else if cached {
            let at = now_ms + orderly.config.unlock_delay_ms;
            orderly.delayed_unlocks.push((at, queue.clone()));
        } else {
            self.orderly_unlock_oneway(queue);
        }
    }

    fn orderly_owns(&self, queue: &MessageQueue) -> bool {
        self.process_queues.contains_key(queue)
            || self
                .orderly
                .as_ref()
                .is_some_and(|o| o.locking.contains(queue))
    }

    fn orderly_unlock_oneway(&mut self, queue: &MessageQueue) {
        let Some(addr) = self.base.master_addr(&queue.broker_name).map(str::to_owned) else {
            return;
        };
        let command = requests::unlock_batch_mq(
            &self.config.group,
            &self.base.client_id,
            std::slice::from_ref(queue),
        );
        self.rpcs.oneway(&mut self.outputs, &addr, command);
    }

    /// `Some(delay)` when `queue` must not be pulled now (orderly, clustering, not locked).
    pub(super) fn orderly_pull_delay_ms(&self, queue: &MessageQueue) -> Option<u64> {
        let orderly = self.orderly.as_ref()?;
        let epoch = self.process_queues.get(queue)?.epoch;
        (!orderly.is_locked(queue, epoch)).then_some(PULL_DELAY_WHEN_UNLOCKED_MS)
    }

    /// Lock refresh, delayed unlocks, and the consume loop of every owned queue.
    pub(super) fn orderly_tick(&mut self, now_ms: u64) {
        let clustering = self.clustering();
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        if clustering && now_ms >= orderly.next_lock_all_ms {
            orderly.next_lock_all_ms = now_ms + orderly.config.lock_interval_ms.max(1);
            self.orderly_lock_all(now_ms);
        }
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut orderly.delayed_unlocks)
            .into_iter()
            .partition(|(at, _)| *at <= now_ms);
        orderly.delayed_unlocks = later;
        for (_, queue) in due {
            if !self.orderly_owns(&queue) {
                self.orderly_unlock_oneway(&queue);
            }
        }
        let queues: Vec<MessageQueue> = self.process_queues.keys().cloned().collect();
        for queue in queues {
            self.orderly_try_consume(now_ms, &queue);
        }
    }

    /// LOCK_BATCH_MQ of every owned queue, per broker (`lockAll`).
    fn orderly_lock_all(&mut self, now_ms: u64) {
        let owned: Vec<MessageQueue> = self.process_queues.keys().cloned().collect();
        for (broker, queues) in by_broker(owned) {
            let Some(addr) = self.base.master_addr(&broker).map(str::to_owned) else {
                continue;
            };
            let command =
                requests::lock_batch_mq(&self.config.group, &self.base.client_id, &queues);
            self.rpcs.call(
                &mut self.outputs,
                &addr,
                command,
                now_ms + self.config.client.request_timeout_ms,
                super::engine::Call::Orderly(OrderlyCall::Relock {
                    queues,
                    single: false,
                }),
            );
        }
    }

    /// Hands the head batch of `queue` to the application if nothing stands in the way.
    fn orderly_try_consume(&mut self, now_ms: u64, queue: &MessageQueue) {
        let clustering = self.clustering();
        let batch_max = self.config.consume_message_batch_max_size.max(1);
        let Some(pq) = self.process_queues.get(queue) else {
            return;
        };
        let epoch = pq.epoch;
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        let max_live_ms = orderly.config.lock_max_live_time_ms;
        let state = orderly
            .queues
            .entry(queue.clone())
            .or_insert_with(|| QueueState {
                epoch,
                locked: !clustering,
                last_lock_ms: now_ms,
                consuming: None,
                resume_at_ms: None,
                relock_in_flight: false,
            });
        if state.epoch != epoch {
            // A state left from an earlier assignment of the queue.
            *state = QueueState {
                epoch,
                locked: false,
                last_lock_ms: 0,
                consuming: None,
                resume_at_ms: None,
                relock_in_flight: false,
            };
        }
        if state.consuming.is_some() {
            return;
        }
        match state.resume_at_ms {
            Some(at) if at > now_ms => return,
            Some(_) => state.resume_at_ms = None,
            None => {}
        }
        if pq.msgs.is_empty() {
            return;
        }
        if clustering && (!state.locked || now_ms.saturating_sub(state.last_lock_ms) > max_live_ms)
        {
            if state.relock_in_flight {
                return;
            }
            state.relock_in_flight = true;
            let Some(addr) = self.base.master_addr(&queue.broker_name).map(str::to_owned) else {
                state.relock_in_flight = false;
                state.resume_at_ms = Some(now_ms + RELOCK_DELAY_MS);
                return;
            };
            let command = requests::lock_batch_mq(
                &self.config.group,
                &self.base.client_id,
                std::slice::from_ref(queue),
            );
            self.rpcs.call(
                &mut self.outputs,
                &addr,
                command,
                now_ms + self.config.client.request_timeout_ms,
                super::engine::Call::Orderly(OrderlyCall::Relock {
                    queues: vec![queue.clone()],
                    single: true,
                }),
            );
            return;
        }
        let offsets: Vec<i64> = pq.msgs.keys().take(batch_max).copied().collect();
        let messages = offsets
            .iter()
            .filter_map(|o| pq.msgs.get(o).cloned())
            .collect();
        self.next_token += 1;
        let token = ConsumeToken(self.next_token);
        state.consuming = Some(token);
        let suspend_ms = orderly.config.suspend_current_queue_time_ms;
        orderly.batches.insert(
            token,
            Batch {
                queue: queue.clone(),
                epoch,
                offsets,
                pending_send_backs: 0,
                suspend: false,
                suspend_ms,
            },
        );
        self.outputs.push_back(ClientOutput::Consume {
            token,
            queue: queue.clone(),
            messages,
        });
    }

    /// The application's verdict on an orderly batch; `suspend_ms` overrides the configured
    /// suspend time for this batch (the listener context's `suspendCurrentQueueTimeMillis`).
    pub(super) fn orderly_consume_result(
        &mut self,
        now_ms: u64,
        token: ConsumeToken,
        status: ConsumeOrderlyStatus,
        suspend_ms: Option<u64>,
    ) {
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        let Some(mut batch) = orderly.batches.remove(&token) else {
            return;
        };
        let current = self
            .process_queues
            .get(&batch.queue)
            .is_some_and(|pq| pq.epoch == batch.epoch);
        if !current || self.shut_down {
            // The queue was given up meanwhile: the batch's result is not committed.
            if orderly.unlock_after_batch.remove(&batch.queue) && !self.orderly_owns(&batch.queue) {
                self.orderly_unlock_oneway(&batch.queue);
            }
            return;
        }
        if let Some(ms) = suspend_ms {
            batch.suspend_ms = ms;
        }
        match status {
            ConsumeOrderlyStatus::Success => {
                self.orderly_finish(now_ms, token, batch);
            }
            ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => {
                let max = orderly.config.max_reconsume_times;
                let mut dead: Vec<i64> = Vec::new();
                if let Some(pq) = self.process_queues.get_mut(&batch.queue) {
                    for offset in &batch.offsets {
                        let Some(message) = pq.msgs.get_mut(offset) else {
                            continue;
                        };
                        if message.record.reconsume_times >= max {
                            dead.push(*offset);
                        } else {
                            batch.suspend = true;
                            message.record.reconsume_times += 1;
                        }
                    }
                }
                if !dead.is_empty() {
                    // Java's checkReconsumeTimes sends these synchronously; here the batch
                    // stays out until every send is answered.
                    batch.pending_send_backs = dead.len();
                    let queue = batch.queue.clone();
                    if let Some(orderly) = self.orderly.as_mut() {
                        orderly.batches.insert(token, batch);
                    }
                    for offset in dead {
                        self.orderly_send_to_dlq(now_ms, token, &queue, offset);
                    }
                    return;
                }
                self.orderly_finish(now_ms, token, batch);
            }
        }
        self.tick(now_ms);
    }

    /// The batch is settled: suspended (offered again later) or consumed.
    fn orderly_finish(&mut self, now_ms: u64, token: ConsumeToken, batch: Batch) {
        if let Some(state) = self
            .orderly
            .as_mut()
            .and_then(|o| o.queues.get_mut(&batch.queue))
            .filter(|s| s.epoch == batch.epoch && s.consuming == Some(token))
        {
            state.consuming = None;
            if batch.suspend {
                state.resume_at_ms = Some(now_ms + batch.suspend_ms);
            }
        }
        if !batch.suspend {
            self.consumed(&batch.queue, batch.epoch, &batch.offsets);
        }
    }

    /// Sends the message at `offset` of `queue` to `%RETRY%<group>` as a new message, as Java's
    /// orderly `sendMessageBack` does through the client's inner producer: the broker puts it
    /// in `%DLQ%<group>` (reconsume times beyond the max, or the group holding queue locks).
    fn orderly_send_to_dlq(
        &mut self,
        now_ms: u64,
        token: ConsumeToken,
        queue: &MessageQueue,
        offset: i64,
    ) {
        let Some(max) = self.orderly_config().map(|c| c.max_reconsume_times) else {
            return;
        };
        let Some(message) = self
            .process_queues
            .get(queue)
            .and_then(|pq| pq.msgs.get(&offset))
            .cloned()
        else {
            self.orderly_send_back_done(now_ms, token, offset, true);
            return;
        };
        let Some(addr) = self.base.master_addr(&queue.broker_name).map(str::to_owned) else {
            self.orderly_send_back_done(now_ms, token, offset, false);
            return;
        };
        let record = &message.record;
        let mut properties: Properties = record.properties.iter().collect();
        if properties
            .get(keys::ORIGIN_MESSAGE_ID)
            .is_none_or(|id| id.trim().is_empty())
        {
            properties.insert(keys::ORIGIN_MESSAGE_ID, message.msg_id());
        }
        properties.insert(keys::RETRY_TOPIC, record.topic.clone());
        properties.insert(keys::RECONSUME_TIME, record.reconsume_times.to_string());
        properties.insert(keys::MAX_RECONSUME_TIMES, max.to_string());
        properties.remove(keys::TRAN_MSG);
        properties.insert(
            keys::DELAY,
            3i32.saturating_add(record.reconsume_times).to_string(),
        );
        let properties = super::producer::java_map_order(&properties);
        let header = SendMessageRequestHeader {
            producer_group: requests::CLIENT_INNER_PRODUCER_GROUP.to_owned(),
            topic: self.retry_topic(),
            default_topic: crate::topic::AUTO_CREATE_TOPIC_KEY.to_owned(),
            default_topic_queue_nums: 4,
            queue_id: 0,
            sys_flag: 0,
            born_timestamp_ms: now_ms as i64,
            flag: record.flag,
            properties: Some(properties.encode()),
            reconsume_times: Some(record.reconsume_times),
            unit_mode: false,
            max_reconsume_times: Some(max),
            batch: false,
            broker_name: None,
        };
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            requests::send_message(&header, record.body.clone()),
            now_ms + self.config.client.request_timeout_ms,
            super::engine::Call::Orderly(OrderlyCall::SendBack { token, offset }),
        );
    }

    /// One dead-letter send of a suspended batch is answered.
    fn orderly_send_back_done(&mut self, now_ms: u64, token: ConsumeToken, offset: i64, ok: bool) {
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        let Some(mut batch) = orderly.batches.remove(&token) else {
            return;
        };
        if !ok {
            // Java: a failed send keeps the queue suspended on that message.
            batch.suspend = true;
            if let Some(message) = self
                .process_queues
                .get_mut(&batch.queue)
                .filter(|pq| pq.epoch == batch.epoch)
                .and_then(|pq| pq.msgs.get_mut(&offset))
            {
                message.record.reconsume_times = message.record.reconsume_times.saturating_add(1);
            }
        }
        batch.pending_send_backs = batch.pending_send_backs.saturating_sub(1);
        if batch.pending_send_backs > 0 {
            if let Some(orderly) = self.orderly.as_mut() {
                orderly.batches.insert(token, batch);
            }
            return;
        }
        let current = self
            .process_queues
            .get(&batch.queue)
            .is_some_and(|pq| pq.epoch == batch.epoch);
        if !current {
            if let Some(orderly) = self.orderly.as_mut() {
                if orderly.unlock_after_batch.remove(&batch.queue)
                    && !self.orderly_owns(&batch.queue)
                {
                    self.orderly_unlock_oneway(&batch.queue);
                }
            }
            return;
        }
        self.orderly_finish(now_ms, token, batch);
    }

    pub(super) fn on_orderly_response(
        &mut self,
        now_ms: u64,
        call: OrderlyCall,
        command: &RemotingCommand,
    ) {
        match call {
            OrderlyCall::LockNew { queues } => {
                let locked = locked_set(command).unwrap_or_default();
                self.orderly_new_locked(now_ms, queues, &locked);
            }
            OrderlyCall::Relock { queues, single } => {
                let locked = locked_set(command);
                self.orderly_relocked(now_ms, &queues, single, locked.as_ref());
            }
            OrderlyCall::Unlock => {}
            OrderlyCall::SendBack { token, offset } => {
                let ok = command.code == response::SUCCESS;
                self.orderly_send_back_done(now_ms, token, offset, ok);
            }
        }
    }

    pub(super) fn on_orderly_failed(&mut self, now_ms: u64, call: OrderlyCall) {
        match call {
            OrderlyCall::LockNew { queues } => {
                self.orderly_new_locked(now_ms, queues, &BTreeSet::new())
            }
            OrderlyCall::Relock { queues, single } => {
                self.orderly_relocked(now_ms, &queues, single, None)
            }
            OrderlyCall::Unlock => {}
            OrderlyCall::SendBack { token, offset } => {
                self.orderly_send_back_done(now_ms, token, offset, false)
            }
        }
    }

    /// Answer to locking new queues: the locked ones still allocated are added; the others
    /// make the rebalance run again soon.
    fn orderly_new_locked(
        &mut self,
        now_ms: u64,
        queues: Vec<MessageQueue>,
        locked: &BTreeSet<MessageQueue>,
    ) {
        let mut all_locked = true;
        for queue in queues {
            let Some(orderly) = self.orderly.as_mut() else {
                return;
            };
            orderly.locking.remove(&queue);
            let wanted = orderly.allocated.contains(&queue);
            if !locked.contains(&queue) {
                all_locked = false;
                continue;
            }
            if self.shut_down || !wanted || self.process_queues.contains_key(&queue) {
                if !self.orderly_owns(&queue) {
                    self.orderly_unlock_oneway(&queue);
                }
                continue;
            }
            self.orderly_add_locked(now_ms, queue);
        }
        if !all_locked {
            self.next_rebalance_ms = self.next_rebalance_ms.min(now_ms + REBALANCE_LATER_MS);
        }
    }

    /// Answer to a lock refresh (`locked` is `None` when the request failed).
    fn orderly_relocked(
        &mut self,
        now_ms: u64,
        queues: &[MessageQueue],
        single: bool,
        locked: Option<&BTreeSet<MessageQueue>>,
    ) {
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        for queue in queues {
            let Some(epoch) = self.process_queues.get(queue).map(|pq| pq.epoch) else {
                continue;
            };
            let Some(state) = orderly.queues.get_mut(queue).filter(|s| s.epoch == epoch) else {
                continue;
            };
            let ok = locked.is_some_and(|set| set.contains(queue));
            if let Some(set) = locked {
                // Java's lockAll: queues missing from the answer lose their lock; a failed
                // request leaves the state as it was (it ages out after lock_max_live_time).
                state.locked = set.contains(queue);
            }
            if ok {
                state.last_lock_ms = now_ms;
            }
            if single {
                state.relock_in_flight = false;
                if !ok {
                    state.resume_at_ms = Some(now_ms + RELOCK_DELAY_MS);
                }
            }
        }
    }

    /// Shutdown, before offsets are committed: every owned (or still held) queue is unlocked.
    pub(super) fn orderly_shutdown(&mut self, now_ms: u64) {
        let clustering = self.clustering();
        if !self.started || self.shut_down {
            return;
        }
        let Some(orderly) = self.orderly.as_mut() else {
            return;
        };
        let mut held: BTreeSet<MessageQueue> = self.process_queues.keys().cloned().collect();
        held.extend(std::mem::take(&mut orderly.unlock_after_batch));
        held.extend(
            std::mem::take(&mut orderly.delayed_unlocks)
                .into_iter()
                .map(|(_, q)| q),
        );
        orderly.batches.clear();
        orderly.queues.clear();
        if !clustering {
            return;
        }
        for (broker, queues) in by_broker(held) {
            let Some(addr) = self.base.master_addr(&broker).map(str::to_owned) else {
                continue;
            };
            let command =
                requests::unlock_batch_mq(&self.config.group, &self.base.client_id, &queues);
            self.rpcs.call(
                &mut self.outputs,
                &addr,
                command,
                now_ms + self.config.client.request_timeout_ms,
                super::engine::Call::Orderly(OrderlyCall::Unlock),
            );
        }
    }

    /// Owned queues whose lock this consumer holds (every owned queue when broadcasting).
    pub(super) fn orderly_locked_queues(&self) -> Vec<MessageQueue> {
        let Some(orderly) = self.orderly.as_ref() else {
            return Vec::new();
        };
        self.process_queues
            .iter()
            .filter(|(q, pq)| orderly.is_locked(q, pq.epoch))
            .map(|(q, _)| q.clone())
            .collect()
    }
}
