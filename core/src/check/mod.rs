//! Jepsen-style history checkers, pure and shared by the simulator and the playground.
//!
//! A harness records a [`History`] (sends and their outcomes, deliveries, offset commits, node
//! crashes and power losses, and a read-back of every queue after the healed phase) and hands it
//! to [`check_all`], which runs one checker per invariant and returns every [`Violation`] in
//! event order. A violation names its invariant and the event that first broke it, and renders
//! to one line.
//!
//! | invariant              | checker                      | evidence                                 |
//! |------------------------|------------------------------|------------------------------------------|
//! | `lost-write`           | [`check_lost_writes`]        | an acked send missing from the read-back |
//! | `phantom`              | [`check_phantoms`]           | a delivered key nobody sent (or failed)  |
//! | `corrupt`              | [`check_corruption`]         | a delivered body unlike the sent one     |
//! | `dense-offsets`        | [`check_dense_offsets`]      | a hole or duplicate in a read-back queue |
//! | `inconsistent-offsets` | [`check_consistent_offsets`] | two keys at one offset, no power loss    |
//! | `order`                | [`check_order`]              | one producer's ordered sends reordered   |
//! | `offset-regression`    | [`check_committed_offsets`]  | a commit moved back (past a slave's lag) |
//! | `offset-past-max`      | [`check_committed_offsets`]  | a commit above a later max offset        |
//! | `at-least-once`        | [`check_at_least_once`]      | an acked message a group never got       |
//! | `bad-crc`              | [`check_bad_crc`]            | a record served with a bad body CRC      |
//! | `early-delivery`       | [`check_delay`]              | delivered before its due time            |
//! | `rolled-back-delivered`| [`check_transactions`]       | a rolled-back message delivered          |
//! | `sync-master-ack-before-replica` | [`check_replica_acks`] | a SYNC_MASTER ack no slave held  |
//! | `replica-prefix`       | [`check_replica_prefix`]     | a slave's CommitLog unlike its master's  |
//! | `replica-lost-write`   | [`check_replica_lost_writes`]| a replicated ack gone from the group     |
//! | `pop-early-redelivery` | [`check_pop_redelivery`]     | a POP delivery back before its invisible time ended |
//! | `pop-redelivered-after-ack` | [`check_pop_redelivery`] | a POP delivery back after an ok ack   |
//! | `pop-orderly-overlap`  | [`check_pop_orderly`]        | two orderly POP batches of one queue in flight |
//!
//! Determinism: [`TraceDigest`] hashes a history's renderings (FNV-1a, stable across builds and
//! targets); [`first_divergence`] finds the first differing event of two traces.
//!
//! # Recording a history
//!
//! * Node names of crash, power-loss and restart events are broker names, as in [`QueueRef`].
//! * [`EventKind::SendFailed`] only when the message was definitely not stored; any doubt (a
//!   timeout, a connection lost mid-request, a failed attempt after an uncertain one) is
//!   [`EventKind::SendTimedOut`].
//! * [`EventKind::OffsetCommitted`] when the broker accepted the commit;
//!   [`EventKind::MaxOffsetObserved`] from the `maxOffset` of pull responses (or admin queries).
//! * [`EventKind::Subscribed`] before the group's first message is sent (or consume from the
//!   first offset), so that at-least-once can demand every acked message.
//! * [`EventKind::TransactionResolved`] when the producer decides, before END_TRANSACTION.
//! * [`EventKind::Drained`] once consumers caught up after healing.
//! * The read-back: for every broker, one [`EventKind::ReadBackQueue`] for every queue of every
//!   topic it should hold (its topic config), even an empty or vanished one, then its records in
//!   offset order ([`History::read_back_queue`]); an offset that cannot be read is left out and
//!   shows as a hole. A broker without any read-back is not judged for lost writes.
//! * `record_crc_ok` truthfully: decode the served record with the CRC check.
//! * Replication ([`replica`]): slaves are nodes of their own (`broker-a-s1`), never a
//!   [`QueueRef`] broker; their crash, power-loss and disk events carry the slave's node name,
//!   their read-back goes to [`EventKind::ReplicaReadBack`] with the master's queue names.
//!   A commit a slave accepted is an [`EventKind::SlaveOffsetCommitted`] on the master's queue,
//!   recorded when it was accepted (or first seen); the master's next commits are recorded only
//!   once the slave has had time to hand it back.
//!   After each SEND_OK of a SYNC_MASTER, one [`EventKind::ReplicaAtAck`] per slave of its
//!   group; with each power loss of a replicated master, its [`EventKind::DurableAtPowerLoss`].
//! * POP ([`EventKind::PopDelivered`]): every message a `SimpleConsumer` received, with the
//!   time its receive was invoked and the invisible time asked for; every ack and change of
//!   invisible time once answered ([`EventKind::PopAcked`], [`EventKind::PopInvisibleChanged`]),
//!   naming the delivery, ok only if the broker answered success. The POP group's
//!   [`EventKind::Subscribed`] makes at-least-once demand every acked message of it too.
//!   Each delivery names its receive (one per receive answered, unique in the history), its
//!   `1ST_POP_TIME` property, and whether it was an orderly POP.
//!
//! Nothing here iterates a std `HashMap`: every map is a `BTreeMap`, so a verdict and its
//! rendering depend only on the history.

mod checkers;
#[cfg(test)]
mod defect_tests;
mod digest;
mod history;
pub mod replica;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;

