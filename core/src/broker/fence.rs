//! The recovery fence: consumer positions from before a restart are not trusted beyond what
//! the store recovered.
//!
//! After a power loss the store may come back without the un-synced tail of a queue, so the
//! recovered max offset `M` of a queue can be lower than offsets consumers already saw (and
//! committed). New messages then get the offsets `M, M + 1, …` again, and a consumer pulling at
//! its old position `o > M` would silently skip the new messages in `[M, o)`.
//!
//! So at every start the broker records `M` for every queue it knows (the fence), and until a
//! consumer group has *passed* the fence of a queue:
//!
//! ```text
//! pull at o > M            → PULL_OFFSET_MOVED, nextBeginOffset = M   (even if max > o now)
//! pull at o ≤ M            → served; the group has passed the fence of that queue
//! commit of c > M          → M is committed instead
//! INVOKE_BROKER_TO_RESET_OFFSET by the broker → the group has passed (its offsets are new)
//! ```
//!
//! A pull at `o ≤ M` proves a post-restart position: a position above `M` can only be reached
//! after the restart by reading from at or below `M` first (committed offsets are clamped to
//! `M` at start, see [`Broker::clamp_offsets_to_recovered_queues`]). RocketMQ clients answer
//! PULL_OFFSET_MOVED by committing `nextBeginOffset` and pulling the queue again from there.
//!
//! A broadcasting group keeps one position per consumer (each reads every queue), so there the
//! fence is passed per connection; a clustering group reads each queue through one consumer at
//! a time and passes it as a group.
//!
//! Who is fenced: every group the broker knew at the crash (its subscription groups, recorded
//! durably on a group's first heartbeat, and every group with a committed offset), on every
//! queue (a `%RETRY%G` or `%DLQ%G` queue: group `G` only). A group that appears after the
//! restart cannot hold an old position and may start anywhere, e.g. at the max offset.
//!
//! Fences are built at every start that follows a crash (the store's abort marker was found)
//! and kept in `config/recoveryFence.json` until passed (the file is written at once when
//! built, then with the consumer offsets when groups pass). A fence outlives restarts: a
//! consumer that does not pull between two crashes, or across a clean restart, still holds its
//! position from before the first one, and the second recovery may end above it once new
//! messages filled the queue; so a fence not passed is carried over, lowered to the new
//! recovered max if that is lower. After a clean close nothing new is fenced: everything
//! written was durable.
//!
//! ```text
//! config/recoveryFence.json
//! {"fences":[{"topic":"TopicA","queueId":0,"group":"G1","offset":3}, …]}
//! ```
//!
//! At worst a fence re-delivers: a known group that starts a queue after the restart from the
//! max offset (CONSUME_FROM_LAST_OFFSET) or a timestamp is sent back to its fence and also
//! receives the messages stored since. Never a loss.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError};
use crate::remoting::codes::response;
use crate::remoting::headers::PullMessageResponseHeader;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::ConnId;

/// Where the fences that groups have not passed yet are kept across restarts.
pub const RECOVERY_FENCE_PATH: &str = "config/recoveryFence.json";

/// One persisted fence: `group`'s positions on the queue are trusted only up to `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FenceEntry {
    topic: String,
    queue_id: i32,
    group: String,
    offset: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FenceFile {
    fences: Vec<FenceEntry>,
}

/// Every fence not passed yet: (topic, queue id) → group → the offset its positions on that
/// queue are trusted up to.
#[derive(Debug, Default)]
pub(super) struct RecoveryFence {
    queues: BTreeMap<(String, i32), BTreeMap<String, u64>>,
    /// Broadcasting consumers that passed (topic, queue id, group, connection): in memory only.
    passed_conns: BTreeSet<(String, i32, String, ConnId)>,
    /// What this start recovered of each queue, for inspection.
    recovered: BTreeMap<(String, i32), u64>,
    /// A pass since the file was last written.
    dirty: bool,
}

impl RecoveryFence {
    /// The fences persisted by an earlier start (none when there is no file).
    pub fn load<S: SegmentStorage>(storage: &S) -> Result<Self, BrokerError> {
        let file: Option<FenceFile> = super::load_json_config(storage, RECOVERY_FENCE_PATH)?;
        let mut fence = RecoveryFence::default();
        for e in file.map(|f| f.fences).unwrap_or_default() {
            let value = fence
                .queues
                .entry((e.topic, e.queue_id))
                .or_default()
                .entry(e.group)
                .or_insert(e.offset);
            *value = (*value).min(e.offset);
        }
        Ok(fence)
    }

