//! The Broker state machine.
//!
//! Calling discipline (the same for every state machine in the core):
//! 1. feed it: `handle_connected`, `handle_request`, `handle_disconnected`, `handle_synced`,
//!    `handle_timeout`, each with the current `now_ms` (never going backwards);
//! 2. drain [`Broker::poll_output`] until it returns `None`, doing what each output says;
//! 3. sleep until [`Broker::poll_timeout`] or the next input, whichever comes first.

//!
//! Request handling is split by concern:
//!
//! * [`send`] — SEND_MESSAGE / V2 / BATCH, validation, auto-creation, group commit;
//! * [`pull`] — PULL_MESSAGE / LITE_PULL_MESSAGE and long polling;
//! * [`offsets`] — consumer offsets and offset queries;
//! * [`clients`] — heartbeats, consumer lists, expiry and change notifications;
//! * [`locks`] — orderly-consumer queue locks;
//! * [`topics`] — the topic table, its persistence and admin topic requests;
//! * [`query`] — QUERY_MESSAGE by key and VIEW_MESSAGE_BY_ID;
//! * [`send_back`] — CONSUMER_SEND_MSG_BACK into `%RETRY%<group>` / `%DLQ%<group>`;
//! * [`groups`] — subscription groups (`config/subscriptionGroup.json`) and their admin requests;
//! * [`schedule`] — delay levels (`SCHEDULE_TOPIC_XXXX`) and their delivery;
//! * [`timer`] — timer messages at any time (`rmq_sys_wheel_timer`, the timer log and wheel);
//! * [`transaction`] — half messages, END_TRANSACTION and check-back;
//! * [`reply`] — request–reply: SEND_REPLY_MESSAGE pushed to the requester;
//! * [`fence`] — after a crash, positions beyond what recovery kept of a queue are sent back to
//!   its recovered end;
//! * [`listener`] — the VIP port (`listenPort − 2`), which serves everything but long polling;
//! * [`pop`] — POP consumption: POP/ACK/CHANGE_MESSAGE_INVISIBLETIME, the revive log and
//!   redelivery, orderly POP, request modes and assignments.
//!
//! Persisted state (through the store's [`SegmentStorage`]): `config/topics.json` on every
//! change, `config/consumerOffsets.json` every [`OFFSET_PERSIST_INTERVAL_MS`] when changed and
//! at shutdown, `config/delayOffset.json` (see [`schedule`]), `config/timercheck`, `timerlog/`,
//! `timerwheel` (see [`timer`]) and `config/transactionOffset.json` (see [`transaction`]).

pub mod acl;
mod admin;
mod clients;
mod fence;
pub use fence::RECOVERY_FENCE_PATH;
mod filter;
pub mod flush;
mod groups;
pub mod grpc;
mod ids;
pub mod listener;
mod locks;
pub mod metrics;
mod offsets;
pub mod pop;
mod pull;
mod query;
mod relay;
pub mod replication;
pub mod reply;
mod reset_offset;
mod retention;
pub mod schedule;
mod send;
mod send_back;
pub mod stats;
pub mod timer;
mod topics;
pub mod transaction;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use crate::namesrv::register::{
    register_broker_request, unregister_broker_request, BrokerIdentity,
};
use crate::remoting::codes::{request, response};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::rng::SeededRng;
use crate::store::{
    CommitLogOffset, MessageStore, SegmentStorage, StoreConfig, StoreError, SyncRequest,
};
use crate::ConnId;

pub use groups::SubscriptionGroupConfig;
pub use listener::Listener;
pub use locks::MessageQueue;
pub use replication::{BrokerRole, HaOutput, ReplicationConfig};

/// How often changed consumer offsets are written (`flushConsumerOffsetInterval`).
pub const OFFSET_PERSIST_INTERVAL_MS: u64 = 5_000;

/// The RAM RocketMQ assumes when the OS does not tell (`StoreUtil.TOTAL_PHYSICAL_MEMORY_SIZE`).
pub const DEFAULT_TOTAL_PHYSICAL_MEMORY_BYTES: u64 = 24 << 30;

