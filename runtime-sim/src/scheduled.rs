//! Delay-level, timer and transactional messages in the workload, and what the checkers need
//! to judge them.
//!
//! ```text
//!  kind              client call                    stored first in (acked there)   due
//!  delay level 1–3   Message::with_delay_level      SCHEDULE_TOPIC_XXXX, queue L-1   send + level
//!  timer 1–5 s       Message::with_delay_ms         rmq_sys_wheel_timer, queue 0     send + delay
//!  transaction       send_message_in_transaction    RMQ_SYS_TRANS_HALF_TOPIC, q 0    on commit
//! ```
//!
//! A send's acknowledged position is where the broker stored it first (the response carries
//! that queue's offset), so the lost-write and offset checkers look for it there in the
//! read-back; its delivery comes later from the real topic at a new offset.
//!
//! "Never early" is judged on the history's timeline: a message is due `delay` after its send
//! was invoked (the broker starts the delay when it stores it, later). Brokers measure the
//! delay on their own clocks, which the nemesis may move by up to twice the swarm's largest
//! offset and drift apart, so that much is tolerated ([`check_config`]).
//!
//! Transactions follow a plan drawn per message: commit, rollback, or undecided at first and
//! resolved to commit or rollback when the broker checks back. The resolution is recorded when
//! the producer decides, before END_TRANSACTION goes out; a rolled-back message is never
//! expected, a committed one is.

use vostok::client::{LocalTransactionState, Message};
use vostok_core::broker::schedule::{DEFAULT_MESSAGE_DELAY_LEVEL_MS, SCHEDULE_TOPIC};
use vostok_core::broker::timer::TIMER_TOPIC;
use vostok_core::broker::transaction::TRANS_HALF_TOPIC;
use vostok_core::broker::BrokerConfig;
use vostok_core::check::{CheckConfig, QueueRef};
use vostok_core::rng::SeededRng;

use crate::swarm::{Fault, ScheduledMix, Swarm};

/// The internal topics read back besides the workload's.
pub const WAITING_TOPICS: [&str; 3] = [SCHEDULE_TOPIC, TIMER_TOPIC, TRANS_HALF_TOPIC];
/// How long a producer stays after its last send while its acked transactions are undecided
/// (it answers the brokers' checks).
pub const TRANSACTION_SETTLE_LIMIT_MS: u64 = 20_000;
/// Drift the nemesis gives a clock, at most, either way (parts per million).
pub const MAX_DRIFT_PPM: u64 = 1_000;

/// What a transaction's producer decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxPlan {
    Commit,
    Rollback,
    /// Undecided when the half message is stored; the check-back commits.
    UnknownThenCommit,
    /// Undecided when the half message is stored; the check-back rolls back.
    UnknownThenRollback,
}

impl TxPlan {
    /// The decision the executor reports right after the half message is stored.
    pub fn first_state(self) -> LocalTransactionState {
        match self {
            TxPlan::Commit => LocalTransactionState::CommitMessage,
            TxPlan::Rollback => LocalTransactionState::RollbackMessage,
            _ => LocalTransactionState::Unknow,
        }
    }

    /// Whether the transaction ends committed.
    pub fn commits(self) -> bool {
        matches!(self, TxPlan::Commit | TxPlan::UnknownThenCommit)
    }

    /// The answer to a check-back.
    pub fn final_state(self) -> LocalTransactionState {
        if self.commits() {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::RollbackMessage
        }
    }
}

/// The kind of one send of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    Plain,
    /// A delay level, 1..=3.
    DelayLevel(u32),
    /// A timer this many ms after the send.
    Timer(u64),
    Transaction(TxPlan),
}

