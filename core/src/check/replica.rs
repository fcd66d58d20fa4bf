//! Checkers of master–slave replication (REPLICATION.md §1, §7).
//!
//! They read only the replication events of a history ([`EventKind::ReplicaAtAck`],
//! [`EventKind::DiskDestroyed`], [`EventKind::DurableAtPowerLoss`],
//! [`EventKind::ReplicaCompared`], [`EventKind::ReplicaReadBack`]) plus the sends, acks, power
//! losses and the master's read-back; a history without replication events passes them
//! untouched.
//!
//! A slave's data can vanish in two ways the checkers must allow: its own power loss (un-synced
//! bytes; a slave reports what it wrote, not what it synced, as RocketMQ's does) and the
//! destruction of its disk. Both are "lossy events" of the slave's node. A master's power loss
//! can lose bytes the slave already has; the slave then differs from the master from the
//! master's durable end on, which the replica-prefix check allows and counts.
//!
//! Hooks for a `slave-read` checker (consumers pulling from slaves): deliveries whose
//! `consumer` pulled from a slave would be judged against the slave's read-back and the
//! master's, with a divergence ([`EventKind::ReplicaCompared`] with a difference) explaining
//! records the master no longer has; not built here.

use std::collections::{BTreeMap, BTreeSet};

use super::{Event, EventKind, History, Invariant, OpId, PowerLossPolicy, QueueRef, Violation};

/// The replication events of a history, gathered in one pass.
struct ReplicaIndex<'a> {
    events: &'a [Event],
    /// Send invocations: op → (event index, key).
    sends: BTreeMap<OpId, (usize, &'a str)>,
    /// Acks: op → (event index, queue).
    acks: BTreeMap<OpId, (usize, &'a QueueRef)>,
    /// Per acked op of a SYNC_MASTER: (event index, slave node, held).
    at_ack: BTreeMap<OpId, Vec<(usize, &'a str, bool)>>,
    /// Per node: event indexes of power losses that may drop un-synced bytes, and of disk
    /// destructions.
    lossy: BTreeMap<&'a str, Vec<usize>>,
    /// Per master: (event index, durable CommitLog end) at each power loss.
    durable_at_loss: BTreeMap<&'a str, Vec<(usize, u64)>>,
    /// Slaves read back, per master broker name.
    slaves_read_back: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Keys in any slave's read-back, per master broker name.
    replica_keys: BTreeSet<(&'a str, &'a str)>,
    /// Keys in the master's read-back, per queue.
    master_keys: BTreeSet<(&'a QueueRef, &'a str)>,
}

impl<'a> ReplicaIndex<'a> {
    fn new(history: &'a History) -> Self {
        let mut ix = ReplicaIndex {
            events: history.events(),
            sends: BTreeMap::new(),
            acks: BTreeMap::new(),
            at_ack: BTreeMap::new(),
            lossy: BTreeMap::new(),
            durable_at_loss: BTreeMap::new(),
            slaves_read_back: BTreeMap::new(),
            replica_keys: BTreeSet::new(),
            master_keys: BTreeSet::new(),
        };
        for (i, e) in history.events().iter().enumerate() {
            match &e.kind {
                EventKind::SendInvoked(s) => {
                    ix.sends.insert(s.op, (i, s.key.as_str()));
                }
                EventKind::SendOk { op, queue, .. } => {
                    ix.acks.insert(*op, (i, queue));
                }
                EventKind::ReplicaAtAck { op, node, held } => {
                    ix.at_ack
                        .entry(*op)
                        .or_default()
                        .push((i, node.as_str(), *held));
                }
                EventKind::PowerLost { node, policy }
                    if *policy != PowerLossPolicy::KeepUnsynced =>
                {
                    ix.lossy.entry(node.as_str()).or_default().push(i);
                }
                EventKind::DiskDestroyed { node } => {
                    ix.lossy.entry(node.as_str()).or_default().push(i);
                }
                EventKind::DurableAtPowerLoss { broker, offset } => ix
                    .durable_at_loss
                    .entry(broker.as_str())
                    .or_default()
                    .push((i, *offset)),
                EventKind::ReplicaReadBackBroker { node, broker } => {
                    ix.slaves_read_back
                        .entry(broker.as_str())
                        .or_default()
                        .insert(node.as_str());
                }
                EventKind::ReplicaReadBack { record, .. } => {
                    ix.replica_keys
                        .insert((record.queue.broker.as_str(), record.key.as_str()));
                }
                EventKind::ReadBack(r) => {
                    ix.master_keys.insert((&r.queue, r.key.as_str()));
                }
                _ => {}
            }
        }
        ix
    }

    /// Whether `node` had a lossy event strictly between events `after` and `before`.
    fn lossy_between(&self, node: &str, after: usize, before: usize) -> bool {
        self.lossy
            .get(node)
            .is_some_and(|v| v.iter().any(|i| *i > after && *i < before))
    }

    fn violation(&self, invariant: Invariant, index: usize, detail: String) -> Violation {
        Violation {
            invariant,
            event_index: index,
            event: self.events[index].to_string(),
            detail,
        }
    }
}

/// `sync-master-ack-before-replica`: a SYNC_MASTER answers SEND_OK only once a slave has the
/// message (REPLICATION.md §1.4), so when the ack reaches the producer some slave of the group
/// holds the record at its CommitLog offset. Not judged when a slave that lacks it lost data
/// (a lossy power loss or a destroyed disk) between the send's invocation and the ack's
/// arrival: it may have held the record when the master answered.
pub fn check_replica_acks(history: &History) -> Vec<Violation> {
    let ix = ReplicaIndex::new(history);
    let mut out = Vec::new();
    for (op, slaves) in &ix.at_ack {
        if slaves.iter().any(|(_, _, held)| *held) {
            continue;
        }
        let (Some((invoked, key)), Some((ack, queue))) = (ix.sends.get(op), ix.acks.get(op)) else {
            continue;
        };
        let excused = slaves
            .iter()
            .any(|(at, node, _)| ix.lossy_between(node, *invoked, *at));
        if excused {
            continue;
        }
        let nodes: Vec<&str> = slaves.iter().map(|(_, n, _)| *n).collect();
        out.push(ix.violation(
            Invariant::ReplicaAck,
            *ack,
            format!(
                "SYNC_MASTER acked {key} at {queue} while no slave held it ({})",
                nodes.join(", ")
            ),
        ));
    }
    out
}

/// `replica-prefix`: a slave's CommitLog is a byte-identical prefix of its master's, over
/// the range the slave holds (a slave that joined empty starts at the master's last segment).
/// A difference is allowed only at or beyond the master's durable CommitLog end at one of its
/// power losses before the comparison: the slave received bytes the master then lost, and HA
/// v1 has no way to truncate them (REPLICATION.md §1.7). Such a slave either refuses its
/// master (it is ahead) or holds records its master does not have; the harness's operator
/// empties it in the healed phase, as RocketMQ's docs ask.
pub fn check_replica_prefix(history: &History) -> Vec<Violation> {
    let ix = ReplicaIndex::new(history);
    let mut out = Vec::new();
    for (i, e) in ix.events.iter().enumerate() {
        let EventKind::ReplicaCompared {
            node,
            broker,
            first_difference: Some(at),
            ..
        } = &e.kind
        else {
            continue;
        };
        let explained = ix
            .durable_at_loss
            .get(broker.as_str())
            .is_some_and(|v| v.iter().any(|(j, durable)| *j < i && *durable <= *at));
        if !explained {
            out.push(ix.violation(
                Invariant::ReplicaPrefix,
                i,
                format!(
                    "slave {node} differs from its master {broker} at CommitLog offset {at}, \
                     below anything a power loss of the master explains"
                ),
            ));
        }
    }
    out
}

/// How many slave CommitLogs differed from their master's, explained by a power loss of the
/// master (see [`check_replica_prefix`]).
pub fn replica_divergences(history: &History) -> u64 {
    history
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::ReplicaCompared {
                    first_difference: Some(_),
                    ..
                }
            )
        })
        .count() as u64
}