/// RocketMQ's `flushDiskType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Answer sends once written; make them durable every `flush_interval_commitlog_ms`.
    #[default]
    AsyncFlush,
    /// Answer a send (with `WAIT=true`) only once it is durable; one sync covers every waiting
    /// send (group commit).
    SyncFlush,
}

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub broker_cluster_name: String,
    pub broker_name: String,
    pub broker_id: u64,
    /// The advertised address (`brokerIP1`): what clients are told to connect to and what goes in
    /// STOREHOST and message ids. Never guessed from the host's interfaces.
    pub broker_ip1: std::net::IpAddr,
    pub listen_port: u16,
    /// NameServers to register with (`namesrvAddr`, `;`-separated in broker.conf).
    pub namesrv_addrs: Vec<String>,
    pub flush_disk_type: FlushDiskType,
    /// ASYNC_FLUSH tick (`flushIntervalCommitLog`); see [`flush`].
    pub flush_interval_commitlog_ms: u64,
    /// `flushCommitLogLeastPages`: 4 KiB pages a tick needs before flushing.
    pub flush_commitlog_least_pages: u64,
    /// `flushCommitLogThoroughInterval`: a tick this long after the last thorough one flushes
    /// anything.
    pub flush_commitlog_thorough_interval_ms: u64,
    /// `flushCommitLogTimed`: only ticks flush (true) or a put reaching the least pages flushes
    /// at once (false).
    pub flush_commitlog_timed: bool,
    /// `flushIntervalConsumeQueue`: how often a checkpoint is taken (ConsumeQueues synced, the
    /// checkpoint file written) when anything changed.
    pub checkpoint_interval_ms: u64,
    pub auto_create_topic_enable: bool,
    pub auto_create_subscription_group: bool,
    /// Queues of an auto-created or default-created topic (`defaultTopicQueueNums`).
    pub default_topic_queue_nums: u32,
    pub register_broker_interval_ms: u64,
    /// Longest a pull may be held (`longPollingEnable`; the client's `suspendTimeoutMillis` is
    /// honoured up to this).
    pub long_polling_enable: bool,
    /// `enablePropertyFilter`: whether SQL92 subscriptions are served (RocketMQ's default: no).
    pub enable_property_filter: bool,
    /// The longest a pull is held whatever its `suspendTimeoutMillis` asks (clients ask 15–20 s
    /// and time out at 30 s), so a bad request cannot park a pull forever.
    pub long_polling_max_hold_ms: u64,
    /// `accessMessageInMemoryMaxRatio`: the share (percent) of [`Self::total_physical_memory_bytes`]
    /// nearest the CommitLog's end that counts as "in memory". A new group's offset query
    /// answers 0 only while message 0 of the queue lies within it (see [`offsets`]).
    pub access_message_in_memory_max_ratio_percent: u32,
    /// The machine's RAM, which the driver reads from the OS; RocketMQ assumes 24 GiB when it
    /// cannot tell.
    pub total_physical_memory_bytes: u64,
    /// `useServerSideResetOffset` (RocketMQ 5, default false): INVOKE_BROKER_TO_RESET_OFFSET
    /// also works for a group with no consumer online or with queues it never committed.
    pub use_server_side_reset_offset: bool,
    pub store: StoreConfig,
    /// Retention and disk-space thresholds (`fileReservedTime`, `deleteWhen`, `disk*Ratio`).
    pub retention: crate::store::retention::RetentionConfig,
    /// Seed of every random choice the broker makes.
    pub seed: u64,
    /// Timer messages (`timerWheelEnable`, `timerPrecisionMs`, `timerMaxDelaySec`, ...).
    pub timer: timer::TimerConfig,
    /// Transaction check-back (`transactionTimeOut`, `transactionCheckInterval`,
    /// `transactionCheckMax`).
    pub transaction: transaction::TransactionConfig,
    /// `storeReplyMessageEnable`: request–reply replies are also stored in
    /// `<cluster>_REPLY_TOPIC` ([`reply`]); RocketMQ's default, true.
    pub store_reply_message_enable: bool,
    /// `traceTopicEnable`: the broker creates the message trace topic at start (clients with
    /// `enableMsgTrace` send their traces there; without it they auto-create it through TBW102).
    pub trace_topic_enable: bool,
    /// `msgTraceTopicName`: the trace topic (`RMQ_SYS_TRACE_TOPIC`).
    pub msg_trace_topic_name: String,
    /// `aclEnable`: every request is checked against the ACL files ([`acl`]) before it runs.
    pub acl_enable: bool,
    /// `brokerPermission`: 6 (read and write) by default; without write (4) the broker refuses
    /// sends and registers its topics read-only, so producers go elsewhere
    /// (UPDATE_BROKER_CONFIG changes it at run time).
    pub broker_permission: u32,
    /// `brokerRole`, the HA keys and slave reads ([`replication`]).
    pub replication: ReplicationConfig,
    /// POP consumption's keys (`reviveQueueNum`, `enableRetryTopicV2`, ...; [`pop`]).
    pub pop: pop::PopConfig,
}

impl BrokerConfig {
    /// The ASYNC_FLUSH knobs.
    pub fn flush_config(&self) -> flush::FlushConfig {
        flush::FlushConfig {
            interval_ms: self.flush_interval_commitlog_ms,
            least_pages: self.flush_commitlog_least_pages,
            thorough_interval_ms: self.flush_commitlog_thorough_interval_ms,
            timed: self.flush_commitlog_timed,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_cluster_name: "DefaultCluster".to_owned(),
            broker_name: "broker-a".to_owned(),
            broker_id: 0,
            broker_ip1: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            listen_port: 10911,
            namesrv_addrs: Vec::new(),
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commitlog_ms: 500,
            flush_commitlog_least_pages: 4,
            flush_commitlog_thorough_interval_ms: 10_000,
            flush_commitlog_timed: true,
            checkpoint_interval_ms: 1_000,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            register_broker_interval_ms: 30_000,
            long_polling_enable: true,
            enable_property_filter: false,
            long_polling_max_hold_ms: 60_000,
            access_message_in_memory_max_ratio_percent: 40,
            total_physical_memory_bytes: DEFAULT_TOTAL_PHYSICAL_MEMORY_BYTES,
            use_server_side_reset_offset: false,
            store: StoreConfig::default(),
            retention: crate::store::retention::RetentionConfig::default(),
            seed: 0,
            timer: timer::TimerConfig::default(),
            transaction: transaction::TransactionConfig::default(),
            store_reply_message_enable: true,
            trace_topic_enable: false,
            msg_trace_topic_name: crate::message::trace::DEFAULT_TRACE_TOPIC.to_owned(),
            acl_enable: false,
            broker_permission: crate::topic::perm::READ_WRITE,
            replication: ReplicationConfig::default(),
            pop: pop::PopConfig::default(),
        }
    }
}

