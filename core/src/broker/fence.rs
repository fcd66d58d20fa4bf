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
//! The fence is passed per consumer instance (its client id, or its connection before its
//! first heartbeat), never for a whole group: while a group re-balances after the restart two
//! instances can pull the same queue, one from the fence and one from its old position, and
//! the first one's pass says nothing about the second's. A broadcasting group keeps one
//! position per instance anyway.
//!
//! Who is fenced: every consumer group, on every queue (a `%RETRY%G` or `%DLQ%G` queue: group
//! `G` only). A broker cannot tell which groups held positions before the crash: the files
//! recording groups and offsets may themselves have failed to reach the disk. So a group that
//! first appears after the restart and starts at the end of a queue (CONSUME_FROM_LAST_OFFSET)
//! is sent back to the fence too, and also receives the messages stored since the restart.
//!
//! A queue the broker does not know at a crash start (no topic config, no ConsumeQueue, no
//! committed offset: its creation and all its messages were lost with the power) recovered
//! nothing, so its fence is 0 for every group. It is built when the queue is first pulled or
//! committed after the start, from the start's *unknown queues* fence, which retires like the
//! others.
//!
//! Fences are built at every start that follows a crash (the store's abort marker was found)
//! and kept in `config/recoveryFence.json` with the instances (client ids) that passed them
//! (written at once when built, then with the consumer offsets). A fence outlives restarts: a
//! consumer that does not pull between two crashes, or across a clean restart, still holds its
//! position from before the first one, and the second recovery may end above it once new
//! messages filled the queue. So a later crash keeps a fence not passed (lowered to the new
//! recovered max if that is lower), while the instances that had passed it are bound by the new
//! fence only. After a clean close nothing new is fenced: everything written was durable. A
//! fence retires [`FENCE_RETIRE_MS`] after it was built and after it last sent a position back.
//!
//! ```text
//! config/recoveryFence.json
//! {"fences":[{"topic":"TopicA","queueId":0,"group":"*","offset":3,"sinceMs":…,"lastBiteMs":…},
//!            {"topic":"TopicA","queueId":0,"group":"G1","client":"10.0.0.5@123","offset":7,…}],
//!  "passed":[{"topic":"TopicA","queueId":0,"group":"G1","client":"10.0.0.5@123"}],
//!  "unknownQueues":{"offset":0,"sinceMs":…,"lastBiteMs":…}}
//! ```
//! `"*"`: every instance without a more specific entry; a group entry with offset 2^64 - 1: the
//! broker reset that group's positions.
//!
//! At worst a fence re-delivers: a group that starts a queue after the restart from the max
//! offset or a timestamp is sent back to its fence and also receives the messages stored since.
//! Never a loss.

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

/// How long a fence is kept at least, and after its last bite (a stale position sent back):
/// long enough for a consumer cut off from the broker to come back, pull with its old position
/// and be sent back (clients re-balance every 20 s; a broker drops a silent channel after
/// 120 s). After that, positions above the fence are taken for what they nearly always are:
/// positions of consumers that read there since.
pub const FENCE_RETIRE_MS: u64 = 10 * 60 * 1_000;

/// The offset of a group's entry once the broker reset the group's positions: passed.
const PASSED: u64 = u64::MAX;

/// Topics only the broker itself reads (its progress on them is clamped at start instead), and
/// the auto-create template, which holds no messages.
const BROKER_READ_TOPICS: &[&str] = &[
    super::schedule::SCHEDULE_TOPIC,
    super::timer::TIMER_TOPIC,
    super::transaction::TRANS_HALF_TOPIC,
    super::transaction::TRANS_OP_HALF_TOPIC,
    "TBW102",
];

/// Whom a fence entry of a queue binds; the most specific entry applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FenceKey {
    /// Every consumer instance without a more specific entry.
    Any,
    /// One group: the broker reset its positions ([`PASSED`]), or its own `%RETRY%` queue.
    Group(String),
    /// One consumer instance that had passed an earlier fence of the queue: bound by the
    /// later crash's fence only.
    Instance { group: String, client: String },
}

/// One persisted fence entry. `group` is `*` for every group; `client` names an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FenceEntry {
    topic: String,
    queue_id: i32,
    group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    offset: u64,
    /// When the broker built the fence, and when it last sent a stale position back (epoch
    /// ms): it retires [`FENCE_RETIRE_MS`] after both.
    #[serde(default)]
    since_ms: u64,
    #[serde(default)]
    last_bite_ms: u64,
}

