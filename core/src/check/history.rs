//! The history a harness records: what clients invoked and observed, what the nemesis did, and
//! what every broker holds after the healed phase.
//!
//! Every event carries the simulated time it happened at (`time_ms`) and its position in the
//! history (`seq`, assigned by [`History::push`], equal to its index). Events render to one line
//! ([`std::fmt::Display`]); the renderings are what a [`super::TraceDigest`] hashes, so they
//! must be stable: change a rendering only together with every recorded digest.
//!
//! Messages are identified by their unique key (the `UNIQ_KEY` property a producer sets once per
//! message, kept across the client's internal retries). Send operations are identified by an
//! [`OpId`] that ties a [`EventKind::SendInvoked`] to its outcome.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Ties a send's outcome to its invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

/// One queue of one broker: `broker` is the broker name (also the node name of its crash and
/// power-loss events).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueRef {
    pub broker: String,
    pub topic: String,
    pub queue_id: u32,
}

impl QueueRef {
    pub fn new(broker: &str, topic: &str, queue_id: u32) -> Self {
        QueueRef {
            broker: broker.to_string(),
            topic: topic.to_string(),
            queue_id,
        }
    }
}

impl fmt::Display for QueueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.broker, self.topic, self.queue_id)
    }
}

/// The broker's `flushDiskType` when it acknowledged a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushMode {
    Sync,
    Async,
}

impl From<crate::broker::FlushDiskType> for FlushMode {
    fn from(t: crate::broker::FlushDiskType) -> Self {
        match t {
            crate::broker::FlushDiskType::SyncFlush => FlushMode::Sync,
            crate::broker::FlushDiskType::AsyncFlush => FlushMode::Async,
        }
    }
}

/// What a power loss did to un-synced writes (mirrors [`crate::store::PowerLoss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerLossPolicy {
    DropUnsynced,
    KeepUnsynced,
    TearUnsynced,
}

impl From<crate::store::PowerLoss> for PowerLossPolicy {
    fn from(p: crate::store::PowerLoss) -> Self {
        match p {
            crate::store::PowerLoss::DropUnsynced => PowerLossPolicy::DropUnsynced,
            crate::store::PowerLoss::KeepUnsynced => PowerLossPolicy::KeepUnsynced,
            crate::store::PowerLoss::TearUnsynced => PowerLossPolicy::TearUnsynced,
        }
    }
}

/// Everything a send invocation says about the message it sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendSpec {
    pub op: OpId,
    /// The producer instance (one sequential sender).
    pub producer: String,
    pub topic: String,
    /// The message's unique key (`UNIQ_KEY`).
    pub key: String,
    /// `crc32` of the body as sent ([`body_crc`]).
    pub body_crc: u32,
    /// The message's tag, if any (subscriptions filter on it).
    pub tag: Option<String>,
    /// Set for ordered sends: the selector's argument. One producer's acknowledged sends with
    /// one order key to one queue must appear in that queue in send order.
    pub order_key: Option<String>,
    /// Delay and timer messages: the earliest simulated time a consumer may receive it.
    pub deliver_not_before_ms: Option<u64>,
    /// Transactional (half) messages: the transaction id.
    pub transaction_id: Option<String>,
}

/// One message a consumer received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub group: String,
    pub consumer: String,
    pub queue: QueueRef,
    pub queue_offset: u64,
    /// The delivered message's unique key.
    pub key: String,
    /// `crc32` of the body as received ([`body_crc`]).
    pub body_crc: u32,
    /// Whether the record's stored body CRC (the `bodyCRC` field) matches the body served.
    pub record_crc_ok: bool,
    pub reconsume_times: u32,
    /// Served by a slave of the queue's broker group, not by its master. Slave reads are held
    /// to every invariant a delivery is (no gap, no phantom, one key per offset); the flag
    /// shows they happen and is counted in [`super::Stats::slave_deliveries`].
    #[serde(default)]
    pub from_slave: bool,
}

