//! Orderly POP (RocketMQ's `ConsumerOrderInfoManager`): a queue read in order is blocked for
//! its group while the last batch handed out has an unacked message still invisible. Its
//! offset moves only with acks (to the first unacked message of the batch); when the
//! invisible time passes, the same messages are handed out again with their counts + 1
//! (`orderCountInfo`, which clients turn into reconsume times). A POP carrying the batch's
//! `attemptId` (a client retrying a POP whose answer it lost) is not blocked and gets the same
//! messages without counting them again.
//!
//! The table is persisted in `config/consumerOrderInfo.json`, in Vostok's own strict JSON
//! (RocketMQ's fastjson file has unquoted integer keys): `{"entries":[{"topic":…,"group":…,
//! "queueId":…,"popTime":…,"invisibleTime":…,"offsets":[…],"acked":[…],"nextVisible":{…},
//! "counts":{…},"attemptId":…}]}`. Losing it (a crash between writes) unblocks a queue early:
//! its unacked messages come again sooner, never lost.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::super::{Broker, BrokerError};
use super::serve::{PopBatch, PopRequest, QueueRead};
use crate::remoting::pop::{encode_order_count_info, RetryFlag};
use crate::store::SegmentStorage;

pub(in crate::broker) const ORDER_INFO_PATH: &str = "config/consumerOrderInfo.json";

/// The last batch handed out of one queue to one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInfo {
    pub topic: String,
    pub group: String,
    pub queue_id: i32,
    pub pop_time: i64,
    pub invisible_time: i64,
    pub offsets: Vec<i64>,
    #[serde(default)]
    pub acked: BTreeSet<i64>,
    /// Per offset: when it becomes visible again, after CHANGE_MESSAGE_INVISIBLETIME.
    #[serde(default)]
    pub next_visible: BTreeMap<i64, i64>,
    /// Per offset: how often it was handed out before this batch.
    #[serde(default)]
    pub counts: BTreeMap<i64, i32>,
    #[serde(default)]
    pub attempt_id: Option<String>,
}

impl OrderInfo {
    fn visible_at(&self, offset: i64) -> i64 {
        self.next_visible
            .get(&offset)
            .copied()
            .unwrap_or(self.pop_time + self.invisible_time)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OrderFile {
    #[serde(default)]
    entries: Vec<OrderInfo>,
}

/// Every queue's last orderly batch, by (topic, group, queue id).
#[derive(Debug, Default)]
pub struct OrderTable {
    table: BTreeMap<(String, String, i32), OrderInfo>,
    dirty: bool,
}

/// What an orderly ack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderAck {
    /// The group's offset moves here.
    Commit(i64),
    /// Nothing to do (another batch's ack, or no batch known).
    Ignored,
    /// The offset is not in the batch that has this pop time.
    NotInBatch,
}

impl OrderTable {
    pub fn load<S: crate::store::SegmentStorage>(storage: &S) -> Result<Self, BrokerError> {
        let file: Option<OrderFile> = super::super::load_json_config(storage, ORDER_INFO_PATH)?;
        let table = file
            .map(|f| f.entries)
            .unwrap_or_default()
            .into_iter()
            .map(|e| ((e.topic.clone(), e.group.clone(), e.queue_id), e))
            .collect();
        Ok(Self {
            table,
            dirty: false,
        })
    }

    fn key(topic: &str, group: &str, queue_id: i32) -> (String, String, i32) {
        (topic.to_owned(), group.to_owned(), queue_id)
    }

    /// Whether the queue is held by a batch not acked and still invisible, for a request
    /// with `attempt_id` (the batch's own attempt is never blocked).
    pub fn blocked(
        &self,
        topic: &str,
        group: &str,
        queue_id: i32,
        now_ms: i64,
        attempt_id: Option<&str>,
    ) -> bool {
        let Some(info) = self.table.get(&Self::key(topic, group, queue_id)) else {
            return false;
        };
        if attempt_id.is_some() && info.attempt_id.as_deref() == attempt_id {
            return false;
        }
        info.offsets
            .iter()
            .any(|o| !info.acked.contains(o) && info.visible_at(*o) > now_ms)
    }

    /// Records a new batch; returns each offset's count (how often it was handed out before).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offsets: &[i64],
        pop_time_ms: i64,
        invisible_time_ms: i64,
        attempt_id: Option<&str>,
    ) -> Vec<(i64, i32)> {
        let key = Self::key(topic, group, queue_id);
        let previous = self.table.get(&key);
        let same_attempt =
            attempt_id.is_some() && previous.and_then(|p| p.attempt_id.as_deref()) == attempt_id;
        let counts: BTreeMap<i64, i32> = offsets
            .iter()
            .map(|o| {
                let before = previous.and_then(|p| p.counts.get(o)).copied().unwrap_or(0);
                let again = previous.is_some_and(|p| p.offsets.contains(o));
                (
                    *o,
                    if again && !same_attempt {
                        before + 1
                    } else {
                        before
                    },
                )
            })
            .collect();
        let out = offsets.iter().map(|o| (*o, counts[o])).collect();
        self.table.insert(
            key,
            OrderInfo {
                topic: topic.to_owned(),
                group: group.to_owned(),
                queue_id,
                pop_time: pop_time_ms,
                invisible_time: invisible_time_ms,
                offsets: offsets.to_vec(),
                acked: BTreeSet::new(),
                next_visible: BTreeMap::new(),
                counts: counts.into_iter().filter(|(_, c)| *c > 0).collect(),
                attempt_id: attempt_id.map(str::to_owned),
            },
        );
        self.dirty = true;
        out
    }

