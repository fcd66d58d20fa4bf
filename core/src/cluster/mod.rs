//! A pure, single-threaded, seeded world of a NameServer, brokers and clients over virtual time:
//! what the playground runs in the browser.
//!
//! Nothing here re-implements RocketMQ: the world drives the core's own state machines — the
//! [`NameServer`], one [`Broker`] per broker over a [`MemStorage`] (small segment files, so
//! rollover is visible), [`Producer`]s, [`PushConsumer`]s and POP consumers
//! ([`SimpleConsumer`]s, see `pop.rs`) — through their feed / drain /
//! next-wake contracts ([`ClientStateMachine`] for the clients). The world only adds what a real
//! deployment has around them:
//!
//! * a **message bus**: every command a state machine emits is encoded with the remoting codec,
//!   travels for a per-link latency drawn from the seeded RNG (1–4 ms, plus 0–1 ms jitter, FIFO
//!   per direction like a TCP connection), and is decoded again on arrival;
//! * a **virtual clock**: [`Cluster::step`] jumps to the next instant anything happens (a frame
//!   arrives, a timer of a state machine is due, a disk sync completes, a scripted listener
//!   finishes, a producer's next send);
//! * **faults**: partitions drop every frame to or from a node; a killed broker loses what its
//!   store had not synced ([`MemStorage::power_loss`]) and its peers see the connections reset;
//!   a killed consumer vanishes silently, so the broker only notices when its channel expires;
//! * **scripted listeners**: a consumer's behaviour says whether it acknowledges at once
//!   (`ok`), asks to reconsume later (`fail`, so messages walk `%RETRY%group` up to the DLQ), or
//!   acknowledges after [`SLOW_CONSUME_MS`] (`slow`).
//!
//! Events are derived from what crosses the bus and from the state machines' public inspection
//! methods (CommitLog records appear as `stored`, durable offsets as `flushed`, a consumer's
//! owned queues as `rebalanced`, …), never guessed.
//!
//! Determinism: one seed drives every random choice (link latencies, the brokers' and clients'
//! own seeds); every collection that is iterated is a `BTreeMap`/`BTreeSet`, and the instants
//! are processed in a fixed order (frames by arrival then send order, then world timers, then
//! the NameServer, brokers and clients by id). The same seed and the same actions at the same
//! virtual times give the same events and snapshots, byte for byte.
//!
//! ```text
//!   producer-1 ──┐        frames (encoded bytes, per-link latency)        ┌── consumer-1
//!   producer-2 ──┼──────────────────────► bus ◄───────────────────────────┼── consumer-2
//!                │                         │                              │
//!                └── namesrv ◄─────────────┴─────────────► broker-a, broker-b (MemStorage)
//! ```
//!
//! Files: this one builds the world, carries frames and runs time; `pop.rs` hosts the POP
//! consumers; `inspect.rs` builds snapshots and decodes CommitLog records; `types.rs` holds the
//! serde interface.
//!
//! Time: virtual milliseconds from 0 (`t_ms`). The state machines see epoch milliseconds
//! [`EPOCH_MS`] + `t_ms`, as a real deployment would; record timestamps in [`RecordView`] are
//! converted back to virtual milliseconds.

mod inspect;
mod pop;
mod types;

#[cfg(test)]
mod pop_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::{Bytes, BytesMut};

use crate::broker::{Broker, BrokerConfig, BrokerOutput};
use crate::client::requests::ConsumeFromWhere;
use crate::client::{
    AllocateStrategy, ClientConfig, ClientOutput, ClientStateMachine, ConsumeStatus, ConsumeToken,
    Message, MessageExt, MessageQueue, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
    SendMode, SimpleConsumer,
};
use crate::message::{keys, peek_header, MessageRecord};
use crate::namesrv::{NameServer, NamesrvConfig, NamesrvOutput};
use crate::remoting::codec::{encode, FrameDecoder, MAX_FRAME_LEN};
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;
use crate::rng::SeededRng;
use crate::store::{
    CheckpointRequest, CommitLogOffset, MemStorage, PowerLoss, QueueOffset, SyncRequest,
};
use crate::topic::{DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};
use crate::ConnId;

use inspect::{read_records, shown_topic};
pub use pop::{pop_retry_topic, POP_AWAIT_MS, POP_INVISIBLE_MS, POP_MAX_HELD, POP_PROCESS_MS};
pub use types::*;

/// What the state machines see as `now_ms` at virtual time 0 (2024-06-10T06:13:20Z).
pub const EPOCH_MS: u64 = 1_718_000_000_000;
/// The topic every scenario produces to and consumes from.
pub const TOPIC: &str = "TopicTest";
/// A running producer sends one message this often.
pub const SEND_INTERVAL_MS: u64 = 400;
/// How long a `slow` listener takes per batch.
pub const SLOW_CONSUME_MS: u64 = 1_000;
/// How long a disk sync takes.
pub const DISK_SYNC_MS: u64 = 2;
/// Clients of a scenario start once the brokers have registered with the NameServer.
pub const CLIENT_START_MS: u64 = 200;
/// Retries before the broker moves a message to the DLQ (RocketMQ's default is 16; the
/// playground keeps the walk short).
pub const MAX_RECONSUME_TIMES: i32 = 3;
/// CommitLog segment size of the brokers: small, so segment rollover happens within minutes.
pub const COMMITLOG_SEGMENT_BYTES: u64 = 64 * 1024;
/// The scenario names [`Cluster::new`] accepts.
pub const SCENARIOS: [&str; 5] = ["basic", "rebalance", "retry-dlq", "two-brokers", "pop"];
/// The POP consumer group of the `pop` scenario.
pub const POP_GROUP: &str = "pg1";

const NAMESRV_ID: &str = "namesrv";
const NAMESRV_ADDR: &str = "10.0.0.1:9876";
const BROKER_PORT: u16 = 10911;
const CLIENT_PORT: u16 = 50000;
/// Delay levels a tenth of RocketMQ's (1 s, 5 s, 10 s, … become 100 ms, 500 ms, 1 s, …), so a
/// failing message reaches the DLQ in seconds: retries use levels 3, 4, 5.
const DELAY_LEVEL_DIVISOR: u64 = 10;
/// How many ConsumeQueue units a snapshot shows per queue.
const CQ_ENTRIES_SHOWN: u64 = 32;
/// Largest `count` of one `send` action.
const MAX_SEND_COUNT: u32 = 10_000;

/// A scenario's initial world.
struct ScenarioSpec {
    brokers: usize,
    queues: u32,
    producers: usize,
    consumers: Vec<Behaviour>,
    /// POP consumers of [`POP_GROUP`].
    pop_consumers: Vec<Behaviour>,
}

