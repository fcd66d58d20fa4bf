//! The revive log and redelivery (RocketMQ's `PopReviveService`, on Vostok's own schedule):
//! checkpoints and acks are appended to `rmq_sys_REVIVE_LOG_<cluster>`; a checkpoint whose
//! invisible time has passed has each unacked message copied to the group's POP retry topic
//! (or `%DLQ%<group>` past its `retryMaxTimes`) and closes. Each revive queue's revive offset
//! (the first record an open checkpoint needs) is the consumer offset of
//! [`REVIVE_GROUP`] there; after a restart the open checkpoints are rebuilt from it.

use bytes::Bytes;

use super::super::{Broker, FlushDiskType};
use super::checkpoints::{Acked, CkKey};
use super::records::{AckMsg, PopCheckPoint, ACK_TAG, BATCH_ACK_TAG, CK_TAG};
use super::{revive_topic, REVIVE_GROUP};
use crate::message::{keys, MessageRecord, Properties};
use crate::remoting::pop::{pop_retry_topic, FIRST_POP_TIME_PROPERTY};
use crate::store::{QueueOffset, SegmentStorage, StoreError};
use crate::topic::{perm, TopicConfig, DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};

/// How long a revive that could not store its copies waits before trying again.
const REVIVE_RETRY_MS: u64 = 1_000;
/// Records read per step when rebuilding the open checkpoints.
const RECOVERY_BATCH: u32 = 32;

impl<S: SegmentStorage> Broker<S> {
    pub(in crate::broker) fn revive_topic(&self) -> String {
        revive_topic(&self.config.broker_cluster_name)
    }

    /// The revive log exists from the start, with `reviveQueueNum` queues (RocketMQ's
    /// `TopicConfigManager` creates it the same way).
    pub(in crate::broker) fn ensure_revive_topic(&mut self, now_ms: u64) {
        let topic = self.revive_topic();
        if crate::broker::topics::validate_topic(&topic).is_err()
            || self.topics.topics.contains_key(&topic)
        {
            return;
        }
        let mut config = TopicConfig::new(topic, self.config.pop.revive_queue_num.max(1));
        config.perm = perm::READ_WRITE;
        self.add_start_topic(now_ms, config);
    }

    /// Appends one record to revive queue `revive_qid`; returns its queue offset and where
    /// it ends in the CommitLog.
    fn put_revive_record(
        &mut self,
        now_ms: u64,
        revive_qid: i32,
        tag: &str,
        uniq_key: String,
        body: String,
    ) -> Result<(u64, u64), StoreError> {
        let host = self.store_host();
        let mut properties = Properties::new();
        properties.insert(keys::TAGS, tag);
        properties.insert(keys::UNIQ_KEY, uniq_key);
        properties.insert(keys::WAIT, "false");
        let record = MessageRecord {
            queue_id: revive_qid,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp_ms: now_ms as i64,
            born_host: host,
            store_timestamp_ms: now_ms as i64,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from(body),
            topic: self.revive_topic(),
            properties,
        };
        let put = self.store.put(record)?;
        Ok((
            put.queue_offset.0,
            put.physical_offset.0 + u64::from(put.size_bytes),
        ))
    }

    /// Writes a checkpoint to the revive log and opens it; returns where it ends in the
    /// CommitLog (the group's offset past its messages may be persisted once that is durable).
    pub(super) fn write_checkpoint(
        &mut self,
        now_ms: u64,
        ck: PopCheckPoint,
        revive_qid: i32,
    ) -> Result<u64, StoreError> {
        let uniq_key = format!(
            "{}@{}@{}@{}@{}@{}@{CK_TAG}",
            ck.topic,
            ck.queue_id,
            ck.start_offset,
            ck.group,
            ck.pop_time_ms,
            ck.broker_name.as_deref().unwrap_or_default()
        );
        let body = serde_json::to_string(&ck).unwrap_or_default();
        let (log_offset, end) =
            self.put_revive_record(now_ms, revive_qid, CK_TAG, uniq_key, body)?;
        self.pop.checkpoints.open(ck, revive_qid, log_offset);
        Ok(end)
    }

