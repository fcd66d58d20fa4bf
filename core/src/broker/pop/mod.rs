//! POP consumption (RocketMQ 5): the broker balances a group's consumers itself. A POP hands
//! out messages of any queue to whichever consumer asks, hides them for an invisible time, and
//! brings back every one not acknowledged by then, through the group's POP retry topic.
//!
//! * [`serve`] — POP_MESSAGE (200050), PEEK_MESSAGE (200052), NOTIFICATION (200054),
//!   POLLING_INFO (200055), and long polling for them;
//! * [`ack`] — ACK_MESSAGE (200051), BATCH_ACK_MESSAGE (200151),
//!   CHANGE_MESSAGE_INVISIBLETIME (200053);
//! * [`revive`] — the revive log, redelivery of what was not acked, recovery after a restart;
//! * [`order`] — orderly POP: a queue stays with one batch until it is acked;
//! * [`mode`] — SET_MESSAGE_REQUEST_MODE (401) and QUERY_ASSIGNMENT (400);
//! * [`records`], [`checkpoints`] — the revive log's records and the open checkpoints.
//!
//! Followed: RocketMQ 5.3.3's `PopMessageProcessor`, `AckMessageProcessor`,
//! `ChangeInvisibleTimeProcessor`, `PopReviveService`, `ConsumerOrderInfoManager` and
//! `QueryAssignmentProcessor` for everything a client sees: codes, headers, receipt handles,
//! the retry topics and their reconsume times, what the revive log holds.
//!
//! **Where the state lives.** A POP writes one checkpoint record per queue it read to the
//! revive log, the system topic `rmq_sys_REVIVE_LOG_<cluster>` (`reviveQueueNum` queues, the
//! request's queue chosen round robin), and moves the group's committed offset past what it
//! read; an ack writes an ack record to the same revive queue. Both are ordinary CommitLog
//! records, so they replicate to slaves and recover like any message:
//!
//! ```text
//!   rmq_sys_REVIVE_LOG_<cluster>, queue q (one per revive queue)
//!   +--------+--------+--------+--------+--------+-----
//!   | ck  A  | ck  B  | ack A1 | ack A2 | ck  C  | ...      A finished: nothing pending
//!   +--------+--------+--------+--------+--------+-----
//!            ^ revive offset: the first record an open checkpoint needs
//!              (consumer offset of CID_RMQ_SYS_REVIVE_GROUP on queue q)
//! ```
//!
//! The broker keeps the open checkpoints in memory ([`checkpoints`]) and, after a restart,
//! rebuilds them by reading each revive queue from its revive offset. A due checkpoint's
//! unacked messages are copied to the POP retry topic (reconsume times + 1; past the group's
//! `retryMaxTimes`, to `%DLQ%<group>`), then the checkpoint closes.
//!
//! What differs from RocketMQ, deliberately:
//! * records reach the revive log directly; RocketMQ routes them through its timer wheel so
//!   a checkpoint appears when due. The bodies, tags and keys are the same.
//! * the retry topic is V2 `%RETRY%<group>+<topic>` by default (`enableRetryTopicV2`, false
//!   in RocketMQ 5.3.3, which names it `%RETRY%<group>_<topic>`); both are read.
//! * RocketMQ's broker never dead-letters a POP message (its gRPC proxy does); Vostok serves
//!   gRPC itself, so the revive does it, at the group's `retryMaxTimes`.
//! * CHANGE_MESSAGE_INVISIBLETIME of a message no longer in flight (acked, or already brought
//!   back) answers NO_MESSAGE (208); RocketMQ answers 0 and the message is delivered twice.
//! * the group's offset reaches `config/consumerOffsets.json` only once the checkpoints behind
//!   it are durable ([`super::offsets`]), so a power loss cannot keep the offset and lose the
//!   checkpoint (the messages would never come back).
//!
//! Durability of acks: under SYNC_FLUSH an ack is answered once its record is durable, so an
//! answered ack is never followed by a redelivery; under ASYNC_FLUSH a power loss may lose the
//! last acks (the messages come back: at least once).

pub mod ack;
pub mod checkpoints;
pub mod mode;
pub mod order;
pub mod records;
pub mod revive;
pub mod serve;

use std::collections::{BTreeMap, BTreeSet};

use crate::remoting::pop::MessageRequestMode;

/// The revive log's consumer group (`PopAckConstants.REVIVE_GROUP`).
pub const REVIVE_GROUP: &str = "CID_RMQ_SYS_REVIVE_GROUP";

/// The revive log of a cluster (`PopAckConstants.buildClusterReviveTopic`).
pub fn revive_topic(cluster: &str) -> String {
    format!("rmq_sys_REVIVE_LOG_{cluster}")
}

/// POP's broker.conf keys.
#[derive(Clone, Debug)]
pub struct PopConfig {
    /// `reviveQueueNum`: queues of the revive log.
    pub revive_queue_num: u32,
    /// `reviveInterval`: how often due checkpoints are looked for.
    pub revive_interval_ms: u64,
    /// `enableRetryTopicV2`: redeliveries go to `%RETRY%<group>+<topic>` (else `_`).
    pub enable_retry_topic_v2: bool,
    /// `popFromRetryProbability`: percent of POPs that read the retry topic first.
    pub pop_from_retry_probability_percent: u32,
    /// `popPollingSize`: most POPs held per (topic, group, queue).
    pub pop_polling_size: usize,
    /// `maxPopPollingSize`: most POPs held in all.
    pub max_pop_polling_size: usize,
    /// `defaultMessageRequestMode`: a group's mode before any SET_MESSAGE_REQUEST_MODE.
    pub default_message_request_mode: MessageRequestMode,
    /// `defaultPopShareQueueNum`.
    pub default_pop_share_queue_num: i32,
}

impl Default for PopConfig {
    fn default() -> Self {
        Self {
            revive_queue_num: 8,
            revive_interval_ms: 1_000,
            enable_retry_topic_v2: true,
            pop_from_retry_probability_percent: 20,
            pop_polling_size: 1_024,
            max_pop_polling_size: 100_000,
            default_message_request_mode: MessageRequestMode::Pull,
            default_pop_share_queue_num: -1,
        }
    }
}

/// Everything POP keeps.
#[derive(Debug, Default)]
pub(super) struct PopState {
    pub checkpoints: checkpoints::Checkpoints,
    /// Round robin over the revive queues, one step per POP.
    pub next_revive_qid: u32,
    /// When due checkpoints are looked for next.
    pub next_revive_ms: u64,
    pub held: serve::HeldPops,
    pub order: order::OrderTable,
    pub modes: mode::RequestModes,
    /// Revive queues whose revive offset may move: recomputed at the next tick.
    pub revive_offsets_dirty: BTreeSet<i32>,
    /// QUERY_ASSIGNMENTs waiting for their topic's route, by the route request's opaque.
    pub pending_assignments: BTreeMap<i32, mode::PendingAssignment>,
    /// While recovering: per (topic, group, queue), the offset past the last message a
    /// checkpoint in the revive log handed out.
    pub recovered_positions: BTreeMap<(String, String, i32), i64>,
}
