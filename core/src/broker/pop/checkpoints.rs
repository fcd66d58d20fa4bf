//! The open checkpoints: what POP handed out and is waiting for acks, indexed by the merge key
//! acks name, by revive time, and by where each checkpoint sits in its revive queue.

use std::collections::{BTreeMap, BTreeSet};

use super::records::PopCheckPoint;

/// RocketMQ's merge key of a checkpoint: an ack matches it only when all six agree.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CkKey {
    pub topic: String,
    pub group: String,
    pub queue_id: i32,
    pub start_offset: i64,
    pub pop_time_ms: i64,
    pub broker_name: String,
}

impl CkKey {
    pub fn of(ck: &PopCheckPoint) -> Self {
        Self {
            topic: ck.topic.clone(),
            group: ck.group.clone(),
            queue_id: ck.queue_id,
            start_offset: ck.start_offset,
            pop_time_ms: ck.pop_time_ms,
            broker_name: ck.broker_name.clone().unwrap_or_default(),
        }
    }
}

/// A checkpoint not finished yet.
#[derive(Clone, Debug)]
pub struct OpenCk {
    pub ck: PopCheckPoint,
    pub revive_qid: i32,
    /// Its record's offset in its revive queue.
    pub log_offset: u64,
    /// Offsets not acked yet; revived when the checkpoint is due.
    pub pending: BTreeSet<i64>,
    /// When to revive (epoch ms); moved later when a revive could not store its copies.
    pub due_ms: u64,
}

/// Every open checkpoint.
#[derive(Debug, Default)]
pub struct Checkpoints {
    open: BTreeMap<CkKey, OpenCk>,
    due: BTreeSet<(u64, CkKey)>,
    /// Revive queue → revive-log offsets of its open checkpoints.
    by_log: BTreeMap<i32, BTreeSet<u64>>,
}

/// What an ack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acked {
    /// The message was pending and no longer is (`finished`: nothing of its checkpoint is).
    Taken { finished: bool },
    /// No open checkpoint holds it (acked before, revived, or never handed out).
    Unknown,
}

impl Checkpoints {
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Opens a checkpoint. A second one with the same key (two in the same millisecond for
    /// the same start) joins the first.
    pub fn open(&mut self, ck: PopCheckPoint, revive_qid: i32, log_offset: u64) {
        let key = CkKey::of(&ck);
        let pending: BTreeSet<i64> = ck.offsets().into_iter().collect();
        if let Some(existing) = self.open.get_mut(&key) {
            existing.pending.extend(pending);
            return;
        }
        let due_ms = ck.revive_at_ms().max(0) as u64;
        self.due.insert((due_ms, key.clone()));
        self.by_log
            .entry(revive_qid)
            .or_default()
            .insert(log_offset);
        self.open.insert(
            key,
            OpenCk {
                ck,
                revive_qid,
                log_offset,
                pending,
                due_ms,
            },
        );
    }

    pub fn get(&self, key: &CkKey) -> Option<&OpenCk> {
        self.open.get(key)
    }

    /// Whether `offset` of `key` is still waiting for its ack.
    pub fn is_pending(&self, key: &CkKey, offset: i64) -> bool {
        self.open
            .get(key)
            .is_some_and(|ck| ck.pending.contains(&offset))
    }

    /// Records the ack of `offset`; a checkpoint with nothing pending is closed.
    pub fn ack(&mut self, key: &CkKey, offset: i64) -> Acked {
        let Some(ck) = self.open.get_mut(key) else {
            return Acked::Unknown;
        };
        if !ck.pending.remove(&offset) {
            return Acked::Unknown;
        }
        let finished = ck.pending.is_empty();
        if finished {
            self.close(key);
        }
        Acked::Taken { finished }
    }

    /// Removes a checkpoint (finished, or revived).
    pub fn close(&mut self, key: &CkKey) -> Option<OpenCk> {
        let ck = self.open.remove(key)?;
        self.due.remove(&(ck.due_ms, key.clone()));
        if let Some(offsets) = self.by_log.get_mut(&ck.revive_qid) {
            offsets.remove(&ck.log_offset);
            if offsets.is_empty() {
                self.by_log.remove(&ck.revive_qid);
            }
        }
        Some(ck)
    }

    /// The earliest revive time of an open checkpoint.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.due.first().map(|(due, _)| *due)
    }