fn scenario_spec(name: &str) -> Option<ScenarioSpec> {
    let spec = match name {
        "basic" => ScenarioSpec {
            brokers: 1,
            queues: 4,
            producers: 1,
            consumers: vec![Behaviour::Ok, Behaviour::Ok],
            pop_consumers: Vec::new(),
        },
        "rebalance" => ScenarioSpec {
            brokers: 1,
            queues: 8,
            producers: 1,
            consumers: vec![Behaviour::Ok, Behaviour::Ok, Behaviour::Ok],
            pop_consumers: Vec::new(),
        },
        "retry-dlq" => ScenarioSpec {
            brokers: 1,
            queues: 4,
            producers: 1,
            consumers: vec![Behaviour::Fail, Behaviour::Ok],
            pop_consumers: Vec::new(),
        },
        "two-brokers" => ScenarioSpec {
            brokers: 2,
            queues: 4,
            producers: 1,
            consumers: vec![Behaviour::Ok, Behaviour::Ok],
            pop_consumers: Vec::new(),
        },
        // A POP group of three sharing the topic's queues; the third never acknowledges, so
        // its messages come back through the group's POP retry topic.
        "pop" => ScenarioSpec {
            brokers: 1,
            queues: 4,
            producers: 1,
            consumers: Vec::new(),
            pop_consumers: vec![Behaviour::Ok, Behaviour::Ok, Behaviour::Fail],
        },
        _ => return None,
    };
    Some(spec)
}

/// A client's state machine.
enum Machine {
    Producer(Box<Producer>),
    Consumer(Box<PushConsumer>),
    Pop(Box<SimpleConsumer>),
}

impl Machine {
    fn sm(&mut self) -> &mut dyn ClientStateMachine {
        match self {
            Machine::Producer(p) => p.as_mut(),
            Machine::Consumer(c) => c.as_mut(),
            Machine::Pop(c) => c.as_mut(),
        }
    }