/// A consumer instance that read at or below the fence of a queue since the last crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PassEntry {
    topic: String,
    queue_id: i32,
    group: String,
    client: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FenceFile {
    fences: Vec<FenceEntry>,
    #[serde(default)]
    passed: Vec<PassEntry>,
    /// The fence of every queue the last crash start did not know (offset 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unknown_queues: Option<GroupFence>,
}

/// One fence entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupFence {
    offset: u64,
    since_ms: u64,
    last_bite_ms: u64,
}

/// Who holds a position: a consumer instance (its client id from the heartbeat, stable across
/// reconnects), or a connection that has not sent a heartbeat yet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Holder {
    Client(String),
    Conn(ConnId),
}

/// Every fence not retired yet, per (topic, queue id); and which consumer instances passed.
#[derive(Debug, Default)]
pub(super) struct RecoveryFence {
    queues: BTreeMap<(String, i32), BTreeMap<FenceKey, GroupFence>>,
    /// Instances that read at or below their fence since the last crash: their positions are
    /// new. Persisted for instances known by client id, so that the next crash's fence, not
    /// this one, binds them.
    passed: BTreeSet<(String, i32, String, Holder)>,
    /// The fence of every queue not in `queues` since the last crash start, which knew
    /// neither the queue nor its messages: recovered nothing, so fenced at 0. Copied into
    /// `queues` when the queue is first pulled or committed (its bites then keep that copy).
    /// It never outlives the entries built at the same start: those retire at the same time
    /// or later, so it never fences a queue that start knew.
    unknown_queues: Option<GroupFence>,
    /// What this start recovered of each queue, for inspection.
    recovered: BTreeMap<(String, i32), u64>,
    /// Changed since the file was last written.
    dirty: bool,
}

impl RecoveryFence {
    /// The fences persisted by an earlier start (none when there is no file).
    pub fn load<S: SegmentStorage>(storage: &S) -> Result<Self, BrokerError> {
        let file: Option<FenceFile> = super::load_json_config(storage, RECOVERY_FENCE_PATH)?;
        let file = file.unwrap_or_default();
        let mut fence = RecoveryFence::default();
        for e in file.fences {
            let key = match (e.group.as_str(), e.client) {
                ("*", _) => FenceKey::Any,
                (group, Some(client)) => FenceKey::Instance {
                    group: group.to_owned(),
                    client,
                },
                (group, None) => FenceKey::Group(group.to_owned()),
            };
            let entry = GroupFence {
                offset: e.offset,
                since_ms: e.since_ms,
                last_bite_ms: e.last_bite_ms,
            };
            let slot = fence
                .queues
                .entry((e.topic, e.queue_id))
                .or_default()
                .entry(key)
                .or_insert(entry);
            slot.offset = slot.offset.min(e.offset);
        }
        for p in file.passed {
            fence
                .passed
                .insert((p.topic, p.queue_id, p.group, Holder::Client(p.client)));
        }
        fence.unknown_queues = file.unknown_queues;
        Ok(fence)
    }

    /// Whom a fence of `topic` binds by default: every group, or for a `%RETRY%G` or
    /// `%DLQ%G` queue group `G`. `None` for topics only the broker reads.
    fn base_key(topic: &str) -> Option<FenceKey> {
        if BROKER_READ_TOPICS.contains(&topic) {
            // Read by the broker's own services, whose progress is clamped at start.
            return None;
        }
        let own_group = topic
            .strip_prefix(crate::topic::RETRY_GROUP_TOPIC_PREFIX)
            .or_else(|| topic.strip_prefix(crate::topic::DLQ_GROUP_TOPIC_PREFIX));
        Some(match own_group {
            Some(group) => FenceKey::Group(group.to_owned()),
            None => FenceKey::Any,
        })
    }

    /// Gives a queue the last crash start did not know its fence at 0, from the unknown
    /// queues' fence, before anyone pulls or commits on it.
    fn fence_unknown_queue(&mut self, topic: &str, queue_id: i32) {
        let Some(unknown) = self.unknown_queues else {
            return;
        };
        let key = (topic.to_owned(), queue_id);
        if self.queues.contains_key(&key) {
            return;
        }
        if let Some(base) = Self::base_key(topic) {
            self.queues.insert(key, BTreeMap::from([(base, unknown)]));
            self.dirty = true;
        }
    }

