//! The serde types of the cluster's interface: what the playground page sends ([`Action`]) and
//! reads ([`Event`], [`Snapshot`], [`RecordView`]). Field names are snake_case in JSON; every
//! enum is internally tagged (`"action"` for actions, `"kind"` for events and nodes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a scripted consumer's listener does with each delivered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// CONSUME_SUCCESS at once.
    Ok,
    /// RECONSUME_LATER: the message goes back through `%RETRY%group`, then `%DLQ%group`.
    Fail,
    /// CONSUME_SUCCESS after [`super::SLOW_CONSUME_MS`] of virtual time.
    Slow,
}

/// The queue allocation strategy of a consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `AllocateMessageQueueAveragely`: contiguous blocks.
    Averagely,
    /// `AllocateMessageQueueAveragelyByCircle`: queue `i` to consumer `i % n`.
    Circle,
    /// `AllocateMessageQueueConsistentHash` with 10 virtual nodes per consumer.
    ConsistentHash,
}

/// Something the user does to the world, applied at the current virtual time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A new producer (`producer-N`) sending to the scenario's topic continuously.
    AddProducer,
    /// Shuts a producer down cleanly (it unregisters).
    RemoveProducer {
        id: String,
    },
    /// A new push consumer (`consumer-N`) in `group`, subscribed to the scenario's topic.
    AddConsumer {
        group: String,
    },
    /// Graceful stop: offsets committed, the consumer unregisters, the group rebalances at once.
    StopConsumer {
        id: String,
    },
    /// The consumer's host vanishes: no unregister, no closed connection. The broker notices when
    /// its channel expires (no heartbeat for 120 s).
    KillConsumer {
        id: String,
    },
    /// The broker crashes: its connections reset and what its store had not synced is lost
    /// (MemStorage power loss, un-synced bytes dropped).
    KillBroker {
        id: String,
    },
    /// The broker starts again on the storage it left, recovering its CommitLog.
    RestartBroker {
        id: String,
    },
    /// Every frame to or from the node is dropped until it is healed.
    Partition {
        id: String,
    },
    Heal {
        id: String,
    },
    /// `count` messages from the first running producer, with an optional tag.
    Send {
        count: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    ConsumerBehaviour {
        id: String,
        behaviour: Behaviour,
    },
    /// Every consumer of the group switches strategy and rebalances at once.
    SetStrategy {
        group: String,
        strategy: Strategy,
    },
    /// A new POP consumer (`pop-consumer-N`, a [`crate::client::simple::SimpleConsumer`]) in
    /// `group`: it receives messages of any queue of the scenario's topic, each hidden for
    /// [`super::POP_INVISIBLE_MS`], and acknowledges them after [`super::POP_PROCESS_MS`]
    /// (its behaviour `fail`: never, so they come back; `slow`: after
    /// [`super::SLOW_CONSUME_MS`]). `stop_consumer`, `kill_consumer` and `consumer_behaviour`
    /// work on POP consumers too; a behaviour applies to the messages received from then on.
    AddPopConsumer {
        group: String,
    },
    /// The POP consumer leaves its next `count` messages unacknowledged (they come back after
    /// their invisible time), whatever its behaviour.
    PopFailNext {
        id: String,
        count: u32,
    },
}

/// One queue as a rebalance result names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueRef {
    pub broker: String,
    pub topic: String,
    pub queue_id: i32,
}