impl SendKind {
    /// Draws the kind of the next send.
    pub fn draw(rng: &mut SeededRng, mix: &ScheduledMix) -> SendKind {
        let roll = rng.below(100);
        if roll < mix.delay_percent {
            SendKind::DelayLevel(1 + rng.below(3) as u32)
        } else if roll < mix.delay_percent + mix.timer_percent {
            SendKind::Timer(1_000 + rng.below(4_001))
        } else if roll < mix.delay_percent + mix.timer_percent + mix.transaction_percent {
            SendKind::Transaction(match rng.below(4) {
                0 => TxPlan::Commit,
                1 => TxPlan::Rollback,
                2 => TxPlan::UnknownThenCommit,
                _ => TxPlan::UnknownThenRollback,
            })
        } else {
            SendKind::Plain
        }
    }

    /// Whether the send may also be ordered (a selector): plain sends only.
    pub fn is_plain(self) -> bool {
        self == SendKind::Plain
    }

    /// The message with this kind's properties.
    pub fn apply(self, message: Message) -> Message {
        match self {
            SendKind::DelayLevel(level) => message.with_delay_level(level as i32),
            SendKind::Timer(delay_ms) => message.with_delay_ms(delay_ms),
            SendKind::Plain | SendKind::Transaction(_) => message,
        }
    }

    /// How long after the send the message is due, if it is scheduled.
    pub fn delay_ms(self) -> Option<u64> {
        match self {
            SendKind::DelayLevel(level) => DEFAULT_MESSAGE_DELAY_LEVEL_MS
                .get(level as usize - 1)
                .copied(),
            SendKind::Timer(delay_ms) => Some(delay_ms),
            SendKind::Plain | SendKind::Transaction(_) => None,
        }
    }

    /// Where an acked send of this kind sits: the queue the broker stored it in first.
    pub fn ack_queue(self, broker: &str, real: QueueRef) -> QueueRef {
        match self {
            SendKind::Plain => real,
            SendKind::DelayLevel(level) => QueueRef::new(broker, SCHEDULE_TOPIC, level - 1),
            SendKind::Timer(_) => QueueRef::new(broker, TIMER_TOPIC, 0),
            SendKind::Transaction(_) => QueueRef::new(broker, TRANS_HALF_TOPIC, 0),
        }
    }
}

/// The sim brokers' check-back timing: short, so undecided transactions settle within a seed.
pub fn configure_broker(config: &mut BrokerConfig) {
    config.transaction.timeout_ms = 1_000;
    config.transaction.check_interval_ms = 1_000;
    // RocketMQ's 15 checks span 15 minutes at its 60 s interval; at 1 s a producer cut off for
    // part of the fault phase would use them all up and its transaction would be parked in
    // TRANS_CHECK_MAX_TIME_TOPIC, as designed. The budget is scaled back to span the run.
    config.transaction.check_max = 900;
    // The simulated disk holds files in memory: a small wheel (two minutes of 1 s slots, the
    // default precision) and small timer log segments instead of three days and 100 MiB.
    config.timer.max_delay_sec = 60;
    config.timer.log_segment_bytes = 64 * 1024;
    // Delay levels keep RocketMQ's defaults (levels 1–3: 1 s, 5 s, 10 s).
}

/// The checkers' configuration for a run of `sim_ms`: clock jumps of a broker (offset to the
/// opposite extreme, drift changed over the whole run) are tolerated by "never early".
pub fn check_config(swarm: &Swarm, sim_ms: u64) -> CheckConfig {
    let clock_skew_tolerance_ms = if swarm.faults.contains(&Fault::Clock) {
        2 * swarm.max_clock_offset_ms + (2 * MAX_DRIFT_PPM * sim_ms).div_ceil(1_000_000)
    } else {
        0
    };
    CheckConfig {
        clock_skew_tolerance_ms,
        ..CheckConfig::default()
    }
}

/// Test-only: what the history records differs from what the brokers are asked for, so the
/// checkers see exactly what a broker delivering timers early or delivering rolled-back
/// messages would produce (the brokers themselves stay correct).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misrecord {
    /// Scheduled messages are recorded as due this much later than asked.
    pub due_late_by_ms: u64,
    /// Transactions the brokers are told to commit are recorded as rolled back.
    pub commit_as_rollback: bool,
}