    /// Writes the ack of `offsets` of checkpoint `key` to its revive queue and marks them;
    /// returns where the record ends in the CommitLog, or `None` when none of them was in
    /// flight (nothing is written: the ack has nothing left to do).
    pub(super) fn write_ack(
        &mut self,
        now_ms: u64,
        key: &CkKey,
        offsets: &[i64],
    ) -> Result<Option<u64>, StoreError> {
        let pending: Vec<i64> = offsets
            .iter()
            .copied()
            .filter(|o| self.pop.checkpoints.is_pending(key, *o))
            .collect();
        let Some(revive_qid) = self.pop.checkpoints.get(key).map(|c| c.revive_qid) else {
            return Ok(None);
        };
        if pending.is_empty() {
            return Ok(None);
        }
        let (tag, ack_offset, list) = match pending.as_slice() {
            [one] => (ACK_TAG, *one, None),
            many => (BATCH_ACK_TAG, -1, Some(many.to_vec())),
        };
        let ack = AckMsg {
            ack_offset,
            ack_offset_list: list,
            broker_name: Some(key.broker_name.clone()),
            group: key.group.clone(),
            pop_time_ms: key.pop_time_ms,
            queue_id: key.queue_id,
            start_offset: key.start_offset,
            topic: key.topic.clone(),
        };
        let uniq_key = format!(
            "{}@{}@{}@{}@{}@{}@{tag}",
            key.topic, key.queue_id, pending[0], key.group, key.pop_time_ms, key.broker_name
        );
        let body = serde_json::to_string(&ack).unwrap_or_default();
        let (_, end) = self.put_revive_record(now_ms, revive_qid, tag, uniq_key, body)?;
        for offset in pending {
            if let Acked::Taken { finished: true } = self.pop.checkpoints.ack(key, offset) {
                self.pop.revive_offsets_dirty.insert(revive_qid);
            }
        }
        Ok(Some(end))
    }

    /// After POP-family puts: the flush policy sees them like any other put.
    pub(super) fn pop_written(&mut self) {
        match self.config.flush_disk_type {
            FlushDiskType::AsyncFlush => self.after_async_put(),
            FlushDiskType::SyncFlush => self.request_sync_if_idle(),
        }
    }

    /// Rebuilds the open checkpoints after a start: every revive queue is read from its
    /// revive offset; checkpoints open, acks close what they name.
    pub(in crate::broker) fn pop_recover(&mut self) -> Result<(), StoreError> {
        if self.is_slave() {
            // A slave's revive log is its master's copy; the master revives.
            return Ok(());
        }
        let topic = self.revive_topic();
        let everything = |_: i64| true;
        for revive_qid in 0..self.config.pop.revive_queue_num as i32 {
            let min = self.store.min_offset(&topic, revive_qid).0;
            let mut offset = self
                .offsets
                .query(&topic, REVIVE_GROUP, revive_qid)
                .map_or(min, |o| (o.max(0) as u64).max(min));
            let max = self.store.max_offset(&topic, revive_qid).0;
            while offset < max {
                let result = self.store.get(
                    &topic,
                    revive_qid,
                    QueueOffset(offset),
                    RECOVERY_BATCH,
                    &everything,
                )?;
                for bytes in &result.records {
                    let Ok(record) = MessageRecord::decode(bytes, false) else {
                        continue;
                    };
                    self.recover_record(revive_qid, &record);
                }
                if result.next_begin_offset.0 <= offset {
                    break;
                }
                offset = result.next_begin_offset.0;
            }
            self.pop.revive_offsets_dirty.insert(revive_qid);
        }
        // The offset file may predate checkpoints the revive log kept (it is written every
        // few seconds): a group's position is at least past every message a checkpoint still
        // in the log handed out, so nothing handed out (or acked) is handed out again early.
        // Checkpoints before the revive offset are covered by the file itself, which held
        // that revive offset and the group positions of the same moment.
        for ((topic, group, queue_id), past) in std::mem::take(&mut self.pop.recovered_positions) {
            if self
                .offsets
                .query(&topic, &group, queue_id)
                .is_none_or(|o| o < past)
            {
                self.offsets.commit(&topic, &group, queue_id, past);
            }
        }
        self.update_revive_offsets();
        Ok(())
    }