    fn sm_ref(&self) -> &dyn ClientStateMachine {
        match self {
            Machine::Producer(p) => p.as_ref(),
            Machine::Consumer(c) => c.as_ref(),
            Machine::Pop(c) => c.as_ref(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    Running,
    /// Shut down cleanly; the state machine still finishes what it sent.
    Stopped,
    /// Gone without a word.
    Killed,
}

struct ClientNode {
    kind: NodeKind,
    ip: Ipv4Addr,
    group: Option<String>,
    behaviour: Behaviour,
    /// `None` once killed.
    machine: Option<Machine>,
    state: ClientState,
    started: bool,
    /// Owned queues as last reported in a `rebalanced` event.
    assigned: Vec<MessageQueue>,
    /// Messages this producer has sent (numbers the bodies).
    sent: u64,
}

impl ClientNode {
    fn running(&self) -> bool {
        self.state == ClientState::Running
    }
}

/// What a broker's queues and offsets looked like when it went down.
#[derive(Default)]
struct BrokerCache {
    /// (topic, queue id) → (min offset, max offset).
    queues: BTreeMap<(String, i32), (u64, u64)>,
    /// (group, topic, queue id) → committed offset.
    offsets: BTreeMap<(String, String, i32), i64>,
    written_offset: u64,
    flushed_offset: u64,
    min_offset: u64,
}

struct BrokerNode {
    addr: String,
    config: BrokerConfig,
    /// `None` while down.
    broker: Option<Broker<MemStorage>>,
    /// The disk of a down broker.
    storage: Option<MemStorage>,
    /// Counts restarts, so a sync started before a crash is not reported to the next life.
    incarnation: u64,
    /// Records up to here have been reported as `stored`.
    scanned_offset: u64,
    flushed_offset: u64,
    cache: BrokerCache,
}

enum Payload {
    Command(Bytes),
    /// The connection between the two ends closed (reset, refused, or closed by `from`).
    Closed,
}

struct Frame {
    from: String,
    to: String,
    code: i32,
    is_response: bool,
    opaque: i32,
    sent_ms: u64,
    deliver_ms: u64,
    payload: Payload,
}

/// A world-level timer (the state machines' own timers come from their `poll_timeout`).
enum Timer {
    StartClient(String),
    ProducerTick(String),
    /// A slow listener finishes a batch.
    ConsumeDone {
        consumer: String,
        token: ConsumeToken,
        messages: Vec<MessageExt>,
    },
    /// A disk sync of a broker completes.
    SyncDone {
        broker: String,
        incarnation: u64,
        request: SyncRequest,
    },
    /// A POP consumer finished working on a message.
    PopAck {
        consumer: String,
        key: pop::HeldKey,
    },
    /// A message a POP consumer holds reaches its invisible-until instant.
    PopExpire {
        consumer: String,
        key: pop::HeldKey,
        until_ms: u64,
    },
    /// A POP consumer may receive again (after an empty or failed receive).
    PopWake,
    /// A checkpoint of a broker is synced and written.
    CheckpointDone {
        broker: String,
        incarnation: u64,
        request: CheckpointRequest,
    },
}

struct Link {
    latency_ms: u64,
    last_deliver_ms: u64,
}

/// What a pull in flight asked for, to name the queue its response fills.
struct PendingPull {
    topic: String,
    queue_id: i32,
}

struct GroupState {
    strategy: Strategy,
}

/// The world. See the module documentation.
pub struct Cluster {
    seed: u64,
    scenario: String,
    now_ms: u64,
    rng: SeededRng,
    namesrv: NameServer,
    brokers: BTreeMap<String, BrokerNode>,
    clients: BTreeMap<String, ClientNode>,
    groups: BTreeMap<String, GroupState>,
    /// POP consumer groups.
    pop_groups: BTreeSet<String>,
    /// POP consumer id → what the world keeps for it.
    pop_clients: BTreeMap<String, pop::PopClient>,
    partitioned: BTreeSet<String>,
    links: BTreeMap<(String, String), Link>,
    /// (deliver ms, sequence) → frame.
    in_flight: BTreeMap<(u64, u64), Frame>,
    /// (due ms, sequence) → timer.
    timers: BTreeMap<(u64, u64), Timer>,
    next_seq: u64,
    /// (endpoint, peer) → connection id at the endpoint (a broker or the NameServer).
    conns: BTreeMap<(String, String), ConnId>,
    /// connection id → (endpoint, peer).
    conn_ends: BTreeMap<ConnId, (String, String)>,
    next_conn: u64,
    /// (client, broker, opaque) → the pull it sent.
    pending_pulls: BTreeMap<(String, String, i32), PendingPull>,
    /// Node id → the virtual instant its timer was last run (so a deadline left in the past
    /// cannot spin the clock).
    woken_at: BTreeMap<String, u64>,
    next_client_no: u32,
    next_producer_no: u32,
    next_consumer_no: u32,
    next_pop_consumer_no: u32,
    events: Vec<Event>,
}

fn epoch(t_ms: u64) -> u64 {
    EPOCH_MS + t_ms
}

fn virtual_ms(epoch_ms: u64) -> u64 {
    epoch_ms.saturating_sub(EPOCH_MS)
}

fn encode_frame(command: &RemotingCommand) -> Bytes {
    let mut buf = BytesMut::new();
    encode(command, &mut buf);
    buf.freeze()
}

fn decode_frame(bytes: &Bytes) -> Option<RemotingCommand> {
    let mut buf = BytesMut::from(&bytes[..]);
    FrameDecoder::new(MAX_FRAME_LEN).decode(&mut buf).ok()?
}

/// How many encoded message records a pull response body holds.
fn count_records(body: &[u8]) -> u32 {
    let mut pos = 0usize;
    let mut count = 0u32;
    while let Some(rest) = body.get(pos..) {
        let Ok((total, _)) = peek_header(rest) else {
            break;
        };
        let total = total as usize;
        if total < 8 || total > rest.len() {
            break;
        }
        count += 1;
        pos += total;
    }
    count
}

fn record_msg_id(record: &MessageRecord) -> String {
    match record.properties.get(keys::UNIQ_KEY) {
        Some(id) => id.to_owned(),
        None => crate::message::offset_msg_id(record.store_host, record.physical_offset as u64),
    }
}

fn allocate_strategy(strategy: Strategy) -> AllocateStrategy {
    match strategy {
        Strategy::Averagely => AllocateStrategy::Averagely,
        Strategy::Circle => AllocateStrategy::AveragelyByCircle,
        Strategy::ConsistentHash => AllocateStrategy::ConsistentHash {
            virtual_node_cnt: 10,
        },
    }
}

fn queue_ref(queue: &MessageQueue) -> QueueRef {
    QueueRef {
        broker: queue.broker_name.clone(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
    }
}

fn broker_config(index: usize, seed: u64) -> BrokerConfig {
    let mut config = BrokerConfig {
        broker_name: format!("broker-{}", (b'a' + (index % 26) as u8) as char),
        broker_ip1: IpAddr::V4(Ipv4Addr::new(10, 0, 1, (index % 250) as u8 + 1)),
        listen_port: BROKER_PORT,
        namesrv_addrs: vec![NAMESRV_ADDR.to_owned()],
        default_topic_queue_nums: 4,
        register_broker_interval_ms: 10_000,
        seed,
        ..BrokerConfig::default()
    };
    config.store.commitlog_segment_bytes = COMMITLOG_SEGMENT_BYTES;
    config.store.consume_queue_units_per_segment = 256;
    config.store.max_message_size_bytes = 16 * 1024;
    config.store.index.hash_slot_count = 256;
    config.store.index.max_index_count = 1_024;
    config.store.message_delay_level_ms =
        crate::store::message_store::DEFAULT_MESSAGE_DELAY_LEVEL_MS
            .iter()
            .map(|ms| (ms / DELAY_LEVEL_DIVISOR).max(1))
            .collect();
    config
}

impl Cluster {
    /// A world of the named scenario (see [`SCENARIOS`]) at virtual time 0.
    pub fn new(seed: u64, scenario: &str) -> Result<Cluster, ClusterError> {
        let spec = scenario_spec(scenario)
            .ok_or_else(|| ClusterError::UnknownScenario(scenario.to_owned()))?;
        let mut rng = SeededRng::new(seed);
        let namesrv = NameServer::new(NamesrvConfig {
            broker_channel_expired_ms: 30_000,
            scan_not_active_broker_interval_ms: 5_000,
        });
        let mut cluster = Cluster {
            seed,
            scenario: scenario.to_owned(),
            now_ms: 0,
            rng: rng.fork(),
            namesrv,
            brokers: BTreeMap::new(),
            clients: BTreeMap::new(),
            groups: BTreeMap::new(),
            pop_groups: BTreeSet::new(),
            pop_clients: BTreeMap::new(),
            partitioned: BTreeSet::new(),
            links: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            timers: BTreeMap::new(),
            next_seq: 0,
            conns: BTreeMap::new(),
            conn_ends: BTreeMap::new(),
            // Connection 0 is the operator's, who creates the topic.
            next_conn: 1,
            pending_pulls: BTreeMap::new(),
            woken_at: BTreeMap::new(),
            next_client_no: 0,
            next_producer_no: 0,
            next_consumer_no: 0,
            next_pop_consumer_no: 0,
            events: Vec::new(),
        };
        for index in 0..spec.brokers {
            let config = broker_config(index, rng.next_u64());
            let id = config.broker_name.clone();
            let addr = SocketAddr::new(config.broker_ip1, config.listen_port).to_string();
            let mut broker =
                Broker::new(config.clone(), MemStorage::new(), epoch(0)).map_err(|e| {
                    ClusterError::BrokerOpen {
                        id: id.clone(),
                        reason: e.to_string(),
                    }
                })?;
            // The operator creates the topic before anything starts (mqadmin updateTopic).
            let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
                .with_ext("topic", TOPIC)
                .with_ext("readQueueNums", spec.queues)
                .with_ext("writeQueueNums", spec.queues)
                .with_ext("perm", crate::topic::perm::READ_WRITE)
                .with_ext("topicFilterType", "SINGLE_TAG");
            let create = decode_frame(&encode_frame(&create)).ok_or_else(|| {
                ClusterError::Invalid("the topic creation request does not encode".to_owned())
            })?;
            broker.handle_request(epoch(0), ConnId(0), create);
            cluster.brokers.insert(
                id,
                BrokerNode {
                    addr,
                    config,
                    broker: Some(broker),
                    storage: None,
                    incarnation: 0,
                    scanned_offset: 0,
                    flushed_offset: 0,
                    cache: BrokerCache::default(),
                },
            );
        }
        if !spec.consumers.is_empty() {
            cluster.groups.insert(
                "g1".to_owned(),
                GroupState {
                    strategy: Strategy::Averagely,
                },
            );
        }
        for _ in 0..spec.producers {
            cluster.add_producer();
        }
        for behaviour in spec.consumers {
            cluster.add_consumer("g1", behaviour);
        }
        for behaviour in spec.pop_consumers {
            cluster.add_pop_consumer(POP_GROUP, behaviour);
        }
        cluster.drain_all();
        // The operator's topic creation is not part of the story.
        cluster.events.clear();
        Ok(cluster)
    }

    /// The scenario names.
    pub fn scenarios() -> &'static [&'static str] {
        &SCENARIOS
    }

    /// Virtual milliseconds since the world began.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn scenario(&self) -> &str {
        &self.scenario
    }

    /// Applies a user action at the current virtual time. Its events come out of the next
    /// [`Cluster::step`] or [`Cluster::run_for`].
    pub fn apply(&mut self, action: Action) -> Result<(), ClusterError> {
        match action {
            Action::AddProducer => {
                self.add_producer();
            }
            Action::RemoveProducer { id } => {
                self.client_of_kind(&id, NodeKind::Producer)?;
                self.stop_client(&id);
            }
            Action::AddConsumer { group } => {
                if group.is_empty() || group.len() > 64 || group.contains(['%', ' ']) {
                    return Err(ClusterError::Invalid(format!("bad group name '{group}'")));
                }
                if self.pop_groups.contains(&group) {
                    return Err(ClusterError::Invalid(format!("'{group}' is a POP group")));
                }
                self.groups.entry(group.clone()).or_insert(GroupState {
                    strategy: Strategy::Averagely,
                });
                self.add_consumer(&group, Behaviour::Ok);
            }
            Action::AddPopConsumer { group } => {
                if group.is_empty() || group.len() > 64 || group.contains(['%', ' ', '+']) {
                    return Err(ClusterError::Invalid(format!("bad group name '{group}'")));
                }
                if self.groups.contains_key(&group) {
                    return Err(ClusterError::Invalid(format!(
                        "'{group}' is a push consumer group"
                    )));
                }
                self.add_pop_consumer(&group, Behaviour::Ok);
            }
            Action::PopFailNext { id, count } => {
                self.client_of_kind(&id, NodeKind::PopConsumer)?;
                self.pop_fail_next(&id, count);
            }
            Action::StopConsumer { id } => {
                self.consumer(&id)?;
                self.stop_client(&id);
            }
            Action::KillConsumer { id } => {
                self.consumer(&id)?;
                self.kill_client(&id);
            }
            Action::KillBroker { id } => self.kill_broker(&id)?,
            Action::RestartBroker { id } => self.restart_broker(&id)?,
            Action::Partition { id } => {
                self.node_kind(&id)?;
                if self.partitioned.insert(id.clone()) {
                    self.emit(EventKind::Partitioned { id });
                }
            }
            Action::Heal { id } => {
                self.node_kind(&id)?;
                if self.partitioned.remove(&id) {
                    self.emit(EventKind::Healed { id });
                }
            }
            Action::Send { count, tag } => {
                if count > MAX_SEND_COUNT {
                    return Err(ClusterError::Invalid(format!(
                        "send at most {MAX_SEND_COUNT} messages at once"
                    )));
                }
                let producer = self
                    .clients
                    .iter()
                    .find(|(_, c)| c.kind == NodeKind::Producer && c.running() && c.started)
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| ClusterError::Invalid("no running producer".to_owned()))?;
                for _ in 0..count {
                    self.send_one(&producer, tag.as_deref());
                }
            }
            Action::ConsumerBehaviour { id, behaviour } => {
                self.consumer(&id)?;
                if let Some(c) = self.clients.get_mut(&id) {
                    c.behaviour = behaviour;
                }
                self.emit(EventKind::BehaviourChanged { id, behaviour });
            }
            Action::SetStrategy { group, strategy } => {
                let state = self
                    .groups
                    .get_mut(&group)
                    .ok_or_else(|| ClusterError::UnknownNode(group.clone()))?;
                state.strategy = strategy;
                for client in self.clients.values_mut() {
                    if client.group.as_deref() != Some(group.as_str()) {
                        continue;
                    }
                    if let Some(Machine::Consumer(c)) = &mut client.machine {
                        c.set_allocate_strategy(allocate_strategy(strategy));
                    }
                }
                self.emit(EventKind::StrategyChanged {
                    group: group.clone(),
                    strategy,
                });
                // As in RocketMQ, each consumer applies it at its next rebalance (every
                // 5 s here).
            }
        }
        self.drain_all();
        Ok(())
    }

    /// Advances to the next instant anything happens and runs everything due then.
    pub fn step(&mut self) -> Vec<Event> {
        if let Some(next) = self.next_instant() {
            self.now_ms = self.now_ms.max(next);
            self.run_instant();
        }
        std::mem::take(&mut self.events)
    }

    /// Runs every instant up to `now + ms`, then sets the clock there.
    pub fn run_for(&mut self, ms: u64) -> Vec<Event> {
        let until = self.now_ms.saturating_add(ms);
        while let Some(next) = self.next_instant() {
            if next > until {
                break;
            }
            self.now_ms = self.now_ms.max(next);
            self.run_instant();
        }
        self.now_ms = until;
        std::mem::take(&mut self.events)
    }

    // ---- building the world ----

    fn new_client_ip(&mut self) -> Ipv4Addr {
        let n = self.next_client_no;
        self.next_client_no += 1;
        Ipv4Addr::new(10, 0, 2 + (n / 250) as u8, (n % 250) as u8 + 1)
    }

    fn client_config(&mut self, id: &str, ip: Ipv4Addr) -> ClientConfig {
        ClientConfig {
            namesrv_addrs: vec![NAMESRV_ADDR.to_owned()],
            client_ip: IpAddr::V4(ip),
            instance_name: id.to_owned(),
            unit_name: None,
            poll_namesrv_interval_ms: 5_000,
            heartbeat_broker_interval_ms: 5_000,
            request_timeout_ms: 3_000,
            seed: self.rng.next_u64(),
        }
    }

    fn add_producer(&mut self) -> String {
        self.next_producer_no += 1;
        let id = format!("producer-{}", self.next_producer_no);
        let ip = self.new_client_ip();
        let config = ProducerConfig {
            client: self.client_config(&id, ip),
            producer_group: "playground-producers".to_owned(),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(config, epoch(self.now_ms));
        self.insert_client(
            &id,
            ClientNode {
                kind: NodeKind::Producer,
                ip,
                group: None,
                behaviour: Behaviour::Ok,
                machine: Some(Machine::Producer(Box::new(producer))),
                state: ClientState::Running,
                started: false,
                assigned: Vec::new(),
                sent: 0,
            },
        );
        id
    }

    fn add_consumer(&mut self, group: &str, behaviour: Behaviour) -> String {
        self.next_consumer_no += 1;
        let id = format!("consumer-{}", self.next_consumer_no);
        let ip = self.new_client_ip();
        let strategy = self
            .groups
            .get(group)
            .map_or(Strategy::Averagely, |g| g.strategy);
        let config = PushConsumerConfig {
            client: self.client_config(&id, ip),
            consumer_group: group.to_owned(),
            consume_from_where: ConsumeFromWhere::FirstOffset,
            allocate_strategy: allocate_strategy(strategy),
            pull_batch_size: 8,
            rebalance_interval_ms: 5_000,
            persist_offset_interval_ms: 2_000,
            max_reconsume_times: MAX_RECONSUME_TIMES,
            ..PushConsumerConfig::default()
        };
        let now = epoch(self.now_ms);
        let mut consumer = PushConsumer::new(config, now);
        // The topic name is a constant that always validates; a failure would leave the
        // consumer without a subscription, which the snapshot shows.
        let _ = consumer.subscribe(now, TOPIC, "*");
        self.insert_client(
            &id,
            ClientNode {
                kind: NodeKind::Consumer,
                ip,
                group: Some(group.to_owned()),
                behaviour,
                machine: Some(Machine::Consumer(Box::new(consumer))),
                state: ClientState::Running,
                started: false,
                assigned: Vec::new(),
                sent: 0,
            },
        );
        id
    }

    fn insert_client(&mut self, id: &str, node: ClientNode) {
        self.clients.insert(id.to_owned(), node);
        self.emit(EventKind::NodeUp { id: id.to_owned() });
        let at = self.now_ms.max(CLIENT_START_MS);
        self.add_timer(at, Timer::StartClient(id.to_owned()));
    }

    fn start_client(&mut self, id: &str) {
        let now = epoch(self.now_ms);
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        if client.started || !client.running() {
            return;
        }
        client.started = true;
        let producer = match &mut client.machine {
            Some(Machine::Consumer(c)) => {
                c.start(now);
                false
            }
            Some(Machine::Pop(c)) => {
                c.start(now);
                false
            }
            Some(Machine::Producer(_)) => true,
            None => false,
        };
        if producer {
            let at = self.now_ms + SEND_INTERVAL_MS;
            self.add_timer(at, Timer::ProducerTick(id.to_owned()));
        }
    }

    fn send_one(&mut self, id: &str, tag: Option<&str>) {
        let now = epoch(self.now_ms);
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        let n = client.sent;
        client.sent += 1;
        let Some(Machine::Producer(producer)) = &mut client.machine else {
            return;
        };
        let mut message =
            Message::new(TOPIC, format!("Hello #{n} from {id}")).with_keys(&format!("{id}-{n}"));
        if let Some(tag) = tag {
            message = message.with_tags(tag);
        }
        producer.send(now, message, SendMode::Async);
    }

    fn client_of_kind(&self, id: &str, kind: NodeKind) -> Result<&ClientNode, ClusterError> {
        let client = self
            .clients
            .get(id)
            .ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
        if client.kind != kind {
            return Err(ClusterError::WrongKind {
                id: id.to_owned(),
                expected: match kind {
                    NodeKind::Producer => "producer",
                    NodeKind::Consumer => "consumer",
                    NodeKind::PopConsumer => "POP consumer",
                    NodeKind::Broker => "broker",
                    NodeKind::Namesrv => "name server",
                },
            });
        }
        Ok(client)
    }

    /// A push or POP consumer.
    fn consumer(&self, id: &str) -> Result<&ClientNode, ClusterError> {
        match self.clients.get(id) {
            Some(c) if c.kind == NodeKind::PopConsumer => Ok(c),
            _ => self.client_of_kind(id, NodeKind::Consumer),
        }
    }

    fn node_kind(&self, id: &str) -> Result<NodeKind, ClusterError> {
        if id == NAMESRV_ID {
            Ok(NodeKind::Namesrv)
        } else if self.brokers.contains_key(id) {
            Ok(NodeKind::Broker)
        } else if let Some(c) = self.clients.get(id) {
            Ok(c.kind)
        } else {
            Err(ClusterError::UnknownNode(id.to_owned()))
        }
    }

    fn stop_client(&mut self, id: &str) {
        let now = epoch(self.now_ms);
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        if !client.running() {
            return;
        }
        client.state = ClientState::Stopped;
        if let Some(machine) = &mut client.machine {
            machine.sm().shutdown(now);
        }
        self.emit(EventKind::NodeDown { id: id.to_owned() });
        self.clear_assignment(id);
    }

    fn kill_client(&mut self, id: &str) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        if client.state == ClientState::Killed {
            return;
        }
        client.state = ClientState::Killed;
        client.machine = None;
        self.emit(EventKind::NodeDown { id: id.to_owned() });
        self.clear_assignment(id);
    }

    /// A consumer that stopped owns nothing any more.
    fn clear_assignment(&mut self, id: &str) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        if client.kind != NodeKind::Consumer || client.assigned.is_empty() {
            return;
        }
        client.assigned.clear();
        let group = client.group.clone().unwrap_or_default();
        self.emit(EventKind::Rebalanced {
            group,
            consumer: id.to_owned(),
            queues: Vec::new(),
        });
    }

