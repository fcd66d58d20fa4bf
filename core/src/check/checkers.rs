//! One checker per invariant; see the table in the module docs.
//!
//! Every checker walks the history once over an [`Index`] built from it, and reports violations
//! in event order, at most [`CheckConfig::max_violations_per_invariant`] of each invariant.

use super::{
    CheckConfig, CheckReport, Delivery, Event, EventKind, FlushMode, History, Invariant, OpId,
    PopDelivery, PowerLossPolicy, QueueRef, ReadBackRecord, SendSpec, Stats, Violation,
};
use crate::broker::replication::SLAVE_SYNC_INTERVAL_MS;
use std::collections::{BTreeMap, BTreeSet};

/// What became of a send.
#[derive(Clone, Copy, Debug)]
enum Outcome<'a> {
    Pending,
    Ok {
        index: usize,
        queue: &'a QueueRef,
        queue_offset: u64,
        flush: FlushMode,
    },
    Failed,
    Unknown,
}

/// Lookups every checker needs, built in one pass.
struct Index<'a> {
    events: &'a [Event],
    /// Send invocations by op: (event index, spec).
    sends: BTreeMap<OpId, (usize, &'a SendSpec)>,
    outcomes: BTreeMap<OpId, Outcome<'a>>,
    /// Ops by message key, in invocation order.
    ops_by_key: BTreeMap<&'a str, Vec<OpId>>,
    /// Power losses per node: (event index, policy), in order.
    power_losses: BTreeMap<&'a str, Vec<(usize, PowerLossPolicy)>>,
    /// Read-back queue headers: (event index, min offset, max offset).
    read_back_queues: BTreeMap<&'a QueueRef, (usize, u64, u64)>,
    /// Read-back records per queue, in event order.
    read_back: BTreeMap<&'a QueueRef, Vec<(usize, &'a ReadBackRecord)>>,
    /// Every (queue, key) in the read-back.
    read_back_keys: BTreeSet<(&'a QueueRef, &'a str)>,
    /// Recovery fences the brokers built.
    fences: Vec<Fence<'a>>,
    /// Brokers read back (a `ReadBackBroker` event, or at least one read-back queue).
    read_back_brokers: BTreeSet<&'a str>,
    deliveries: Vec<(usize, &'a Delivery)>,
    /// POP deliveries, in event order.
    pop_deliveries: Vec<(usize, &'a PopDelivery)>,
    drained: bool,
    /// Commits the masters accepted, per (group, queue), in order.
    master_commits: BTreeMap<(&'a str, &'a QueueRef), Vec<MasterCommit>>,
    /// Crashes, restarts, power losses and disk destructions, per node: event indexes.
    node_events: BTreeMap<&'a str, Vec<usize>>,
}

impl<'a> Index<'a> {
    fn new(history: &'a History) -> Self {
        let mut ix = Index {
            events: history.events(),
            sends: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            ops_by_key: BTreeMap::new(),
            power_losses: BTreeMap::new(),
            read_back_queues: BTreeMap::new(),
            read_back: BTreeMap::new(),
            read_back_keys: BTreeSet::new(),
            read_back_brokers: BTreeSet::new(),
            fences: Vec::new(),
            deliveries: Vec::new(),
            pop_deliveries: Vec::new(),
            drained: false,
            master_commits: BTreeMap::new(),
            node_events: BTreeMap::new(),
        };
        for (i, e) in history.events().iter().enumerate() {
            match &e.kind {
                EventKind::SendInvoked(s) => {
                    ix.sends.insert(s.op, (i, s));
                    ix.outcomes.insert(s.op, Outcome::Pending);
                    ix.ops_by_key.entry(s.key.as_str()).or_default().push(s.op);
                }
                EventKind::SendOk {
                    op,
                    queue,
                    queue_offset,
                    flush,
                } => {
                    ix.outcomes.insert(
                        *op,
                        Outcome::Ok {
                            index: i,
                            queue,
                            queue_offset: *queue_offset,
                            flush: *flush,
                        },
                    );
                }
                EventKind::SendFailed { op, .. } => {
                    ix.outcomes.insert(*op, Outcome::Failed);
                }
                EventKind::SendTimedOut { op } => {
                    ix.outcomes.insert(*op, Outcome::Unknown);
                }
                EventKind::PowerLost { node, policy } => {
                    ix.power_losses
                        .entry(node.as_str())
                        .or_default()
                        .push((i, *policy));
                    ix.node_events.entry(node.as_str()).or_default().push(i);
                }
                EventKind::NodeCrashed { node }
                | EventKind::NodeRestarted { node }
                | EventKind::DiskDestroyed { node } => {
                    ix.node_events.entry(node.as_str()).or_default().push(i);
                }
                EventKind::OffsetCommitted {
                    group,
                    queue,
                    offset,
                } => {
                    ix.master_commits
                        .entry((group.as_str(), queue))
                        .or_default()
                        .push((i, e.time_ms, *offset));
                }
                EventKind::ReadBackBroker { broker } => {
                    ix.read_back_brokers.insert(broker.as_str());
                }
                EventKind::FenceBuilt {
                    queue,
                    group,
                    offset,
                    built_ms,
                } => ix.fences.push(Fence {
                    queue,
                    group,
                    offset: *offset,
                    built_ms: *built_ms,
                }),
                EventKind::ReadBackQueue {
                    queue,
                    min_offset,
                    max_offset,
                } => {
                    ix.read_back_queues
                        .insert(queue, (i, *min_offset, *max_offset));
                    ix.read_back_brokers.insert(queue.broker.as_str());
                }
                EventKind::ReadBack(r) => {
                    ix.read_back.entry(&r.queue).or_default().push((i, r));
                    ix.read_back_keys.insert((&r.queue, r.key.as_str()));
                }
                EventKind::Delivered(d) => ix.deliveries.push((i, d)),
                EventKind::PopDelivered(d) => ix.pop_deliveries.push((i, d)),
                EventKind::Drained => ix.drained = true,
                _ => {}
            }
        }
        ix
    }

    fn violation(&self, invariant: Invariant, index: usize, detail: String) -> Violation {
        Violation {
            invariant,
            event_index: index,
            event: self.events[index].to_string(),
            detail,
        }
    }

    /// The acked sends in invocation order: (op, spec, ack index, queue, offset, flush).
    fn acked(&self) -> Vec<Acked<'a>> {
        let mut acked: Vec<Acked<'a>> = self
            .sends
            .iter()
            .filter_map(|(op, (invoked, spec))| match self.outcomes.get(op) {
                Some(Outcome::Ok {
                    index,
                    queue,
                    queue_offset,
                    flush,
                }) => Some(Acked {
                    invoked: *invoked,
                    spec,
                    ack_index: *index,
                    queue,
                    queue_offset: *queue_offset,
                    flush: *flush,
                }),
                _ => None,
            })
            .collect();
        acked.sort_by_key(|a| a.invoked);
        acked
    }

    /// How many power losses `node` had before event `index`.
    fn power_epoch(&self, node: &str, index: usize) -> usize {
        self.power_losses
            .get(node)
            .map_or(0, |v| v.iter().take_while(|(i, _)| *i < index).count())
    }

    /// The power epochs event `index` of `node` may belong to. A client-side receipt (an ack
    /// or a delivery) can arrive after its broker lost power, carrying what the broker stored
    /// or served before: within [`IN_FLIGHT_SLACK_MS`] of a power loss it may belong to the
    /// epoch before. The read-back is taken from the disk at the end: exact.
    fn epochs_of(&self, node: &str, index: usize, receipt: bool) -> (usize, usize) {
        let hi = self.power_epoch(node, index);
        if !receipt {
            return (hi, hi);
        }
        let t = self.events[index].time_ms;
        let lo = self.power_losses.get(node).map_or(0, |v| {
            v.iter()
                .take_while(|(i, _)| {
                    *i < index && self.events[*i].time_ms + IN_FLIGHT_SLACK_MS <= t
                })
                .count()
        });
        (lo, hi)
    }

    /// The first power loss of `node` after event `index` that may lose un-synced writes.
    fn lossy_power_loss_after(&self, node: &str, index: usize) -> Option<usize> {
        self.power_losses.get(node).and_then(|v| {
            v.iter()
                .find(|(i, p)| *i > index && *p != PowerLossPolicy::KeepUnsynced)
                .map(|(i, _)| *i)
        })
    }

    /// Whether `key` is in the read-back of `queue`.
    fn in_read_back(&self, queue: &QueueRef, key: &str) -> bool {
        self.read_back_keys.contains(&(queue, key))
    }

    /// The fate of an acked send in the final read-back.
    fn fate(&self, a: &Acked<'a>) -> Fate {
        if !self.read_back_brokers.contains(a.queue.broker.as_str()) {
            return Fate::Unknown;
        }
        if let Some((_, min, _)) = self.read_back_queues.get(a.queue) {
            if a.queue_offset < *min {
                return Fate::Unknown;
            }
        }
        if self.in_read_back(a.queue, &a.spec.key) {
            return Fate::Present;
        }
        if a.flush == FlushMode::Async {
            // The earliest power loss that explains it: an ack in flight when the power went
            // was lost then, and later records of its queue, stored after the restart, may
            // well survive a later power loss.
            if let Some(p) = self.power_loss_before_late_ack(a) {
                return Fate::LostAllowed { power_loss: p };
            }
            if let Some(p) = self.lossy_power_loss_after(&a.queue.broker, a.ack_index) {
                return Fate::LostAllowed { power_loss: p };
            }
        }
        Fate::Lost
    }

    /// A lossy power loss of the send's broker between its invocation and its ack, with no
    /// restart of the broker in between (or one the ack cannot come from, see below): the ack
    /// was in flight when the power went, so the record was stored (un-synced) before it.
    fn power_loss_before_late_ack(&self, a: &Acked<'a>) -> Option<usize> {
        let node = a.queue.broker.as_str();
        let losses = self.power_losses.get(node)?;
        let (p, _) = losses.iter().rev().find(|(i, policy)| {
            *i > a.invoked && *i < a.ack_index && *policy != PowerLossPolicy::KeepUnsynced
        })?;
        let restarted = self.events[*p..a.ack_index]
            .iter()
            .any(|e| matches!(&e.kind, EventKind::NodeRestarted { node: n } if n.as_str() == node));
        if !restarted {
            return Some(*p);
        }
        // The broker restarted before the ack arrived, so the ack may come from the restarted
        // broker. It cannot when it arrived within the in-flight slack of the power loss and the
        // read-back holds another key at its offset: the restarted broker gave that offset to
        // another message, so this one was stored before the power went (seed 70092968).
        let in_flight =
            self.events[a.ack_index].time_ms <= self.events[*p].time_ms + IN_FLIGHT_SLACK_MS;
        let taken = self.read_back.get(a.queue).is_some_and(|records| {
            records
                .iter()
                .any(|(_, r)| r.queue_offset == a.queue_offset && r.key != a.spec.key)
        });
        (in_flight && taken).then_some(*p)
    }

    /// Whether `group`'s commit of `offset` on `queue` at event `index`, behind what the group
    /// had committed, is a stale owner's: RocketMQ's rebalancing runs in each client, so after
    /// a partition or a lost connection two instances can both hold a queue until their next
    /// rebalance, and the one left behind sends its own consumed position. That moves the
    /// committed offset back and the messages after it are delivered again, never lost; the
    /// broker takes every commit as RocketMQ's does. It is explained when some instance of
    /// the group had been delivered offset `offset - 1` of the queue (its own position was
    /// `offset`; for offset 0, any instance of the group) and another instance was the first to
    /// be delivered `offset`. A value no consumer reached, or an instance moving its own commit
    /// back, stays a violation.
    fn stale_owner_commit(&self, group: &str, queue: &QueueRef, offset: u64, index: usize) -> bool {
        let of_group = || {
            self.deliveries
                .iter()
                .take_while(|(i, _)| *i < index)
                .map(|(_, d)| *d)
                .filter(|d| d.group == group)
        };
        let before = || of_group().filter(|d| d.queue == *queue);
        let Some(first_past) = before().find(|d| d.queue_offset == offset) else {
            return false;
        };
        match offset.checked_sub(1) {
            Some(behind) => {
                before().any(|d| d.queue_offset == behind && d.consumer != first_past.consumer)
            }
            // Offset 0 is the position of an instance that held the queue and got nothing
            // from it: any other instance of the group.
            None => of_group().any(|d| d.consumer != first_past.consumer),
        }
    }

    /// Whether a recovery fence explains `group`'s commit of `offset` on `queue` at `time_ms`,
    /// behind what the group had committed: the queue's broker built a fence for the group
    /// (or every group) at or below `offset` before then. An instance that has not passed the
    /// fence is sent back to it (`broker::fence`; among them an instance the broker cannot
    /// recognise yet, on a new connection before its first heartbeat), commits it, and the
    /// group's offset grows again from there: redelivery, never a skip.
    fn fence_rewind(&self, group: &str, queue: &QueueRef, offset: u64, time_ms: u64) -> bool {
        self.fences.iter().any(|f| {
            f.queue == queue
                && (f.group == "*" || f.group == group)
                && f.offset <= offset
                && f.built_ms <= time_ms
        })
    }

    /// Whether the lag of a slave's copy of its master's offsets explains `group`'s commit of
    /// `offset` on `queue`, made on slave `node` at event `index`, behind what the group had
    /// committed. An instance that takes a queue over while the master is away starts from
    /// the slave's copy of the master's offsets, which SlaveSynchronize refreshes every
    /// [`SLAVE_SYNC_INTERVAL_MS`]: the copy holds what the master held at some moment of the
    /// last [`SLAVE_SYNC_LAG_MS`] (or the slave's own later commit). So the commit is explained
    /// when, at some moment of that window before it, the master's committed value may have
    /// been at or below `offset`: the master's last recorded commit at the window's start is
    /// (or none was recorded by then), or one recorded within the window is, or the master or
    /// that slave crashed, restarted, lost power or lost its disk within it (a restarted slave
    /// starts from the copy it last persisted, an emptied one from none). The instance then
    /// consumes again what the group had committed: redelivery, bounded by the sync interval.
    /// Anything further back is a violation: the slave gave out older offsets than its sync
    /// explains.
    fn slave_sync_lag(
        &self,
        node: &str,
        group: &str,
        queue: &QueueRef,
        offset: u64,
        index: usize,
    ) -> bool {
        let t = self.events[index].time_ms;
        let Some(from) = t.checked_sub(SLAVE_SYNC_LAG_MS) else {
            return true;
        };
        let restarted = |n: &str| {
            self.node_events.get(n).is_some_and(|v| {
                v.iter()
                    .any(|i| *i < index && self.events[*i].time_ms >= from)
            })
        };
        if restarted(node) || restarted(queue.broker.as_str()) {
            return true;
        }
        let commits: &[MasterCommit] = self
            .master_commits
            .get(&(group, queue))
            .map_or(&[], Vec::as_slice);
        let before = commits.iter().take_while(|(i, _, _)| *i < index);
        let at_start = before
            .clone()
            .filter(|(_, time, _)| *time <= from)
            .last()
            .map(|(_, _, v)| *v);
        match at_start {
            None => true,
            Some(v) if v <= offset => true,
            Some(_) => before
                .filter(|(_, time, _)| *time > from)
                .any(|(_, _, v)| *v <= offset),
        }
    }

    /// Every position a key was observed at: deliveries, read-back and acks, in event order.
    fn observations(&self) -> Vec<(usize, &'a QueueRef, u64, &'a str)> {
        let mut out = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            match &e.kind {
                EventKind::Delivered(d) => out.push((i, &d.queue, d.queue_offset, d.key.as_str())),
                EventKind::ReadBack(r) => out.push((i, &r.queue, r.queue_offset, r.key.as_str())),
                EventKind::SendOk {
                    op,
                    queue,
                    queue_offset,
                    ..
                } => {
                    if let Some((_, s)) = self.sends.get(op) {
                        out.push((i, queue, *queue_offset, s.key.as_str()));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// A commit a master accepted ([`EventKind::OffsetCommitted`]): (event index, time, offset).
type MasterCommit = (usize, u64, u64);

/// A recovery fence ([`EventKind::FenceBuilt`]).
#[derive(Clone, Copy, Debug)]
struct Fence<'a> {
    queue: &'a QueueRef,
    group: &'a str,
    offset: u64,
    built_ms: u64,
}

/// An acked send.
#[derive(Clone, Copy, Debug)]
struct Acked<'a> {
    invoked: usize,
    spec: &'a SendSpec,
    ack_index: usize,
    queue: &'a QueueRef,
    queue_offset: u64,
    flush: FlushMode,
}

/// What the read-back says about an acked send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Present,
    /// Missing, but an ASYNC_FLUSH send and its broker lost power (at this event) afterwards.
    LostAllowed {
        power_loss: usize,
    },
    Lost,
    /// No read-back of its broker, or retention removed its offset.
    Unknown,
}

/// Collects violations, capped per invariant.
struct Sink {
    cap: usize,
    out: Vec<Violation>,
}

impl Sink {
    fn new(config: &CheckConfig) -> Self {
        Sink {
            cap: config.max_violations_per_invariant.max(1),
            out: Vec::new(),
        }
    }

    fn push(&mut self, v: Violation) {
        self.out.push(v);
    }

    /// In event order, at most `cap` per invariant.
    fn finish(mut self) -> Vec<Violation> {
        self.out.sort_by_key(|v| (v.event_index, v.invariant));
        let mut counts: BTreeMap<Invariant, usize> = BTreeMap::new();
        self.out.retain(|v| {
            let c = counts.entry(v.invariant).or_insert(0);
            *c += 1;
            *c <= self.cap
        });
        self.out
    }
}

/// Runs every checker; the violations come in event order.
pub fn check_all(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let ix = Index::new(history);
    let mut sink = Sink::new(config);
    lost_writes(&ix, &mut sink);
    phantoms(&ix, &mut sink);
    corruption(&ix, &mut sink);
    dense_offsets(&ix, &mut sink);
    consistent_offsets(&ix, &mut sink);
    order(&ix, &mut sink);
    committed_offsets(&ix, &mut sink);
    at_least_once(&ix, &mut sink);
    bad_crc(&ix, &mut sink);
    delay(&ix, config, &mut sink);
    transactions(&ix, &mut sink);
    pop_redelivery(&ix, config, &mut sink);
    pop_orderly(&ix, config, &mut sink);
    for v in super::replica::check_replica_acks(history)
        .into_iter()
        .chain(super::replica::check_replica_prefix(history))
        .chain(super::replica::check_replica_lost_writes(history))
    {
        sink.push(v);
    }
    sink.finish()
}

/// [`check_all`] plus the run's [`Stats`].
pub fn check_report(history: &History, config: &CheckConfig) -> CheckReport {
    CheckReport {
        violations: check_all(history, config),
        stats: statistics(history),
    }
}

/// Counts sends, outcomes, deliveries, retry duplicates and faults.
pub fn statistics(history: &History) -> Stats {
    let ix = Index::new(history);
    let mut stats = Stats {
        sends: ix.sends.len() as u64,
        deliveries: ix.deliveries.len() as u64,
        ..Stats::default()
    };
    for outcome in ix.outcomes.values() {
        match outcome {
            Outcome::Ok { .. } => stats.acked += 1,
            Outcome::Failed => stats.failed += 1,
            Outcome::Unknown => stats.unknown += 1,
            Outcome::Pending => {}
        }
    }
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (_, d) in &ix.deliveries {
        if !seen.insert((d.group.as_str(), d.key.as_str())) {
            stats.redeliveries += 1;
        }
    }
    // A key stored at several positions of user topics (retry and DLQ topics, `%`-prefixed,
    // legitimately hold copies): producer-retry duplicates.
    let mut positions: BTreeMap<&str, BTreeSet<(&QueueRef, u64)>> = BTreeMap::new();
    for (_, queue, offset, key) in ix.observations() {
        if !queue.topic.starts_with('%') {
            positions.entry(key).or_default().insert((queue, offset));
        }
    }
    stats.retry_duplicates = positions
        .values()
        .map(|p| p.len().saturating_sub(1) as u64)
        .sum();
    for a in ix.acked() {
        if let Fate::LostAllowed { .. } = ix.fate(&a) {
            stats.allowed_losses += 1;
        }
    }
    let backward = backward_commits(&ix);
    stats.stale_owner_commits = backward.iter().filter(|b| b.stale_owner).count() as u64;
    stats.fence_rewinds = backward
        .iter()
        .filter(|b| b.fence && !b.stale_owner)
        .count() as u64;
    stats.slave_lag_commits = backward
        .iter()
        .filter(|b| b.sync_lag && !b.fence && !b.stale_owner)
        .count() as u64;
    stats.replica_divergences = super::replica::replica_divergences(history);
    for e in history.events() {
        match &e.kind {
            EventKind::NodeCrashed { .. } => stats.crashes += 1,
            EventKind::PowerLost { .. } => stats.power_losses += 1,
            EventKind::Delivered(d) if d.from_slave => stats.slave_deliveries += 1,
            _ => {}
        }
    }
    stats
}

macro_rules! single {
    ($(#[$doc:meta])* $name:ident, $inner:ident) => {
        $(#[$doc])*
        pub fn $name(history: &History, config: &CheckConfig) -> Vec<Violation> {
            let ix = Index::new(history);
            let mut sink = Sink::new(config);
            $inner(&ix, &mut sink);
            sink.finish()
        }
    };
}

single!(
    /// `lost-write`: every acked send is in the final read-back of its queue. Under ASYNC_FLUSH
    /// a send may be missing only if its broker later lost power (dropping or tearing
    /// un-synced writes), and only with the queue's tail: no message acked after it on the
    /// same queue before that power loss may survive. Queues of brokers without a read-back,
    /// and offsets below a read-back's min offset (retention), are not judged.
    check_lost_writes,
    lost_writes
);

fn lost_writes(ix: &Index<'_>, sink: &mut Sink) {
    let acked = ix.acked();
    for a in &acked {
        match ix.fate(a) {
            Fate::Present | Fate::Unknown => {}
            Fate::Lost => sink.push(ix.violation(
                Invariant::LostWrite,
                a.ack_index,
                format!(
                    "acked {:?} send {} at {}@{} is missing from the read-back",
                    a.flush, a.spec.key, a.queue, a.queue_offset
                ),
            )),
            Fate::LostAllowed { power_loss } => {
                // Only the un-flushed tail: a later message of the same queue, acked before the
                // same power loss, must not have survived.
                let survivor = acked.iter().find(|b| {
                    b.queue == a.queue
                        && b.queue_offset > a.queue_offset
                        && b.ack_index < power_loss
                        && ix.in_read_back(b.queue, &b.spec.key)
                });
                if let Some(b) = survivor {
                    sink.push(ix.violation(
                        Invariant::LostWrite,
                        a.ack_index,
                        format!(
                            "acked ASYNC_FLUSH send {} at {}@{} lost in power loss #{power_loss} \
                             though the later {}@{} survived: not the un-flushed tail",
                            a.spec.key, a.queue, a.queue_offset, b.queue, b.queue_offset
                        ),
                    ));
                }
            }
        }
    }
}

single!(
    /// `phantom`: every delivered or read-back key was sent, and not only by sends that
    /// definitely failed.
    check_phantoms,
    phantoms
);

fn phantoms(ix: &Index<'_>, sink: &mut Sink) {
    for (i, e) in ix.events.iter().enumerate() {
        let key = match &e.kind {
            EventKind::Delivered(d) => &d.key,
            EventKind::ReadBack(r) => &r.key,
            _ => continue,
        };
        match ix.ops_by_key.get(key.as_str()) {
            None => sink.push(ix.violation(Invariant::Phantom, i, format!("{key} was never sent"))),
            Some(ops) => {
                let all_failed = ops
                    .iter()
                    .all(|op| matches!(ix.outcomes.get(op), Some(Outcome::Failed)));
                if all_failed {
                    sink.push(ix.violation(
                        Invariant::Phantom,
                        i,
                        format!("{key} was only sent by sends that definitely failed"),
                    ));
                }
            }
        }
    }
}

single!(
    /// `corrupt`: every delivered or read-back body checksum equals one sent with its key.
    check_corruption,
    corruption
);

fn corruption(ix: &Index<'_>, sink: &mut Sink) {
    for (i, e) in ix.events.iter().enumerate() {
        let (key, crc) = match &e.kind {
            EventKind::Delivered(d) => (&d.key, d.body_crc),
            EventKind::ReadBack(r) => (&r.key, r.body_crc),
            _ => continue,
        };
        let Some(ops) = ix.ops_by_key.get(key.as_str()) else {
            continue; // a phantom, reported there
        };
        let matches = ops
            .iter()
            .any(|op| ix.sends.get(op).is_some_and(|(_, s)| s.body_crc == crc));
        if !matches {
            sink.push(ix.violation(
                Invariant::Corrupt,
                i,
                format!("{key} body checksum {crc:08x} differs from the one sent"),
            ));
        }
    }
}

single!(
    /// `dense-offsets`: each read-back queue holds exactly one record per offset in
    /// `[min_offset, max_offset)` (records recorded in offset order after their header).
    check_dense_offsets,
    dense_offsets
);

fn dense_offsets(ix: &Index<'_>, sink: &mut Sink) {
    for (queue, (header, min, max)) in &ix.read_back_queues {
        let mut expected = *min;
        let records = ix.read_back.get(queue).map(Vec::as_slice).unwrap_or(&[]);
        for (i, r) in records {
            let o = r.queue_offset;
            if o >= *max {
                sink.push(ix.violation(
                    Invariant::DenseOffsets,
                    *i,
                    format!("offset {o} of {queue} is at or past its max offset {max}"),
                ));
            } else if o == expected {
                expected += 1;
            } else if o > expected {
                sink.push(ix.violation(
                    Invariant::DenseOffsets,
                    *i,
                    format!("hole in {queue}: offsets [{expected},{o}) are missing"),
                ));
                expected = o + 1;
            } else {
                sink.push(ix.violation(
                    Invariant::DenseOffsets,
                    *i,
                    format!("offset {o} of {queue} appears twice or out of order"),
                ));
            }
        }
        if expected < *max {
            sink.push(ix.violation(
                Invariant::DenseOffsets,
                *header,
                format!("hole in {queue}: offsets [{expected},{max}) are missing"),
            ));
        }
    }
}

single!(
    /// `inconsistent-offsets`: a (queue, offset) never holds two different keys (as acked,
    /// delivered or read back), unless its broker lost power between the two observations.
    /// A delivery a slave served after its master lost power gets no verdict: the slave may
    /// hold the tail the master lost, which the master's later records overwrite at the same
    /// offsets, and HA v1 has no epoch by which every such slave can be told apart (a master
    /// refuses the ones it can: `ha::HaMaster::since_open`).
    check_consistent_offsets,
    consistent_offsets
);

/// How long after its broker lost power a client may still receive a response the broker sent
/// before (network latency, retransmissions).
pub const IN_FLIGHT_SLACK_MS: u64 = 5_000;

/// How far a slave's copy of its master's consumer offsets may lag the master: the
/// SlaveSynchronize period ([`SLAVE_SYNC_INTERVAL_MS`]; its first round comes sooner, 3 s after
/// the slave starts), plus a slack of one offset persist period
/// ([`crate::broker::OFFSET_PERSIST_INTERVAL_MS`]) for a round's requests and for the instance
/// that started from the copy to commit on the slave.
pub const SLAVE_SYNC_LAG_MS: u64 =
    SLAVE_SYNC_INTERVAL_MS + crate::broker::OFFSET_PERSIST_INTERVAL_MS;

fn consistent_offsets(ix: &Index<'_>, sink: &mut Sink) {
    let mut seen: BTreeMap<(&QueueRef, u64), (&str, usize, usize)> = BTreeMap::new();
    for (i, queue, offset, key) in ix.observations() {
        if let EventKind::Delivered(d) = &ix.events[i].kind {
            let master_lost_power_before = ix
                .power_losses
                .get(queue.broker.as_str())
                .and_then(|losses| losses.first())
                .is_some_and(|(loss, _)| *loss < i);
            if d.from_slave && master_lost_power_before {
                continue;
            }
        }
        let receipt = !matches!(ix.events[i].kind, EventKind::ReadBack(_));
        let (lo, epoch) = ix.epochs_of(&queue.broker, i, receipt);
        if lo != epoch {
            // Possibly from before the latest power loss: no verdict either way.
            continue;
        }
        match seen.get(&(queue, offset)) {
            Some((k, first, e)) if *e == epoch && *k != key => {
                sink.push(ix.violation(
                    Invariant::InconsistentOffsets,
                    i,
                    format!(
                        "{queue}@{offset} holds {key} but held {k} at event {first} with no \
                         power loss in between"
                    ),
                ));
            }
            Some((_, _, e)) if *e == epoch => {}
            _ => {
                seen.insert((queue, offset), (key, i, epoch));
            }
        }
    }
}

single!(
    /// `order`: one producer's acked sends with one order key to one queue sit in send order:
    /// their ack offsets increase (within one power epoch of the broker), and so do the
    /// offsets of their first copies in the read-back. Further copies (producer-retry
    /// duplicates) are allowed and counted in [`Stats::retry_duplicates`].
    check_order,
    order
);

fn order(ix: &Index<'_>, sink: &mut Sink) {
    type Stream<'a> = (&'a str, &'a str, &'a QueueRef);
    let mut streams: BTreeMap<Stream<'_>, Vec<Acked<'_>>> = BTreeMap::new();
    for a in ix.acked() {
        if let Some(order_key) = &a.spec.order_key {
            streams
                .entry((a.spec.producer.as_str(), order_key.as_str(), a.queue))
                .or_default()
                .push(a);
        }
    }
    for ((producer, order_key, queue), sends) in &streams {
        // Acks, in invocation order.
        for w in sends.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            // An ack received just after a power loss may be for a record stored before it
            // (and lost with it): only acks surely in one epoch are compared.
            let (a_lo, a_hi) = ix.epochs_of(&queue.broker, a.ack_index, true);
            let (b_lo, b_hi) = ix.epochs_of(&queue.broker, b.ack_index, true);
            let same_epoch = a_lo == a_hi && b_lo == b_hi && a_hi == b_hi;
            if same_epoch && b.queue_offset <= a.queue_offset {
                sink.push(ix.violation(
                    Invariant::Order,
                    b.ack_index,
                    format!(
                        "producer {producer} order key {order_key}: {} acked at {queue}@{} \
                         after {} at offset {}",
                        b.spec.key, b.queue_offset, a.spec.key, a.queue_offset
                    ),
                ));
            }
        }
        // First copies in the read-back.
        let Some(records) = ix.read_back.get(queue) else {
            continue;
        };
        let mut first: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for (i, r) in records {
            first.entry(r.key.as_str()).or_insert((*i, r.queue_offset));
        }
        let mut last: Option<(&str, u64)> = None;
        for a in sends {
            let Some((i, o)) = first.get(a.spec.key.as_str()) else {
                continue;
            };
            if let Some((prev_key, prev)) = last {
                if *o <= prev {
                    sink.push(ix.violation(
                        Invariant::Order,
                        *i,
                        format!(
                            "producer {producer} order key {order_key}: {} stored at \
                             {queue}@{o} before the earlier-sent {prev_key} at offset {prev}",
                            a.spec.key
                        ),
                    ));
                }
            }
            last = Some((a.spec.key.as_str(), *o));
        }
    }
}

single!(
    /// `offset-regression` and `offset-past-max`: per (group, queue) a committed offset never
    /// decreases, except after an explicit reset or a restart of its broker (which may fall
    /// back to an earlier persisted offset); and it never exceeds a max offset of the queue
    /// observed after it (a later `MaxOffsetObserved` or the read-back), unless the broker
    /// lost power in between. Commits on a slave of the queue's broker count as the group's
    /// too: one behind the group's committed offset is allowed only as far back as the
    /// slave's offset sync explains ([`Index::slave_sync_lag`]), and the master's commits
    /// after it must not be lower (the slave hands it back; nothing is lost).
    check_committed_offsets,
    committed_offsets
);

/// A committed offset that moved back: at event `index`, `group` committed `offset` on `queue`
/// after `prev`; on slave `slave` when it is a slave's commit, and `prev` came from slave
/// `prev_slave`'s commit (one the master must have taken back) when it did. `stale_owner` when
/// a consumer instance's stale position explains it ([`Index::stale_owner_commit`]), `fence`
/// when a recovery fence does ([`Index::fence_rewind`]), `sync_lag` when the lag of the
/// slave's copy of its master's offsets does ([`Index::slave_sync_lag`]).
struct BackwardCommit<'a> {
    index: usize,
    group: &'a str,
    queue: &'a QueueRef,
    offset: u64,
    prev: u64,
    slave: Option<&'a str>,
    prev_slave: Option<&'a str>,
    stale_owner: bool,
    fence: bool,
    sync_lag: bool,
}

impl BackwardCommit<'_> {
    fn explained(&self) -> bool {
        self.stale_owner || self.fence || self.sync_lag
    }
}