/// Something that happened at virtual time `t_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub t_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A producer's send completed successfully.
    Sent {
        producer: String,
        broker: String,
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        msg_id: String,
    },
    /// A producer's send failed (after its retries).
    SendFailed {
        producer: String,
        error: String,
    },
    /// A record was appended to a broker's CommitLog (any topic: user, retry, schedule, DLQ).
    Stored {
        broker: String,
        commitlog_offset: u64,
        size: u64,
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        msg_id: String,
    },
    /// A broker's CommitLog is durable up to here.
    Flushed {
        broker: String,
        flushed_offset: u64,
    },
    /// A pull response with messages reached a consumer.
    Pulled {
        consumer: String,
        broker: String,
        topic: String,
        queue_id: i32,
        count: u32,
    },
    /// The listener finished a message: `ok`, or `retry` (RECONSUME_LATER).
    Consumed {
        consumer: String,
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        msg_id: String,
        status: String,
        reconsume_times: i32,
    },
    /// A broker took a group's committed offset (UPDATE_CONSUMER_OFFSET).
    Committed {
        group: String,
        broker: String,
        topic: String,
        queue_id: i32,
        offset: i64,
    },
    /// A consumer's owned queues changed.
    Rebalanced {
        group: String,
        consumer: String,
        queues: Vec<QueueRef>,
    },
    /// A message is going back for another try (`reconsume_times` is the try it will be).
    Retry {
        group: String,
        msg_id: String,
        reconsume_times: i32,
    },
    /// A message landed in `%DLQ%group`.
    Dlq {
        group: String,
        msg_id: String,
    },
    NodeDown {
        id: String,
    },
    NodeUp {
        id: String,
    },
    Partitioned {
        id: String,
    },
    Healed {
        id: String,
    },
    /// A frame was put on the bus (it arrives at `deliver_ms` unless dropped).
    Message {
        from: String,
        to: String,
        /// The request code, or the response code for a response.
        code: i32,
        is_response: bool,
        opaque: i32,
        bytes: u64,
        deliver_ms: u64,
    },
    /// A frame was lost: its sender or receiver is partitioned or gone.
    Dropped {
        from: String,
        to: String,
        code: i32,
    },
    /// A consumer's group switched allocation strategy.
    StrategyChanged {
        group: String,
        strategy: Strategy,
    },
    /// A consumer's listener behaviour changed.
    BehaviourChanged {
        id: String,
        behaviour: Behaviour,
    },
    /// A POP consumer received a message: hidden from its group until `invisible_until_ms`
    /// (virtual ms) unless acknowledged. `topic` is the queue's topic: the group's POP retry
    /// topic for a message that came back.
    Popped {
        group: String,
        consumer: String,
        broker: String,
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        msg_id: String,
        reconsume_times: i32,
        invisible_until_ms: u64,
        /// Whether the consumer will acknowledge it (false under behaviour `fail` and for the
        /// messages of a `pop_fail_next`).
        will_ack: bool,
    },
    /// The broker took a POP consumer's acknowledgement: the message will not come back.
    PopAcked {
        group: String,
        consumer: String,
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        msg_id: String,
        reconsume_times: i32,
    },
    /// An acknowledgement was refused or lost (too late, broker down, …).
    PopAckFailed {
        group: String,
        consumer: String,
        msg_id: String,
        error: String,
    },
    /// A message's invisible time ran out before it was acknowledged: it is visible to the
    /// group again and comes back through the POP retry topic.
    PopExpired {
        group: String,
        consumer: String,
        msg_id: String,
        reconsume_times: i32,
    },
    /// The broker brought an unacknowledged message back: a copy landed in the group's POP
    /// retry topic (`%RETRY%<group>+<topic>`) with `reconsume_times` one more than before.
    PopRevived {
        group: String,
        broker: String,
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        msg_id: String,
        reconsume_times: i32,
    },
}