    fn kill_broker(&mut self, id: &str) -> Result<(), ClusterError> {
        let cache = self.broker_cache(id);
        let node = self
            .brokers
            .get_mut(id)
            .ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
        let Some(broker) = node.broker.take() else {
            return Err(ClusterError::Invalid(format!("{id} is already down")));
        };
        let mut storage = broker.store().storage().clone();
        storage.power_loss(PowerLoss::DropUnsynced, &mut self.rng);
        node.storage = Some(storage);
        node.incarnation += 1;
        if let Some(cache) = cache {
            node.cache = cache;
        }
        self.emit(EventKind::NodeDown { id: id.to_owned() });
        // Its connections reset: every peer hears of it after the link's latency.
        let peers: Vec<(String, String)> = self
            .conns
            .keys()
            .filter(|(endpoint, peer)| endpoint == id || peer == id)
            .cloned()
            .collect();
        for (endpoint, peer) in peers {
            if let Some(conn) = self.conns.remove(&(endpoint.clone(), peer.clone())) {
                self.conn_ends.remove(&conn);
            }
            let other = if endpoint == id { peer } else { endpoint };
            self.put_closed(id, &other);
        }
        self.pending_pulls.retain(|(_, broker, _), _| broker != id);
        Ok(())
    }

    fn restart_broker(&mut self, id: &str) -> Result<(), ClusterError> {
        let now = epoch(self.now_ms);
        let node = self
            .brokers
            .get_mut(id)
            .ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
        if node.broker.is_some() {
            return Err(ClusterError::Invalid(format!("{id} is already up")));
        }
        let storage = node.storage.clone().unwrap_or_default();
        let broker = Broker::new(node.config.clone(), storage, now).map_err(|e| {
            ClusterError::BrokerOpen {
                id: id.to_owned(),
                reason: e.to_string(),
            }
        })?;
        node.scanned_offset = broker.store().written_offset().0;
        node.flushed_offset = broker.store().durable_offset().0;
        node.broker = Some(broker);
        node.storage = None;
        self.woken_at.remove(id);
        self.emit(EventKind::NodeUp { id: id.to_owned() });
        Ok(())
    }