    /// After a crash at `now_ms`: on each queue given with its recovered max, every consumer
    /// instance gets a fence at that max, or keeps the lower fence it had not passed since an
    /// earlier crash (an instance that had passed it is bound by the new fence only).
    /// `%RETRY%G` and `%DLQ%G` queues are read by group `G` only.
    ///
    /// A group's committed offset `c` raises its fence to `c` (never above the recovered max):
    /// an instance that had not passed the earlier fence cannot have committed above it, so
    /// an instance that had did, and the group consumed everything below `c` since. (Its pass
    /// may not have reached the disk.)
    pub fn rebuild(
        &mut self,
        now_ms: u64,
        queues: impl IntoIterator<Item = ((String, i32), u64)>,
        committed: &BTreeMap<(String, i32), Vec<(String, u64)>>,
    ) {
        let older = std::mem::take(&mut self.queues);
        let older_passed = std::mem::take(&mut self.passed);
        let older_unknown = self.unknown_queues.take();
        let fresh = |offset| GroupFence {
            offset,
            since_ms: now_ms,
            last_bite_ms: now_ms,
        };
        // Queues this start does not know recovered nothing.
        self.unknown_queues = Some(fresh(0));
        for (key, recovered_max) in queues {
            let Some(base) = Self::base_key(&key.0) else {
                continue;
            };
            let own_group = match &base {
                FenceKey::Group(group) => Some(group.as_str()),
                _ => None,
            };
            let mut fences: BTreeMap<FenceKey, GroupFence> = BTreeMap::new();
            fences.insert(base.clone(), fresh(recovered_max));
            // A queue the earlier crash start did not know, never read since: still fenced
            // at 0 by that start.
            let older_entries = match (older.get(&key), older_unknown) {
                (Some(entries), _) => entries.clone(),
                (None, Some(unknown)) => BTreeMap::from([(base.clone(), unknown)]),
                (None, None) => BTreeMap::new(),
            };
            for (k, old) in &older_entries {
                let value = fences
                    .entry(k.clone())
                    .or_insert_with(|| fresh(recovered_max));
                // A group that had passed (a reset) is fenced again at the new end.
                value.offset = value.offset.min(old.offset);
            }
            for (group, offset) in committed.get(&key).into_iter().flatten() {
                if own_group.is_some_and(|g| g != group.as_str()) {
                    continue;
                }
                let offset = (*offset).min(recovered_max);
                let group_key = FenceKey::Group(group.clone());
                let applies = fences
                    .get(&group_key)
                    .or_else(|| fences.get(&FenceKey::Any))
                    .map_or(recovered_max, |f| f.offset);
                if offset > applies {
                    fences.insert(group_key, fresh(offset));
                }
            }
            for (topic, queue_id, group, holder) in &older_passed {
                if (topic, *queue_id) != (&key.0, key.1) {
                    continue;
                }
                if let Holder::Client(client) = holder {
                    let instance = FenceKey::Instance {
                        group: group.clone(),
                        client: client.clone(),
                    };
                    fences.insert(instance, fresh(recovered_max));
                }
            }
            self.recovered.insert(key.clone(), recovered_max);
            self.queues.insert(key, fences);
        }
        self.dirty = true;
    }

    /// The fence entry that applies to `holder` of `group` on a queue.
    fn entry_of(
        &self,
        topic: &str,
        queue_id: i32,
        group: &str,
        holder: Option<&Holder>,
    ) -> Option<(&FenceKey, &GroupFence)> {
        let entries = self.queues.get(&(topic.to_owned(), queue_id))?;
        let instance = match holder {
            Some(Holder::Client(client)) => entries.get_key_value(&FenceKey::Instance {
                group: group.to_owned(),
                client: client.clone(),
            }),
            _ => None,
        };
        instance
            .or_else(|| entries.get_key_value(&FenceKey::Group(group.to_owned())))
            .or_else(|| entries.get_key_value(&FenceKey::Any))
    }

    fn fence_of(&self, topic: &str, queue_id: i32, group: &str, holder: &Holder) -> Option<u64> {
        self.entry_of(topic, queue_id, group, Some(holder))
            .map(|(_, f)| f.offset)
            .filter(|offset| *offset != PASSED)
    }

