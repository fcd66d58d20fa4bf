//! Where a consumer starts in each queue (its committed offset, else `consumeFromWhere`), how
//! its consumed position advances, and how offsets are committed: to the group's admin member
//! (the master, a slave while the master is away) in clustering mode, locally when
//! broadcasting.

use super::*;

impl Engine {
    pub(super) fn compute_start_offset(&mut self, now_ms: u64, queue: MessageQueue, epoch: u64) {
        if !self.clustering() {
            if let Some(offset) = self.local_offsets.get(&queue).copied() {
                self.set_start_offset(now_ms, &queue, epoch, offset);
            } else {
                self.start_from_where(now_ms, queue, epoch);
            }
            return;
        }
        let Some(addr) = self.base.admin_addr(now_ms, &queue.broker_name) else {
            // Unknown broker: the next rebalance tries again.
            self.process_queues.remove(&queue);
            return;
        };
        let command =
            requests::query_consumer_offset(&self.config.group, &queue.topic, queue.queue_id);
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            command,
            now_ms + self.config.client.request_timeout_ms,
            Call::QueryOffset { queue, epoch },
        );
    }

    /// No committed offset: where `consume_from_where` says to start.
    pub(super) fn start_from_where(&mut self, now_ms: u64, queue: MessageQueue, epoch: u64) {
        let is_retry = queue.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX);
        let timestamp = match self.config.consume_from_where {
            ConsumeFromWhere::FirstOffset => {
                self.set_start_offset(now_ms, &queue, epoch, 0);
                return;
            }
            ConsumeFromWhere::LastOffset if is_retry => {
                self.set_start_offset(now_ms, &queue, epoch, 0);
                return;
            }
            ConsumeFromWhere::LastOffset => None,
            ConsumeFromWhere::Timestamp if is_retry => None,
            ConsumeFromWhere::Timestamp => Some(
                self.config.consume_timestamp_ms.unwrap_or(
                    self.created_ms
                        .saturating_sub(DEFAULT_CONSUME_TIMESTAMP_BACK_MS),
                ),
            ),
        };
        let Some(addr) = self.base.admin_addr(now_ms, &queue.broker_name) else {
            self.process_queues.remove(&queue);
            return;
        };
        let (command, call) = match timestamp {
            None => (
                requests::get_max_offset(&queue.topic, queue.queue_id),
                Call::MaxOffset { queue, epoch },
            ),
            Some(ts) => (
                requests::search_offset_by_timestamp(&queue.topic, queue.queue_id, ts as i64),
                Call::SearchOffset { queue, epoch },
            ),
        };
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            command,
            now_ms + self.config.client.request_timeout_ms,
            call,
        );
    }

    pub(super) fn set_start_offset(
        &mut self,
        now_ms: u64,
        queue: &MessageQueue,
        epoch: u64,
        offset: i64,
    ) {
        let Some(pq) = self
            .process_queues
            .get_mut(queue)
            .filter(|pq| pq.epoch == epoch)
        else {
            return;
        };
        pq.next_offset = Some(offset);
        pq.pull_at_ms = Some(now_ms);
        if self.config.lite {
            // A lite consumer's position is its consumed offset from the start.
            self.offsets.insert(queue.clone(), offset);
        }
    }

    pub(super) fn on_offset_answer(&mut self, now_ms: u64, call: Call, command: &RemotingCommand) {
        let offset = command.ext_num::<i64>("offset");
        match call {
            Call::QueryOffset { queue, epoch } => match (command.code, offset) {
                (response::SUCCESS, Ok(offset)) if offset >= 0 => {
                    self.set_start_offset(now_ms, &queue, epoch, offset)
                }
                (response::QUERY_NOT_FOUND, _) | (response::SUCCESS, Ok(_)) => {
                    self.start_from_where(now_ms, queue, epoch)
                }
                _ => self.start_failed(&queue, epoch),
            },
            Call::MaxOffset { queue, epoch } | Call::SearchOffset { queue, epoch } => {
                match (command.code, offset) {
                    (response::SUCCESS, Ok(offset)) => {
                        self.set_start_offset(now_ms, &queue, epoch, offset)
                    }
                    _ => self.start_failed(&queue, epoch),
                }
            }
            _ => {}
        }
    }

    /// The start offset could not be found: the queue is dropped and the next rebalance
    /// (at most `rebalance_interval_ms` away) tries again, as Java does.
    pub(super) fn start_failed(&mut self, queue: &MessageQueue, epoch: u64) {
        if self
            .process_queues
            .get(queue)
            .is_some_and(|pq| pq.epoch == epoch && pq.next_offset.is_none())
        {
            self.process_queues.remove(queue);
        }
    }

    /// Moves `queue`'s committed offset forward (never back).
    pub(super) fn advance_offset(&mut self, queue: &MessageQueue, offset: i64) {
        let changed = match self.offsets.get_mut(queue) {
            Some(current) if offset > *current => {
                *current = offset;
                true
            }
            Some(_) => false,
            None => {
                self.offsets.insert(queue.clone(), offset);
                true
            }
        };
        if !changed {
            return;
        }
        self.dirty_offsets.insert(queue.clone());
        if !self.clustering() {
            self.local_offsets
                .insert(queue.clone(), self.offsets[queue]);
        }
    }

    /// Commits offsets: every owned queue's (`all`) or only those changed since the last
    /// commit. Clustering: UPDATE_CONSUMER_OFFSET oneway to each queue's master; broadcasting:
    /// a [`ClientOutput::PersistLocalOffsets`].
    pub fn persist_offsets(&mut self, now_ms: u64, all: bool) {
        let _ = now_ms;
        if !self.clustering() {
            if all || !self.dirty_offsets.is_empty() {
                self.dirty_offsets.clear();
                self.outputs.push_back(ClientOutput::PersistLocalOffsets {
                    offsets: self.local_offsets.clone(),
                });
            }
            return;
        }
        let queues: Vec<MessageQueue> = self
            .offsets
            .keys()
            .filter(|q| {
                self.process_queues.contains_key(*q) && (all || self.dirty_offsets.contains(*q))
            })
            .cloned()
            .collect();
        for queue in queues {
            self.persist_one(now_ms, &queue);
        }
    }

    pub(super) fn persist_one(&mut self, now_ms: u64, queue: &MessageQueue) {
        let Some(offset) = self.offsets.get(queue).copied() else {
            return;
        };
        self.dirty_offsets.remove(queue);
        if !self.clustering() {
            self.local_offsets.insert(queue.clone(), offset);
            return;
        }
        let Some(addr) = self.base.admin_addr(now_ms, &queue.broker_name) else {
            return;
        };
        let command = requests::update_consumer_offset(
            &self.config.group,
            &queue.topic,
            queue.queue_id,
            offset,
        );
        self.rpcs.oneway(&mut self.outputs, &addr, command);
    }
}