    /// A down broker's last known queues and offsets, `None` for an unknown or down broker.
    fn broker_cache(&self, id: &str) -> Option<BrokerCache> {
        let broker = self.brokers.get(id)?.broker.as_ref()?;
        let store = broker.store();
        let mut cache = BrokerCache {
            written_offset: store.written_offset().0,
            flushed_offset: store.durable_offset().0,
            min_offset: store.min_commitlog_offset().0,
            ..BrokerCache::default()
        };
        for (topic, config) in broker.topics() {
            if !shown_topic(topic) {
                continue;
            }
            for queue_id in 0..config.read_queue_nums.max(config.write_queue_nums) as i32 {
                let min = store.min_offset(topic, queue_id).0;
                let max = store.max_offset(topic, queue_id).0;
                cache.queues.insert((topic.clone(), queue_id), (min, max));
                for group in self.groups.keys().chain(self.pop_groups.iter()) {
                    if let Some(offset) = broker.consumer_offset(topic, group, queue_id) {
                        cache
                            .offsets
                            .insert((group.clone(), topic.clone(), queue_id), offset);
                    }
                }
            }
        }
        Some(cache)
    }

    // ---- the bus ----

    fn emit(&mut self, kind: EventKind) {
        self.events.push(Event {
            t_ms: self.now_ms,
            kind,
        });
    }

    fn add_timer(&mut self, at_ms: u64, timer: Timer) {
        self.next_seq += 1;
        self.timers.insert((at_ms, self.next_seq), timer);
    }

    /// When a frame from `from` to `to` sent now arrives: the link's latency plus jitter, never
    /// before an earlier frame of the same direction.
    fn deliver_at(&mut self, from: &str, to: &str) -> u64 {
        let key = (from.to_owned(), to.to_owned());
        if !self.links.contains_key(&key) {
            let latency_ms = 1 + self.rng.below(4);
            self.links.insert(
                key.clone(),
                Link {
                    latency_ms,
                    last_deliver_ms: 0,
                },
            );
        }
        let jitter = self.rng.below(2);
        let now = self.now_ms;
        let Some(link) = self.links.get_mut(&key) else {
            return now + 1;
        };
        let at = (now + link.latency_ms + jitter).max(link.last_deliver_ms);
        link.last_deliver_ms = at;
        at
    }

    fn put_command(&mut self, from: &str, to: &str, command: &RemotingCommand) {
        if self.partitioned.contains(from) {
            self.emit(EventKind::Dropped {
                from: from.to_owned(),
                to: to.to_owned(),
                code: command.code,
            });
            return;
        }
        let bytes = encode_frame(command);
        let deliver_ms = self.deliver_at(from, to);
        self.emit(EventKind::Message {
            from: from.to_owned(),
            to: to.to_owned(),
            code: command.code,
            is_response: command.is_response(),
            opaque: command.opaque,
            bytes: bytes.len() as u64,
            deliver_ms,
        });
        self.next_seq += 1;
        self.in_flight.insert(
            (deliver_ms, self.next_seq),
            Frame {
                from: from.to_owned(),
                to: to.to_owned(),
                code: command.code,
                is_response: command.is_response(),
                opaque: command.opaque,
                sent_ms: self.now_ms,
                deliver_ms,
                payload: Payload::Command(bytes),
            },
        );
    }