/// Every request code [`Broker::handle_request`] serves (the rest get REQUEST_CODE_NOT_SUPPORTED
/// before any ACL check, as in RocketMQ). Kept beside the dispatch; a test sends each.
const SERVED_CODES: &[i32] = &[
    request::SEND_MESSAGE,
    request::SEND_MESSAGE_V2,
    request::SEND_BATCH_MESSAGE,
    request::SEND_REPLY_MESSAGE,
    request::SEND_REPLY_MESSAGE_V2,
    request::PULL_MESSAGE,
    request::LITE_PULL_MESSAGE,
    request::QUERY_CONSUMER_OFFSET,
    request::UPDATE_CONSUMER_OFFSET,
    request::GET_MAX_OFFSET,
    request::GET_MIN_OFFSET,
    request::SEARCH_OFFSET_BY_TIMESTAMP,
    request::GET_EARLIEST_MSG_STORETIME,
    request::HEART_BEAT,
    request::UNREGISTER_CLIENT,
    request::GET_CONSUMER_LIST_BY_GROUP,
    request::CHECK_CLIENT_CONFIG,
    request::LOCK_BATCH_MQ,
    request::UNLOCK_BATCH_MQ,
    request::UPDATE_AND_CREATE_TOPIC,
    request::GET_ALL_TOPIC_CONFIG,
    request::QUERY_MESSAGE,
    request::VIEW_MESSAGE_BY_ID,
    request::CONSUMER_SEND_MSG_BACK,
    request::INVOKE_BROKER_TO_RESET_OFFSET,
    request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    request::END_TRANSACTION,
    request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    request::UPDATE_AND_CREATE_ACL_CONFIG,
    request::DELETE_ACL_CONFIG,
    request::GET_BROKER_CLUSTER_ACL_INFO,
    request::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG,
    request::GET_BROKER_CONFIG,
    request::UPDATE_BROKER_CONFIG,
    request::GET_BROKER_RUNTIME_INFO,
    request::GET_TOPIC_STATS_INFO,
    request::GET_CONSUMER_CONNECTION_LIST,
    request::GET_PRODUCER_CONNECTION_LIST,
    request::GET_ALL_PRODUCER_INFO,
    request::DELETE_SUBSCRIPTIONGROUP,
    request::DELETE_TOPIC_IN_BROKER,
    request::GET_CONSUMER_RUNNING_INFO,
    request::CONSUME_MESSAGE_DIRECTLY,
    request::GET_CONSUME_STATS,
    request::QUERY_TOPIC_CONSUME_BY_WHO,
    request::QUERY_CONSUME_TIME_SPAN,
    request::GET_SYSTEM_TOPIC_LIST_FROM_BROKER,
    request::GET_BROKER_HA_STATUS,
    request::GET_ALL_CONSUMER_OFFSET,
    request::GET_ALL_DELAY_OFFSET,
    request::GET_TIMER_CHECK_POINT,
    request::CLEAN_EXPIRED_CONSUMEQUEUE,
    request::VIEW_BROKER_STATS_DATA,
    request::POP_MESSAGE,
    request::ACK_MESSAGE,
    request::BATCH_ACK_MESSAGE,
    request::PEEK_MESSAGE,
    request::CHANGE_MESSAGE_INVISIBLETIME,
    request::NOTIFICATION,
    request::POLLING_INFO,
    request::QUERY_ASSIGNMENT,
    request::SET_MESSAGE_REQUEST_MODE,
];

/// Why a `Checkpoint` output could not be completed (the driver's error text inside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointFailure {
    /// Making a ConsumeQueue or index range durable failed.
    Sync(String),
    /// The ranges are durable; writing the checkpoint file failed.
    WriteFile(String),
}

/// What the broker wants its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum BrokerOutput {
    /// Write a command on a client connection: a response, or a broker→client request.
    Send {
        conn: ConnId,
        command: RemotingCommand,
    },
    /// Send a request to a NameServer (REGISTER_BROKER, UNREGISTER_BROKER), or from a slave to
    /// its master (SlaveSynchronize). The driver keeps one connection per address and feeds
    /// the response back with `handle_namesrv_response`.
    SendToNamesrv {
        addr: String,
        command: RemotingCommand,
    },
    /// Make these ranges durable, then call `handle_synced(now, up_to)` (or
    /// `handle_sync_failed`). At most one is in flight; sends waiting for durability wait for it.
    Sync(SyncRequest),
    /// Take a checkpoint: make `sync.ranges` durable (ConsumeQueue and index ranges only), then
    /// replace the file `file_path()` with `file_contents()` atomically and durably, then hand
    /// the request back to `handle_checkpoint_written` (or call `handle_checkpoint_failed`). At
    /// most one is in flight. Run it beside the `Sync`s, not behind them: it exists so that the
    /// checkpoint never delays a group commit.
    Checkpoint(crate::store::CheckpointRequest),
    /// Close a connection (after writing what was queued before).
    Close { conn: ConnId },
    /// Replace the ACL file `path` with `contents` (an ACL admin request changed it), then send
    /// the answer's success or failure command on its connection; after a failure, read the
    /// ACL files again and hand them to `handle_acl_files`.
    WriteAclFile {
        path: String,
        contents: String,
        answer: Option<acl::AclWriteAnswer>,
    },
    /// Replication between a master and its slaves ([`replication`]).
    Ha(HaOutput),
    /// An answer or stream command for a gRPC client ([`grpc`]).
    Grpc(grpc::GrpcOutput),
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path} is corrupt: {reason}")]
    CorruptConfig { path: String, reason: String },
}