/// One message a POP consumer (`SimpleConsumer`) received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopDelivery {
    /// Unique per history: acks and changes of invisible time name it.
    pub id: u64,
    pub group: String,
    pub consumer: String,
    /// The queue read: the topic's, or the group's POP retry topic for a redelivery.
    pub queue: QueueRef,
    pub queue_offset: u64,
    pub key: String,
    pub reconsume_times: u32,
    /// The receipt handle's pop time and invisible-until (the broker's clock, epoch ms).
    pub pop_time_ms: i64,
    pub invisible_until_ms: i64,
    /// The invisible time asked for, and when (simulated time) the receive was invoked: the
    /// broker popped it no earlier, so it may come back no earlier than `invoked_ms +
    /// invisible_ms` (give or take the brokers' clock skew).
    pub invisible_ms: u64,
    pub invoked_ms: u64,
    /// The flush mode of the broker that served it (its checkpoint's durability).
    pub flush: FlushMode,
    /// The message's `1ST_POP_TIME` (the broker's clock, epoch ms): the pop time of the
    /// checkpoint that revived its first copy, which ties a copy of reconsume times 1 to the
    /// pop it came from (a first delivery carries its own pop time).
    #[serde(default)]
    pub first_pop_time_ms: Option<i64>,
    /// Received by an orderly (FIFO) POP: `order=true`.
    #[serde(default)]
    pub orderly: bool,
    /// The receive that delivered it (unique per history): the messages of one receive from
    /// one queue are one batch.
    #[serde(default)]
    pub receive: u64,
}

/// One record read back from a broker's ConsumeQueue and CommitLog after the healed phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBackRecord {
    pub queue: QueueRef,
    pub queue_offset: u64,
    pub key: String,
    pub body_crc: u32,
    pub record_crc_ok: bool,
}

