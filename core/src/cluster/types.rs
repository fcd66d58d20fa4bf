//! The serde types of the cluster's interface: what the playground page sends ([`Action`]) and
//! reads ([`Event`], [`Snapshot`], [`RecordView`]). Field names are snake_case in JSON; every
//! enum is internally tagged (`"action"` for actions, `"kind"` for events and nodes).

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Namesrv,
    Broker,
    Producer,
    Consumer,
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
    #[error("unknown scenario '{0}' (scenarios: basic, rebalance, retry-dlq, two-brokers)")]
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