    /// The keys due at `now_ms`, earliest first.
    pub fn due_at(&self, now_ms: u64) -> Vec<CkKey> {
        self.due
            .iter()
            .take_while(|(due, _)| *due <= now_ms)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Tries a checkpoint again at `due_ms` (its revive could not store everything).
    pub fn postpone(&mut self, key: &CkKey, due_ms: u64) {
        if let Some(ck) = self.open.get_mut(key) {
            self.due.remove(&(ck.due_ms, key.clone()));
            ck.due_ms = due_ms;
            self.due.insert((due_ms, key.clone()));
        }
    }

    /// Drops `offset` from a checkpoint's pending set (revived on its own); closes it when
    /// nothing is left.
    pub fn forget(&mut self, key: &CkKey, offset: i64) {
        if let Some(ck) = self.open.get_mut(key) {
            ck.pending.remove(&offset);
            if ck.pending.is_empty() {
                self.close(key);
            }
        }
    }

    /// The first revive-log offset of `revive_qid` an open checkpoint still needs.
    pub fn first_open_log_offset(&self, revive_qid: i32) -> Option<u64> {
        self.by_log.get(&revive_qid)?.first().copied()
    }

    /// Open checkpoints of (topic, group, queue): how many messages are in flight.
    pub fn in_flight(&self, topic: &str, group: &str, queue_id: i32) -> usize {
        self.open
            .values()
            .filter(|c| c.ck.topic == topic && c.ck.group == group && c.ck.queue_id == queue_id)
            .map(|c| c.pending.len())
            .sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = &OpenCk> {
        self.open.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ck(so: i64, diffs: Vec<i64>, pt: i64) -> PopCheckPoint {
        PopCheckPoint {
            bit_map: 0,
            broker_name: Some("b".into()),
            group: "G".into(),
            num: diffs.len() as i32,
            queue_offset_diff: diffs,
            invisible_time_ms: 1_000,
            pop_time_ms: pt,
            queue_id: 0,
            revive_time_ms: 0,
            revive_offset: 0,
            start_offset: so,
            topic: "T".into(),
        }
    }

    #[test]
    fn acks_close_checkpoints_and_free_their_revive_log_position() {
        let mut cks = Checkpoints::default();
        let a = ck(10, vec![0, 2], 100);
        let b = ck(13, vec![0], 200);
        cks.open(a.clone(), 1, 5);
        cks.open(b.clone(), 1, 6);
        assert_eq!(cks.first_open_log_offset(1), Some(5));
        assert_eq!(cks.next_due_ms(), Some(1_100));
        assert_eq!(cks.ack(&CkKey::of(&a), 11), Acked::Unknown);
        assert_eq!(
            cks.ack(&CkKey::of(&a), 10),
            Acked::Taken { finished: false }
        );
        assert_eq!(cks.ack(&CkKey::of(&a), 10), Acked::Unknown);
        assert_eq!(cks.ack(&CkKey::of(&a), 12), Acked::Taken { finished: true });
        assert_eq!(cks.first_open_log_offset(1), Some(6));
        assert_eq!(cks.due_at(1_150), Vec::<CkKey>::new());
        assert_eq!(cks.due_at(1_200), vec![CkKey::of(&b)]);
        cks.postpone(&CkKey::of(&b), 5_000);
        assert_eq!(cks.next_due_ms(), Some(5_000));
        cks.forget(&CkKey::of(&b), 13);
        assert_eq!(cks.len(), 0);
        assert_eq!(cks.first_open_log_offset(1), None);
    }
}