/// A send whose answer waits for its bytes to be durable (SYNC_FLUSH), acked by slaves
/// (SYNC_MASTER), or both.
#[derive(Debug)]
struct WaitingSend {
    /// The CommitLog must be durable, or acked, up to here.
    end: CommitLogOffset,
    conn: ConnId,
    response: RemotingCommand,
    /// Waits for a sync (SYNC_FLUSH).
    durable_needed: bool,
    /// Waits for slave acks until then (SYNC_MASTER's `slaveTimeout`).
    replica_deadline_ms: Option<u64>,
    /// The slave wait ended without enough acks: the response says FLUSH_SLAVE_TIMEOUT.
    replica_failed: bool,
}

pub struct Broker<S: SegmentStorage> {
    config: BrokerConfig,
    store: MessageStore<S>,
    rng: SeededRng,
    uniq_keys: ids::UniqKeyGenerator,
    outputs: VecDeque<BrokerOutput>,
    /// Peer address of every open connection (the born host of what it sends).
    peers: BTreeMap<ConnId, SocketAddr>,
    /// Open connections accepted on the VIP port ([`listener`]).
    vip_conns: BTreeSet<ConnId>,
    topics: topics::TopicTable,
    groups: groups::GroupTable,
    offsets: offsets::ConsumerOffsets,
    clients: clients::Clients,
    locks: locks::LockTable,
    held_pulls: pull::HeldPulls,
    waiting_sends: Vec<WaitingSend>,
    /// A `Sync` output has not been answered by `handle_synced` yet.
    sync_in_flight: bool,
    /// A `Checkpoint` output has not been answered yet.
    checkpoint_in_flight: bool,
    /// The checkpoint period came while a `Sync` was in flight: take it when that completes.
    checkpoint_after_sync: bool,
    flush_policy: flush::FlushPolicy,
    next_checkpoint_ms: u64,
    /// What operators read: per topic and group counters, the store's rates.
    stats: stats::BrokerStats,
    /// RocketMQ 5's metric counters ([`metrics`]).
    metrics: metrics::Metrics,
    /// The master's links to its slaves, or the slave's to its master.
    replication: replication::Replication,
    /// Bumped by every UPDATE_BROKER_CONFIG that changed something (GET_BROKER_CONFIG's
    /// `version`).
    config_version: u64,
    /// Why making data durable failed, once it has: from then on nothing more is counted as
    /// durable (a later sync can succeed without the lost pages having reached the disk) and
    /// sends are refused.
    durability_failure: Option<String>,
    next_opaque: i32,
    /// RocketMQ 5's gRPC clients, served through virtual connections ([`grpc`]).
    gateway: grpc::Gateway,
    next_register_ms: u64,
    next_offset_persist_ms: u64,
    next_client_scan_ms: u64,
    /// Retention policy state and the driver's latest disk usage.
    retention: crate::store::retention::Retention,
    /// What the last retention run did.
    last_clean: Option<Result<crate::store::retention::CleanReport, StoreError>>,
    /// Delay-level delivery offsets ([`schedule`]).
    schedule: schedule::Schedule,
    /// Timer wheel delivery state ([`timer`]).
    timer: timer::Timer,
    /// Unresolved transactions and their persisted progress ([`transaction`]).
    transactions: transaction::Transactions,
    /// POP's open checkpoints, held requests, orderly batches and request modes ([`pop`]).
    pop: pop::PopState,
    /// Queue positions from before this start are not trusted beyond the recovered ends
    /// ([`fence`]).
    recovery_fence: fence::RecoveryFence,
    /// Replies pushed to their requesters, waiting for the answer ([`reply`]).
    pending_replies: reply::PendingReplies,
    /// Admin requests passed on to a consumer (307, 309), waiting for its answer.
    relays: relay::Relays,
    /// The ACL files and what they allow ([`acl`]); used when `aclEnable`.
    acl: acl::AclState,
    shut_down: bool,
}