/// What happened. Each variant renders to one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A producer invoked a send.
    SendInvoked(SendSpec),
    /// The broker answered SEND_OK (or the client reported success) for `op`.
    SendOk {
        op: OpId,
        queue: QueueRef,
        queue_offset: u64,
        flush: FlushMode,
    },
    /// The send definitely did not store the message (every attempt was refused before a
    /// write). A send whose outcome is not certain is [`EventKind::SendTimedOut`].
    SendFailed { op: OpId, reason: String },
    /// The outcome is unknown (a timeout, a connection lost mid-request): the message may or may
    /// not be stored.
    SendTimedOut { op: OpId },
    /// A consumer group subscribed to a topic; `tags` empty means every tag (`*`).
    Subscribed {
        group: String,
        topic: String,
        tags: Vec<String>,
    },
    /// A consumer received a message.
    Delivered(Delivery),
    /// A POP consumer received a message.
    PopDelivered(PopDelivery),
    /// A receive of a POP consumer failed (no answer, or an error): the broker may have popped
    /// messages nobody saw, whose copies come back later through the retry topic.
    PopReceiveFailed {
        group: String,
        consumer: String,
        invoked_ms: u64,
    },
    /// The answer to an ack of POP delivery `id`, invoked at `invoked_ms` (`ok`: the broker
    /// answered success; anything else, a refusal or no answer, is not ok).
    PopAcked { id: u64, invoked_ms: u64, ok: bool },
    /// The answer to a change of invisible time of POP delivery `id` to `invisible_ms` from
    /// `invoked_ms` on.
    PopInvisibleChanged {
        id: u64,
        invoked_ms: u64,
        invisible_ms: u64,
        ok: bool,
    },
    /// A broker accepted a consumer offset commit.
    OffsetCommitted {
        group: String,
        queue: QueueRef,
        offset: u64,
    },
    /// Replication: slave `node` of `queue`'s broker accepted a commit of `group` (consumers
    /// commit on a slave while they cannot reach its master; the slave hands it back to the
    /// master once it can). `queue` names the master's queue. Recorded when the slave accepted
    /// it, or first seen: the checkers judge it against what the master held in the
    /// [`super::SLAVE_SYNC_LAG_MS`] before, and the master's commits recorded after it must not
    /// be lower, so record those only once the slave has had time to hand it back.
    SlaveOffsetCommitted {
        node: String,
        group: String,
        queue: QueueRef,
        offset: u64,
    },
    /// An explicit reset of a group's offset (admin reset, or a consumer correcting an illegal
    /// offset): the next commit may be anywhere.
    OffsetReset {
        group: String,
        queue: QueueRef,
        offset: u64,
    },
    /// The broker's max offset of a queue as seen by someone (a pull response, an admin query).
    MaxOffsetObserved { queue: QueueRef, max_offset: u64 },
    /// A node's process died; the page cache survives.
    NodeCrashed { node: String },
    /// A node lost power; un-synced writes met `policy`.
    PowerLost {
        node: String,
        policy: PowerLossPolicy,
    },
    /// A node restarted (after a crash or a power loss) and finished recovery.
    NodeRestarted { node: String },
    /// A transaction was resolved by the producer or by check-back.
    TransactionResolved {
        transaction_id: String,
        key: String,
        committed: bool,
    },
    /// Any nemesis action the checkers do not interpret (partitions, clogs, clock offsets);
    /// recorded for the trace and its digest.
    Nemesis { description: String },
    /// Faults stopped: the network and the disks are healthy from here on.
    Healed,
    /// Consumers drained every queue: at-least-once delivery is checked only when present.
    Drained,
    /// A recovery fence the broker built at a start after a crash (`config/recoveryFence.json`,
    /// see `broker::fence`): until an instance of `group` (`*`: every group) passed it, the
    /// broker sends that instance back to `offset` on `queue`, and its commits follow, so the
    /// group's committed offset may move back to `offset` and grow again from there. Recorded
    /// with the read-back; `built_ms` is when the broker started with it.
    FenceBuilt {
        queue: QueueRef,
        group: String,
        offset: u64,
        built_ms: u64,
    },
    /// The read-back of a broker began: its store opened, and one [`EventKind::ReadBackQueue`]
    /// per queue follows (none when the store holds no queue: everything it had was lost, which
    /// the checkers then judge, rather than take the broker for one never read back).
    ReadBackBroker { broker: String },
    /// The read-back of one queue after the healed phase: its min and max offset; one
    /// [`EventKind::ReadBack`] per offset in `[min_offset, max_offset)` follows.
    ReadBackQueue {
        queue: QueueRef,
        min_offset: u64,
        max_offset: u64,
    },
    /// One record read back.
    ReadBack(ReadBackRecord),
    /// Replication: whether slave `node` held acked send `op`'s record (its key at the
    /// record's CommitLog offset, read from the slave's disk) when the ack reached the
    /// producer. Recorded right after the [`EventKind::SendOk`] of a SYNC_MASTER's send, once
    /// per slave of its group.
    ReplicaAtAck { op: OpId, node: String, held: bool },
    /// Replication: `node`'s disk was destroyed (emptied) while it was down; it restarts
    /// empty and re-replicates.
    DiskDestroyed { node: String },
    /// Replication: master `broker`'s CommitLog was durable up to `offset` when it lost power
    /// (recorded with its [`EventKind::PowerLost`]): un-synced bytes beyond it may be lost, so a
    /// slave that received them may differ from the master from there on.
    DurableAtPowerLoss { broker: String, offset: u64 },
    /// Replication: slave `node`'s CommitLog `[slave_min, slave_end)` compared byte for byte
    /// with its master `broker`'s, which ends at `master_end`; `first_difference` is the first
    /// offset where they differ (the master's end when the slave holds bytes beyond it).
    ReplicaCompared {
        node: String,
        broker: String,
        slave_min: u64,
        slave_end: u64,
        master_end: u64,
        first_difference: Option<u64>,
    },
    /// Replication: the read-back of slave `node` of `broker` began (its store opened); its
    /// records follow as [`EventKind::ReplicaReadBack`], their queues named as the master's.
    ReplicaReadBackBroker { node: String, broker: String },
    /// Replication: one record read back from slave `node`.
    ReplicaReadBack {
        node: String,
        record: ReadBackRecord,
    },
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history (equal to the index).
    pub seq: u64,
    /// Simulated time.
    pub time_ms: u64,
    pub kind: EventKind,
}