/// Every committed offset that moved back, except after an explicit reset or a crash, restart
/// or power loss of its broker (which may fall back to an earlier persisted offset). A slave's
/// commit is the group's committed offset until the master's next commit; of several slaves'
/// commits in a row, the highest, which is what the master takes back.
fn backward_commits<'a>(ix: &Index<'a>) -> Vec<BackwardCommit<'a>> {
    let mut out = Vec::new();
    // (group, queue) -> (committed offset, the slave whose commit it is, if any).
    let mut last: BTreeMap<(&str, &QueueRef), (u64, Option<&str>)> = BTreeMap::new();
    for (i, e) in ix.events.iter().enumerate() {
        let (slave, group, queue, offset) = match &e.kind {
            EventKind::OffsetCommitted {
                group,
                queue,
                offset,
            } => (None, group, queue, *offset),
            EventKind::SlaveOffsetCommitted {
                node,
                group,
                queue,
                offset,
            } => (Some(node.as_str()), group, queue, *offset),
            EventKind::OffsetReset { group, queue, .. } => {
                last.remove(&(group.as_str(), queue));
                continue;
            }
            EventKind::NodeCrashed { node }
            | EventKind::PowerLost { node, .. }
            | EventKind::NodeRestarted { node } => {
                last.retain(|(_, q), _| q.broker != *node);
                continue;
            }
            _ => continue,
        };
        let key = (group.as_str(), queue);
        let prev = last.get(&key).copied();
        if let Some((prev, prev_slave)) = prev.filter(|(p, _)| offset < *p) {
            out.push(BackwardCommit {
                index: i,
                group,
                queue,
                offset,
                prev,
                slave,
                prev_slave,
                stale_owner: ix.stale_owner_commit(group, queue, offset, i),
                fence: ix.fence_rewind(group, queue, offset, e.time_ms),
                sync_lag: slave
                    .is_some_and(|node| ix.slave_sync_lag(node, group, queue, offset, i)),
            });
        }
        let next = match (slave, prev) {
            // Slaves' commits in a row: the master takes back the highest.
            (Some(_), Some((p, Some(s)))) if p > offset => (p, Some(s)),
            _ => (offset, slave),
        };
        last.insert(key, next);
    }
    out
}