    fn has_passed(&self, topic: &str, queue_id: i32, group: &str, holder: &Holder) -> bool {
        self.passed
            .contains(&(topic.to_owned(), queue_id, group.to_owned(), holder.clone()))
    }

    /// A pull by `holder` of `group` at `offset`: `Some(M)` when it must restart at the fence
    /// `M` (PULL_OFFSET_MOVED), `None` when it may be served. A pull at or below `M` passes
    /// the fence for that consumer instance: other instances of the group may still hold old
    /// positions (a queue can be pulled by two instances while they re-balance).
    pub fn check_pull(
        &mut self,
        now_ms: u64,
        topic: &str,
        queue_id: i32,
        group: &str,
        holder: Holder,
        offset: u64,
    ) -> Option<u64> {
        self.fence_unknown_queue(topic, queue_id);
        let fence = self.fence_of(topic, queue_id, group, &holder)?;
        if self.has_passed(topic, queue_id, group, &holder) {
            return None;
        }
        if offset > fence {
            let key = self
                .entry_of(topic, queue_id, group, Some(&holder))
                .map(|(k, _)| k.clone());
            if let Some(f) = key.and_then(|k| {
                self.queues
                    .get_mut(&(topic.to_owned(), queue_id))?
                    .get_mut(&k)
            }) {
                f.last_bite_ms = f.last_bite_ms.max(now_ms);
                self.dirty = true;
            }
            return Some(fence);
        }
        if matches!(holder, Holder::Client(_)) {
            self.dirty = true;
        }
        self.passed
            .insert((topic.to_owned(), queue_id, group.to_owned(), holder));
        None
    }

    /// The offset to commit for `holder` of `group` instead of `offset`: at most the fence
    /// while that instance has not passed it.
    pub fn clamp_commit(
        &self,
        topic: &str,
        queue_id: i32,
        group: &str,
        holder: &Holder,
        offset: i64,
    ) -> i64 {
        match self
            .fence_of(topic, queue_id, group, holder)
            .or_else(|| self.unknown_queue_fence_of(topic, queue_id, group))
        {
            Some(fence) if !self.has_passed(topic, queue_id, group, holder) => {
                offset.min(fence.min(i64::MAX as u64) as i64)
            }
            _ => offset,
        }
    }

    /// The fence at 0 that binds `group` on a queue the last crash start did not know and
    /// nobody pulled since (committing alone does not copy it into `queues`: commits name
    /// any topic, known or not).
    fn unknown_queue_fence_of(&self, topic: &str, queue_id: i32, group: &str) -> Option<u64> {
        let unknown = self.unknown_queues?;
        if self.queues.contains_key(&(topic.to_owned(), queue_id)) {
            return None;
        }
        match Self::base_key(topic)? {
            FenceKey::Group(g) if g != group => None,
            _ => Some(unknown.offset),
        }
    }

    /// Every position of the group on the queue is new (the broker reset them all).
    pub fn pass(&mut self, topic: &str, queue_id: i32, group: &str) {
        self.fence_unknown_queue(topic, queue_id);
        let Some(entries) = self.queues.get_mut(&(topic.to_owned(), queue_id)) else {
            return;
        };
        entries.retain(|k, _| !matches!(k, FenceKey::Instance { group: g, .. } if g == group));
        entries.insert(
            FenceKey::Group(group.to_owned()),
            GroupFence {
                offset: PASSED,
                since_ms: 0,
                last_bite_ms: 0,
            },
        );
        self.dirty = true;
    }

    /// Fences kept [`FENCE_RETIRE_MS`] since they were built and since their last bite are
    /// dropped.
    pub fn retire(&mut self, now_ms: u64) {
        let live = |f: &GroupFence| {
            f.offset == PASSED
                || now_ms < f.since_ms.saturating_add(FENCE_RETIRE_MS)
                || now_ms < f.last_bite_ms.saturating_add(FENCE_RETIRE_MS)
        };
        if self.unknown_queues.is_some_and(|f| !live(&f)) {
            self.unknown_queues = None;
            self.dirty = true;
        }
        let before = self.queues.values().map(BTreeMap::len).sum::<usize>();
        self.queues.retain(|_, entries| {
            entries.retain(|_, f| live(f));
            // Passes only matter while a fence they exempt from is left.
            entries.values().any(|f| f.offset != PASSED)
        });
        let after = self.queues.values().map(BTreeMap::len).sum::<usize>();
        if after != before {
            let queues = &self.queues;
            self.passed
                .retain(|(t, q, _, _)| queues.contains_key(&(t.clone(), *q)));
            self.dirty = true;
        }
    }