    /// The ack of `offset` of the batch popped at `pop_time_ms` (`commitAndNext`).
    pub fn ack(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        pop_time_ms: i64,
    ) -> OrderAck {
        let Some(info) = self.table.get_mut(&Self::key(topic, group, queue_id)) else {
            return OrderAck::Ignored;
        };
        if info.pop_time != pop_time_ms {
            return OrderAck::Ignored;
        }
        if !info.offsets.contains(&offset) {
            return OrderAck::NotInBatch;
        }
        info.acked.insert(offset);
        self.dirty = true;
        let next = info
            .offsets
            .iter()
            .find(|o| !info.acked.contains(o))
            .copied()
            .unwrap_or_else(|| info.offsets.last().map_or(offset + 1, |l| l + 1));
        OrderAck::Commit(next)
    }

    /// Moves when `offset` of the batch popped at `pop_time_ms` becomes visible again;
    /// returns the batch's pop time when it did.
    pub fn change_invisible(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        pop_time_ms: i64,
        visible_at_ms: i64,
    ) -> Option<i64> {
        let info = self.table.get_mut(&Self::key(topic, group, queue_id))?;
        if info.pop_time != pop_time_ms || !info.offsets.contains(&offset) {
            return None;
        }
        info.next_visible.insert(offset, visible_at_ms);
        self.dirty = true;
        Some(info.pop_time)
    }

    /// Whether it changed since the last [`Self::take_json`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn take_json(&mut self) -> Vec<u8> {
        self.dirty = false;
        let file = OrderFile {
            entries: self.table.values().cloned().collect(),
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// Reads one queue for an orderly POP: nothing while its last batch is in flight; else
    /// from the group's offset (the first unacked message), counting what comes again.
    pub(super) fn pop_orderly_from_queue(
        &mut self,
        now_ms: u64,
        request: &PopRequest<'_>,
        topic: &str,
        queue_id: i32,
        want: usize,
        batch: &mut PopBatch,
    ) {
        let h = request.header;
        let group = h.consumer_group.as_str();
        if !self.config.store.defects.orderly_pop_ignores_lock()
            && self.pop.order.blocked(
                topic,
                group,
                queue_id,
                now_ms as i64,
                h.attempt_id.as_deref(),
            )
        {
            return;
        }
        let Some(QueueRead {
            offset,
            next,
            max,
            records,
            offsets,
        }) = self.read_queue_for_pop(request, topic, queue_id, want, batch)
        else {
            return;
        };
        let counts = self.pop.order.update(
            topic,
            group,
            queue_id,
            &offsets,
            request.pop_time_ms,
            h.invisible_time_ms,
            h.attempt_id.as_deref(),
        );
        let flag = RetryFlag::of_topic(topic);
        encode_order_count_info((flag, queue_id), &counts, &mut batch.order_counts);
        batch.records.extend(records);
        batch.start_infos.push(((flag, queue_id), offset));
        batch.msg_infos.push(((flag, queue_id), offsets));
        batch.rest += (max - next).max(0);
    }

    /// Writes `config/consumerOrderInfo.json` when the table changed.
    pub(in crate::broker) fn persist_order_info_if_changed(&mut self) {
        if !self.pop.order.is_dirty() {
            return;
        }
        let json = self.pop.order.take_json();
        if self
            .store
            .storage_mut()
            .replace(ORDER_INFO_PATH, &json)
            .is_err()
        {
            // Tried again at the next tick.
            self.pop.order.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_blocks_its_queue_until_acked_or_invisible_time_passes() {
        let mut t = OrderTable::default();
        assert!(!t.blocked("T", "G", 0, 0, None));
        assert_eq!(
            t.update("T", "G", 0, &[5, 6, 7], 1_000, 100, Some("a1")),
            vec![(5, 0), (6, 0), (7, 0)]
        );
        assert!(t.blocked("T", "G", 0, 1_050, None));
        assert!(t.blocked("T", "G", 0, 1_050, Some("other")));
        assert!(!t.blocked("T", "G", 0, 1_050, Some("a1")));
        assert!(!t.blocked("T", "G", 0, 1_100, None));
        assert_eq!(t.ack("T", "G", 0, 5, 999), OrderAck::Ignored);
        assert_eq!(t.ack("T", "G", 0, 9, 1_000), OrderAck::NotInBatch);
        assert_eq!(t.ack("T", "G", 0, 5, 1_000), OrderAck::Commit(6));
        // The same attempt again counts nothing; a new pop after expiry counts again.
        assert_eq!(
            t.update("T", "G", 0, &[6, 7], 1_000, 100, Some("a1")),
            vec![(6, 0), (7, 0)]
        );
        assert_eq!(
            t.update("T", "G", 0, &[6, 7, 8], 2_000, 100, Some("a2")),
            vec![(6, 1), (7, 1), (8, 0)]
        );
        assert_eq!(
            t.change_invisible("T", "G", 0, 6, 2_000, 9_000),
            Some(2_000)
        );
        assert!(t.blocked("T", "G", 0, 5_000, None));
        assert_eq!(t.ack("T", "G", 0, 7, 2_000), OrderAck::Commit(6));
        assert_eq!(t.ack("T", "G", 0, 8, 2_000), OrderAck::Commit(6));
        assert_eq!(t.ack("T", "G", 0, 6, 2_000), OrderAck::Commit(9));
        assert!(!t.blocked("T", "G", 0, 5_000, None));
    }
}