/// Whole-world inspection at one instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub now_ms: u64,
    pub seed: u64,
    pub scenario: String,
    pub nodes: Vec<NodeView>,
    pub topics: Vec<TopicView>,
    pub groups: Vec<GroupView>,
    pub brokers: Vec<BrokerView>,
    pub in_flight: Vec<FrameView>,
    /// POP consumer groups (empty unless a POP consumer was added).
    #[serde(default)]
    pub pop_groups: Vec<PopGroupView>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Namesrv,
    Broker,
    Producer,
    Consumer,
    /// A POP (simple) consumer.
    PopConsumer,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: String,
    pub kind: NodeKind,
    pub up: bool,
    pub partitioned: bool,
    /// `running`, `stopped` (shut down cleanly) or `killed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<Behaviour>,
    /// The address peers use (brokers and the NameServer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicView {
    pub name: String,
    pub queues: Vec<TopicQueueView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicQueueView {
    pub broker: String,
    pub queue_id: i32,
    pub min_offset: u64,
    pub max_offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    pub strategy: Strategy,
    /// Running consumers of the group.
    pub consumers: Vec<String>,
    pub queues: Vec<GroupQueueView>,
    /// Messages that went through `%RETRY%group`.
    pub retry_messages: u64,
    /// Messages in `%DLQ%group`.
    pub dlq_messages: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupQueueView {
    pub broker: String,
    pub topic: String,
    pub queue_id: i32,
    /// The first running consumer owning the queue, `null` when none does.
    pub owner: Option<String>,
    /// Every running consumer that believes it owns the queue: more than one while views of the
    /// group disagree during a rebalance.
    pub owners: Vec<String>,
    /// The offset the broker holds for the group (0 before any commit).
    pub committed_offset: i64,
    pub max_offset: i64,
    pub lag: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerView {
    pub id: String,
    pub up: bool,
    pub written_offset: u64,
    pub flushed_offset: u64,
    pub min_offset: u64,
    /// CommitLog segment files: start offset and size.
    pub segments: Vec<SegmentView>,
    pub consume_queues: Vec<ConsumeQueueView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentView {
    pub start: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeQueueView {
    pub topic: String,
    pub queue_id: i32,
    pub min_offset: u64,
    pub max_offset: u64,
    /// The last (up to) 32 units.
    pub entries: Vec<CqEntryView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CqEntryView {
    pub queue_offset: u64,
    pub commitlog_offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameView {
    pub from: String,
    pub to: String,
    pub code: i32,
    pub is_response: bool,
    pub opaque: i32,
    pub sent_ms: u64,
    pub deliver_ms: u64,
}

/// A POP consumer group: its consumers sharing the topic's queues, what each holds invisible,
/// and what came back through the group's POP retry topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopGroupView {
    pub name: String,
    /// `%RETRY%<group>+<topic>`.
    pub retry_topic: String,
    /// Every POP consumer of the group that was ever added (stopped and killed ones too).
    pub consumers: Vec<PopConsumerView>,
    /// The topic's queues and, per queue, who received from it.
    pub queues: Vec<PopQueueView>,
    /// The last (up to 32) messages of the retry topic, oldest first.
    pub retry_messages: Vec<PopRetryView>,
    /// How many messages the retry topic holds in all.
    pub retry_total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopConsumerView {
    pub id: String,
    /// `running`, `stopped` or `killed`.
    pub state: String,
    pub behaviour: Behaviour,
    /// Messages it will leave unacknowledged regardless of behaviour.
    pub fail_next: u32,
    /// Messages received and neither acknowledged nor come back yet, by invisible-until time.
    pub in_flight: Vec<PopInFlightView>,
    pub popped: u64,
    pub acked: u64,
    pub expired: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopInFlightView {
    pub broker: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub msg_id: String,
    pub reconsume_times: i32,
    pub popped_ms: u64,
    /// Virtual ms.
    pub invisible_until_ms: u64,
    pub will_ack: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopQueueView {
    pub broker: String,
    pub topic: String,
    pub queue_id: i32,
    pub max_offset: i64,
    /// The group's offset on the broker: POP moves it past what it hands out.
    pub consumed_offset: i64,
    /// Consumer → messages it received from this queue.
    pub popped_by: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopRetryView {
    pub broker: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub msg_id: String,
    pub reconsume_times: i32,
    /// Virtual ms.
    pub store_ms: i64,
}

/// One CommitLog record, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    pub commitlog_offset: u64,
    pub size: u64,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub tags: Option<String>,
    pub keys: Option<String>,
    /// The body's first 64 bytes, lossily as UTF-8.
    pub body_preview: String,
    /// Virtual ms (the same clock as `t_ms`).
    pub born_ms: i64,
    pub store_ms: i64,
    pub msg_id: String,
    pub reconsume_times: i32,
}

/// Why a cluster call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("unknown scenario '{0}' (scenarios: basic, rebalance, retry-dlq, two-brokers, pop)")]
    UnknownScenario(String),
    #[error("no node '{0}'")]
    UnknownNode(String),
    #[error("'{id}' is not a {expected}")]
    WrongKind { id: String, expected: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error("broker {id} failed to open its store: {reason}")]
    BrokerOpen { id: String, reason: String },
}