    /// A connection closed: passes of consumers known only by it go with it (a consumer
    /// instance is known by its client id once it sent a heartbeat).
    pub fn drop_connection(&mut self, conn: ConnId) {
        if !self.passed.is_empty() {
            self.passed
                .retain(|(_, _, _, holder)| *holder != Holder::Conn(conn));
        }
    }

    /// What this start recovered of a queue, `None` when it built no fence (a clean start).
    pub fn recovered_max(&self, topic: &str, queue_id: i32) -> Option<u64> {
        self.recovered.get(&(topic.to_owned(), queue_id)).copied()
    }

    /// Changed since the file was last written.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The file's contents; marks the fence clean.
    pub fn take_json(&mut self) -> Vec<u8> {
        self.dirty = false;
        let fences = self
            .queues
            .iter()
            .flat_map(|((topic, queue_id), entries)| {
                entries.iter().map(move |(key, f)| {
                    let (group, client) = match key {
                        FenceKey::Any => ("*".to_owned(), None),
                        FenceKey::Group(g) => (g.clone(), None),
                        FenceKey::Instance { group, client } => {
                            (group.clone(), Some(client.clone()))
                        }
                    };
                    FenceEntry {
                        topic: topic.clone(),
                        queue_id: *queue_id,
                        group,
                        client,
                        offset: f.offset,
                        since_ms: f.since_ms,
                        last_bite_ms: f.last_bite_ms,
                    }
                })
            })
            .collect();
        let passed = self
            .passed
            .iter()
            .filter_map(|(topic, queue_id, group, holder)| match holder {
                Holder::Client(client) => Some(PassEntry {
                    topic: topic.clone(),
                    queue_id: *queue_id,
                    group: group.clone(),
                    client: client.clone(),
                }),
                Holder::Conn(_) => None,
            })
            .collect();
        serde_json::to_vec(&FenceFile {
            fences,
            passed,
            unknown_queues: self.unknown_queues,
        })
        .unwrap_or_default()
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// The fence of every queue the broker knows right after recovery: every queue of the
    /// store and every read queue of every topic (a queue recovered without any ConsumeQueue is
    /// recovered empty).
    pub(super) fn build_recovery_fence(
        &mut self,
        now_ms: u64,
    ) -> Result<RecoveryFence, BrokerError> {
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
        let mut committed: BTreeMap<(String, i32), Vec<(String, u64)>> = BTreeMap::new();
        for (topic, group, queue_id, offset) in self.offsets.entries() {
            committed
                .entry((topic.to_owned(), queue_id))
                .or_default()
                .push((group.to_owned(), offset.max(0) as u64));
        }
        let store = &self.store;
        fence.rebuild(
            now_ms,
            keys.into_iter().map(|(topic, queue_id)| {
                let max = store.max_offset(&topic, queue_id).0;
                ((topic, queue_id), max)
            }),
            &committed,
        );
        // At once: a second crash before the next period must find these fences.
        self.persist_fence_to(&mut fence);
        Ok(fence)
    }

    /// Retires old fences and writes the fences if they changed since the last write.
    pub(super) fn persist_recovery_fence(&mut self, now_ms: u64) {
        self.recovery_fence.retire(now_ms);
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

    /// Who holds the positions a connection of `group` pulls and commits.
    pub(super) fn fence_holder(&self, group: &str, conn: ConnId) -> Holder {
        self.clients
            .consumers
            .get(group)
            .and_then(|g| g.channels.get(&conn))
            .map_or(Holder::Conn(conn), |c| Holder::Client(c.client_id.clone()))
    }

    /// Commits a consumer offset sent on `conn`, clamped by the recovery fence.
    pub(super) fn commit_consumer_offset(
        &mut self,
        conn: ConnId,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
    ) {
        let holder = self.fence_holder(group, conn);
        let offset = self
            .recovery_fence
            .clamp_commit(topic, queue_id, group, &holder, offset);
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