    fn recover_record(&mut self, revive_qid: i32, record: &MessageRecord) {
        match record.properties.get(keys::TAGS) {
            Some(CK_TAG) => {
                if let Ok(ck) = serde_json::from_slice::<PopCheckPoint>(&record.body) {
                    if let Some(last) = ck.offsets().into_iter().max() {
                        let past = self
                            .pop
                            .recovered_positions
                            .entry((ck.topic.clone(), ck.group.clone(), ck.queue_id))
                            .or_insert(0);
                        *past = (*past).max(last + 1);
                    }
                    self.pop
                        .checkpoints
                        .open(ck, revive_qid, record.queue_offset.max(0) as u64);
                }
            }
            Some(ACK_TAG) | Some(BATCH_ACK_TAG) => {
                if let Ok(ack) = serde_json::from_slice::<AckMsg>(&record.body) {
                    let key = CkKey {
                        topic: ack.topic.clone(),
                        group: ack.group.clone(),
                        queue_id: ack.queue_id,
                        start_offset: ack.start_offset,
                        pop_time_ms: ack.pop_time_ms,
                        broker_name: ack.broker_name.clone().unwrap_or_default(),
                    };
                    for offset in ack.offsets() {
                        self.pop.checkpoints.ack(&key, offset);
                    }
                }
            }
            _ => {}
        }
    }

    /// Revives what is due, moves the revive offsets, answers held requests whose time is up.
    pub(in crate::broker) fn pop_tick(&mut self, now_ms: u64) {
        if !self.is_slave() && now_ms >= self.pop.next_revive_ms {
            if self.durability_failure.is_none() && !self.is_disk_full() {
                self.revive_due(now_ms);
            }
            self.pop.next_revive_ms = now_ms + self.config.pop.revive_interval_ms.max(1);
        }
        self.update_revive_offsets();
        self.expire_held_pops(now_ms, false);
        self.expire_pending_assignments(now_ms, false);
    }