fn committed_offsets(ix: &Index<'_>, sink: &mut Sink) {
    for b in backward_commits(ix) {
        if b.explained() {
            continue;
        }
        let detail = match (b.slave, b.prev_slave) {
            (Some(slave), _) => format!(
                "{} {} committed {} on slave {slave} after {}: further back than the slave's \
                 offset sync ({SLAVE_SYNC_LAG_MS} ms) explains",
                b.group, b.queue, b.offset, b.prev
            ),
            (None, Some(slave)) => format!(
                "{} {} committed {} on the master after {} on slave {slave}: below what the \
                 slave hands back (what was committed is delivered again)",
                b.group, b.queue, b.offset, b.prev
            ),
            (None, None) => format!(
                "{} {} committed {} after {}",
                b.group, b.queue, b.offset, b.prev
            ),
        };
        sink.push(ix.violation(Invariant::OffsetRegression, b.index, detail));
    }
    // Per queue: commits since the broker's last power loss, by committed value -> first
    // committing event.
    let mut pending: BTreeMap<&QueueRef, BTreeMap<u64, usize>> = BTreeMap::new();
    for (i, e) in ix.events.iter().enumerate() {
        match &e.kind {
            EventKind::OffsetCommitted { queue, offset, .. }
            | EventKind::SlaveOffsetCommitted { queue, offset, .. } => {
                pending
                    .entry(queue)
                    .or_default()
                    .entry(*offset)
                    .or_insert(i);
            }
            EventKind::PowerLost { node, .. } => {
                pending.retain(|q, _| q.broker != *node);
            }
            EventKind::MaxOffsetObserved { queue, max_offset }
            | EventKind::ReadBackQueue {
                queue, max_offset, ..
            } => {
                if let Some(commits) = pending.get_mut(queue) {
                    let above = commits.split_off(&(max_offset + 1));
                    if let Some((value, first)) = above.iter().min_by_key(|(_, idx)| **idx) {
                        sink.push(ix.violation(
                            Invariant::OffsetPastMax,
                            *first,
                            format!(
                                "committed {value} on {queue} but its max offset was later \
                                 observed as {max_offset} (event {i})"
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

single!(
    /// `at-least-once`: once the history says `Drained`, every acked message of a topic has
    /// been delivered (pushed, pulled or popped) to every group subscribed to that topic
    /// (whose tags match), or sits in
    /// that group's `%DLQ%` topic. Allowed ASYNC_FLUSH losses and rolled-back transactional
    /// messages are exempt.
    check_at_least_once,
    at_least_once
);

fn at_least_once(ix: &Index<'_>, sink: &mut Sink) {
    if !ix.drained {
        return;
    }
    let mut subscriptions: BTreeMap<(&str, &str), &[String]> = BTreeMap::new();
    let mut rolled_back: BTreeSet<&str> = BTreeSet::new();
    for e in ix.events {
        match &e.kind {
            EventKind::Subscribed { group, topic, tags } => {
                subscriptions.insert((group.as_str(), topic.as_str()), tags.as_slice());
            }
            EventKind::TransactionResolved {
                key,
                committed: false,
                ..
            } => {
                rolled_back.insert(key.as_str());
            }
            _ => {}
        }
    }
    let mut received: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (_, d) in &ix.deliveries {
        received.insert((d.group.as_str(), d.key.as_str()));
    }
    for (_, d) in &ix.pop_deliveries {
        received.insert((d.group.as_str(), d.key.as_str()));
    }
    let mut dead: BTreeSet<(&str, &str)> = BTreeSet::new();
    for records in ix.read_back.values() {
        for (_, r) in records {
            if let Some(group) = r.queue.topic.strip_prefix("%DLQ%") {
                dead.insert((group, r.key.as_str()));
            }
        }
    }
    for a in ix.acked() {
        if rolled_back.contains(a.spec.key.as_str())
            || matches!(ix.fate(&a), Fate::LostAllowed { .. })
        {
            continue;
        }
        for ((group, topic), tags) in &subscriptions {
            if *topic != a.spec.topic {
                continue;
            }
            let tag_matches = tags.is_empty()
                || a.spec
                    .tag
                    .as_ref()
                    .is_some_and(|t| tags.iter().any(|s| s == t));
            let key = a.spec.key.as_str();
            if tag_matches && !received.contains(&(group, key)) && !dead.contains(&(group, key)) {
                sink.push(ix.violation(
                    Invariant::AtLeastOnce,
                    a.ack_index,
                    format!("acked {key} was never delivered to group {group}"),
                ));
            }
        }
    }
}

single!(
    /// `bad-crc`: no record whose stored body CRC mismatches its body is ever served (to a
    /// consumer or to the read-back): recovery must have cut it off.
    check_bad_crc,
    bad_crc
);

fn bad_crc(ix: &Index<'_>, sink: &mut Sink) {
    for (i, e) in ix.events.iter().enumerate() {
        let (key, queue, offset, ok) = match &e.kind {
            EventKind::Delivered(d) => (&d.key, &d.queue, d.queue_offset, d.record_crc_ok),
            EventKind::ReadBack(r) => (&r.key, &r.queue, r.queue_offset, r.record_crc_ok),
            _ => continue,
        };
        if !ok {
            sink.push(ix.violation(
                Invariant::BadCrc,
                i,
                format!("{queue}@{offset} ({key}) was served with a bad body CRC"),
            ));
        }
    }
}

/// `early-delivery`: no delay or timer message is delivered before its due time, less the
/// configured clock-skew tolerance.
pub fn check_delay(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let ix = Index::new(history);
    let mut sink = Sink::new(config);
    delay(&ix, config, &mut sink);
    sink.finish()
}

fn delay(ix: &Index<'_>, config: &CheckConfig, sink: &mut Sink) {
    for (i, d) in &ix.deliveries {
        let due = ix.ops_by_key.get(d.key.as_str()).and_then(|ops| {
            ops.iter()
                .filter_map(|op| ix.sends.get(op))
                .filter_map(|(_, s)| s.deliver_not_before_ms)
                .min()
        });
        let time_ms = ix.events[*i].time_ms;
        if let Some(due) = due {
            if time_ms.saturating_add(config.clock_skew_tolerance_ms) < due {
                sink.push(ix.violation(
                    Invariant::EarlyDelivery,
                    *i,
                    format!(
                        "{} delivered at {time_ms} ms, due at {due} ms ({} ms early)",
                        d.key,
                        due - time_ms
                    ),
                ));
            }
        }
    }
}

single!(
    /// `rolled-back-delivered`: a rolled-back transactional message is never delivered, and a
    /// half message is not delivered before its commit. Record the resolution when the producer
    /// decides, before it sends END_TRANSACTION.
    check_transactions,
    transactions
);

fn transactions(ix: &Index<'_>, sink: &mut Sink) {
    let mut resolution: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    for (i, e) in ix.events.iter().enumerate() {
        if let EventKind::TransactionResolved { key, committed, .. } = &e.kind {
            resolution.entry(key.as_str()).or_insert((i, *committed));
        }
    }
    for (i, d) in &ix.deliveries {
        let transactional = ix.ops_by_key.get(d.key.as_str()).is_some_and(|ops| {
            ops.iter()
                .filter_map(|op| ix.sends.get(op))
                .any(|(_, s)| s.transaction_id.is_some())
        });
        match resolution.get(d.key.as_str()) {
            Some((_, false)) => sink.push(ix.violation(
                Invariant::RolledBackDelivered,
                *i,
                format!("rolled-back {} was delivered", d.key),
            )),
            Some((r, true)) if *r > *i => sink.push(ix.violation(
                Invariant::RolledBackDelivered,
                *i,
                format!(
                    "half message {} delivered before its commit (event {r})",
                    d.key
                ),
            )),
            None if transactional => sink.push(ix.violation(
                Invariant::RolledBackDelivered,
                *i,
                format!("half message {} delivered before any commit", d.key),
            )),
            _ => {}
        }
    }
}

/// Judges every redelivery of a POP delivery; see [`check_pop_redelivery`].
fn pop_redelivery(ix: &Index<'_>, config: &CheckConfig, sink: &mut Sink) {
    let tolerance = config.clock_skew_tolerance_ms;
    // Per delivery id: acks answered ok (event index, invoked), changes of invisible time
    // (invoked, invisible), whatever their answer.
    let mut acks: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
    let mut changes: BTreeMap<u64, Vec<(u64, u64, bool)>> = BTreeMap::new();
    // Power losses and destroyed disks: (event index, time, node).
    let mut losses: Vec<(usize, u64, &str)> = Vec::new();
    // Those and process crashes and restarts: (event index, time, node).
    let mut downs: Vec<(usize, u64, &str)> = Vec::new();
    // Per group: the first receive that failed (a pop nobody saw may have happened since).
    let mut first_failed: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in ix.events.iter().enumerate() {
        match &e.kind {
            EventKind::PopReceiveFailed { group, .. } => {
                first_failed.entry(group.as_str()).or_insert(i);
            }
            EventKind::PopAcked {
                id,
                invoked_ms,
                ok: true,
            } => acks.entry(*id).or_default().push((i, *invoked_ms)),
            EventKind::PopInvisibleChanged {
                id,
                invoked_ms,
                invisible_ms,
                ok,
            } => changes
                .entry(*id)
                .or_default()
                .push((*invoked_ms, *invisible_ms, *ok)),
            EventKind::PowerLost { node, .. } | EventKind::DiskDestroyed { node } => {
                losses.push((i, e.time_ms, node.as_str()));
                downs.push((i, e.time_ms, node.as_str()));
            }
            EventKind::NodeCrashed { node } | EventKind::NodeRestarted { node } => {
                downs.push((i, e.time_ms, node.as_str()))
            }
            _ => {}
        }
    }
    // Orderly POP moves a queue's offset only to the first unacked message of a batch, and
    // keeps it (and the batches) in files written every few seconds: an acked message after
    // an unacked one of its batch is handed out again with it, and so is any after its
    // broker went down.
    let orderly_down = |c: &PopDelivery, before: usize| {
        c.orderly
            && downs
                .iter()
                .any(|(i, t, node)| *i < before && *t >= c.invoked_ms && *node == c.queue.broker)
    };
    let orderly_excused = |c: &PopDelivery, before: usize| {
        orderly_down(c, before)
            || (c.orderly
                && ix.pop_deliveries.iter().any(|(_, b)| {
                    b.receive == c.receive
                        && b.queue == c.queue
                        && b.queue_offset < c.queue_offset
                        && !acks
                            .get(&b.id)
                            .is_some_and(|a| a.iter().any(|(i, _)| *i < before))
                }))
    };
    // Keys stored at more than one position of a user topic (producer-retry duplicates): a
    // copy in the retry topic cannot be told apart from the other position's.
    let mut positions: BTreeMap<&str, BTreeSet<(&QueueRef, u64)>> = BTreeMap::new();
    for (_, queue, offset, key) in ix.observations() {
        if !queue.topic.starts_with('%') {
            positions.entry(key).or_default().insert((queue, offset));
        }
    }
    for (_, d) in &ix.pop_deliveries {
        if !d.queue.topic.starts_with('%') {
            positions
                .entry(d.key.as_str())
                .or_default()
                .insert((&d.queue, d.queue_offset));
        }
    }
    // Whether `broker` lost power (or its disk) after `from_ms` and before event `before`,
    // and `c`'s broker flushes asynchronously (a destroyed disk excuses either way).
    let lost = |c: &PopDelivery, from_ms: u64, before: usize| {
        losses.iter().any(|(i, t, node)| {
            *i < before
                && *t >= from_ms
                && *node == c.queue.broker
                && (c.flush == FlushMode::Async
                    || matches!(ix.events[*i].kind, EventKind::DiskDestroyed { .. }))
        })
    };
    for (j, d) in &ix.pop_deliveries {
        let from_retry = d.queue.topic.starts_with("%RETRY%");
        let duplicated = positions.get(d.key.as_str()).is_some_and(|p| p.len() > 1);
        // A first copy names the pop it came from by its `1ST_POP_TIME`: the deliveries of
        // that pop (or, after a change of invisible time, of the checkpoint that change wrote,
        // whose pop time is not recorded), on the broker that revived it.
        let source = |c: &PopDelivery| {
            c.reconsume_times == 0
                && c.queue.broker == d.queue.broker
                && (Some(c.pop_time_ms) == d.first_pop_time_ms || changes.contains_key(&c.id))
        };
        let tied = from_retry
            && !duplicated
            && d.reconsume_times == 1
            && d.first_pop_time_ms.is_some()
            && ix
                .pop_deliveries
                .iter()
                .any(|(i, c)| i < j && c.group == d.group && c.key == d.key && source(c));
        let ambiguous = duplicated || first_failed.get(d.group.as_str()).is_some_and(|f| f < j);
        let candidates: Vec<&(usize, &PopDelivery)> = ix
            .pop_deliveries
            .iter()
            .filter(|(i, c)| {
                i < j
                    && c.group == d.group
                    && c.key == d.key
                    && ((c.queue == d.queue && c.queue_offset == d.queue_offset)
                        || (tied && source(c))
                        || (from_retry
                            && !tied
                            && !ambiguous
                            && c.reconsume_times + 1 == d.reconsume_times))
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let time_ms = ix.events[*j].time_ms;
        let mut early: Option<(u64, u64)> = None;
        let mut after_ack: Option<(u64, usize)> = None;
        let mut explained = false;
        for (_, c) in candidates {
            // An orderly batch is handed out again as a whole once its queue is free: a
            // change of invisible time of any message of it may free it.
            let deadline = ix
                .pop_deliveries
                .iter()
                .filter(|(_, b)| {
                    b.id == c.id || (c.orderly && b.receive == c.receive && b.queue == c.queue)
                })
                .flat_map(|(_, b)| changes.get(&b.id).into_iter().flatten())
                .map(|(at, invisible, _)| at + invisible)
                .fold(c.invoked_ms + c.invisible_ms, u64::min);
            if time_ms + tolerance < deadline && !lost(c, c.invoked_ms, *j) && !orderly_down(c, *j)
            {
                early.get_or_insert((c.id, deadline - time_ms));
                continue;
            }
            // An ack sent after a change of invisible time that was not answered ok may name
            // the old checkpoint, which the change acked: answered ok, it acks nothing.
            let stale = changes
                .get(&c.id)
                .into_iter()
                .flatten()
                .any(|(_, _, ok)| !ok);
            let ack = acks.get(&c.id).into_iter().flatten().find(|(a, _)| {
                a < j
                    && ix.events[*a].time_ms + tolerance < deadline
                    && !stale
                    && !lost(c, c.invoked_ms, *j)
                    && !orderly_excused(c, *j)
            });
            if let Some((a, _)) = ack {
                after_ack.get_or_insert((c.id, *a));
                continue;
            }
            explained = true;
            break;
        }
        if explained {
            continue;
        }
        if let Some((id, a)) = after_ack {
            sink.push(ix.violation(
                Invariant::PopRedeliveredAfterAck,
                *j,
                format!(
                    "{} redelivered to {} after its ack (pop #{id}) was answered ok at event {a}",
                    d.key, d.group
                ),
            ));
        } else if let Some((id, by)) = early {
            sink.push(ix.violation(
                Invariant::PopEarlyRedelivery,
                *j,
                format!(
                    "{} redelivered to {} {by} ms before pop #{id}'s invisible time ended",
                    d.key, d.group
                ),
            ));
        }
    }
}

/// `pop-early-redelivery` and `pop-redelivered-after-ack`: a POP delivery comes back (the
/// same queue offset popped again, or its copy in the group's POP retry topic with reconsume
/// times one higher) only once its invisible time is over and only if no ack of it was
/// answered ok.
///
/// * The invisible time of a delivery ends, at the earliest, `invisible_ms` after its receive
///   was invoked, or `invisible_ms` after any change of its invisible time was invoked
///   (answered or not); a redelivery before that, less the clock-skew tolerance, is early.
/// * An ack answered ok while the invisible time had not ended (its answer time, plus the
///   tolerance, before that end) forbids any later redelivery.
/// * Excused: the checkpoint or the ack record could have been lost. The broker that served
///   the delivery lost power between the receive's invocation and the redelivery (an ack
///   answered ok after its checkpoint was lost acked nothing: an ack of nothing open is
///   answered ok, as RocketMQ does), and it flushes
///   asynchronously (ASYNC_FLUSH: the last revive-log records may go with the power); or its
///   disk was destroyed. A process crash keeps the page cache and excuses nothing; under
///   SYNC_FLUSH a POP is answered only once its checkpoint is durable, an ack once its ack
///   record is.
/// * A redelivery counts against every earlier delivery it could be the redelivery of; it is
///   a violation only if none explains it. A first copy (reconsume times 1) from the retry
///   topic names the pop it came from by its `1ST_POP_TIME`
///   ([`PopDelivery::first_pop_time_ms`]): it is the redelivery of the deliveries of its key
///   with that pop time on its broker (or with a change of invisible time, whose checkpoint's
///   pop time is not recorded), even after failed receives: a pop nobody saw has a pop time
///   of its own. Any other copy is tied only by its reconsume times, so it is not judged when
///   a receive of the group failed before it ([`EventKind::PopReceiveFailed`]: a pop nobody
///   saw may be the one that came back; a restart may also revive a checkpoint again, so
///   copies of one reconsume count repeat). Nor is a copy of a key stored at more than one
///   position of its topic (producer-retry duplicates).
/// * An ack sent after a change of invisible time that was not answered ok may carry the old
///   handle, whose checkpoint the change acked: it forbids nothing.
/// * Orderly POP ([`PopDelivery::orderly`]) moves the offset only to the first unacked
///   message of a batch and hands the rest out again with it: an ack of a message after an
///   unacked one of its batch forbids nothing, and a change of invisible time of any message
///   of a batch may end the invisible time of all; and its batches and offsets are kept in files written every few seconds, so a
///   crash, restart or power loss of its broker excuses an early or repeated delivery.
pub fn check_pop_redelivery(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let ix = Index::new(history);
    let mut sink = Sink::new(config);
    pop_redelivery(&ix, config, &mut sink);
    sink.finish()
}

/// One orderly POP batch: what one receive took of one queue.
struct OrderlyBatch<'a> {
    /// Its first delivery: event index and time.
    first: usize,
    time_ms: u64,
    delivery: &'a PopDelivery,
    /// The earliest time it may have stopped holding its queue.
    end_ms: u64,
}

fn pop_orderly(ix: &Index<'_>, config: &CheckConfig, sink: &mut Sink) {
    let tolerance = config.clock_skew_tolerance_ms;
    // Per delivery id: the earliest invocation of an ack, whatever its answer (the broker may
    // have applied it), and the earliest end of a change of invisible time.
    let mut acked_from: BTreeMap<u64, u64> = BTreeMap::new();
    let mut change_end: BTreeMap<u64, u64> = BTreeMap::new();
    // Crashes, restarts, power losses and destroyed disks: (event index, time, node).
    let mut downs: Vec<(usize, u64, &str)> = Vec::new();
    for (i, e) in ix.events.iter().enumerate() {
        match &e.kind {
            EventKind::PopAcked { id, invoked_ms, .. } => {
                let at = acked_from.entry(*id).or_insert(*invoked_ms);
                *at = (*at).min(*invoked_ms);
            }
            EventKind::PopInvisibleChanged {
                id,
                invoked_ms,
                invisible_ms,
                ..
            } => {
                let end = change_end.entry(*id).or_insert(u64::MAX);
                *end = (*end).min(invoked_ms + invisible_ms);
            }
            EventKind::NodeCrashed { node }
            | EventKind::NodeRestarted { node }
            | EventKind::PowerLost { node, .. }
            | EventKind::DiskDestroyed { node } => downs.push((i, e.time_ms, node.as_str())),
            _ => {}
        }
    }
    // Batches by (group, receive, queue), each with its deliveries' ids.
    let mut batches: BTreeMap<(&str, u64, &QueueRef), (OrderlyBatch<'_>, Vec<u64>)> =
        BTreeMap::new();
    for (i, d) in ix.pop_deliveries.iter().filter(|(_, d)| d.orderly) {
        batches
            .entry((d.group.as_str(), d.receive, &d.queue))
            .or_insert_with(|| {
                let batch = OrderlyBatch {
                    first: *i,
                    time_ms: ix.events[*i].time_ms,
                    delivery: d,
                    end_ms: u64::MAX,
                };
                (batch, Vec::new())
            })
            .1
            .push(d.id);
    }
    let mut batches: Vec<OrderlyBatch<'_>> = batches
        .into_values()
        .map(|(mut batch, ids)| {
            let d = batch.delivery;
            let invisible_end = ids
                .iter()
                .filter_map(|id| change_end.get(id))
                .fold(d.invoked_ms + d.invisible_ms, |a, b| a.min(*b));
            let all_acked = ids
                .iter()
                .map(|id| acked_from.get(id).copied())
                .collect::<Option<Vec<u64>>>()
                .and_then(|at| at.into_iter().max());
            batch.end_ms = invisible_end.min(all_acked.unwrap_or(u64::MAX));
            batch
        })
        .collect();
    batches.sort_by_key(|b| b.first);
    for (n, later) in batches.iter().enumerate() {
        let d = later.delivery;
        let overlapped = batches[..n].iter().find(|earlier| {
            let c = earlier.delivery;
            c.group == d.group
                && c.queue == d.queue
                && later.time_ms + tolerance < earlier.end_ms
                && earlier.time_ms + tolerance < later.end_ms
                && !downs.iter().any(|(i, t, node)| {
                    *i < later.first && *t >= c.invoked_ms && *node == c.queue.broker
                })
        });
        if let Some(earlier) = overlapped {
            sink.push(ix.violation(
                Invariant::PopOrderlyOverlap,
                later.first,
                format!(
                    "{} handed {} a batch of {} while the batch of event {} ({} from pop #{}) \
                     was in flight until {} at the earliest",
                    d.queue.broker,
                    d.group,
                    d.queue,
                    earlier.first,
                    earlier.delivery.key,
                    earlier.delivery.id,
                    earlier.end_ms
                ),
            ));
        }
    }
}

/// `pop-orderly-overlap`: orderly POP never has two batches of one queue in flight for a
/// group. A batch (what one receive took of one queue, [`PopDelivery::receive`]) is in flight
/// from its pop until every message of it is acked or its invisible time is over. Judged by
/// the earliest it may have ended: the first invocation of an ack of its last message acked
/// (whatever the answer: the broker may have applied it), or `invisible_ms` after its receive
/// or after any change of invisible time of one of its messages was invoked. Two batches
/// overlap when each was delivered (answered, hence popped) before the other's earliest end,
/// give or take the clock-skew tolerance.
///
/// Excused: the queue's broker crashed, restarted, lost power or its disk between the earlier
/// batch's receive and the later one: the broker keeps its batches
/// (`config/consumerOrderInfo.json`) and the group's offsets in files written every few
/// seconds, and one that lost the last write hands the queue out again early. A receive that
/// failed may have taken a batch nobody saw; the consumer's next POP to that broker carries
/// the same `attemptId` and is handed that batch again, which is not an overlap.
pub fn check_pop_orderly(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let ix = Index::new(history);
    let mut sink = Sink::new(config);
    pop_orderly(&ix, config, &mut sink);
    sink.finish()
}