/// A JSON config file of the broker (`config/*.json`), `None` when it does not exist yet. A file
/// that does not parse stops the broker rather than silently starting empty.
fn load_json_config<T: serde::de::DeserializeOwned, S: SegmentStorage>(
    storage: &S,
    path: &str,
) -> Result<Option<T>, BrokerError> {
    let Some(bytes) = storage
        .read_all(path)
        .map_err(crate::store::StoreError::from)?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| BrokerError::CorruptConfig {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// REQUEST_CODE_NOT_SUPPORTED in RocketMQ's words (`AdminBrokerProcessor.getUnknownCmdResponse`).
fn not_supported(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(
        request,
        response::REQUEST_CODE_NOT_SUPPORTED,
        Some(format!(" request type {} not supported", request.code)),
    )
}

impl<S: SegmentStorage> Broker<S> {
    /// Opens the store (recovering it), loads topics and consumer offsets.
    pub fn new(config: BrokerConfig, storage: S, now_ms: u64) -> Result<Self, BrokerError> {
        let topics = topics::TopicTable::load(&storage)?;
        let groups = groups::GroupTable::load(&storage)?;
        let mut offsets = offsets::ConsumerOffsets::load(&storage)?;
        if config.replication.role == BrokerRole::Slave {
            offsets.track_local_commits(&storage)?;
        }
        let schedule = schedule::Schedule::load(&storage, now_ms)?;
        let timer = timer::Timer::load(&storage, &config.timer, now_ms)?;
        let transactions = transaction::Transactions::load(&storage, now_ms)?;
        let pop = pop::PopState {
            order: pop::order::OrderTable::load(&storage)?,
            modes: pop::mode::RequestModes::load(&storage)?,
            ..Default::default()
        };
        let mut store = MessageStore::open(storage, config.store.clone())?;
        // Queue min offsets never point below what retention left of the CommitLog.
        store.correct_min_offsets()?;
        store.set_replica(config.replication.role == BrokerRole::Slave);
        let replication = replication::Replication::new(&config, now_ms, store.written_offset().0);
        let mut rng = SeededRng::new(config.seed);
        let uniq_keys = ids::UniqKeyGenerator::from_rng(config.broker_ip1, &mut rng);
        let mut broker = Self {
            rng,
            uniq_keys,
            store,
            outputs: VecDeque::new(),
            peers: BTreeMap::new(),
            vip_conns: BTreeSet::new(),
            topics,
            groups,
            offsets,
            clients: clients::Clients::default(),
            locks: locks::LockTable::default(),
            held_pulls: pull::HeldPulls::default(),
            waiting_sends: Vec::new(),
            sync_in_flight: false,
            checkpoint_in_flight: false,
            checkpoint_after_sync: false,
            flush_policy: flush::FlushPolicy::new(config.flush_config(), now_ms),
            stats: stats::BrokerStats::new(now_ms),
            metrics: metrics::Metrics::default(),
            replication,
            config_version: 0,
            next_checkpoint_ms: now_ms + config.checkpoint_interval_ms.max(1),
            durability_failure: None,
            next_opaque: 0,
            gateway: grpc::Gateway::default(),
            // The first registration happens at the first `handle_timeout`.
            next_register_ms: now_ms,
            next_offset_persist_ms: now_ms + OFFSET_PERSIST_INTERVAL_MS,
            next_client_scan_ms: now_ms + clients::CLIENT_SCAN_INTERVAL_MS,
            retention: crate::store::retention::Retention::new(config.retention.clone(), now_ms),
            last_clean: None,
            schedule,
            timer,
            transactions,
            recovery_fence: fence::RecoveryFence::default(),
            pending_replies: reply::PendingReplies::default(),
            relays: relay::Relays::default(),
            acl: acl::AclState::default(),
            pop,
            shut_down: false,
            config,
        };
        // Before anything reads or writes a queue: what recovery kept bounds every position.
        broker.recovery_fence = broker.build_recovery_fence(now_ms)?;
        if broker.clamp_offsets_to_recovered_queues() > 0 {
            // At once: left ahead, a crash before the next period would let the next start
            // trust them again once new messages have filled the queue past them.
            broker.persist_offsets();
        }
        broker.ensure_system_topics(now_ms);
        broker.ensure_reply_topic(now_ms);
        broker.restore_topics_from_store(now_ms);
        broker.init_schedule(now_ms);
        broker.persist_clamped_delay_offsets()?;
        broker.init_timer(now_ms)?;
        broker.clamp_transaction_progress_to_recovered_queues()?;
        broker.init_transactions(now_ms)?;
        broker.ensure_revive_topic(now_ms);
        broker.pop_recover()?;
        Ok(broker)
    }

    /// A connection was accepted on the main port (`listenPort`).
    pub fn handle_connected(&mut self, now_ms: u64, conn: ConnId, peer: SocketAddr) {
        self.handle_connected_on(now_ms, conn, peer, Listener::Main);
    }

    /// A connection was accepted on `listener`: on the VIP port the long-polling codes are
    /// refused ([`listener`]).
    pub fn handle_connected_on(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        peer: SocketAddr,
        listener: Listener,
    ) {
        self.metrics.latest_ms = now_ms;
        self.peers.insert(conn, peer);
        if listener == Listener::Vip {
            self.vip_conns.insert(conn);
        }
    }

    /// The listener a connection came in on.
    fn listener_of(&self, conn: ConnId) -> Listener {
        if self.vip_conns.contains(&conn) {
            Listener::Vip
        } else {
            Listener::Main
        }
    }

    pub fn handle_request(&mut self, now_ms: u64, conn: ConnId, command: RemotingCommand) {
        self.serve_request(now_ms, conn, command);
        // Whatever it stored goes to the slaves at once.
        self.pump_replication(now_ms);
    }

    fn serve_request(&mut self, now_ms: u64, conn: ConnId, command: RemotingCommand) {
        self.metrics.latest_ms = now_ms;
        if command.is_response() {
            if !self.relay_answered(conn, &command) {
                self.handle_client_response(conn, &command);
            }
            return;
        }
        // RocketMQ's fast server has no processor for long polling: its admin default processor
        // answers as for any unknown code, and before the ACL check like one.
        if !self.listener_of(conn).serves(command.code) {
            let refused = not_supported(&command);
            self.metrics
                .on_request(now_ms, conn, &command, Some(refused.code));
            self.reply(conn, &command, refused);
            return;
        }
        // As RocketMQ: a code nobody serves is answered before the ACL check.
        if self.config.acl_enable && SERVED_CODES.contains(&command.code) {
            if let Some(refused) = self.acl_refusal(conn, &command) {
                self.metrics
                    .on_request(now_ms, conn, &command, Some(refused.code));
                self.reply(conn, &command, refused);
                return;
            }
        }
        let result: Result<Option<RemotingCommand>, HeaderError> = match command.code {
            request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => {
                self.handle_send(now_ms, conn, &command)
            }
            request::SEND_REPLY_MESSAGE | request::SEND_REPLY_MESSAGE_V2 => {
                self.handle_send_reply(now_ms, conn, &command)
            }
            request::PULL_MESSAGE | request::LITE_PULL_MESSAGE => {
                self.run_pull(now_ms, conn, &command, true, true)
            }
            request::QUERY_CONSUMER_OFFSET => self.handle_query_consumer_offset(&command).map(Some),
            request::UPDATE_CONSUMER_OFFSET => {
                self.handle_update_consumer_offset(conn, &command).map(Some)
            }
            request::GET_MAX_OFFSET => self.handle_get_max_offset(&command).map(Some),
            request::GET_MIN_OFFSET => self.handle_get_min_offset(&command).map(Some),
            request::SEARCH_OFFSET_BY_TIMESTAMP => self.handle_search_offset(&command).map(Some),
            request::GET_EARLIEST_MSG_STORETIME => {
                self.handle_earliest_msg_store_time(&command).map(Some)
            }
            request::HEART_BEAT => Ok(Some(self.handle_heartbeat(now_ms, conn, &command))),
            request::UNREGISTER_CLIENT => self.handle_unregister_client(conn, &command).map(Some),
            request::GET_CONSUMER_LIST_BY_GROUP => {
                self.handle_get_consumer_list(&command).map(Some)
            }
            request::CHECK_CLIENT_CONFIG => Ok(Some(self.handle_check_client_config(&command))),
            request::LOCK_BATCH_MQ => Ok(Some(self.handle_lock_batch(now_ms, &command))),
            request::UNLOCK_BATCH_MQ => Ok(Some(self.handle_unlock_batch(&command))),
            request::UPDATE_AND_CREATE_TOPIC => {
                self.handle_create_topic(now_ms, &command).map(Some)
            }
            request::GET_ALL_TOPIC_CONFIG => Ok(Some(self.handle_get_all_topic_config(&command))),
            request::QUERY_MESSAGE => self.handle_query_message(&command).map(Some),
            request::VIEW_MESSAGE_BY_ID => self.handle_view_message_by_id(&command).map(Some),
            request::POP_MESSAGE => self.handle_pop_message(now_ms, conn, &command, true),
            request::PEEK_MESSAGE => self.handle_peek_message(now_ms, &command).map(Some),
            request::NOTIFICATION => self.handle_notification(now_ms, conn, &command, true),
            request::POLLING_INFO => self.handle_polling_info(now_ms, &command).map(Some),
            request::ACK_MESSAGE => self.handle_ack_message(now_ms, conn, &command),
            request::BATCH_ACK_MESSAGE => self.handle_batch_ack_message(now_ms, conn, &command),
            request::CHANGE_MESSAGE_INVISIBLETIME => {
                self.handle_change_invisible_time(now_ms, conn, &command)
            }
            request::QUERY_ASSIGNMENT => Ok(self.handle_query_assignment(now_ms, conn, &command)),
            request::SET_MESSAGE_REQUEST_MODE => {
                Ok(Some(self.handle_set_message_request_mode(&command)))
            }
            request::CONSUMER_SEND_MSG_BACK => self
                .handle_consumer_send_msg_back(now_ms, &command)
                .map(Some),
            request::INVOKE_BROKER_TO_RESET_OFFSET => {
                self.handle_invoke_reset_offset(&command).map(Some)
            }
            request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => Ok(Some(
                self.handle_update_subscription_group(now_ms, &command),
            )),
            request::END_TRANSACTION => self.handle_end_transaction(now_ms, &command),
            request::GET_CONSUMER_RUNNING_INFO | request::CONSUME_MESSAGE_DIRECTLY => {
                self.handle_relay(now_ms, conn, &command)
            }
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
                Ok(Some(self.handle_get_all_subscription_groups(&command)))
            }
            request::UPDATE_AND_CREATE_ACL_CONFIG
            | request::DELETE_ACL_CONFIG
            | request::GET_BROKER_CLUSTER_ACL_INFO
            | request::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG => {
                if self.config.acl_enable {
                    Ok(self.handle_acl_admin(now_ms, conn, &command))
                } else {
                    Ok(Some(RemotingCommand::response_to(
                        &command,
                        response::SYSTEM_ERROR,
                        Some("ACL is off on this broker (aclEnable=false)".to_owned()),
                    )))
                }
            }
            _ => match self.handle_admin(now_ms, &command) {
                Some(answer) => answer.map(Some),
                None => Ok(Some(not_supported(&command))),
            },
        };
        let response = match result {
            Ok(Some(r)) => r,
            Ok(None) => {
                // Answered later (or never, for a oneway request): measured when its response
                // is drained.
                self.metrics.on_request(now_ms, conn, &command, None);
                return;
            }
            Err(e) => RemotingCommand::response_to(
                &command,
                response::SYSTEM_ERROR,
                Some(format!("bad request header: {e}")),
            ),
        };
        self.metrics
            .on_request(now_ms, conn, &command, Some(response.code));
        self.reply(conn, &command, response);
    }

    /// Queues a response unless the request was oneway.
    fn reply(&mut self, conn: ConnId, request: &RemotingCommand, response: RemotingCommand) {
        if request.is_oneway() {
            return;
        }
        self.outputs.push_back(BrokerOutput::Send {
            conn,
            command: response,
        });
    }

    pub fn handle_disconnected(&mut self, now_ms: u64, conn: ConnId) {
        self.metrics.latest_ms = now_ms;
        self.metrics.drop_connection(conn);
        self.peers.remove(&conn);
        self.vip_conns.remove(&conn);
        self.held_pulls.drop_connection(conn);
        self.pop.held.drop_connection(conn);
        self.pop.pending_assignments.retain(|_, p| p.conn != conn);
        self.recovery_fence.drop_connection(conn);
        // Their answers can no longer be delivered; the data stays and is synced anyway.
        self.waiting_sends.retain(|w| w.conn != conn);
        self.drop_connection_replies(conn);
        self.drop_connection_relays(conn);
        self.remove_connection_registrations(conn);
    }

    /// A NameServer answered REGISTER_BROKER / UNREGISTER_BROKER. Nothing depends on it: a
    /// failed registration is repeated at the next period.
    /// A NameServer's answer to REGISTER_BROKER (a slave learns its master there), or a
    /// master's answer to a slave's SlaveSynchronize request on the same kind of connection.
    pub fn handle_namesrv_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        if self.handle_assignment_route(&command) {
            return;
        }
        if !self.handle_master_answer(addr, &command) {
            self.learn_master_addr(&command);
        }
        self.pump_replication(now_ms);
    }

    pub fn handle_synced(&mut self, now_ms: u64, up_to: CommitLogOffset) {
        self.metrics.latest_ms = now_ms;
        self.sync_in_flight = false;
        if self.durability_failure.is_some() {
            return;
        }
        self.store.handle_synced(up_to);
        self.schedule_synced();
        self.timer_synced();
        self.transactions_synced();
        self.release_durable_sends();
        if !self.waiting_sends.is_empty() {
            self.request_sync_if_idle();
        }
        self.checkpoint_after_synced();
    }

    /// The driver synced a `Checkpoint` output's ranges and wrote its file.
    pub fn handle_checkpoint_written(
        &mut self,
        now_ms: u64,
        request: &crate::store::CheckpointRequest,
    ) {
        let _ = now_ms;
        self.checkpoint_in_flight = false;
        // The ranges were synced and the file written even after a failure elsewhere: what the
        // checkpoint claims was durable before it was taken.
        self.store.handle_checkpoint_written(request);
    }

    /// The driver could not complete a `Checkpoint` output. A failed sync of its ranges is a
    /// failure to make data durable (see `handle_sync_failed`): pages whose write-back failed
    /// may be dropped, and a later checkpoint would vouch for them. A sync that succeeded
    /// followed by a failed file write leaves the old checkpoint valid; the next period tries
    /// again.
    pub fn handle_checkpoint_failed(&mut self, now_ms: u64, failure: CheckpointFailure) {
        let _ = now_ms;
        self.checkpoint_in_flight = false;
        match failure {
            CheckpointFailure::Sync(reason) => self.fail_durability(&reason),
            CheckpointFailure::WriteFile(_) => {}
        }
    }

    /// The driver could not make a [`SyncRequest`] durable. The broker stops counting anything
    /// as durable, answers every send waiting for durability with FLUSH_DISK_TIMEOUT (stored,
    /// durability unknown, as RocketMQ reports it) and refuses further sends with
    /// SERVICE_NOT_AVAILABLE until restarted: an operator must look at the disk.
    pub fn handle_sync_failed(&mut self, now_ms: u64, reason: &str) {
        self.metrics.latest_ms = now_ms;
        self.sync_in_flight = false;
        self.fail_durability(reason);
    }

    /// From now on nothing counts as durable: see `handle_sync_failed`.
    fn fail_durability(&mut self, reason: &str) {
        if self.durability_failure.is_none() {
            self.durability_failure = Some(reason.to_owned());
        }
        for waiting in std::mem::take(&mut self.waiting_sends) {
            let mut response = waiting.response;
            response.code = crate::remoting::codes::response::FLUSH_DISK_TIMEOUT;
            response.remark = Some(format!(
                "the store failed to make the message durable: {reason}"
            ));
            self.outputs.push_back(BrokerOutput::Send {
                conn: waiting.conn,
                command: response,
            });
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.metrics.latest_ms = now_ms;
        if self.shut_down {
            return;
        }
        if now_ms >= self.next_register_ms {
            self.register_with_namesrvs();
            self.next_register_ms = now_ms + self.config.register_broker_interval_ms.max(1);
        }
        if now_ms >= self.next_offset_persist_ms {
            if self.topics.unsaved {
                self.persist_topics();
            }
            if self.groups.unsaved {
                self.persist_groups();
            }
            self.persist_offsets();
            self.persist_recovery_fence(now_ms);
            self.persist_order_info_if_changed();
            self.next_offset_persist_ms = now_ms + OFFSET_PERSIST_INTERVAL_MS;
        }
        // Delay levels, timers and transaction check-backs run on the master only, as in
        // RocketMQ: their deliveries reach a slave through replication.
        if !self.is_slave() {
            self.schedule_tick(now_ms);
            self.timer_tick(now_ms);
            self.transaction_tick(now_ms);
        }
        self.flush_tick(now_ms);
        if now_ms >= self.next_client_scan_ms {
            self.expire_clients(now_ms);
            self.locks.expire(now_ms);
            self.next_client_scan_ms = now_ms + clients::CLIENT_SCAN_INTERVAL_MS;
        }
        self.expire_held_pulls(now_ms, false);
        self.pop_tick(now_ms);
        self.grpc_expire_clients(now_ms);
        self.expire_pending_replies(now_ms);
        self.expire_relays(now_ms);
        self.run_retention(now_ms);
        self.expire_replica_waits(now_ms);
        self.pump_replication(now_ms);
    }

    /// Starts a clean shutdown: unregisters from NameServers, persists offsets, answers held
    /// pulls.
    pub fn shutdown(&mut self, now_ms: u64) {
        self.metrics.latest_ms = now_ms;
        if self.shut_down {
            return;
        }
        self.expire_held_pulls(now_ms, true);
        self.expire_held_pops(now_ms, true);
        self.expire_pending_assignments(now_ms, true);
        self.persist_offsets();
        self.persist_order_info_if_changed();
        self.persist_recovery_fence(now_ms);
        self.persist_delay_offsets_at_shutdown();
        self.persist_timer_at_shutdown();
        self.persist_transaction_progress_at_shutdown();
        let identity = self.identity();
        for addr in self.config.namesrv_addrs.clone() {
            self.outputs.push_back(BrokerOutput::SendToNamesrv {
                addr,
                command: unregister_broker_request(&identity),
            });
        }
        // Make what was written durable; waiting sends are answered when it completes.
        self.request_sync_if_idle();
        self.shut_down = true;
    }

    pub fn poll_output(&mut self) -> Option<BrokerOutput> {
        loop {
            if let Some(output) = self.poll_grpc_output() {
                return Some(BrokerOutput::Grpc(output));
            }
            let output = self.outputs.pop_front()?;
            match output {
                BrokerOutput::Send { conn, command } if grpc::Gateway::is_grpc_conn(conn) => {
                    // An answer to the gateway (or a request to a gRPC client): translated,
                    // never written to a socket.
                    self.metrics.on_output(conn, &command);
                    let now_ms = self.metrics.latest_ms;
                    self.grpc_conn_output(now_ms, conn, command);
                }
                BrokerOutput::Close { conn } if grpc::Gateway::is_grpc_conn(conn) => {
                    let now_ms = self.metrics.latest_ms;
                    self.grpc_close_conn(now_ms, conn);
                }
                output => {
                    if let BrokerOutput::Send { conn, command } = &output {
                        self.metrics.on_output(*conn, command);
                    }
                    return Some(output);
                }
            }
        }
    }

    /// The next instant (epoch ms) `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.shut_down {
            return None;
        }
        let mut next = u64::MAX;
        // Timers with nothing to do do not wake the driver; once there is work again the
        // (possibly past) instant makes the next `handle_timeout` do it promptly.
        if self.offsets.is_dirty()
            || self.recovery_fence.is_dirty()
            || self.pop.order.is_dirty()
            || self.topics.unsaved
            || self.groups.unsaved
        {
            next = next.min(self.next_offset_persist_ms);
        }
        if let Some(deadline) = self.flush_deadline_ms() {
            next = next.min(deadline);
        }
        if !self.config.namesrv_addrs.is_empty() {
            next = next.min(self.next_register_ms);
        }
        if !self.clients.is_empty() || !self.locks.is_empty() {
            next = next.min(self.next_client_scan_ms);
        }
        if let Some(expiry) = self.gateway.next_expiry_ms() {
            next = next.min(expiry);
        }
        if let Some(deadline) = self.held_pulls.earliest_deadline_ms() {
            next = next.min(deadline);
        }
        if let Some(deadline) = self.pop_deadline_ms() {
            next = next.min(deadline);
        }
        if let Some(deadline) = self.pending_replies.earliest_deadline_ms() {
            next = next.min(deadline);
        }
        if let Some(deadline) = self.relays.earliest_deadline_ms() {
            next = next.min(deadline);
        }
        if let Some(deadline) = self.retention_deadline() {
            next = next.min(deadline);
        }
        // A slave runs none of the three (see `handle_timeout`), so nothing of theirs is due.
        if !self.is_slave() {
            if let Some(deadline) = self.schedule.deadline_ms() {
                next = next.min(deadline);
            }
            if let Some(deadline) = self.timer.deadline_ms() {
                next = next.min(deadline);
            }
            if let Some(deadline) = self.transaction_deadline_ms() {
                next = next.min(deadline);
            }
        }
        if let Some(deadline) = self.replication_deadline_ms() {
            next = next.min(deadline);
        }
        (next != u64::MAX).then_some(next)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn store(&self) -> &MessageStore<S> {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut MessageStore<S> {
        &mut self.store
    }

    /// Every topic this broker owns.
    pub fn topics(&self) -> &BTreeMap<String, crate::topic::TopicConfig> {
        &self.topics.topics
    }

    /// The committed offset of a group on a queue.
    pub fn consumer_offset(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.offsets.query(topic, group, queue_id)
    }

    fn next_opaque(&mut self) -> i32 {
        self.next_opaque = self.next_opaque.wrapping_add(1);
        self.next_opaque
    }

    fn identity(&self) -> BrokerIdentity {
        BrokerIdentity {
            cluster_name: self.config.broker_cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            broker_addr: SocketAddr::new(self.config.broker_ip1, self.config.listen_port)
                .to_string(),
            ha_server_addr: self.ha_server_addr(),
        }
    }

    /// REGISTER_BROKER with every topic, to every NameServer.
    fn register_with_namesrvs(&mut self) {
        if self.config.namesrv_addrs.is_empty() || self.shut_down {
            return;
        }
        let identity = self.identity();
        // RocketMQ's registerBrokerAll: a broker that is not readable and writable registers
        // its topics with their permissions masked by its own, so routes show it.
        let masked;
        let topics = if self.config.broker_permission & crate::topic::perm::READ_WRITE
            == crate::topic::perm::READ_WRITE
        {
            &self.topics.topics
        } else {
            masked = self
                .topics
                .topics
                .iter()
                .map(|(name, config)| {
                    let mut config = config.clone();
                    config.perm &= self.config.broker_permission;
                    (name.clone(), config)
                })
                .collect();
            &masked
        };
        let command = register_broker_request(&identity, topics, &self.topics.data_version);
        for addr in self.config.namesrv_addrs.clone() {
            let mut command = command.clone();
            command.opaque = self.next_opaque();
            self.outputs
                .push_back(BrokerOutput::SendToNamesrv { addr, command });
        }
    }
}