fn opt<T: fmt::Display>(f: &mut fmt::Formatter<'_>, name: &str, v: &Option<T>) -> fmt::Result {
    match v {
        Some(v) => write!(f, " {name}={v}"),
        None => Ok(()),
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::SendInvoked(s) => {
                write!(
                    f,
                    "send {} producer={} topic={} key={} crc={:08x}",
                    s.op, s.producer, s.topic, s.key, s.body_crc
                )?;
                opt(f, "tag", &s.tag)?;
                opt(f, "order", &s.order_key)?;
                opt(f, "not_before", &s.deliver_not_before_ms)?;
                opt(f, "tx", &s.transaction_id)
            }
            EventKind::SendOk {
                op,
                queue,
                queue_offset,
                flush,
            } => write!(f, "send-ok {op} {queue}@{queue_offset} {flush:?}"),
            EventKind::SendFailed { op, reason } => write!(f, "send-failed {op} {reason}"),
            EventKind::SendTimedOut { op } => write!(f, "send-unknown {op}"),
            EventKind::Subscribed { group, topic, tags } => {
                if tags.is_empty() {
                    write!(f, "subscribe {group} {topic} *")
                } else {
                    write!(f, "subscribe {group} {topic} {}", tags.join("||"))
                }
            }
            EventKind::Delivered(d) => write!(
                f,
                "deliver {}/{} {}@{} key={} crc={:08x}{} reconsume={}{}",
                d.group,
                d.consumer,
                d.queue,
                d.queue_offset,
                d.key,
                d.body_crc,
                if d.record_crc_ok { "" } else { " BAD-CRC" },
                d.reconsume_times,
                if d.from_slave { " from=slave" } else { "" }
            ),
            EventKind::PopDelivered(d) => {
                write!(
                    f,
                    "pop-deliver #{} {}/{} {}@{} key={} reconsume={} pop_time={} \
                     invisible_until={} invisible={}ms invoked={} {:?} receive={}",
                    d.id,
                    d.group,
                    d.consumer,
                    d.queue,
                    d.queue_offset,
                    d.key,
                    d.reconsume_times,
                    d.pop_time_ms,
                    d.invisible_until_ms,
                    d.invisible_ms,
                    d.invoked_ms,
                    d.flush,
                    d.receive
                )?;
                if let Some(first) = d.first_pop_time_ms {
                    write!(f, " first_pop={first}")?;
                }
                if d.orderly {
                    f.write_str(" orderly")?;
                }
                Ok(())
            }
            EventKind::PopReceiveFailed {
                group,
                consumer,
                invoked_ms,
            } => write!(
                f,
                "pop-receive-failed {group}/{consumer} invoked={invoked_ms}"
            ),
            EventKind::PopAcked { id, invoked_ms, ok } => write!(
                f,
                "pop-ack #{id} invoked={invoked_ms} {}",
                if *ok { "ok" } else { "not-ok" }
            ),
            EventKind::PopInvisibleChanged {
                id,
                invoked_ms,
                invisible_ms,
                ok,
            } => write!(
                f,
                "pop-change-invisible #{id} {invisible_ms}ms invoked={invoked_ms} {}",
                if *ok { "ok" } else { "not-ok" }
            ),
            EventKind::OffsetCommitted {
                group,
                queue,
                offset,
            } => write!(f, "commit {group} {queue}={offset}"),
            EventKind::SlaveOffsetCommitted {
                node,
                group,
                queue,
                offset,
            } => write!(f, "slave-commit {node} {group} {queue}={offset}"),
            EventKind::OffsetReset {
                group,
                queue,
                offset,
            } => write!(f, "reset {group} {queue}={offset}"),
            EventKind::MaxOffsetObserved { queue, max_offset } => {
                write!(f, "max-offset {queue}={max_offset}")
            }
            EventKind::NodeCrashed { node } => write!(f, "crash {node}"),
            EventKind::PowerLost { node, policy } => write!(f, "power-loss {node} {policy:?}"),
            EventKind::NodeRestarted { node } => write!(f, "restart {node}"),
            EventKind::TransactionResolved {
                transaction_id,
                key,
                committed,
            } => write!(
                f,
                "tx-{} {transaction_id} key={key}",
                if *committed { "commit" } else { "rollback" }
            ),
            EventKind::Nemesis { description } => write!(f, "nemesis {description}"),
            EventKind::Healed => write!(f, "healed"),
            EventKind::Drained => write!(f, "drained"),
            EventKind::ReadBackBroker { broker } => write!(f, "read-back-broker {broker}"),
            EventKind::FenceBuilt {
                queue,
                group,
                offset,
                built_ms,
            } => write!(
                f,
                "fence {queue} group={group} at {offset} (built t={built_ms})"
            ),
            EventKind::ReadBackQueue {
                queue,
                min_offset,
                max_offset,
            } => write!(f, "read-back-queue {queue} [{min_offset},{max_offset})"),
            EventKind::ReadBack(r) => write!(
                f,
                "read-back {}@{} key={} crc={:08x}{}",
                r.queue,
                r.queue_offset,
                r.key,
                r.body_crc,
                if r.record_crc_ok { "" } else { " BAD-CRC" }
            ),
            EventKind::ReplicaAtAck { op, node, held } => write!(
                f,
                "replica-at-ack {op} {node} {}",
                if *held { "held" } else { "missing" }
            ),
            EventKind::DiskDestroyed { node } => write!(f, "disk-destroyed {node}"),
            EventKind::DurableAtPowerLoss { broker, offset } => {
                write!(f, "durable-at-power-loss {broker} {offset}")
            }
            EventKind::ReplicaCompared {
                node,
                broker,
                slave_min,
                slave_end,
                master_end,
                first_difference,
            } => {
                write!(
                    f,
                    "replica-compare {node} of {broker} [{slave_min},{slave_end}) master_end={master_end}"
                )?;
                match first_difference {
                    None => write!(f, " identical"),
                    Some(at) => write!(f, " differs at {at}"),
                }
            }
            EventKind::ReplicaReadBackBroker { node, broker } => {
                write!(f, "replica-read-back-broker {node} of {broker}")
            }
            EventKind::ReplicaReadBack { node, record: r } => write!(
                f,
                "replica-read-back {node} {}@{} key={} crc={:08x}{}",
                r.queue,
                r.queue_offset,
                r.key,
                r.body_crc,
                if r.record_crc_ok { "" } else { " BAD-CRC" }
            ),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} t={} {}", self.seq, self.time_ms, self.kind)
    }
}