    /// After a crash: every group in `groups` gets, on each queue given with its recovered
    /// max, a fence at that max, or at the lower fence it had not passed since an earlier
    /// crash. `%RETRY%G` and `%DLQ%G` queues are read by group `G` only.
    pub fn rebuild(
        &mut self,
        queues: impl IntoIterator<Item = ((String, i32), u64)>,
        groups: &BTreeSet<String>,
    ) {
        let older = std::mem::take(&mut self.queues);
        for (key, recovered_max) in queues {
            let own_group = key
                .0
                .strip_prefix(crate::topic::RETRY_GROUP_TOPIC_PREFIX)
                .or_else(|| key.0.strip_prefix(crate::topic::DLQ_GROUP_TOPIC_PREFIX));
            let mut fences: BTreeMap<String, u64> = BTreeMap::new();
            for group in groups {
                if own_group.is_some_and(|g| g != group) {
                    continue;
                }
                fences.insert(group.clone(), recovered_max);
            }
            for (group, offset) in older.get(&key).into_iter().flatten() {
                let value = fences.entry(group.clone()).or_insert(recovered_max);
                *value = (*value).min(*offset);
            }
            self.recovered.insert(key.clone(), recovered_max);
            if !fences.is_empty() {
                self.queues.insert(key, fences);
            }
        }
        self.dirty = true;
    }

    fn fence_of(&self, topic: &str, queue_id: i32, group: &str) -> Option<u64> {
        self.queues
            .get(&(topic.to_owned(), queue_id))?
            .get(group)
            .copied()
    }

    /// A pull of `group` at `offset`: `Some(M)` when it must restart at the fence `M`
    /// (PULL_OFFSET_MOVED), `None` when it may be served. A pull at or below `M` passes the
    /// fence for the group (`conn`: for a broadcasting consumer, only for its connection).
    pub fn check_pull(
        &mut self,
        topic: &str,
        queue_id: i32,
        group: &str,
        conn: Option<ConnId>,
        offset: u64,
    ) -> Option<u64> {
        let fence = self.fence_of(topic, queue_id, group)?;
        if let Some(conn) = conn {
            let key = (topic.to_owned(), queue_id, group.to_owned(), conn);
            if self.passed_conns.contains(&key) {
                return None;
            }
            if offset > fence {
                return Some(fence);
            }
            self.passed_conns.insert(key);
            return None;
        }
        if offset > fence {
            return Some(fence);
        }
        self.pass(topic, queue_id, group);
        None
    }

    /// The offset to commit for `group` instead of `offset`: at most its fence while it has not
    /// passed it.
    pub fn clamp_commit(&self, topic: &str, queue_id: i32, group: &str, offset: i64) -> i64 {
        match self.fence_of(topic, queue_id, group) {
            Some(fence) => offset.min(fence.min(i64::MAX as u64) as i64),
            None => offset,
        }
    }

    /// The group's positions on the queue are new (it read at or below its fence, or the
    /// broker reset them).
    pub fn pass(&mut self, topic: &str, queue_id: i32, group: &str) {
        let key = (topic.to_owned(), queue_id);
        if let Some(groups) = self.queues.get_mut(&key) {
            if groups.remove(group).is_some() {
                self.dirty = true;
            }
            if groups.is_empty() {
                self.queues.remove(&key);
            }
        }
    }

    /// A connection closed: its broadcasting passes go with it (a consumer that reconnects is
    /// fenced again, which at worst re-delivers).
    pub fn drop_connection(&mut self, conn: ConnId) {
        if !self.passed_conns.is_empty() {
            self.passed_conns.retain(|(_, _, _, c)| *c != conn);
        }
    }

    /// What this start recovered of a queue, `None` when it built no fence (a clean start).
    pub fn recovered_max(&self, topic: &str, queue_id: i32) -> Option<u64> {
        self.recovered.get(&(topic.to_owned(), queue_id)).copied()
    }