    /// When the POP machinery next needs `handle_timeout`.
    pub(in crate::broker) fn pop_deadline_ms(&self) -> Option<u64> {
        let revive = (!self.is_slave())
            .then(|| self.pop.checkpoints.next_due_ms())
            .flatten()
            .map(|due| due.max(self.pop.next_revive_ms));
        let offsets =
            (!self.pop.revive_offsets_dirty.is_empty()).then_some(self.pop.next_revive_ms);
        let assignments = self
            .pop
            .pending_assignments
            .values()
            .map(|p| p.deadline_ms)
            .min();
        [
            revive,
            offsets,
            self.pop.held.earliest_deadline_ms(),
            assignments,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn revive_due(&mut self, now_ms: u64) {
        let mut revived = false;
        for key in self.pop.checkpoints.due_at(now_ms) {
            match self.revive_checkpoint(now_ms, &key) {
                Ok(any) => revived |= any,
                Err(_) => {
                    // The copies could not be stored (a full disk, a failing store): the
                    // checkpoint stays open and is tried again.
                    self.pop
                        .checkpoints
                        .postpone(&key, now_ms + REVIVE_RETRY_MS);
                    break;
                }
            }
        }
        if revived {
            self.pop_written();
        }
    }

    /// Copies every unacked message of a due checkpoint to where it is delivered again, then
    /// closes it. `Ok(true)`: something was stored.
    fn revive_checkpoint(&mut self, now_ms: u64, key: &CkKey) -> Result<bool, StoreError> {
        let Some(open) = self.pop.checkpoints.get(key).cloned() else {
            return Ok(false);
        };
        let ck = &open.ck;
        let retry_max_times = self
            .subscription_groups()
            .get(&ck.group)
            .map_or(16, |g| g.retry_max_times);
        let mut stored = false;
        let offsets: Vec<i64> = if self.config.store.defects.revive_ignores_acks() {
            ck.offsets()
        } else {
            open.pending.iter().copied().collect()
        };
        for offset in offsets {
            let everything = |_: i64| true;
            let result = self.store.get(
                &ck.topic,
                ck.queue_id,
                QueueOffset(offset.max(0) as u64),
                1,
                &everything,
            )?;
            if result.damaged.is_some() {
                return Err(StoreError::Corrupt(format!(
                    "reviving {}/{}@{offset}: {}",
                    ck.topic,
                    ck.queue_id,
                    result.damaged.unwrap_or_default()
                )));
            }
            let original = result
                .records
                .first()
                .and_then(|b| MessageRecord::decode(b, false).ok())
                .filter(|m| m.queue_offset == offset);
            if let Some(original) = original {
                self.store_revived(now_ms, ck, original, retry_max_times)?;
                stored = true;
            }
            // Gone (retention removed it) or copied: either way nothing of it is in flight.
            self.pop.checkpoints.forget(key, offset);
        }
        self.pop.checkpoints.close(key);
        self.pop.revive_offsets_dirty.insert(open.revive_qid);
        self.wake_held_pops_of_group(now_ms, &ck.group);
        Ok(stored)
    }

    /// Stores the redelivery of `original` (read from the checkpoint's topic): to the POP
    /// retry topic with reconsume times + 1, or to `%DLQ%<group>` once it has been delivered
    /// `retryMaxTimes` times again.
    fn store_revived(
        &mut self,
        now_ms: u64,
        ck: &PopCheckPoint,
        original: MessageRecord,
        retry_max_times: i32,
    ) -> Result<(), StoreError> {
        let retry_topic = if ck.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            ck.topic.clone()
        } else {
            pop_retry_topic(&ck.topic, &ck.group, self.config.pop.enable_retry_topic_v2)
        };
        let mut properties = original.properties.clone();
        if original.reconsume_times == 0 || !properties.contains(FIRST_POP_TIME_PROPERTY) {
            properties.insert(FIRST_POP_TIME_PROPERTY, ck.pop_time_ms.to_string());
        }
        properties.insert(keys::WAIT, "false");
        let topic = if original.reconsume_times >= retry_max_times {
            let dlq = format!("{DLQ_GROUP_TOPIC_PREFIX}{}", ck.group);
            self.ensure_topic_for_send_back(now_ms, &dlq, 1, perm::READ_WRITE, 0);
            if !properties.contains(keys::RETRY_TOPIC) {
                let normal = crate::remoting::pop::topic_of_v2_retry(&ck.topic)
                    .unwrap_or(&ck.topic)
                    .to_owned();
                properties.insert(keys::RETRY_TOPIC, normal);
            }
            dlq
        } else {
            if !self.topics.topics.contains_key(&retry_topic) {
                self.put_topic(now_ms, TopicConfig::new(retry_topic.clone(), 1));
                // The group reads its retry topic from the start (`initPopRetryOffset`).
                if self.offsets.query(&retry_topic, &ck.group, 0).is_none() {
                    let written = self.store.written_offset().0;
                    self.offsets
                        .commit_when_durable(&retry_topic, &ck.group, 0, 0, written);
                }
            }
            retry_topic
        };
        let host = self.store_host();
        let record = MessageRecord {
            topic: topic.clone(),
            queue_id: 0,
            queue_offset: 0,
            physical_offset: 0,
            born_host: host,
            store_host: host,
            store_timestamp_ms: now_ms as i64,
            reconsume_times: original.reconsume_times.saturating_add(1),
            prepared_transaction_offset: 0,
            properties,
            ..original
        };
        self.store.put(record)?;
        self.wake_held_pulls(now_ms, &topic, 0);
        Ok(())
    }

    /// Moves the revive offsets of the queues whose open checkpoints changed: to the first
    /// record an open checkpoint needs, or past everything when none is open. The file gets
    /// it once every record behind it is durable.
    fn update_revive_offsets(&mut self) {
        if self.pop.revive_offsets_dirty.is_empty() || self.is_slave() {
            return;
        }
        let topic = self.revive_topic();
        let written = self.store.written_offset().0;
        for revive_qid in std::mem::take(&mut self.pop.revive_offsets_dirty) {
            let offset = self
                .pop
                .checkpoints
                .first_open_log_offset(revive_qid)
                .unwrap_or_else(|| self.store.max_offset(&topic, revive_qid).0);
            let current = self.offsets.query(&topic, REVIVE_GROUP, revive_qid);
            if (offset as i64) > current.unwrap_or(0) {
                self.offsets.commit_when_durable(
                    &topic,
                    REVIVE_GROUP,
                    revive_qid,
                    offset as i64,
                    written,
                );
            }
        }
    }
}