/// `replica-lost-write`: a SYNC_MASTER's acked message that a slave held at the ack survives in
/// its group: in the master's read-back or in a slave's, whatever became of the master (a
/// power loss may drop the master's un-synced copy; under ASYNC_FLUSH `lost-write` allows
/// that). Not judged when every slave that held it later lost data (a lossy power loss or a
/// destroyed disk), or when no slave of the group was read back.
pub fn check_replica_lost_writes(history: &History) -> Vec<Violation> {
    let ix = ReplicaIndex::new(history);
    let mut out = Vec::new();
    let end = ix.events.len();
    for (op, slaves) in &ix.at_ack {
        let holders: Vec<&str> = slaves
            .iter()
            .filter(|(_, _, held)| *held)
            .map(|(_, n, _)| *n)
            .collect();
        let (Some((_, key)), Some((ack, queue))) = (ix.sends.get(op), ix.acks.get(op)) else {
            continue;
        };
        if holders.is_empty() || !ix.slaves_read_back.contains_key(queue.broker.as_str()) {
            continue;
        }
        if ix.master_keys.contains(&(*queue, *key))
            || ix.replica_keys.contains(&(queue.broker.as_str(), *key))
        {
            continue;
        }
        if holders.iter().all(|node| ix.lossy_between(node, *ack, end)) {
            continue;
        }
        out.push(ix.violation(
            Invariant::ReplicaLostWrite,
            *ack,
            format!(
                "SYNC_MASTER acked {key} at {queue}, held by {} at the ack, is neither on the \
                 master nor on any slave at the end",
                holders.join(", ")
            ),
        ));
    }
    out
}