pub use checkers::{
    check_all, check_at_least_once, check_bad_crc, check_committed_offsets,
    check_consistent_offsets, check_corruption, check_delay, check_dense_offsets,
    check_lost_writes, check_order, check_phantoms, check_pop_orderly, check_pop_redelivery,
    check_report, check_transactions, statistics, IN_FLIGHT_SLACK_MS, SLAVE_SYNC_LAG_MS,
};
pub use digest::{first_divergence, Divergence, TraceDigest};
pub use history::{
    body_crc, Delivery, Event, EventKind, FlushMode, History, OpId, PopDelivery, PowerLossPolicy,
    QueueRef, ReadBackRecord, SendSpec,
};
pub use replica::{check_replica_acks, check_replica_lost_writes, check_replica_prefix};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Knobs of the checkers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfig {
    /// How early a delay or timer message may be delivered before its due time (clock skew
    /// between the nodes and the checker's clock).
    pub clock_skew_tolerance_ms: u64,
    /// At most this many violations per invariant are reported (the first ones in event order).
    pub max_violations_per_invariant: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            clock_skew_tolerance_ms: 0,
            max_violations_per_invariant: 8,
        }
    }
}

/// The invariants the checkers enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    LostWrite,
    Phantom,
    Corrupt,
    DenseOffsets,
    InconsistentOffsets,
    Order,
    OffsetRegression,
    OffsetPastMax,
    AtLeastOnce,
    BadCrc,
    EarlyDelivery,
    RolledBackDelivered,
    ReplicaAck,
    ReplicaPrefix,
    ReplicaLostWrite,
    PopEarlyRedelivery,
    PopRedeliveredAfterAck,
    PopOrderlyOverlap,
}

impl Invariant {
    /// The invariant's short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::LostWrite => "lost-write",
            Invariant::Phantom => "phantom",
            Invariant::Corrupt => "corrupt",
            Invariant::DenseOffsets => "dense-offsets",
            Invariant::InconsistentOffsets => "inconsistent-offsets",
            Invariant::Order => "order",
            Invariant::OffsetRegression => "offset-regression",
            Invariant::OffsetPastMax => "offset-past-max",
            Invariant::AtLeastOnce => "at-least-once",
            Invariant::BadCrc => "bad-crc",
            Invariant::EarlyDelivery => "early-delivery",
            Invariant::RolledBackDelivered => "rolled-back-delivered",
            Invariant::ReplicaAck => "sync-master-ack-before-replica",
            Invariant::ReplicaPrefix => "replica-prefix",
            Invariant::ReplicaLostWrite => "replica-lost-write",
            Invariant::PopEarlyRedelivery => "pop-early-redelivery",
            Invariant::PopRedeliveredAfterAck => "pop-redelivered-after-ack",
            Invariant::PopOrderlyOverlap => "pop-orderly-overlap",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken invariant, pinned to the event that first shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// Index of the violating event in the history.
    pub event_index: usize,
    /// That event's rendering.
    pub event: String,
    /// What is wrong, in a few words.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (first violating event {}: {})",
            self.invariant, self.detail, self.event_index, self.event
        )
    }
}

/// Counts a run reports next to its verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub sends: u64,
    pub acked: u64,
    pub failed: u64,
    pub unknown: u64,
    pub deliveries: u64,
    /// Deliveries of a key already delivered to the same group (redelivery is allowed).
    pub redeliveries: u64,
    /// Keys stored at more than one offset: duplicates from producer retries (allowed).
    pub retry_duplicates: u64,
    /// Acked ASYNC_FLUSH messages lost with the un-flushed tail in a power loss (allowed).
    pub allowed_losses: u64,
    /// Committed offsets moved back by an instance that still held a queue another instance
    /// had taken over (RocketMQ's client-side rebalancing; redelivery, allowed).
    pub stale_owner_commits: u64,
    /// Committed offsets moved back to (or from) a broker's recovery fence by an instance that
    /// had not passed it (redelivery, allowed).
    pub fence_rewinds: u64,
    /// Commits on a slave behind the group's committed offset by no more than the lag of the
    /// slave's copy of its master's offsets (an instance started from that copy; redelivery,
    /// allowed, see [`SLAVE_SYNC_LAG_MS`]).
    #[serde(default)]
    pub slave_lag_commits: u64,
    pub crashes: u64,
    pub power_losses: u64,
    /// Slave CommitLogs that differed from their master's after the master's power loss
    /// (allowed, see [`check_replica_prefix`]).
    pub replica_divergences: u64,
    /// Deliveries a slave served (each held to the same invariants as a master's).
    pub slave_deliveries: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sends={} acked={} failed={} unknown={} deliveries={} redeliveries={} \
             retry_duplicates={} allowed_losses={} stale_owner_commits={} fence_rewinds={} \
             slave_lag_commits={} crashes={} power_losses={} replica_divergences={} \
             slave_deliveries={}",
            self.sends,
            self.acked,
            self.failed,
            self.unknown,
            self.deliveries,
            self.redeliveries,
            self.retry_duplicates,
            self.allowed_losses,
            self.stale_owner_commits,
            self.fence_rewinds,
            self.slave_lag_commits,
            self.crashes,
            self.power_losses,
            self.replica_divergences,
            self.slave_deliveries
        )
    }
}

/// The verdict and the statistics of one history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub violations: Vec<Violation>,
    pub stats: Stats,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}