    /// Passes since the file was last written.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The file's contents; marks the fence clean.
    pub fn take_json(&mut self) -> Vec<u8> {
        self.dirty = false;
        let fences = self
            .queues
            .iter()
            .flat_map(|((topic, queue_id), groups)| {
                groups.iter().map(move |(group, offset)| FenceEntry {
                    topic: topic.clone(),
                    queue_id: *queue_id,
                    group: group.clone(),
                    offset: *offset,
                })
            })
            .collect();
        serde_json::to_vec(&FenceFile { fences }).unwrap_or_default()
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// The fence of every queue the broker knows right after recovery: every queue of the
    /// store and every read queue of every topic (a queue recovered without any ConsumeQueue is
    /// recovered empty).
    pub(super) fn build_recovery_fence(&mut self) -> Result<RecoveryFence, BrokerError> {
        let mut fence = RecoveryFence::load(self.store.storage())?;
        if !self.store.recovery_report().abort_marker_found {
            // The store was closed cleanly: nothing was lost, so no new fence, but the fences
            // of an earlier crash that groups have not passed yet still hold (a consumer that
            // has not pulled since may still hold a position from before it).
            return Ok(fence);
        }
        let mut keys: BTreeSet<(String, i32)> = BTreeSet::new();
        for topic in self.store.topics() {
            for queue_id in self.store.queue_ids(topic) {
                keys.insert((topic.to_owned(), queue_id));
            }
        }
        for (name, topic) in &self.topics.topics {
            let queue_nums = topic.read_queue_nums.max(topic.write_queue_nums);
            for queue_id in 0..queue_nums.min(i32::MAX as u32) as i32 {
                keys.insert((name.clone(), queue_id));
            }
        }
        // The groups that can hold a position from before the crash: every group the broker
        // knew then (subscription groups are recorded durably on a group's first heartbeat),
        // and every group with a committed offset. A group that appears after the restart is
        // not fenced: its positions are all new.
        let groups: BTreeSet<String> = self
            .subscription_groups()
            .keys()
            .cloned()
            .chain(self.offsets.groups().map(str::to_owned))
            .collect();
        let store = &self.store;
        fence.rebuild(
            keys.into_iter().map(|(topic, queue_id)| {
                let max = store.max_offset(&topic, queue_id).0;
                ((topic, queue_id), max)
            }),
            &groups,
        );
        // At once: a second crash before the next period must find these fences.
        self.persist_fence_to(&mut fence);
        Ok(fence)
    }

    /// Writes the fences if a group passed one since the last write.
    pub(super) fn persist_recovery_fence(&mut self) {
        let mut fence = std::mem::take(&mut self.recovery_fence);
        self.persist_fence_to(&mut fence);
        self.recovery_fence = fence;
    }

    fn persist_fence_to(&mut self, fence: &mut RecoveryFence) {
        if !fence.is_dirty() {
            return;
        }
        let json = fence.take_json();
        if self
            .store
            .storage_mut()
            .replace(RECOVERY_FENCE_PATH, &json)
            .is_err()
        {
            // Kept dirty: the next period retries. Until then a crash falls back to the older
            // file, whose fences are lower or equal: re-reads, never a skip.
            fence.dirty = true;
        }
    }

    /// Lowers every committed consumer offset above its queue's recovered max to that max (the
    /// table is then written at the next period). Returns how many were lowered.
    pub(super) fn clamp_offsets_to_recovered_queues(&mut self) -> usize {
        let store = &self.store;
        self.offsets
            .clamp(|topic, queue_id| store.max_offset(topic, queue_id).0)
    }

    /// Commits a consumer offset, clamped by the recovery fence.
    pub(super) fn commit_consumer_offset(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
    ) {
        let offset = self
            .recovery_fence
            .clamp_commit(topic, queue_id, group, offset);
        self.offsets.commit(topic, group, queue_id, offset);
    }

    /// PULL_OFFSET_MOVED to the recovered max, as a pull beyond the max offset is answered
    /// (RocketMQ clients commit `nextBeginOffset` and pull the queue again from there).
    pub(super) fn fenced_pull_response(
        &self,
        req: &RemotingCommand,
        topic: &str,
        queue_id: i32,
        recovered_max: u64,
    ) -> RemotingCommand {
        let mut response = RemotingCommand::response_to(
            req,
            response::PULL_OFFSET_MOVED,
            // Core has no log channel: the reason travels in the remark.
            Some(format!(
                "OFFSET_BEYOND_RECOVERY_FENCE: the queue recovered up to {recovered_max}"
            )),
        );
        PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: recovered_max.min(i64::MAX as u64) as i64,
            min_offset: self.store.min_offset(topic, queue_id).0 as i64,
            max_offset: self.store.max_offset(topic, queue_id).0 as i64,
        }
        .write_to(&mut response);
        response
    }

    /// The recovered max of a queue, for inspection (`None`: the queue did not exist at start).
    pub fn recovered_max_offset(&self, topic: &str, queue_id: i32) -> Option<u64> {
        self.recovery_fence.recovered_max(topic, queue_id)
    }
}