    /// Tells `to` (after the link's latency) that its connection with `from` closed.
    fn put_closed(&mut self, from: &str, to: &str) {
        let deliver_ms = self.deliver_at(from, to);
        self.next_seq += 1;
        self.in_flight.insert(
            (deliver_ms, self.next_seq),
            Frame {
                from: from.to_owned(),
                to: to.to_owned(),
                code: -1,
                is_response: false,
                opaque: 0,
                sent_ms: self.now_ms,
                deliver_ms,
                payload: Payload::Closed,
            },
        );
    }

    /// The connection id `endpoint` (a broker or the NameServer) knows `peer` by, opened on
    /// first use.
    fn conn(&mut self, endpoint: &str, peer: &str) -> ConnId {
        let key = (endpoint.to_owned(), peer.to_owned());
        if let Some(conn) = self.conns.get(&key) {
            return *conn;
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(key.clone(), conn);
        self.conn_ends.insert(conn, key);
        let peer_addr = self.socket_addr(peer);
        let now = epoch(self.now_ms);
        if let Some(broker) = self
            .brokers
            .get_mut(endpoint)
            .and_then(|b| b.broker.as_mut())
        {
            broker.handle_connected(now, conn, peer_addr);
        }
        conn
    }

    /// The address a node's connections come from.
    fn socket_addr(&self, id: &str) -> SocketAddr {
        if let Some(client) = self.clients.get(id) {
            SocketAddr::new(IpAddr::V4(client.ip), CLIENT_PORT)
        } else if let Some(broker) = self.brokers.get(id) {
            SocketAddr::new(broker.config.broker_ip1, broker.config.listen_port)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 9876)
        }
    }

    /// The address clients know a node by.
    fn addr_of(&self, id: &str) -> String {
        if id == NAMESRV_ID {
            NAMESRV_ADDR.to_owned()
        } else if let Some(broker) = self.brokers.get(id) {
            broker.addr.clone()
        } else {
            id.to_owned()
        }
    }

    fn node_at(&self, addr: &str) -> Option<String> {
        if addr == NAMESRV_ADDR {
            return Some(NAMESRV_ID.to_owned());
        }
        self.brokers
            .iter()
            .find(|(_, b)| b.addr == addr)
            .map(|(id, _)| id.clone())
    }

    fn deliver(&mut self, frame: Frame) {
        if self.partitioned.contains(&frame.from) || self.partitioned.contains(&frame.to) {
            self.emit(EventKind::Dropped {
                from: frame.from,
                to: frame.to,
                code: frame.code,
            });
            return;
        }
        let now = epoch(self.now_ms);
        let command = match frame.payload {
            Payload::Closed => {
                self.deliver_closed(&frame.from, &frame.to);
                return;
            }
            Payload::Command(bytes) => match decode_frame(&bytes) {
                Some(command) => command,
                None => return,
            },
        };
        let to = frame.to;
        let from = frame.from;
        if to == NAMESRV_ID {
            let conn = self.conn(NAMESRV_ID, &from);
            self.namesrv.handle_request(now, conn, command);
        } else if self.brokers.contains_key(&to) {
            let up = self.brokers.get(&to).is_some_and(|b| b.broker.is_some());
            if !up {
                // Connection refused: a client learns at once that nobody listens there.
                if self.clients.contains_key(&from) {
                    self.put_closed(&to, &from);
                }
                return;
            }
            if from == NAMESRV_ID {
                if let Some(broker) = self.brokers.get_mut(&to).and_then(|b| b.broker.as_mut()) {
                    broker.handle_namesrv_response(now, NAMESRV_ADDR, command);
                }
                return;
            }
            if !command.is_response() && command.code == request::UPDATE_CONSUMER_OFFSET {
                self.note_commit(&to, &command);
            }
            let conn = self.conn(&to, &from);
            if let Some(broker) = self.brokers.get_mut(&to).and_then(|b| b.broker.as_mut()) {
                broker.handle_request(now, conn, command);
            }
        } else {
            let addr = self.addr_of(&from);
            if command.is_response() && self.brokers.contains_key(&from) {
                self.note_pull_response(&to, &from, &command);
            }
            let Some(machine) = self.clients.get_mut(&to).and_then(|c| c.machine.as_mut()) else {
                return;
            };
            if command.is_response() {
                machine.sm().handle_response(now, &addr, command);
            } else {
                machine.sm().handle_request(now, &addr, command);
            }
        }
    }

    fn deliver_closed(&mut self, from: &str, to: &str) {
        let now = epoch(self.now_ms);
        if let Some(conn) = self.conns.remove(&(to.to_owned(), from.to_owned())) {
            self.conn_ends.remove(&conn);
            if to == NAMESRV_ID {
                self.namesrv.handle_disconnected(now, conn);
            } else if let Some(broker) = self.brokers.get_mut(to).and_then(|b| b.broker.as_mut()) {
                broker.handle_disconnected(now, conn);
            }
            return;
        }
        let addr = self.addr_of(from);
        if let Some(machine) = self.clients.get_mut(to).and_then(|c| c.machine.as_mut()) {
            machine.sm().handle_connection_closed(now, &addr);
        }
    }

    fn note_commit(&mut self, broker: &str, command: &RemotingCommand) {
        let (Some(group), Some(topic), Some(queue_id), Some(offset)) = (
            command.ext("consumerGroup"),
            command.ext("topic"),
            command.ext("queueId").and_then(|q| q.parse::<i32>().ok()),
            command
                .ext("commitOffset")
                .and_then(|o| o.parse::<i64>().ok()),
        ) else {
            return;
        };
        let kind = EventKind::Committed {
            group: group.to_owned(),
            broker: broker.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            offset,
        };
        self.emit(kind);
    }

    fn note_pull_response(&mut self, client: &str, broker: &str, command: &RemotingCommand) {
        let Some(pull) =
            self.pending_pulls
                .remove(&(client.to_owned(), broker.to_owned(), command.opaque))
        else {
            return;
        };
        if command.code != response::SUCCESS {
            return;
        }
        let count = count_records(&command.body);
        if count > 0 {
            self.emit(EventKind::Pulled {
                consumer: client.to_owned(),
                broker: broker.to_owned(),
                topic: pull.topic,
                queue_id: pull.queue_id,
                count,
            });
        }
    }

    // ---- draining the state machines ----

    /// Drains every state machine's outputs until all are quiet, then reports what changed in
    /// the stores and the consumers' assignments.
    fn drain_all(&mut self) {
        loop {
            let mut progress = false;
            let broker_ids: Vec<String> = self.brokers.keys().cloned().collect();
            for id in &broker_ids {
                progress |= self.drain_broker(id);
            }
            progress |= self.drain_namesrv();
            let client_ids: Vec<String> = self.clients.keys().cloned().collect();
            for id in &client_ids {
                progress |= self.drain_client(id);
            }
            for id in self.pop_client_ids() {
                progress |= self.pump_pop(&id);
            }
            if !progress {
                break;
            }
        }
        self.observe_brokers();
        self.observe_assignments();
    }

