//! Consumer offsets (persisted as `config/consumerOffsets.json`, RocketMQ's shape
//! `{"offsetTable":{"topic@group":{"0":12}}}`) and the offset requests: QUERY_CONSUMER_OFFSET
//! (14), UPDATE_CONSUMER_OFFSET (15), SEARCH_OFFSET_BY_TIMESTAMP (29), GET_MAX_OFFSET (30),
//! GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32), GET_ALL_CONSUMER_OFFSET (43).

use crate::ConnId;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError};
use crate::remoting::codes::response;
use crate::remoting::headers::{
    QueryConsumerOffsetRequestHeader, SearchOffsetRequestHeader, TopicQueueRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::SegmentStorage;

pub(super) const CONSUMER_OFFSETS_PATH: &str = "config/consumerOffsets.json";
/// A slave's own commits its master has not confirmed yet ([`ConsumerOffsets::handed_back`]),
/// in the offset file's shape: kept across the slave's restarts, so a slave restarted while its
/// master is away still hands them back.
pub(super) const SLAVE_OWN_COMMITS_PATH: &str = "config/consumerOffsetsOwnOnSlave.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// Committed offsets: `topic@group` → queue id → next offset to consume.
#[derive(Debug, Default)]
pub(super) struct ConsumerOffsets {
    table: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Changed since the last persist.
    dirty: bool,
    /// On a slave: commits made here (while consumers could not reach the master) that the
    /// master has not confirmed yet, by (`topic@group`, queue id). They survive the master's
    /// older values in SlaveSynchronize and are handed back to it ([`Self::handed_back`]).
    local_commits: Option<BTreeMap<(String, i32), i64>>,
    /// Commits that may reach the file only once the CommitLog is durable up to a point
    /// ([`Self::commit_when_durable`]), by (`topic@group`, queue id).
    gated: BTreeMap<(String, i32), GatedCommits>,
}

/// A queue's commits waiting for the CommitLog: what the file may say meanwhile (`durable`,
/// the last value whose condition held; none: the queue is left out) and the newer values,
/// oldest first, each with the CommitLog end that must be durable before it may be written.
#[derive(Debug)]
struct GatedCommits {
    durable: Option<i64>,
    waiting: std::collections::VecDeque<(u64, i64)>,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsets {
    pub fn load<S: SegmentStorage>(storage: &S) -> Result<Self, BrokerError> {
        let Some(file): Option<OffsetFile> =
            super::load_json_config(storage, CONSUMER_OFFSETS_PATH)?
        else {
            return Ok(Self::default());
        };
        Ok(Self {
            table: file.offset_table,
            dirty: false,
            local_commits: None,
            gated: BTreeMap::new(),
        })
    }

    /// A slave's table keeps its own commits apart until the master has them (loaded from
    /// [`SLAVE_OWN_COMMITS_PATH`]).
    pub fn track_local_commits<S: SegmentStorage>(
        &mut self,
        storage: &S,
    ) -> Result<(), BrokerError> {
        let file: Option<OffsetFile> = super::load_json_config(storage, SLAVE_OWN_COMMITS_PATH)?;
        let mut local = BTreeMap::new();
        for (key, queues) in file.map(|f| f.offset_table).unwrap_or_default() {
            for (queue_id, offset) in queues {
                local.insert((key.clone(), queue_id), offset);
            }
        }
        self.local_commits = Some(local);
        Ok(())
    }

    /// What [`SLAVE_OWN_COMMITS_PATH`] holds, on a slave.
    fn local_commits_json(&self) -> Option<Vec<u8>> {
        let local = self.local_commits.as_ref()?;
        let mut table: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        for ((key, queue_id), offset) in local {
            table
                .entry(key.clone())
                .or_default()
                .insert(*queue_id, *offset);
        }
        serde_json::to_vec(&OffsetFile {
            offset_table: table,
        })
        .ok()
    }

    pub fn query(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.table.get(&key(topic, group))?.get(&queue_id).copied()
    }

    pub fn commit(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        // A plain commit stands on its own: nothing it replaces needs to wait any more.
        self.gated.remove(&(key(topic, group), queue_id));
        self.commit_in_memory(topic, group, queue_id, offset);
    }

    /// Commits `offset` at once for every reader, but writes it to the file only once the
    /// CommitLog is durable up to `durable_end`: a POP moves its group past the messages it
    /// hands out because its checkpoint (in the CommitLog) will bring back what is not acked;
    /// a file that held the offset without the checkpoint would lose them after a power
    /// loss. Until then the file keeps the last value whose checkpoint is durable.
    pub fn commit_when_durable(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        durable_end: u64,
    ) {
        let id = (key(topic, group), queue_id);
        let before = self.query(topic, group, queue_id);
        self.gated
            .entry(id)
            .or_insert_with(|| GatedCommits {
                durable: before,
                waiting: Default::default(),
            })
            .waiting
            .push_back((durable_end, offset));
        self.commit_in_memory(topic, group, queue_id, offset);
    }

    fn commit_in_memory(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        let queues = self.table.entry(key(topic, group)).or_default();
        if queues.insert(queue_id, offset) != Some(offset) {
            self.dirty = true;
        }
        if let Some(local) = &mut self.local_commits {
            if local.insert((key(topic, group), queue_id), offset) != Some(offset) {
                self.dirty = true;
            }
        }
    }

    /// A commit handed back by a slave: taken only when it is ahead of this table's, so a
    /// consumer that has already committed further here is never moved back.
    pub fn commit_if_ahead(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        if self
            .query(topic, group, queue_id)
            .is_none_or(|mine| offset > mine)
        {
            self.commit(topic, group, queue_id, offset);
        }
    }

    /// On a slave: the master answered the hand-back of `offset`; unless a newer commit was
    /// made here meanwhile, the entry is the master's again.
    pub fn handed_back_taken(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        if let Some(local) = &mut self.local_commits {
            let id = (key(topic, group), queue_id);
            if local.get(&id) == Some(&offset) {
                local.remove(&id);
                self.dirty = true;
            }
        }
    }

    /// On a slave: the commits made here that the master has not confirmed, as
    /// (topic, group, queue id, offset).
    pub fn handed_back(&self) -> Vec<(String, String, i32, i64)> {
        self.local_commits
            .iter()
            .flatten()
            .map(|((key, queue_id), offset)| {
                let (topic, group) = key.split_once('@').unwrap_or((key.as_str(), ""));
                (topic.to_owned(), group.to_owned(), *queue_id, *offset)
            })
            .collect()
    }

    /// Lowers every offset above `max(topic, queue id)` to it, marking the table dirty when
    /// any changed. Returns how many changed.
    pub fn clamp(&mut self, max: impl Fn(&str, i32) -> u64) -> usize {
        let mut lowered = 0;
        for (key, queues) in &mut self.table {
            // Neither topic nor group names may contain '@' (RocketMQ's name rules).
            let topic = key.split_once('@').map_or(key.as_str(), |(t, _)| t);
            for (queue_id, offset) in queues.iter_mut() {
                let max = max(topic, *queue_id).min(i64::MAX as u64) as i64;
                if *offset > max {
                    *offset = max;
                    lowered += 1;
                }
            }
        }
        if lowered > 0 {
            self.dirty = true;
        }
        lowered
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty || !self.gated.is_empty()
    }

    /// Every committed offset: (topic, group, queue id, offset).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, i32, i64)> + '_ {
        self.table.iter().flat_map(|(key, queues)| {
            // Neither topic nor group names may contain '@' (RocketMQ's name rules).
            let (topic, group) = key.split_once('@').unwrap_or((key.as_str(), ""));
            queues
                .iter()
                .map(move |(queue_id, offset)| (topic, group, *queue_id, *offset))
        })
    }

    /// Forgets every offset committed on `topic` (a deleted topic).
    pub fn remove_topic(&mut self, topic: &str) {
        let prefix = format!("{topic}@");
        let before = self.table.len();
        self.table.retain(|key, _| !key.starts_with(&prefix));
        if self.table.len() != before {
            self.dirty = true;
        }
    }

    /// Forgets every offset `group` committed (a deleted group, `cleanOffset`).
    pub fn remove_group(&mut self, group: &str) {
        let suffix = format!("@{group}");
        let before = self.table.len();
        self.table.retain(|key, _| !key.ends_with(&suffix));
        if self.table.len() != before {
            self.dirty = true;
        }
    }

    /// The file contents, clearing the dirty mark.
    /// The file's contents with the CommitLog durable up to `durable`: gated commits whose
    /// condition does not hold yet are written as their last durable value.
    pub fn take_json(&mut self, durable: u64) -> Vec<u8> {
        self.dirty = false;
        let mut table = self.table.clone();
        self.gated.retain(|(key, queue_id), gated| {
            while let Some(&(end, value)) = gated.waiting.front() {
                if end > durable {
                    break;
                }
                gated.durable = Some(value);
                gated.waiting.pop_front();
            }
            if gated.waiting.is_empty() {
                return false;
            }
            if let Some(queues) = table.get_mut(key) {
                match gated.durable {
                    Some(value) => queues.insert(*queue_id, value),
                    None => queues.remove(queue_id),
                };
            }
            true
        });
        table.retain(|_, queues| !queues.is_empty());
        let file = OffsetFile {
            offset_table: table,
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }
}

impl ConsumerOffsets {
    /// A slave takes its master's offsets (SlaveSynchronize): RocketMQ's `putAll`, the
    /// master's value wins for every (topic@group, queue) it has and the slave keeps the rest.
    /// Except, where RocketMQ loses them (its mass redelivery after a master returns,
    /// #1094/#1440): a commit made on this slave that the master's value has not reached yet
    /// stays, until the master has it.
    pub fn put_all_from_master(&mut self, body: &[u8]) -> Result<(), String> {
        let value = crate::remoting::lenient::parse_fastjson(body)?;
        let file: OffsetFile =
            serde_json::from_value(value).map_err(|e| format!("not an offset table: {e}"))?;
        for (key, queues) in file.offset_table {
            for (queue_id, offset) in queues {
                if let Some(local) = &mut self.local_commits {
                    let id = (key.clone(), queue_id);
                    match local.get(&id) {
                        Some(mine) if *mine > offset => continue,
                        Some(_) => {
                            local.remove(&id);
                            self.dirty = true;
                        }
                        None => {}
                    }
                }
                let mine = self.table.entry(key.clone()).or_default();
                if mine.insert(queue_id, offset) != Some(offset) {
                    self.dirty = true;
                }
            }
        }
        Ok(())
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// GET_ALL_CONSUMER_OFFSET (43): the whole offset table, as its file holds it (what a
    /// slave copies).
    pub(super) fn handle_get_all_consumer_offset(&self, req: &RemotingCommand) -> RemotingCommand {
        let file = OffsetFile {
            offset_table: self.offsets.table.clone(),
        };
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(serde_json::to_vec(&file).unwrap_or_default())
    }

    /// Writes the offset table when it changed since the last write.
    pub(super) fn persist_offsets(&mut self) {
        if !self.offsets.is_dirty() {
            return;
        }
        let json = self.offsets.take_json(self.store.durable_offset().0);
        let own = self.offsets.local_commits_json();
        let storage = self.store.storage_mut();
        let written = storage.replace(CONSUMER_OFFSETS_PATH, &json).is_ok()
            && own.is_none_or(|own| storage.replace(SLAVE_OWN_COMMITS_PATH, &own).is_ok());
        if !written {
            // Keep the table dirty so the next period retries the write.
            self.offsets.dirty = true;
        }
    }

    /// QUERY_CONSUMER_OFFSET (14), as RocketMQ's `ConsumerManageProcessor` answers it:
    ///
    /// * a committed offset: SUCCESS with it;
    /// * nothing committed and the client asked `setZeroIfNotFound=false`: QUERY_NOT_FOUND (22);
    /// * nothing committed, the queue still starts at 0 and its message 0 is still "in memory"
    ///   ([`Broker::first_message_in_memory`]): SUCCESS with offset 0. This is the quirk that
    ///   makes a brand-new CONSUME_FROM_LAST_OFFSET group read a young queue from the beginning;
    /// * otherwise QUERY_NOT_FOUND, and the client applies its `consumeFromWhere`.
    pub(super) fn handle_query_consumer_offset(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = QueryConsumerOffsetRequestHeader::parse(req)?;
        if let Some(offset) = self.offsets.query(&h.topic, &h.consumer_group, h.queue_id) {
            return Ok(RemotingCommand::response_to(req, response::SUCCESS, None)
                .with_ext("offset", offset));
        }
        if h.set_zero_if_not_found == Some(false) {
            return Ok(RemotingCommand::response_to(
                req,
                response::QUERY_NOT_FOUND,
                Some("Not found, do not set to zero, maybe this group boot first".to_owned()),
            ));
        }
        let min = self.store.min_offset(&h.topic, h.queue_id).0;
        if min == 0 && self.first_message_in_memory(&h.topic, h.queue_id) {
            return Ok(
                RemotingCommand::response_to(req, response::SUCCESS, None).with_ext("offset", 0)
            );
        }
        Ok(RemotingCommand::response_to(
            req,
            response::QUERY_NOT_FOUND,
            Some("Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first".to_owned()),
        ))
    }

    /// Whether message 0 of a queue is still "in memory": it exists, and no more than
    /// `accessMessageInMemoryMaxRatio` percent of the machine's RAM has been written to the
    /// CommitLog since it (RocketMQ 4.x's `checkInDiskByConsumeOffset`, negated; 5.x asks the
    /// page cache instead, which a deterministic core cannot). An empty queue has no message 0,
    /// so a new group gets QUERY_NOT_FOUND there, as with 5.x — the client then starts at the
    /// max offset, which is 0 anyway.
    pub(super) fn first_message_in_memory(&self, topic: &str, queue_id: i32) -> bool {
        let Some(position) = self.store.commitlog_offset_at(topic, queue_id, 0) else {
            return false;
        };
        let behind_bytes = self.store.written_offset().0.saturating_sub(position.0);
        behind_bytes <= self.in_memory_bytes()
    }

    /// `accessMessageInMemoryMaxRatio` of the machine's memory: how far behind the CommitLog's
    /// end RocketMQ deems a message still in the page cache.
    pub(super) fn in_memory_bytes(&self) -> u64 {
        (u128::from(self.config.total_physical_memory_bytes)
            * u128::from(self.config.access_message_in_memory_max_ratio_percent)
            / 100) as u64
    }

    /// UPDATE_CONSUMER_OFFSET (15).
    pub(super) fn handle_update_consumer_offset(
        &mut self,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = UpdateConsumerOffsetRequestHeader::parse(req)?;
        if req.ext(super::replication::HANDED_BACK_EXT) == Some("true") && !self.is_slave() {
            // A slave handing back what consumers committed on it while this master was away.
            // Never past this master's end of the queue: a crash may have taken messages the
            // slave had (the consumers read them there; they are gone here).
            let max = self.store.max_offset(&h.topic, h.queue_id).0;
            let offset = h.commit_offset.min(max.min(i64::MAX as u64) as i64);
            // Nor past a recovery fence: what the slave served beyond it may be what a power
            // cut took from this master, whose offsets now hold other messages.
            let holder = self.fence_holder(&h.consumer_group, conn);
            let offset = self.recovery_fence.clamp_commit(
                &h.topic,
                h.queue_id,
                &h.consumer_group,
                &holder,
                offset,
            );
            self.offsets
                .commit_if_ahead(&h.topic, &h.consumer_group, h.queue_id, offset);
            // The slave forgets the commit once answered: written now rather than at the next
            // period, so that a crash of this master meanwhile does not lose it.
            self.persist_offsets();
            return Ok(RemotingCommand::response_to(req, response::SUCCESS, None));
        }
        self.commit_consumer_offset(
            conn,
            &h.topic,
            &h.consumer_group,
            h.queue_id,
            h.commit_offset,
        );
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None))
    }

    /// GET_MAX_OFFSET (30).
    pub(super) fn handle_get_max_offset(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = TopicQueueRequestHeader::parse(req)?;
        let offset = self.store.max_offset(&h.topic, h.queue_id).0;
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None).with_ext("offset", offset))
    }

    /// GET_MIN_OFFSET (31).
    pub(super) fn handle_get_min_offset(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = TopicQueueRequestHeader::parse(req)?;
        let offset = self.store.min_offset(&h.topic, h.queue_id).0;
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None).with_ext("offset", offset))
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (29): the LOWER boundary (the first message stored at or after
    /// the timestamp), which is what consumers starting CONSUME_FROM_TIMESTAMP need.
    pub(super) fn handle_search_offset(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = SearchOffsetRequestHeader::parse(req)?;
        let offset = self
            .store
            .offset_by_timestamp(&h.topic, h.queue_id, h.timestamp_ms)
            .0;
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None).with_ext("offset", offset))
    }

    /// GET_EARLIEST_MSG_STORETIME (32): −1 for an empty queue.
    pub(super) fn handle_earliest_msg_store_time(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = TopicQueueRequestHeader::parse(req)?;
        let timestamp = self
            .store
            .earliest_store_time_ms(&h.topic, h.queue_id)
            .unwrap_or(-1);
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_ext("timestamp", timestamp))
    }
}
