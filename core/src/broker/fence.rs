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
//! The fence lives in memory only and is rebuilt at every start that follows a crash (the
//! store's abort marker was found). After a clean close everything written was durable and no
//! position can be beyond `M`, so there is none: it could only send positions a group took
//! from the max offset after the start back to re-read.
//!
//! After a crash that holds too, at worst: a group that starts after the restart at the max
//! offset (CONSUME_FROM_LAST_OFFSET) or at a timestamp is sent back to `M` and also receives
//! the messages stored since the restart before its start position. Duplicates, never a loss.

use std::collections::{BTreeMap, BTreeSet};

use super::Broker;
use crate::remoting::codes::response;
use crate::remoting::headers::PullMessageResponseHeader;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::ConnId;

/// The fence of one queue.
#[derive(Debug)]
struct QueueFence {
    /// The queue's max offset right after recovery.
    recovered_max: u64,
    /// Groups whose positions on this queue are post-restart positions.
    passed_groups: BTreeSet<String>,
    /// (group, connection) pairs of broadcasting consumers that passed.
    passed_conns: BTreeSet<(String, ConnId)>,
}

impl QueueFence {
    fn passed(&self, group: &str, conn: Option<ConnId>) -> bool {
        self.passed_groups.contains(group)
            || conn.is_some_and(|c| self.passed_conns.contains(&(group.to_owned(), c)))
    }
}

/// Every queue's fence, by (topic, queue id). Queues created after the start have none.
#[derive(Debug, Default)]
pub(super) struct RecoveryFence {
    queues: BTreeMap<(String, i32), QueueFence>,
}

impl RecoveryFence {
    /// A fence at `recovered_max` for each queue given.
    pub fn new(queues: impl IntoIterator<Item = ((String, i32), u64)>) -> Self {
        Self {
            queues: queues
                .into_iter()
                .map(|(key, recovered_max)| {
                    (
                        key,
                        QueueFence {
                            recovered_max,
                            passed_groups: BTreeSet::new(),
                            passed_conns: BTreeSet::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn active(
        &self,
        topic: &str,
        queue_id: i32,
        group: &str,
        conn: Option<ConnId>,
    ) -> Option<&QueueFence> {
        self.queues
            .get(&(topic.to_owned(), queue_id))
            .filter(|f| !f.passed(group, conn))
    }

    /// A pull of `group` at `offset`: `Some(M)` when it must restart at the recovered max `M`
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
        let fence = self.queues.get_mut(&(topic.to_owned(), queue_id))?;
        if fence.passed(group, conn) {
            return None;
        }
        if offset > fence.recovered_max {
            return Some(fence.recovered_max);
        }
        match conn {
            Some(conn) => fence.passed_conns.insert((group.to_owned(), conn)),
            None => fence.passed_groups.insert(group.to_owned()),
        };
        None
    }

    /// The offset to commit for `group` instead of `offset`: at most the recovered max while
    /// the group has not passed the fence.
    pub fn clamp_commit(&self, topic: &str, queue_id: i32, group: &str, offset: i64) -> i64 {
        match self.active(topic, queue_id, group, None) {
            Some(fence) => offset.min(fence.recovered_max.min(i64::MAX as u64) as i64),
            None => offset,
        }
    }

    /// The group's positions on the queue are new (the broker reset them).
    pub fn pass(&mut self, topic: &str, queue_id: i32, group: &str) {
        if let Some(fence) = self.queues.get_mut(&(topic.to_owned(), queue_id)) {
            fence.passed_groups.insert(group.to_owned());
        }
    }

    /// A connection closed: its broadcasting passes go with it (a consumer that reconnects is
    /// fenced again, which at worst re-delivers).
    pub fn drop_connection(&mut self, conn: ConnId) {
        for fence in self.queues.values_mut() {
            if !fence.passed_conns.is_empty() {
                fence.passed_conns.retain(|(_, c)| *c != conn);
            }
        }
    }

    /// The recovered max of a queue, `None` when it has no fence.
    pub fn recovered_max(&self, topic: &str, queue_id: i32) -> Option<u64> {
        self.queues
            .get(&(topic.to_owned(), queue_id))
            .map(|f| f.recovered_max)
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// The fence of every queue the broker knows right after recovery: every queue of the
    /// store and every read queue of every topic (a queue recovered without any ConsumeQueue is
    /// recovered empty).
    pub(super) fn build_recovery_fence(&self) -> RecoveryFence {
        if !self.store.recovery_report().abort_marker_found {
            // The store was closed cleanly (or never opened): everything written was durable,
            // nothing was lost, and no position can be beyond a queue's end. A fence would
            // only send positions taken from the max offset after the start
            // (CONSUME_FROM_LAST_OFFSET) back to re-read.
            return RecoveryFence::default();
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
        RecoveryFence::new(keys.into_iter().map(|(topic, queue_id)| {
            let max = self.store.max_offset(&topic, queue_id).0;
            ((topic, queue_id), max)
        }))
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