/// `crc32` (IEEE) of a message body, the checksum histories carry.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body)
}

/// An append-only history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    events: Vec<Event>,
    next_op: u64,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event and returns its index (also its `seq`).
    pub fn push(&mut self, time_ms: u64, kind: EventKind) -> usize {
        let index = self.events.len();
        self.events.push(Event {
            seq: index as u64,
            time_ms,
            kind,
        });
        index
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// A fresh operation id, unique within this history.
    pub fn next_op(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        op
    }

    /// Records a plain send (no tag, order key, delay or transaction) and returns its op id.
    pub fn send_invoked(
        &mut self,
        time_ms: u64,
        producer: &str,
        topic: &str,
        key: &str,
        body: &[u8],
    ) -> OpId {
        let op = self.next_op();
        self.push(
            time_ms,
            EventKind::SendInvoked(SendSpec {
                op,
                producer: producer.to_string(),
                topic: topic.to_string(),
                key: key.to_string(),
                body_crc: body_crc(body),
                tag: None,
                order_key: None,
                deliver_not_before_ms: None,
                transaction_id: None,
            }),
        );
        op
    }

    /// Records a send described by `spec` (its `op` should come from [`History::next_op`]).
    pub fn send_invoked_spec(&mut self, time_ms: u64, spec: SendSpec) -> OpId {
        let op = spec.op;
        self.push(time_ms, EventKind::SendInvoked(spec));
        op
    }

    pub fn send_ok(
        &mut self,
        time_ms: u64,
        op: OpId,
        queue: QueueRef,
        offset: u64,
        flush: FlushMode,
    ) {
        self.push(
            time_ms,
            EventKind::SendOk {
                op,
                queue,
                queue_offset: offset,
                flush,
            },
        );
    }

    pub fn send_failed(&mut self, time_ms: u64, op: OpId, reason: &str) {
        self.push(
            time_ms,
            EventKind::SendFailed {
                op,
                reason: reason.to_string(),
            },
        );
    }

    pub fn send_timed_out(&mut self, time_ms: u64, op: OpId) {
        self.push(time_ms, EventKind::SendTimedOut { op });
    }

    pub fn subscribed(&mut self, time_ms: u64, group: &str, topic: &str, tags: &[&str]) {
        self.push(
            time_ms,
            EventKind::Subscribed {
                group: group.to_string(),
                topic: topic.to_string(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            },
        );
    }

    pub fn delivered(&mut self, time_ms: u64, delivery: Delivery) {
        self.push(time_ms, EventKind::Delivered(delivery));
    }

    pub fn pop_delivered(&mut self, time_ms: u64, delivery: PopDelivery) {
        self.push(time_ms, EventKind::PopDelivered(delivery));
    }

    pub fn pop_receive_failed(
        &mut self,
        time_ms: u64,
        group: &str,
        consumer: &str,
        invoked_ms: u64,
    ) {
        self.push(
            time_ms,
            EventKind::PopReceiveFailed {
                group: group.to_owned(),
                consumer: consumer.to_owned(),
                invoked_ms,
            },
        );
    }

    pub fn pop_acked(&mut self, time_ms: u64, id: u64, invoked_ms: u64, ok: bool) {
        self.push(time_ms, EventKind::PopAcked { id, invoked_ms, ok });
    }

    pub fn pop_invisible_changed(
        &mut self,
        time_ms: u64,
        id: u64,
        invoked_ms: u64,
        invisible_ms: u64,
        ok: bool,
    ) {
        self.push(
            time_ms,
            EventKind::PopInvisibleChanged {
                id,
                invoked_ms,
                invisible_ms,
                ok,
            },
        );
    }

    pub fn offset_committed(&mut self, time_ms: u64, group: &str, queue: QueueRef, offset: u64) {
        self.push(
            time_ms,
            EventKind::OffsetCommitted {
                group: group.to_string(),
                queue,
                offset,
            },
        );
    }

    /// Records a commit slave `node` accepted, on the master's `queue`.
    pub fn slave_offset_committed(
        &mut self,
        time_ms: u64,
        node: &str,
        group: &str,
        queue: QueueRef,
        offset: u64,
    ) {
        self.push(
            time_ms,
            EventKind::SlaveOffsetCommitted {
                node: node.to_string(),
                group: group.to_string(),
                queue,
                offset,
            },
        );
    }

    pub fn offset_reset(&mut self, time_ms: u64, group: &str, queue: QueueRef, offset: u64) {
        self.push(
            time_ms,
            EventKind::OffsetReset {
                group: group.to_string(),
                queue,
                offset,
            },
        );
    }

    pub fn max_offset_observed(&mut self, time_ms: u64, queue: QueueRef, max_offset: u64) {
        self.push(time_ms, EventKind::MaxOffsetObserved { queue, max_offset });
    }

    pub fn node_crashed(&mut self, time_ms: u64, node: &str) {
        self.push(
            time_ms,
            EventKind::NodeCrashed {
                node: node.to_string(),
            },
        );
    }

    pub fn power_lost(&mut self, time_ms: u64, node: &str, policy: PowerLossPolicy) {
        self.push(
            time_ms,
            EventKind::PowerLost {
                node: node.to_string(),
                policy,
            },
        );
    }

    pub fn node_restarted(&mut self, time_ms: u64, node: &str) {
        self.push(
            time_ms,
            EventKind::NodeRestarted {
                node: node.to_string(),
            },
        );
    }

    pub fn transaction_resolved(
        &mut self,
        time_ms: u64,
        transaction_id: &str,
        key: &str,
        committed: bool,
    ) {
        self.push(
            time_ms,
            EventKind::TransactionResolved {
                transaction_id: transaction_id.to_string(),
                key: key.to_string(),
                committed,
            },
        );
    }

    pub fn nemesis(&mut self, time_ms: u64, description: &str) {
        self.push(
            time_ms,
            EventKind::Nemesis {
                description: description.to_string(),
            },
        );
    }

    pub fn healed(&mut self, time_ms: u64) {
        self.push(time_ms, EventKind::Healed);
    }

    pub fn drained(&mut self, time_ms: u64) {
        self.push(time_ms, EventKind::Drained);
    }

    /// Records a recovery fence the broker had built at a start at `built_ms`.
    pub fn fence_built(
        &mut self,
        time_ms: u64,
        queue: QueueRef,
        group: &str,
        offset: u64,
        built_ms: u64,
    ) {
        self.push(
            time_ms,
            EventKind::FenceBuilt {
                queue,
                group: group.to_string(),
                offset,
                built_ms,
            },
        );
    }

    /// Records that `broker`'s store opened for the read-back (before its queues).
    pub fn read_back_broker(&mut self, time_ms: u64, broker: &str) {
        self.push(
            time_ms,
            EventKind::ReadBackBroker {
                broker: broker.to_string(),
            },
        );
    }

    /// Records one queue's read-back: the queue header, then one record per offset in order.
    pub fn read_back_queue(
        &mut self,
        time_ms: u64,
        queue: QueueRef,
        min_offset: u64,
        max_offset: u64,
        records: Vec<ReadBackRecord>,
    ) {
        self.push(
            time_ms,
            EventKind::ReadBackQueue {
                queue,
                min_offset,
                max_offset,
            },
        );
        for r in records {
            self.push(time_ms, EventKind::ReadBack(r));
        }
    }

    /// Records whether slave `node` held `op`'s record when its ack arrived.
    pub fn replica_at_ack(&mut self, time_ms: u64, op: OpId, node: &str, held: bool) {
        self.push(
            time_ms,
            EventKind::ReplicaAtAck {
                op,
                node: node.to_string(),
                held,
            },
        );
    }

    /// Records that `node`'s disk was destroyed.
    pub fn disk_destroyed(&mut self, time_ms: u64, node: &str) {
        self.push(
            time_ms,
            EventKind::DiskDestroyed {
                node: node.to_string(),
            },
        );
    }

    /// Records master `broker`'s durable CommitLog end at a power loss.
    pub fn durable_at_power_loss(&mut self, time_ms: u64, broker: &str, offset: u64) {
        self.push(
            time_ms,
            EventKind::DurableAtPowerLoss {
                broker: broker.to_string(),
                offset,
            },
        );
    }

    /// Records a slave's CommitLog compared with its master's.
    pub fn replica_compared(
        &mut self,
        time_ms: u64,
        node: &str,
        broker: &str,
        slave: std::ops::Range<u64>,
        master_end: u64,
        first_difference: Option<u64>,
    ) {
        self.push(
            time_ms,
            EventKind::ReplicaCompared {
                node: node.to_string(),
                broker: broker.to_string(),
                slave_min: slave.start,
                slave_end: slave.end,
                master_end,
                first_difference,
            },
        );
    }

    /// Records a slave's read-back: its header, then its records.
    pub fn replica_read_back(
        &mut self,
        time_ms: u64,
        node: &str,
        broker: &str,
        records: Vec<ReadBackRecord>,
    ) {
        self.push(
            time_ms,
            EventKind::ReplicaReadBackBroker {
                node: node.to_string(),
                broker: broker.to_string(),
            },
        );
        for record in records {
            self.push(
                time_ms,
                EventKind::ReplicaReadBack {
                    node: node.to_string(),
                    record,
                },
            );
        }
    }

    /// The one-line renderings of every event, in order.
    pub fn renderings(&self) -> Vec<String> {
        self.events.iter().map(|e| e.to_string()).collect()
    }

    /// The digest of this history's trace.
    pub fn digest(&self) -> super::TraceDigest {
        super::TraceDigest::of_history(self)
    }
}