    fn drain_broker(&mut self, id: &str) -> bool {
        let mut progress = false;
        loop {
            let Some(output) = self
                .brokers
                .get_mut(id)
                .and_then(|b| b.broker.as_mut())
                .and_then(|b| b.poll_output())
            else {
                return progress;
            };
            progress = true;
            match output {
                BrokerOutput::Send { conn, command } => {
                    if let Some((_, peer)) = self.conn_ends.get(&conn).cloned() {
                        self.put_command(id, &peer, &command);
                    }
                }
                BrokerOutput::SendToNamesrv { command, .. } => {
                    self.put_command(id, NAMESRV_ID, &command);
                }
                // The playground has no gRPC clients.
                BrokerOutput::Grpc(_) => {}
                BrokerOutput::Sync(request) => {
                    let incarnation = self.brokers.get(id).map_or(0, |b| b.incarnation);
                    self.add_timer(
                        self.now_ms + DISK_SYNC_MS,
                        Timer::SyncDone {
                            broker: id.to_owned(),
                            incarnation,
                            request,
                        },
                    );
                }
                BrokerOutput::Checkpoint(request) => {
                    // The checkpoint's own stream: it never waits behind a sync.
                    let incarnation = self.brokers.get(id).map_or(0, |b| b.incarnation);
                    self.add_timer(
                        self.now_ms + DISK_SYNC_MS,
                        Timer::CheckpointDone {
                            broker: id.to_owned(),
                            incarnation,
                            request,
                        },
                    );
                }
                // Every broker of a cluster here is a master with no slave connected: no HA
                // link exists, so there is nothing to carry (replicated groups are not modelled
                // in the playground yet).
                BrokerOutput::Ha(_) => {}
                BrokerOutput::WriteAclFile { answer, .. } => {
                    // The playground keeps no ACL files: the change lives in memory only.
                    if let Some(answer) = answer {
                        if let Some((_, peer)) = self.conn_ends.get(&answer.conn).cloned() {
                            self.put_command(id, &peer, &answer.success);
                        }
                    }
                }
                BrokerOutput::Close { conn } => {
                    if let Some((_, peer)) = self.conn_ends.remove(&conn) {
                        self.conns.remove(&(id.to_owned(), peer.clone()));
                        let now = epoch(self.now_ms);
                        if let Some(b) = self.brokers.get_mut(id).and_then(|b| b.broker.as_mut()) {
                            b.handle_disconnected(now, conn);
                        }
                        self.put_closed(id, &peer);
                    }
                }
            }
        }
    }

    fn drain_namesrv(&mut self) -> bool {
        let mut progress = false;
        while let Some(output) = self.namesrv.poll_output() {
            progress = true;
            match output {
                NamesrvOutput::Send { conn, command } => {
                    if let Some((_, peer)) = self.conn_ends.get(&conn).cloned() {
                        self.put_command(NAMESRV_ID, &peer, &command);
                    }
                }
                NamesrvOutput::Close { conn } => {
                    if let Some((_, peer)) = self.conn_ends.remove(&conn) {
                        self.conns.remove(&(NAMESRV_ID.to_owned(), peer.clone()));
                        let now = epoch(self.now_ms);
                        self.namesrv.handle_disconnected(now, conn);
                        self.put_closed(NAMESRV_ID, &peer);
                    }
                }
            }
        }
        progress
    }

    fn drain_client(&mut self, id: &str) -> bool {
        let mut progress = false;
        loop {
            let Some(output) = self
                .clients
                .get_mut(id)
                .and_then(|c| c.machine.as_mut())
                .and_then(|m| m.sm().poll_output())
            else {
                return progress;
            };
            progress = true;
            match output {
                ClientOutput::Send { addr, command } => match self.node_at(&addr) {
                    Some(to) => {
                        if command.code == request::PULL_MESSAGE && !command.is_response() {
                            if let (Some(topic), Some(queue_id)) = (
                                command.ext("topic"),
                                command.ext("queueId").and_then(|q| q.parse::<i32>().ok()),
                            ) {
                                self.pending_pulls.insert(
                                    (id.to_owned(), to.clone(), command.opaque),
                                    PendingPull {
                                        topic: topic.to_owned(),
                                        queue_id,
                                    },
                                );
                            }
                        }
                        self.put_command(id, &to, &command);
                    }
                    None => {
                        // Nobody has that address: the connection is refused.
                        let now = epoch(self.now_ms);
                        if let Some(machine) =
                            self.clients.get_mut(id).and_then(|c| c.machine.as_mut())
                        {
                            machine.sm().handle_connection_closed(now, &addr);
                        }
                    }
                },
                ClientOutput::SendDone { result, .. } => match result {
                    Ok(result) => self.emit(EventKind::Sent {
                        producer: id.to_owned(),
                        broker: result.queue.broker_name.clone(),
                        topic: result.queue.topic.clone(),
                        queue_id: result.queue.queue_id,
                        queue_offset: result.queue_offset,
                        msg_id: result.msg_id,
                    }),
                    Err(error) => self.emit(EventKind::SendFailed {
                        producer: id.to_owned(),
                        error: error.to_string(),
                    }),
                },
                ClientOutput::Consume {
                    token, messages, ..
                } => self.consume(id, token, messages),
                ClientOutput::SimpleDone { id: call, result } => self.pop_done(id, call, result),
                // The playground's producers send no transactional messages.
                ClientOutput::MessagesAvailable
                | ClientOutput::PersistLocalOffsets { .. }
                | ClientOutput::TransactionCheck { .. } => {}
            }
        }
    }

    /// The scripted listener.
    fn consume(&mut self, id: &str, token: ConsumeToken, messages: Vec<MessageExt>) {
        let Some(client) = self.clients.get(id) else {
            return;
        };
        match client.behaviour {
            Behaviour::Ok => {
                self.finish_consume(id, token, messages, ConsumeStatus::ConsumeSuccess)
            }
            Behaviour::Fail => {
                self.finish_consume(id, token, messages, ConsumeStatus::ReconsumeLater)
            }
            Behaviour::Slow => {
                let at = self.now_ms + SLOW_CONSUME_MS;
                self.add_timer(
                    at,
                    Timer::ConsumeDone {
                        consumer: id.to_owned(),
                        token,
                        messages,
                    },
                );
            }
        }
    }

    fn finish_consume(
        &mut self,
        id: &str,
        token: ConsumeToken,
        messages: Vec<MessageExt>,
        status: ConsumeStatus,
    ) {
        let now = epoch(self.now_ms);
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        let group = client.group.clone().unwrap_or_default();
        let Some(Machine::Consumer(consumer)) = &mut client.machine else {
            return;
        };
        consumer.handle_consume_result(now, token, status);
        let ok = status == ConsumeStatus::ConsumeSuccess;
        for message in messages {
            self.emit(EventKind::Consumed {
                consumer: id.to_owned(),
                topic: message.queue.topic.clone(),
                queue_id: message.queue.queue_id,
                queue_offset: message.queue_offset(),
                msg_id: message.msg_id(),
                status: if ok { "ok" } else { "retry" }.to_owned(),
                reconsume_times: message.reconsume_times(),
            });
            if !ok {
                self.emit(EventKind::Retry {
                    group: group.clone(),
                    msg_id: message.msg_id(),
                    reconsume_times: message.reconsume_times() + 1,
                });
            }
        }
    }

    /// `stored` for every new CommitLog record, `flushed` when the durable offset moved.
    fn observe_brokers(&mut self) {
        let ids: Vec<String> = self.brokers.keys().cloned().collect();
        for id in ids {
            let found;
            let mut flushed = None;
            {
                let Some(node) = self.brokers.get_mut(&id) else {
                    continue;
                };
                let Some(broker) = node.broker.as_ref() else {
                    continue;
                };
                let store = broker.store();
                let written = store.written_offset().0;
                let records = read_records(broker, node.scanned_offset, written, usize::MAX);
                node.scanned_offset = records.next_offset.max(node.scanned_offset);
                found = records.records;
                let durable = store.durable_offset().0;
                if durable != node.flushed_offset {
                    node.flushed_offset = durable;
                    flushed = Some(durable);
                }
            }
            for (offset, size, record) in found {
                let msg_id = record_msg_id(&record);
                if let Some(group) = record.topic.strip_prefix(DLQ_GROUP_TOPIC_PREFIX) {
                    self.emit(EventKind::Dlq {
                        group: group.to_owned(),
                        msg_id: msg_id.clone(),
                    });
                }
                if let Some(group) = self.pop_group_of_retry_topic(&record.topic) {
                    self.emit(EventKind::PopRevived {
                        group,
                        broker: id.clone(),
                        topic: record.topic.clone(),
                        queue_id: record.queue_id,
                        queue_offset: record.queue_offset,
                        msg_id: msg_id.clone(),
                        reconsume_times: record.reconsume_times,
                    });
                }
                self.emit(EventKind::Stored {
                    broker: id.clone(),
                    commitlog_offset: offset,
                    size,
                    topic: record.topic,
                    queue_id: record.queue_id,
                    queue_offset: record.queue_offset,
                    msg_id,
                });
            }
            if let Some(flushed_offset) = flushed {
                self.emit(EventKind::Flushed {
                    broker: id.clone(),
                    flushed_offset,
                });
            }
        }
    }

    fn observe_assignments(&mut self) {
        let mut changes = Vec::new();
        for (id, client) in &mut self.clients {
            if !client.running() || !client.started {
                continue;
            }
            let Some(Machine::Consumer(consumer)) = &client.machine else {
                continue;
            };
            let queues = consumer.assigned_queues();
            if queues != client.assigned {
                client.assigned = queues.clone();
                changes.push(EventKind::Rebalanced {
                    group: client.group.clone().unwrap_or_default(),
                    consumer: id.clone(),
                    queues: queues.iter().map(queue_ref).collect(),
                });
            }
        }
        for change in changes {
            self.emit(change);
        }
    }

    // ---- time ----

    /// A node's next wake-up in virtual ms; one that already ran at `now` and still asks for
    /// `now` (a deadline left in the past) waits a millisecond.
    fn node_deadline(&self, id: &str, deadline_epoch_ms: Option<u64>) -> Option<u64> {
        let t = virtual_ms(deadline_epoch_ms?).max(self.now_ms);
        if t == self.now_ms && self.woken_at.get(id) == Some(&self.now_ms) {
            Some(t + 1)
        } else {
            Some(t)
        }
    }

    fn node_deadlines(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        if let Some(t) = self.node_deadline(NAMESRV_ID, self.namesrv.poll_timeout()) {
            out.push((NAMESRV_ID.to_owned(), t));
        }
        for (id, node) in &self.brokers {
            if let Some(broker) = &node.broker {
                if let Some(t) = self.node_deadline(id, broker.poll_timeout()) {
                    out.push((id.clone(), t));
                }
            }
        }
        for (id, client) in &self.clients {
            if !client.started {
                continue;
            }
            if let Some(machine) = &client.machine {
                if let Some(t) = self.node_deadline(id, machine.sm_ref().poll_timeout()) {
                    out.push((id.clone(), t));
                }
            }
        }
        out
    }

    /// The next instant anything is due, `None` when the world is idle forever.
    fn next_instant(&self) -> Option<u64> {
        let frames = self.in_flight.keys().next().map(|(t, _)| *t);
        let timers = self.timers.keys().next().map(|(t, _)| *t);
        let nodes = self.node_deadlines().into_iter().map(|(_, t)| t).min();
        [frames, timers, nodes]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.max(self.now_ms))
    }

    /// Runs everything due at `now`: frames, then world timers, then the state machines' timers.
    fn run_instant(&mut self) {
        let now = self.now_ms;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let frame = entry.remove();
            self.deliver(frame);
            self.drain_all();
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.run_timer(timer);
            self.drain_all();
        }
        for (id, t) in self.node_deadlines() {
            if t > now {
                continue;
            }
            self.woken_at.insert(id.clone(), now);
            let now_epoch = epoch(now);
            if id == NAMESRV_ID {
                self.namesrv.handle_timeout(now_epoch);
            } else if let Some(broker) = self.brokers.get_mut(&id).and_then(|b| b.broker.as_mut()) {
                broker.handle_timeout(now_epoch);
            } else if let Some(machine) = self.clients.get_mut(&id).and_then(|c| c.machine.as_mut())
            {
                machine.sm().handle_timeout(now_epoch);
            }
        }
        self.drain_all();
    }

    fn run_timer(&mut self, timer: Timer) {
        match timer {
            Timer::StartClient(id) => self.start_client(&id),
            Timer::ProducerTick(id) => {
                let running = self
                    .clients
                    .get(&id)
                    .is_some_and(|c| c.running() && c.machine.is_some());
                if running {
                    self.send_one(&id, Some("TagA"));
                    let at = self.now_ms + SEND_INTERVAL_MS;
                    self.add_timer(at, Timer::ProducerTick(id));
                }
            }
            Timer::ConsumeDone {
                consumer,
                token,
                messages,
            } => self.finish_consume(&consumer, token, messages, ConsumeStatus::ConsumeSuccess),
            Timer::PopAck { consumer, key } => self.pop_ack(&consumer, key),
            Timer::PopExpire {
                consumer,
                key,
                until_ms,
            } => self.pop_expire(&consumer, key, until_ms),
            // Nothing to do: the drain after every timer lets the consumer receive again.
            Timer::PopWake => {}
            Timer::SyncDone {
                broker,
                incarnation,
                request,
            } => {
                let now = epoch(self.now_ms);
                if let Some(b) = self.live_broker_mut(&broker, incarnation) {
                    b.sync_inline(now, &request);
                }
            }
            Timer::CheckpointDone {
                broker,
                incarnation,
                request,
            } => {
                let now = epoch(self.now_ms);
                if let Some(b) = self.live_broker_mut(&broker, incarnation) {
                    b.write_checkpoint_inline(now, &request);
                }
            }
        }
    }

    /// A broker's state machine, if it still runs the incarnation a timer was set by (a disk
    /// operation of a killed broker completes into nothing).
    fn live_broker_mut(&mut self, name: &str, incarnation: u64) -> Option<&mut Broker<MemStorage>> {
        let node = self.brokers.get_mut(name)?;
        if node.incarnation != incarnation {
            return None;
        }
        node.broker.as_mut()
    }
}
