//! One seed: a cluster on madsim nodes, a workload, a nemesis, a healed phase, a read-back and
//! the checkers.
//!
//! ```text
//!  fresh OS thread ─▶ Runtime(seed) + SimDisk ─▶ nodes:
//!     ns-0..1    10.0.0.x:9876   NamesrvServer            (runtime-native driver)
//!     broker-X   10.0.1.x:10911  BrokerServer on SimDisk  (runtime-native driver)
//!     prod-N     10.0.2.x        vostok::client::Producer  (native adapters over core::client)
//!     cons-G-M   10.0.3.x        vostok::client::PushConsumer
//!     pop-M      10.0.5.x        vostok::client::SimpleConsumer (POP group gpop, a quarter of the seeds)
//!     popo-M     10.0.6.x        vostok::client::SimpleConsumer, orderly (group gpopo, half of those)
//!  supervisor (node 0): nemesis steps for the fault phase ─▶ heal ─▶ drain ─▶ kill brokers ─▶
//!     read every queue back from each disk (recovery included) ─▶ History ─▶ check_all
//! ```
//!
//! Every client and server takes its time from its node's clock (offset and drift per node).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::task::NodeId;
use madsim::time::Instant;
use vostok::client::{
    Clock, ConsumeFromWhere, ConsumeInitMode, ConsumeStatus, LocalTransactionState, Message,
    MessageExt, SendStatus, SimpleConsumer,
};
use vostok::server::sim_clock;
use vostok::{BrokerServer, NamesrvServer};
use vostok_core::broker::{BrokerConfig, RECOVERY_FENCE_PATH};
use vostok_core::check::{
    body_crc, check_report, Delivery, EventKind, FlushMode, History, PopDelivery, QueueRef,
    ReadBackRecord, SendSpec, TraceDigest, Violation,
};
use vostok_core::clock::SlewedClock;
use vostok_core::defects::Defects;
use vostok_core::message::MessageRecord;
use vostok_core::namesrv::NamesrvConfig;
use vostok_core::remoting::pop::FIRST_POP_TIME_PROPERTY;
use vostok_core::rng::SeededRng;
use vostok_core::store::{
    segment::FaultOp, MemStorage, MessageStore, PowerLoss, QueueOffset, SegmentStorage,
    StorageError, StoreConfig,
};

use crate::disk::{CrashMode, SimDisk};
use crate::replication::{self, ReplicaFault, Topology};
use crate::scheduled::{self, SendKind, TxPlan};
use crate::swarm::{Fault, PopPlan, ScheduledMix, Swarm};

/// The one topic of the workload.
const TOPIC: &str = "SimTopic";
/// Topics a slave's read-back records: the workload's and the brokers' waiting topics.
const REPLICA_TOPICS: [&str; 1 + scheduled::WAITING_TOPICS.len()] = {
    let mut topics = [TOPIC; 1 + scheduled::WAITING_TOPICS.len()];
    let mut i = 0;
    while i < scheduled::WAITING_TOPICS.len() {
        topics[i + 1] = scheduled::WAITING_TOPICS[i];
        i += 1;
    }
    topics
};
/// The message property carrying the workload's unique key.
const KEY_PROPERTY: &str = "SIMKEY";
const NAMESRV_PORT: u16 = 9876;
const BROKER_PORT: u16 = 10911;
const QUEUES_PER_TOPIC: u32 = 4;
/// How long the healed phase waits for consumers to drain.
const DRAIN_LIMIT_MS: u64 = 40_000;
/// Small CommitLog segments: the simulated disk holds them in memory, and rolls happen.
const COMMITLOG_SEGMENT_BYTES: u64 = 64 * 1024;
/// Sends every producer makes in the healed phase (liveness: they must succeed).
const HEALED_SENDS: usize = 3;
/// The consumer group that consumes by POP ([`PopPlan`]); it takes every tag.
const POP_GROUP: &str = "gpop";
/// The consumer group that consumes by orderly POP ([`PopPlan::orderly`]); every tag too.
const ORDERLY_POP_GROUP: &str = "gpopo";

/// What one seed produced.
#[derive(Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub swarm: String,
    pub digest: TraceDigest,
    pub violations: Vec<Violation>,
    pub trace: Vec<String>,
    /// Simulated time the run took.
    pub sim_ms: u64,
    pub acked: u64,
    pub deliveries: u64,
    /// Of those, served by a slave.
    pub slave_deliveries: u64,
}

impl SeedReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// How a seed is run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Keep the nemesis idle (a fault-free baseline).
    pub no_faults: bool,
    /// Deliberate defects of the brokers' store (only switchable with the `defects` feature).
    pub defects: vostok_core::defects::Defects,
    /// Test-only: the history misrecords scheduled and transactional messages (the checkers'
    /// own test that they bite).
    pub misrecord: scheduled::Misrecord,
    /// Plain messages only (no delay, timer or transactional ones): the workload the store
    /// defect tests were calibrated on.
    pub plain_workload: bool,
}

/// Runs `seed` on a fresh OS thread (madsim seeds std's HashMap keys per thread) and returns its
/// report. A panic inside the simulation becomes a `panic` violation.
pub fn run_seed(seed: u64, options: RunOptions) -> SeedReport {
    let joined = std::thread::Builder::new()
        .name(format!("sim-{seed}"))
        .spawn(move || {
            let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.add_simulator::<SimDisk>();
            rt.set_time_limit(Duration::from_secs(600));
            let mut swarm = Swarm::draw(seed, options.no_faults);
            if options.plain_workload {
                swarm = plain_workload(&swarm);
            }
            rt.block_on(scenario(swarm, options.defects, options.misrecord))
        })
        .expect("spawn a simulation thread")
        .join();
    match joined {
        Ok(report) => report,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            SeedReport {
                seed,
                swarm: Swarm::draw(seed, options.no_faults).to_string(),
                digest: TraceDigest::EMPTY,
                violations: vec![Violation {
                    invariant: vostok_core::check::Invariant::AtLeastOnce,
                    event_index: 0,
                    event: "panic".to_owned(),
                    detail: format!("the simulation panicked: {what}"),
                }],
                trace: Vec::new(),
                sim_ms: 0,
                acked: 0,
                deliveries: 0,
                slave_deliveries: 0,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state

/// Per-node clock: offset and drift (parts per million) from the simulated wall clock.
#[derive(Clone, Copy, Debug, Default)]
struct Skew {
    offset_ms: i64,
    drift_ppm: i64,
}

type Skews = Arc<Mutex<BTreeMap<NodeId, Skew>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn skewed(skews: &Skews, node: NodeId, wall: u64, base: u64) -> u64 {
    let skew = lock(skews).get(&node).copied().unwrap_or_default();
    let elapsed = wall.saturating_sub(base) as i64;
    let ms = wall as i64 + skew.offset_ms + elapsed * skew.drift_ppm / 1_000_000;
    ms.max(0) as u64
}

/// A client's clock: its node's skewed clock, never going backwards nor standing still (as the
/// native client's, [`SlewedClock`]).
struct NodeClock {
    skews: Skews,
    node: NodeId,
    base_ms: u64,
    slewed: Mutex<SlewedClock>,
    origin: Instant,
}

impl Clock for NodeClock {
    fn now_ms(&self) -> u64 {
        let wall = skewed(&self.skews, self.node, wall_ms(), self.base_ms);
        let mono_us = self.origin.elapsed().as_micros() as u64;
        lock(&self.slewed).now_ms(wall, mono_us)
    }
}

/// What the workload tasks and the supervisor share.
struct World {
    history: History,
    start: Instant,
    /// Acked keys (key → tag) and, per group, the keys delivered.
    acked: BTreeMap<String, Option<String>>,
    delivered: BTreeMap<String, BTreeSet<String>>,
    /// Per POP group: the keys it acked with an ok answer.
    pop_acked: BTreeMap<&'static str, BTreeSet<String>>,
    /// The id of the next POP delivery, and of the next POP receive.
    next_pop_id: u64,
    next_pop_receive: u64,
    /// The seed's POP groups.
    pop_groups: Vec<&'static str>,
    /// Transactional messages: the plan per key, and the keys whose resolution is recorded.
    tx_plans: BTreeMap<String, TxPlan>,
    tx_resolved: BTreeSet<String>,
    /// Keys of acked transactional sends.
    tx_acked: BTreeSet<String>,
    misrecord: scheduled::Misrecord,
    /// Replicated groups (empty without replication).
    topology: Topology,
    /// Nodes being killed and restarted (by the nemesis, or held down by [`StopGroup`]): no
    /// other step kills, restarts or pauses them meanwhile.
    cycling: BTreeSet<NodeId>,
}

type Shared = Arc<Mutex<World>>;

fn now_ms(world: &World) -> u64 {
    world.start.elapsed().as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// Nodes

struct Cluster {
    handle: Handle,
    namesrvs: Vec<NodeHandle>,
    /// (broker name, node): the masters of replicated groups, and single brokers.
    brokers: Vec<(String, NodeHandle)>,
    /// (slave node name, node) of replicated groups ([`replication`]).
    slaves: Vec<(String, NodeHandle)>,
    topology: Topology,
    clients: Vec<(String, NodeHandle)>,
    namesrv_addrs: Vec<String>,
}

fn broker_config(
    swarm: &Swarm,
    index: usize,
    ip: IpAddr,
    namesrvs: &[String],
    defects: Defects,
) -> BrokerConfig {
    let mut config = BrokerConfig {
        broker_name: broker_name(index),
        broker_ip1: ip,
        listen_port: BROKER_PORT,
        namesrv_addrs: namesrvs.to_vec(),
        flush_disk_type: swarm.flush,
        default_topic_queue_nums: QUEUES_PER_TOPIC,
        register_broker_interval_ms: 2_000,
        long_polling_max_hold_ms: 5_000,
        seed: swarm.seed ^ index as u64,
        ..BrokerConfig::default()
    };
    config.store = store_config(defects);
    scheduled::configure_broker(&mut config);
    config
}

/// Small segments: the simulated disk holds them in memory.
fn store_config(defects: Defects) -> StoreConfig {
    StoreConfig {
        defects,
        // A power cut can tear the un-synced tail so that a damaged record is followed by one
        // that survived; the default policy (refuse to start) then needs an operator. The
        // simulated operator chose `truncate` (recoverCorruptedCommitLog): acknowledged synced
        // data lies before any tear, so the checkers still see every loss it could cause.
        corrupted_commitlog: vostok_core::store::CorruptionPolicy::Truncate,
        commitlog_segment_bytes: COMMITLOG_SEGMENT_BYTES,
        consume_queue_units_per_segment: 512,
        index: vostok_core::store::index::IndexConfig {
            enabled: true,
            hash_slot_count: 64,
            max_index_count: 1024,
        },
        ..StoreConfig::default()
    }
}

fn broker_name(index: usize) -> String {
    format!("broker-{}", (b'a' + index as u8) as char)
}

fn build_cluster(handle: &Handle, swarm: &Swarm, defects: Defects) -> Cluster {
    let namesrv_addrs: Vec<String> = (0..swarm.namesrvs)
        .map(|i| format!("10.0.0.{}:{NAMESRV_PORT}", i + 1))
        .collect();
    let mut namesrvs = Vec::new();
    for i in 0..swarm.namesrvs {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1));
        let node = handle
            .create_node()
            .name(format!("ns-{i}"))
            .ip(ip)
            .init(move || async move {
                let listener =
                    tokio::net::TcpListener::bind(SocketAddr::new(ip, NAMESRV_PORT)).await;
                let Ok(listener) = listener else { return };
                let Ok(mut server) = NamesrvServer::start(listener, NamesrvConfig::default())
                else {
                    return;
                };
                let _ = server.stopped().await;
            })
            .build();
        namesrvs.push(node);
    }
    let mut brokers = Vec::new();
    let mut slaves = Vec::new();
    let mut topology = Topology::new();
    for i in 0..swarm.brokers {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1));
        let mut config = broker_config(swarm, i, ip, &namesrv_addrs, defects);
        let Some(plan) = &swarm.replication else {
            brokers.push((
                broker_name(i),
                broker_node(handle, broker_name(i), ip, config, false),
            ));
            continue;
        };
        replication::configure_master(&mut config, plan, i);
        let master_config = config.clone();
        let master = broker_node(handle, broker_name(i), ip, config, true);
        let mut group = replication::Group {
            sync_master: plan.sync_master[i],
            master: master.id(),
            slaves: Vec::new(),
        };
        for id in 1..=plan.slaves_per_group {
            let name = replication::slave_name(&broker_name(i), id);
            let ip = replication::slave_ip(i, id);
            let config = replication::slave_config(&master_config, plan, id, ip);
            let node = broker_node(handle, name.clone(), ip, config, false);
            group.slaves.push((name.clone(), node.id()));
            slaves.push((name, node));
        }
        topology.insert(broker_name(i), group);
        brokers.push((broker_name(i), master));
    }
    Cluster {
        handle: handle.clone(),
        namesrvs,
        brokers,
        slaves,
        topology,
        clients: Vec::new(),
        namesrv_addrs,
    }
}

/// A broker node on its SimDisk; the master of a replicated group (`serves_ha`) also serves
/// its HA port.
fn broker_node(
    handle: &Handle,
    name: String,
    ip: IpAddr,
    config: BrokerConfig,
    serves_ha: bool,
) -> NodeHandle {
    let ha_port = serves_ha.then_some(BROKER_PORT + replication::HA_PORT_OFFSET);
    handle
        .create_node()
        .name(name)
        .ip(ip)
        .init(move || {
            let config = config.clone();
            async move {
                let storage =
                    madsim::plugin::simulator::<SimDisk>().storage(madsim::plugin::node());
                let listener =
                    tokio::net::TcpListener::bind(SocketAddr::new(ip, BROKER_PORT)).await;
                let Ok(listener) = listener else { return };
                let mut options = vostok::server::BrokerDriverOptions::default();
                if let Some(port) = ha_port {
                    let ha = tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await;
                    let Ok(ha) = ha else { return };
                    options.ha_listener = Some(ha);
                }
                // A broker whose recovery refuses the store stays down (as a real one
                // would) until the healed phase, where an operator starts it again.
                let mut server =
                    match BrokerServer::start_with_storage(listener, config, storage, options) {
                        Ok(server) => {
                            let disks = madsim::plugin::simulator::<SimDisk>();
                            disks.with(madsim::plugin::node(), |d| {
                                d.refused_start = None;
                                // Built (and written) during the start, after a crash.
                                if let Ok(Some(fences)) = d.mem.read_all(RECOVERY_FENCE_PATH) {
                                    d.fence_log.push((Instant::now(), fences));
                                }
                            });
                            server
                        }
                        Err(e) => {
                            let disks = madsim::plugin::simulator::<SimDisk>();
                            disks.with(madsim::plugin::node(), |d| {
                                d.refused_start = Some(e.to_string());
                            });
                            return;
                        }
                    };
                let _ = server.stopped().await;
            }
        })
        .build()
}

// ---------------------------------------------------------------------------------------------
// Workload

fn tag_of(rng: &mut SeededRng, swarm: &Swarm) -> Option<String> {
    if rng.below(100) < swarm.tagged_percent {
        Some(if rng.below(2) == 0 { "TagA" } else { "TagB" }.to_owned())
    } else {
        None
    }
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    world: Shared,
    swarm: Swarm,
    index: usize,
    namesrvs: Vec<String>,
    clock: Arc<dyn Clock>,
    count: usize,
    first: usize,
    flush: FlushMode,
    pace_ms: u64,
) {
    let name = format!("prod-{index}");
    let producer = vostok::client::Producer::builder()
        .group("SimProducers")
        .instance_name(&name)
        .seed(swarm.seed ^ ((index as u64 + 1) * 7919))
        .clock(clock)
        .send_timeout(Duration::from_secs(3))
        .route_refresh_interval(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_secs(2))
        .default_topic_queue_nums(QUEUES_PER_TOPIC as i32);
    // Every producer is transactional (any member of the group may be asked to check back);
    // plain, delayed and timer messages go through its ordinary sends.
    let producer = producer
        .namesrv_addr(&namesrvs.join(";"))
        .build_transactional(
            transaction_executor(world.clone()),
            transaction_checker(world.clone()),
        )
        .expect("a valid producer");
    let Ok(producer) = producer.start().await else {
        return;
    };
    let mut rng = SeededRng::new(swarm.seed ^ 0xabcd ^ ((index as u64) << 20) ^ first as u64);
    let mut kinds =
        SeededRng::new(swarm.seed ^ 0x6b69_6e64 ^ ((index as u64) << 20) ^ first as u64);
    for i in first..first + count {
        let key = format!("p{index}-{i}");
        let kind = SendKind::draw(&mut kinds, &swarm.scheduled);
        let tag = tag_of(&mut rng, &swarm);
        let ordered = rng.below(100) < swarm.ordered_percent && kind.is_plain();
        let order_key = ordered.then(|| format!("o{}", rng.below(3)));
        let body = format!("body {key} {:016x}", rng.next_u64()).into_bytes();
        let mut message = Message::new(TOPIC, body.clone()).with_property(KEY_PROPERTY, &key);
        if let Some(tag) = &tag {
            message = message.with_tags(tag);
        }
        let message = kind.apply(message);
        if let SendKind::Transaction(plan) = kind {
            lock(&world).tx_plans.insert(key.clone(), plan);
        }
        let op = {
            let mut w = lock(&world);
            let op = w.history.next_op();
            let t = now_ms(&w);
            let late_ms = w.misrecord.due_late_by_ms;
            w.history.send_invoked_spec(
                t,
                SendSpec {
                    op,
                    producer: name.clone(),
                    topic: TOPIC.to_owned(),
                    key: key.clone(),
                    body_crc: body_crc(&body),
                    tag: tag.clone(),
                    order_key: order_key.clone(),
                    deliver_not_before_ms: kind.delay_ms().map(|d| t + d + late_ms),
                    transaction_id: matches!(kind, SendKind::Transaction(_)).then(|| key.clone()),
                },
            );
            op
        };
        let result = match (&order_key, kind) {
            (_, SendKind::Transaction(_)) => producer
                .send_message_in_transaction(message, None)
                .await
                .map(|r| r.send_result),
            (Some(k), _) => producer.producer().send_orderly(message, k).await,
            (None, _) => producer.producer().send(message).await,
        };
        if let (SendKind::Transaction(_), Ok(r)) = (kind, &result) {
            if r.status != SendStatus::SendOk {
                // The client rolled it back without asking the executor.
                lock(&world).tx_plans.insert(key.clone(), TxPlan::Rollback);
                resolve_transaction(&world, &key, false);
            }
        }
        {
            let mut w = lock(&world);
            let t = now_ms(&w);
            match result {
                Ok(r) if r.status == SendStatus::SendOk => {
                    let real = QueueRef::new(&r.queue.broker_name, TOPIC, r.queue.queue_id as u32);
                    let queue = kind.ack_queue(&r.queue.broker_name, real);
                    w.history
                        .send_ok(t, op, queue, r.queue_offset.max(0) as u64, flush);
                    let World {
                        history, topology, ..
                    } = &mut *w;
                    replication::record_at_ack(
                        history,
                        t,
                        topology,
                        &r.queue.broker_name,
                        op,
                        &r.offset_msg_id,
                        &key,
                        COMMITLOG_SEGMENT_BYTES,
                        KEY_PROPERTY,
                    );
                    match kind {
                        SendKind::Transaction(plan) => {
                            if plan.commits() {
                                w.acked.insert(key.clone(), tag);
                            }
                            w.tx_acked.insert(key);
                        }
                        _ => {
                            w.acked.insert(key, tag);
                        }
                    }
                }
                Ok(_) => w.history.send_timed_out(t, op),
                Err(vostok::client::ClientError::NoRoute { .. }) => {
                    w.history.send_failed(t, op, "no route")
                }
                Err(_) => w.history.send_timed_out(t, op),
            }
        }
        tokio::time::sleep(Duration::from_millis(1 + rng.below(2 * pace_ms + 1))).await;
    }
    settle_transactions(&world, swarm.groups).await;
    producer.shutdown().await;
}

/// Records the resolution of `key`'s transaction (its id is the key) the first time it is
/// decided.
fn resolve_transaction(world: &Shared, key: &str, committed: bool) {
    let mut w = lock(world);
    if w.tx_resolved.insert(key.to_owned()) {
        let t = now_ms(&w);
        let committed = committed && !w.misrecord.commit_as_rollback;
        w.history.transaction_resolved(t, key, key, committed);
    }
}

/// The local transaction: the plan of the message's key, recorded before END_TRANSACTION.
fn transaction_executor(
    world: Shared,
) -> impl Fn(
    &Message,
    &vostok::client::SendResult,
    Option<&(dyn std::any::Any + Send + Sync)>,
) -> LocalTransactionState
       + Send
       + Sync
       + 'static {
    move |message, _stored, _arg| {
        let key = message
            .properties
            .get(KEY_PROPERTY)
            .unwrap_or("")
            .to_owned();
        let plan = lock(&world).tx_plans.get(&key).copied();
        let Some(plan) = plan else {
            return LocalTransactionState::Unknow;
        };
        let state = plan.first_state();
        if state != LocalTransactionState::Unknow {
            resolve_transaction(&world, &key, plan.commits());
        }
        state
    }
}

/// The check-back: the plan's final decision, recorded before it is sent.
fn transaction_checker(
    world: Shared,
) -> impl Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static {
    move |half| {
        let key = half.property(KEY_PROPERTY).unwrap_or("").to_owned();
        let plan = lock(&world).tx_plans.get(&key).copied();
        let Some(plan) = plan else {
            return LocalTransactionState::Unknow;
        };
        resolve_transaction(&world, &key, plan.commits());
        plan.final_state()
    }
}

/// Waits (bounded) until every acked transaction is resolved and every committed one was
/// delivered to every group that wants it (see [`wants`]), so that the brokers' checks find a
/// producer of the group alive: an undecided one, or one whose END_TRANSACTION was lost (the
/// broker checks it again). A commit one group saw can still be lost to a power cut before
/// another group read it (simulator seed 140000410: its half message, durable, was checked
/// again and again after the producers had left because group g0 alone had been waited for).
/// The healed phase's producers answer what a broker could only check once healed.
async fn settle_transactions(world: &Shared, groups: usize) {
    let end = Instant::now() + Duration::from_millis(scheduled::TRANSACTION_SETTLE_LIMIT_MS);
    while Instant::now() < end {
        let open = {
            let w = lock(world);
            w.tx_acked.iter().any(|k| {
                !w.tx_resolved.contains(k)
                    || w.tx_plans.get(k).is_some_and(|p| p.commits())
                        && !delivered_to_all(&w, groups, k)
            })
        };
        if !open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn consume(
    world: Shared,
    swarm: Swarm,
    group: usize,
    member: usize,
    namesrvs: Vec<String>,
    clock: Arc<dyn Clock>,
    stop: Arc<tokio::sync::Notify>,
) {
    let group_name = format!("g{group}");
    let consumer_name = format!("cons-{group}-{member}");
    let expression = if group == 0 { "*" } else { "TagA" };
    let listener_world = world.clone();
    let listener_group = group_name.clone();
    let listener_name = consumer_name.clone();
    let listener = move |messages: Vec<MessageExt>| {
        let mut w = lock(&listener_world);
        let t = now_ms(&w);
        for m in messages {
            let key = m.property(KEY_PROPERTY).unwrap_or("").to_owned();
            w.delivered
                .entry(listener_group.clone())
                .or_default()
                .insert(key.clone());
            w.history.delivered(
                t,
                Delivery {
                    group: listener_group.clone(),
                    consumer: listener_name.clone(),
                    queue: QueueRef::new(
                        &m.queue.broker_name,
                        &m.queue.topic,
                        m.queue.queue_id as u32,
                    ),
                    queue_offset: m.queue_offset().max(0) as u64,
                    key,
                    body_crc: body_crc(m.body()),
                    record_crc_ok: true,
                    reconsume_times: m.reconsume_times().max(0) as u32,
                    from_slave: crate::replication::is_slave_addr(&m.served_by),
                },
            );
        }
        async { ConsumeStatus::ConsumeSuccess }
    };
    let consumer = vostok::client::PushConsumer::builder()
        .group(&group_name)
        .instance_name(&consumer_name)
        .seed(swarm.seed ^ (((group as u64) << 8 | member as u64) * 104_729))
        .clock(clock)
        .namesrv_addr(&namesrvs.join(";"))
        .subscribe(TOPIC, expression)
        .consume_from(ConsumeFromWhere::FirstOffset)
        .route_refresh_interval(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_secs(2))
        .rebalance_interval(Duration::from_secs(2))
        .persist_offset_interval(Duration::from_secs(1))
        .broker_suspend_max_time(Duration::from_secs(2))
        .listener(listener)
        .build()
        .expect("a valid consumer");
    let Ok(consumer) = consumer.start().await else {
        return;
    };
    stop.notified().await;
    consumer.shutdown().await;
}

/// The POP groups of a seed.
fn pop_groups(swarm: &Swarm) -> Vec<&'static str> {
    match swarm.pop {
        None => Vec::new(),
        Some(plan) if plan.orderly => vec![POP_GROUP, ORDERLY_POP_GROUP],
        Some(_) => vec![POP_GROUP],
    }
}

/// Who a POP consumer is.
struct PopMember {
    group: &'static str,
    orderly: bool,
    member: usize,
    /// Its node's and instance's name.
    name: String,
}

/// A member of a POP group: receives in a loop until `stop`, acks most messages, leaves some
/// unacked (they must come back once their invisible time is over) and changes the invisible
/// time of some. Records every delivery, ack and change of invisible time.
async fn pop_consume(
    world: Shared,
    swarm: Swarm,
    plan: PopPlan,
    who: PopMember,
    namesrvs: Vec<String>,
    clock: Arc<dyn Clock>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let PopMember {
        group,
        orderly,
        member,
        name,
    } = who;
    // The plain group's streams are those it had before the orderly one came.
    let stream = if orderly { 0x6f72_6465_7200 } else { 0 };
    // An orderly member holds a queue while a batch of it is in flight, and a message it
    // leaves unacked holds the queue for its invisible time: it takes bigger batches and waits
    // less on a broker with nothing to give, or a single member does not drain three brokers
    // within the healed phase.
    let (max_messages, await_duration) = if orderly {
        (plan.batch * 4, Duration::from_secs(1))
    } else {
        (plan.batch, Duration::from_secs(2))
    };
    let consumer = SimpleConsumer::builder()
        .group(group)
        .instance_name(&name)
        .orderly(orderly)
        .seed(swarm.seed ^ ((member as u64 + 1) * 15_485_863) ^ stream)
        .clock(clock)
        .namesrv_addr(&namesrvs.join(";"))
        .route_refresh_interval(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_secs(2))
        .subscribe(TOPIC, "*")
        .init_mode(ConsumeInitMode::Min)
        .await_duration(await_duration)
        .build()
        .expect("a valid simple consumer");
    let Ok(consumer) = consumer.start().await else {
        return;
    };
    let mut rng = SeededRng::new(swarm.seed ^ 0x706f_7063 ^ ((member as u64) << 24) ^ stream);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if rng.below(100) < plan.pause_percent {
            tokio::time::sleep(Duration::from_millis(500 + rng.below(2_000))).await;
        }
        let invisible_ms =
            plan.min_invisible_ms + rng.below(plan.max_invisible_ms - plan.min_invisible_ms + 1);
        let invoked_ms = now_ms(&lock(&world));
        let received = consumer
            .receive(max_messages, Duration::from_millis(invisible_ms))
            .await;
        let messages = match received {
            Ok(messages) => messages,
            Err(_) => {
                {
                    let mut w = lock(&world);
                    let t = now_ms(&w);
                    w.history.pop_receive_failed(t, group, &name, invoked_ms);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut batch = Vec::new();
        {
            let mut w = lock(&world);
            let t = now_ms(&w);
            let receive = w.next_pop_receive;
            w.next_pop_receive += 1;
            for m in messages {
                let key = m.property(KEY_PROPERTY).unwrap_or("").to_owned();
                let id = w.next_pop_id;
                w.next_pop_id += 1;
                w.delivered
                    .entry(group.to_owned())
                    .or_default()
                    .insert(key.clone());
                let info = m.receipt_handle().info();
                w.history.pop_delivered(
                    t,
                    PopDelivery {
                        id,
                        group: group.to_owned(),
                        consumer: name.clone(),
                        queue: QueueRef::new(
                            &m.queue.broker_name,
                            &m.queue.topic,
                            m.queue.queue_id as u32,
                        ),
                        queue_offset: m.ack_offset().max(0) as u64,
                        key: key.clone(),
                        reconsume_times: m.reconsume_times().max(0) as u32,
                        pop_time_ms: info.pop_time_ms,
                        invisible_until_ms: m.receipt_handle().invisible_until_ms(),
                        invisible_ms,
                        invoked_ms,
                        flush: FlushMode::from(swarm.flush),
                        first_pop_time_ms: m
                            .property(FIRST_POP_TIME_PROPERTY)
                            .and_then(|v| v.parse().ok()),
                        orderly,
                        receive,
                    },
                );
                batch.push((id, key, m));
            }
        }
        for (id, key, mut m) in batch {
            if rng.below(100) < plan.change_percent {
                let changed_ms = 1_000 + rng.below(4_000);
                let invoked_ms = now_ms(&lock(&world));
                let ok = consumer
                    .change_invisible_duration(&mut m, Duration::from_millis(changed_ms))
                    .await
                    .is_ok();
                let mut w = lock(&world);
                let t = now_ms(&w);
                w.history
                    .pop_invisible_changed(t, id, invoked_ms, changed_ms, ok);
            }
            if rng.below(100) < plan.skip_ack_percent {
                continue;
            }
            if rng.below(4) == 0 {
                tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
            }
            let invoked_ms = now_ms(&lock(&world));
            let ok = consumer.ack(&m).await.is_ok();
            let mut w = lock(&world);
            let t = now_ms(&w);
            w.history.pop_acked(t, id, invoked_ms, ok);
            if ok {
                w.pop_acked.entry(group).or_default().insert(key);
            }
        }
    }
    consumer.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The scenario

async fn scenario(swarm: Swarm, defects: Defects, misrecord: scheduled::Misrecord) -> SeedReport {
    let handle = Handle::current();
    let base_ms = wall_ms();
    let skews: Skews = Arc::default();
    {
        let skews = skews.clone();
        sim_clock::set_hook(Some(std::rc::Rc::new(move |wall| {
            skewed(&skews, madsim::plugin::node(), wall, base_ms)
        })));
    }
    let world: Shared = Arc::new(Mutex::new(World {
        history: History::new(),
        start: Instant::now(),
        acked: BTreeMap::new(),
        delivered: BTreeMap::new(),
        pop_acked: BTreeMap::new(),
        next_pop_id: 0,
        next_pop_receive: 0,
        pop_groups: pop_groups(&swarm),
        tx_plans: BTreeMap::new(),
        tx_resolved: BTreeSet::new(),
        tx_acked: BTreeSet::new(),
        misrecord,
        topology: Topology::new(),
        cycling: BTreeSet::new(),
    }));
    let mut rng = SeededRng::new(swarm.seed ^ 0x6e65_6d65_7369_7300);
    let mut cluster = build_cluster(&handle, &swarm, defects);
    lock(&world).topology = cluster.topology.clone();
    let flush_mode = FlushMode::from(swarm.flush);
    // Let the servers start and the brokers register before clients come.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let clock_for = |node: NodeId| -> Arc<dyn Clock> {
        Arc::new(NodeClock {
            skews: skews.clone(),
            node,
            base_ms,
            slewed: Mutex::new(SlewedClock::default()),
            origin: Instant::now(),
        })
    };

    // Consumers first, so they see every message from the first offset. Each group has its
    // own stop signal: one group may stop early ([`replication::ReplicationPlan::stop_group`]).
    let mut stops: Vec<Arc<tokio::sync::Notify>> = (0..swarm.groups)
        .map(|_| Arc::new(tokio::sync::Notify::new()))
        .collect();
    let mut consumer_tasks = Vec::new();
    let mut consumer_nodes: Vec<(usize, usize, NodeHandle)> = Vec::new();
    {
        let mut w = lock(&world);
        let t = now_ms(&w);
        for g in 0..swarm.groups {
            let tags: &[&str] = if g == 0 { &[] } else { &["TagA"] };
            w.history.subscribed(t, &format!("g{g}"), TOPIC, tags);
        }
        for group in pop_groups(&swarm) {
            w.history.subscribed(t, group, TOPIC, &[]);
        }
    }
    let pop_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pop_tasks = Vec::new();
    if let Some(plan) = swarm.pop {
        for group in pop_groups(&swarm) {
            let orderly = group == ORDERLY_POP_GROUP;
            for m in 0..plan.consumers {
                let (prefix, net) = if orderly { ("popo", 6) } else { ("pop", 5) };
                let name = format!("{prefix}-{m}");
                let ip = IpAddr::V4(Ipv4Addr::new(10, 0, net, m as u8 + 1));
                let node = handle.create_node().name(&name).ip(ip).build();
                pop_tasks.push(node.spawn(pop_consume(
                    world.clone(),
                    swarm.clone(),
                    plan,
                    PopMember {
                        group,
                        orderly,
                        member: m,
                        name: name.clone(),
                    },
                    cluster.namesrv_addrs.clone(),
                    clock_for(node.id()),
                    pop_stop.clone(),
                )));
                cluster.clients.push((name, node));
            }
        }
    }
    for (g, stop) in stops.iter().enumerate() {
        for m in 0..swarm.consumers_per_group {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 3, (g * 4 + m) as u8 + 1));
            let node = handle
                .create_node()
                .name(format!("cons-{g}-{m}"))
                .ip(ip)
                .build();
            let task = node.spawn(consume(
                world.clone(),
                swarm.clone(),
                g,
                m,
                cluster.namesrv_addrs.clone(),
                clock_for(node.id()),
                stop.clone(),
            ));
            consumer_tasks.push(task);
            consumer_nodes.push((g, m, node.clone()));
            cluster.clients.push((format!("cons-{g}-{m}"), node));
        }
    }
    let mut producer_nodes = Vec::new();
    let mut producer_tasks = Vec::new();
    for p in 0..swarm.producers {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 2, p as u8 + 1));
        let node = handle
            .create_node()
            .name(format!("prod-{p}"))
            .ip(ip)
            .build();
        producer_tasks.push(node.spawn(produce(
            world.clone(),
            swarm.clone(),
            p,
            cluster.namesrv_addrs.clone(),
            clock_for(node.id()),
            swarm.messages_per_producer,
            0,
            flush_mode,
            swarm.fault_phase_ms / swarm.messages_per_producer as u64,
        )));
        cluster.clients.push((format!("prod-{p}"), node.clone()));
        producer_nodes.push(node);
    }

    // The fault phase.
    let mut nemesis = Nemesis::new(&cluster, &skews, swarm.max_clock_offset_ms);
    let faults = swarm.nemesis_faults();
    let fault_end = Instant::now() + Duration::from_millis(swarm.fault_phase_ms);
    let stop_group = swarm
        .replication
        .as_ref()
        .filter(|p| p.stop_group)
        .map(|_| {
            let plan = StopGroup::draw(&swarm);
            let stop = stops[plan.group].clone();
            let consumers: Vec<NodeId> = consumer_nodes
                .iter()
                .filter(|(g, _, _)| *g == plan.group)
                .map(|(_, _, n)| n.id())
                .collect();
            madsim::task::spawn(plan.run(world.clone(), cluster.topology.clone(), consumers, stop))
        });
    while Instant::now() < fault_end {
        let gap = 1 + rng.below(2 * swarm.nemesis_gap_ms);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if faults.is_empty() {
            continue;
        }
        let fault = faults[rng.below(faults.len() as u64) as usize];
        nemesis.step(fault, &mut rng, &world).await;
    }
    for task in producer_tasks {
        let _ = task.await;
    }
    let stopped = match stop_group {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };

    // The healed phase: faults stop; sends must succeed and consumers drain.
    nemesis.heal(&world).await;
    {
        let mut w = lock(&world);
        let t = now_ms(&w);
        w.history.healed(t);
    }
    let replicas = replication::Env {
        handle: &handle,
        topology: &cluster.topology,
        store_config: store_config(defects),
        topics: &REPLICA_TOPICS,
        key_property: KEY_PROPERTY,
    };
    if !cluster.topology.is_empty() {
        {
            let mut w = lock(&world);
            let t = now_ms(&w);
            replicas.record_own_commits(&mut w.history, t);
            replicas.empty_diverged_slaves(&mut w.history, t);
        }
        // A SYNC_MASTER answers sends only with a slave linked: give links time to come back.
        tokio::time::sleep(Duration::from_millis(replication::RELINK_MS)).await;
        if stopped.is_some() {
            // The stopped group commits nothing: give the slaves time to hand its commits back.
            let rest = replication::HAND_BACK_MS.saturating_sub(replication::RELINK_MS);
            tokio::time::sleep(Duration::from_millis(rest)).await;
        }
    }
    record_committed_offsets(&world, &cluster);
    if let Some(g) = stopped {
        // The stopped group starts again from the offsets the masters hold.
        stops[g] = Arc::new(tokio::sync::Notify::new());
        {
            let mut w = lock(&world);
            let t = now_ms(&w);
            w.history
                .nemesis(t, &format!("consumers of g{g} start again"));
        }
        for (cg, m, node) in &consumer_nodes {
            if *cg == g {
                consumer_tasks.push(node.spawn(consume(
                    world.clone(),
                    swarm.clone(),
                    g,
                    *m,
                    cluster.namesrv_addrs.clone(),
                    clock_for(node.id()),
                    stops[g].clone(),
                )));
            }
        }
    }
    let acked_before = lock(&world).acked.len();
    let mut healed_tasks = Vec::new();
    for (p, node) in producer_nodes.iter().enumerate() {
        healed_tasks.push(node.spawn(produce(
            world.clone(),
            plain_workload(&swarm),
            p,
            cluster.namesrv_addrs.clone(),
            clock_for(node.id()),
            HEALED_SENDS,
            swarm.messages_per_producer,
            flush_mode,
            20,
        )));
    }
    for task in healed_tasks {
        let _ = task.await;
    }
    let mut liveness = Vec::new();
    let acked_healed = lock(&world).acked.len() - acked_before;
    if acked_healed < HEALED_SENDS * swarm.producers {
        liveness.push(format!(
            "liveness: only {acked_healed} of {} sends succeeded after healing",
            HEALED_SENDS * swarm.producers
        ));
    }
    let drain_end = Instant::now() + Duration::from_millis(DRAIN_LIMIT_MS);
    while Instant::now() < drain_end && !drained(&lock(&world), swarm.groups) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    {
        let mut w = lock(&world);
        let t = now_ms(&w);
        w.history.drained(t);
    }
    for stop in &stops {
        stop.notify_waiters();
    }
    pop_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for task in consumer_tasks.into_iter().chain(pop_tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    // Slaves catch up, then stop and are compared with their masters and read back.
    if !cluster.topology.is_empty() {
        replicas.wait_caught_up().await;
        let mut w = lock(&world);
        let t = now_ms(&w);
        replicas.read_back(&mut w.history, t);
    }
    // Read-back: every broker stops (process crash, page cache kept) and its disk is recovered
    // and read, exactly as a restart would see it.
    let disks = madsim::plugin::simulator::<SimDisk>();
    for (name, node) in &cluster.brokers {
        disks.arm(node.id(), CrashMode::Process);
        handle.kill(node.id());
        // The last use of the disk: the read-back takes it rather than copying it.
        let (mem, fence_log) = disks.with(node.id(), |d| {
            (std::mem::take(&mut d.mem), std::mem::take(&mut d.fence_log))
        });
        let t = now_ms(&lock(&world));
        record_fences(&mut lock(&world), t, name, fence_log);
        let offsets = mem.read_all(CONSUMER_OFFSETS_PATH).ok().flatten();
        committed_offsets_of(&mut lock(&world).history, t, name, None, offsets);
        read_back(&mut lock(&world).history, t, name, mem, defects);
    }
    sim_clock::set_hook(None);

    let w = lock(&world);
    let report = check_report(&w.history, &scheduled::check_config(&swarm, now_ms(&w)));
    let mut violations = report.violations;
    for line in liveness {
        violations.push(Violation {
            invariant: vostok_core::check::Invariant::AtLeastOnce,
            event_index: w.history.len(),
            event: "healed".to_owned(),
            detail: line,
        });
    }
    SeedReport {
        seed: swarm.seed,
        swarm: swarm.to_string(),
        digest: w.history.digest(),
        violations,
        trace: w.history.renderings(),
        sim_ms: now_ms(&w),
        acked: w.acked.len() as u64,
        deliveries: report.stats.deliveries,
        slave_deliveries: report.stats.slave_deliveries,
    }
}

/// [`replication::ReplicationPlan::stop_group`]: one consumer group falls behind (its
/// consumers paused for a moment while producers go on), then one master's process dies and
/// the group's consumers turn to its slave for what they had not consumed yet. Once the slave
/// holds their commits, the group stops (a clean shutdown: its last commits go to the slave
/// too), then the master starts again. Only the slave's hand-back can bring the master's
/// offsets up to what the group committed (RocketMQ #1094's scenario: a master away, its
/// consumers on the slave, then the master back with its older offsets). A process crash
/// rather than a partition: a partition holds the requests the consumers sent before they
/// turned to the slave and delivers them when it ends, stale commits that may land on the
/// master after the hand-back. The nemesis leaves the master be while it is down, and the other way round.
struct StopGroup {
    group: usize,
    /// Index of the master among the replicated groups.
    master: usize,
    /// When the group's consumers pause, from the start of the fault phase.
    after_ms: u64,
    /// How long they stay paused before the master dies.
    behind_ms: u64,
}

/// How long the master may stay down for the group to commit on its slave: the consumers'
/// requests fail, they turn to a slave, commit there, and the slave writes its own commits
/// (an offset persist period).
const STOP_GROUP_LIMIT_MS: u64 = 15_000;

impl StopGroup {
    /// Drawn from a stream of its own, so the swarm's other draws stay what they were.
    fn draw(swarm: &Swarm) -> Self {
        let mut rng = SeededRng::new(swarm.seed ^ 0x5354_4f50_4752_5000);
        StopGroup {
            group: rng.below(swarm.groups as u64) as usize,
            master: rng.below(swarm.brokers as u64) as usize,
            after_ms: rng.below(swarm.fault_phase_ms / 2 + 1),
            behind_ms: 1_000 + rng.below(3_000),
        }
    }

    /// Runs it; returns the group if it stopped.
    async fn run(
        self,
        world: Shared,
        topology: Topology,
        consumers: Vec<NodeId>,
        stop: Arc<tokio::sync::Notify>,
    ) -> Option<usize> {
        let (broker, group) = topology.iter().nth(self.master)?;
        let (broker, master) = (broker.clone(), group.master);
        let own: Topology = [(broker.clone(), group.clone())].into_iter().collect();
        let g = format!("g{}", self.group);
        let handle = Handle::current();
        tokio::time::sleep(Duration::from_millis(self.after_ms)).await;
        {
            let mut w = lock(&world);
            let t = now_ms(&w);
            w.history.nemesis(
                t,
                &format!("pause {g}'s consumers for {}ms", self.behind_ms),
            );
        }
        for c in &consumers {
            handle.pause(*c);
        }
        tokio::time::sleep(Duration::from_millis(self.behind_ms)).await;
        // Not while the nemesis kills and restarts it.
        while !lock(&world).cycling.insert(master) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        {
            let mut w = lock(&world);
            let t = now_ms(&w);
            w.history
                .nemesis(t, &format!("{broker} away while {g} catches up"));
            w.history.node_crashed(t, &broker);
        }
        madsim::plugin::simulator::<SimDisk>().arm(master, CrashMode::Process);
        handle.kill(master);
        for c in &consumers {
            handle.resume(*c);
        }
        let end = Instant::now() + Duration::from_millis(STOP_GROUP_LIMIT_MS);
        let mut stopped = None;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if replication::groups_committed_on_slaves(&own, TOPIC).contains(&g) {
                {
                    let mut w = lock(&world);
                    let t = now_ms(&w);
                    w.history.nemesis(
                        t,
                        &format!("consumers of {g} stop: they committed on a slave of {broker}"),
                    );
                }
                stop.notify_waiters();
                stopped = Some(self.group);
                // Their shutdown commits on the slave too.
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                break;
            }
        }
        handle.restart(master);
        let mut w = lock(&world);
        w.cycling.remove(&master);
        let t = now_ms(&w);
        w.history.node_restarted(t, &broker);
        stopped
    }
}

/// The swarm with plain messages only (the healed phase's liveness sends).
fn plain_workload(swarm: &Swarm) -> Swarm {
    Swarm {
        scheduled: ScheduledMix::NONE,
        ..swarm.clone()
    }
}

/// Whether group `g` subscribes to messages tagged `tag`: `g0` takes every tag, the others
/// `TagA` only.
fn wants(g: usize, tag: Option<&str>) -> bool {
    g == 0 || tag == Some("TagA")
}

/// Whether every group got every acked key it subscribes to.
fn drained(w: &World, groups: usize) -> bool {
    w.acked.keys().all(|key| {
        delivered_to_all(w, groups, key)
            && w.pop_groups
                .iter()
                .all(|g| w.pop_acked.get(g).is_some_and(|s| s.contains(key)))
    })
}

/// Whether every group that subscribes to acked `key` got it (true for a key not acked).
fn delivered_to_all(w: &World, groups: usize, key: &str) -> bool {
    let Some(tag) = w.acked.get(key) else {
        return true;
    };
    let popped = || {
        w.pop_groups
            .iter()
            .all(|g| w.delivered.get(*g).is_some_and(|s| s.contains(key)))
    };
    (0..groups).all(|g| {
        !wants(g, tag.as_deref())
            || w.delivered
                .get(&format!("g{g}"))
                .is_some_and(|s| s.contains(key))
    }) && popped()
}

/// Where a broker persists its consumer offsets (RocketMQ's `consumerOffset.json` shape:
/// `{"offsetTable":{"topic@group":{"0":12}}}`).
const CONSUMER_OFFSETS_PATH: &str = "config/consumerOffsets.json";

/// Records, once faults have stopped, the offsets every broker has persisted for the workload's
/// groups. Read from the broker's disk (what it wrote, synced or not), so it costs no request
/// and no simulated time; compared with the read-back's offsets after draining, it lets the
/// checkers see an offset go backwards or past its queue's end. A queue a slave of the broker
/// holds a commit of (recorded before) and the broker none is recorded at 0: that is where
/// the workload's consumers (CONSUME_FROM_FIRST_OFFSET) start a queue without an offset, so
/// a commit the master never took back shows as a regression even when the master has none.
fn record_committed_offsets(world: &Shared, cluster: &Cluster) {
    let disks = madsim::plugin::simulator::<SimDisk>();
    for (name, node) in &cluster.brokers {
        let offsets = disks.with(node.id(), |d| {
            d.mem.read_all(CONSUMER_OFFSETS_PATH).ok().flatten()
        });
        let mut w = lock(world);
        let t = now_ms(&w);
        let from = w.history.len();
        committed_offsets_of(&mut w.history, t, name, None, offsets);
        let mut on_slaves: BTreeSet<(String, QueueRef)> = BTreeSet::new();
        for (i, e) in w.history.events().iter().enumerate() {
            match &e.kind {
                EventKind::SlaveOffsetCommitted { group, queue, .. }
                    if i < from && queue.broker == *name =>
                {
                    on_slaves.insert((group.clone(), queue.clone()));
                }
                EventKind::OffsetCommitted { group, queue, .. } if i >= from => {
                    on_slaves.remove(&(group.clone(), queue.clone()));
                }
                _ => {}
            }
        }
        for (group, queue) in on_slaves {
            w.history.offset_committed(t, &group, queue, 0);
        }
    }
}

/// Records every fence of the workload topic that `broker`'s starts left in its fence file
/// (`{"fences":[{"topic":…,"queueId":…,"group":…,"offset":…},…],"unknownQueues":{…}}`), each
/// with the time of the start that found it; a fence kept across starts is recorded once,
/// with its first start. A queue without an entry while the file holds an unknown queues'
/// fence is fenced at 0 for every group.
fn record_fences(w: &mut World, t: u64, broker: &str, fence_log: Vec<(Instant, Vec<u8>)>) {
    let mut seen = BTreeSet::new();
    for (at, bytes) in fence_log {
        let built_ms = at.duration_since(w.start).as_millis() as u64;
        let Ok(file) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let Some(fences) = file.get("fences").and_then(|v| v.as_array()) else {
            continue;
        };
        for f in fences {
            let topic = f.get("topic").and_then(|v| v.as_str());
            let queue_id = f.get("queueId").and_then(|v| v.as_u64());
            let group = f.get("group").and_then(|v| v.as_str());
            let offset = f.get("offset").and_then(|v| v.as_u64());
            let (Some(TOPIC), Some(queue_id), Some(group), Some(offset)) =
                (topic, queue_id, group, offset)
            else {
                continue;
            };
            if seen.insert((queue_id, group.to_owned(), offset)) {
                let queue = QueueRef::new(broker, TOPIC, queue_id as u32);
                w.history.fence_built(t, queue, group, offset, built_ms);
            }
        }
        if file.get("unknownQueues").is_some_and(|u| u.is_object()) {
            for queue_id in 0..QUEUES_PER_TOPIC {
                let listed = fences.iter().any(|f| {
                    f.get("topic").and_then(|v| v.as_str()) == Some(TOPIC)
                        && f.get("queueId").and_then(|v| v.as_u64()) == Some(u64::from(queue_id))
                });
                if !listed && seen.insert((u64::from(queue_id), "*".to_owned(), 0)) {
                    let queue = QueueRef::new(broker, TOPIC, queue_id);
                    w.history.fence_built(t, queue, "*", 0, built_ms);
                }
            }
        }
    }
}

/// Records an `OffsetCommitted` per queue of the workload topic in `broker`'s persisted
/// consumer offsets (the file's bytes), or a `SlaveOffsetCommitted` of `slave` on `broker`'s
/// queue when the file is a slave's own commits. A file that is missing or does not parse
/// records nothing: the broker itself would refuse to start on the latter, which the liveness
/// checks catch.
pub(crate) fn committed_offsets_of(
    history: &mut History,
    t: u64,
    broker: &str,
    slave: Option<&str>,
    offsets: Option<Vec<u8>>,
) {
    let Some(bytes) = offsets else {
        return;
    };
    let Ok(file) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return;
    };
    let Some(table) = file.get("offsetTable").and_then(|v| v.as_object()) else {
        return;
    };
    for (key, queues) in table {
        let Some((topic, group)) = key.split_once('@') else {
            continue;
        };
        if topic != TOPIC {
            continue;
        }
        let Some(queues) = queues.as_object() else {
            continue;
        };
        for (queue_id, offset) in queues {
            let (Ok(queue_id), Some(offset)) = (queue_id.parse::<u32>(), offset.as_u64()) else {
                continue;
            };
            let queue = QueueRef::new(broker, TOPIC, queue_id);
            match slave {
                Some(node) => history.slave_offset_committed(t, node, group, queue, offset),
                None => history.offset_committed(t, group, queue, offset),
            }
        }
    }
}

/// Opens the store on a copy of the broker's disk (crash recovery included) and records every
/// queue of the workload topic.
fn read_back(history: &mut History, t: u64, broker: &str, mem: MemStorage, defects: Defects) {
    let store = match MessageStore::open(mem, store_config(defects)) {
        Ok(store) => store,
        Err(e) => {
            history.nemesis(t, &format!("read-back {broker}: store does not open: {e}"));
            return;
        }
    };
    history.read_back_broker(t, broker);
    for topic in std::iter::once(TOPIC).chain(scheduled::WAITING_TOPICS) {
        read_back_topic(history, t, broker, &store, topic);
    }
}

/// Records every queue of `topic` in the read-back.
fn read_back_topic<S: vostok_core::store::SegmentStorage>(
    history: &mut History,
    t: u64,
    broker: &str,
    store: &MessageStore<S>,
    topic: &str,
) {
    for queue_id in store.queue_ids(topic) {
        let min = store.min_offset(topic, queue_id).0;
        let max = store.max_offset(topic, queue_id).0;
        let queue = QueueRef::new(broker, topic, queue_id as u32);
        let mut records = Vec::new();
        let mut offset = min;
        while offset < max {
            let got = store.get_unverified(topic, queue_id, QueueOffset(offset), 32, &|_| true);
            let Ok(got) = got else { break };
            if got.records.is_empty() {
                break;
            }
            for raw in &got.records {
                let (key, crc, ok) = match MessageRecord::decode(raw, true) {
                    Ok(r) => (
                        r.properties.get(KEY_PROPERTY).unwrap_or("").to_owned(),
                        body_crc(&r.body),
                        true,
                    ),
                    Err(_) => match MessageRecord::decode(raw, false) {
                        Ok(r) => (
                            r.properties.get(KEY_PROPERTY).unwrap_or("").to_owned(),
                            body_crc(&r.body),
                            false,
                        ),
                        Err(_) => (String::new(), 0, false),
                    },
                };
                records.push(ReadBackRecord {
                    queue: queue.clone(),
                    queue_offset: offset,
                    key,
                    body_crc: crc,
                    record_crc_ok: ok,
                });
                offset += 1;
            }
            if got.next_begin_offset.0 > offset {
                offset = got.next_begin_offset.0;
            }
        }
        history.read_back_queue(t, queue, min, max, records);
    }
}

// ---------------------------------------------------------------------------------------------
// The nemesis

struct Nemesis {
    handle: Handle,
    net: Arc<NetSim>,
    disks: Arc<SimDisk>,
    skews: Skews,
    /// Every server and client node, by name.
    nodes: Vec<(String, NodeId)>,
    /// Broker and NameServer nodes (kill, pause), by name.
    servers: Vec<(String, NodeId, bool)>,
    clients: Vec<(String, NodeId)>,
    /// Brokers that saw an I/O error: a broker treats a failed sync as fatal (fsyncgate), so
    /// healing them means an operator's restart.
    disk_failed: BTreeSet<NodeId>,
    /// Clock offsets stay within ± this (the swarm's).
    max_clock_offset_ms: u64,
    /// Replicated groups: their masters' power losses record the durable CommitLog end.
    topology: Topology,
}

impl Nemesis {
    fn new(cluster: &Cluster, skews: &Skews, max_clock_offset_ms: u64) -> Self {
        let mut servers = Vec::new();
        for (i, ns) in cluster.namesrvs.iter().enumerate() {
            servers.push((format!("ns-{i}"), ns.id(), false));
        }
        for (name, node) in cluster.brokers.iter().chain(&cluster.slaves) {
            servers.push((name.clone(), node.id(), true));
        }
        let clients: Vec<(String, NodeId)> = cluster
            .clients
            .iter()
            .map(|(name, n)| (name.clone(), n.id()))
            .collect();
        let mut nodes: Vec<(String, NodeId)> =
            servers.iter().map(|(n, id, _)| (n.clone(), *id)).collect();
        nodes.extend(clients.iter().cloned());
        Nemesis {
            handle: cluster.handle.clone(),
            net: NetSim::current(),
            disks: madsim::plugin::simulator::<SimDisk>(),
            skews: skews.clone(),
            nodes,
            servers,
            clients,
            disk_failed: BTreeSet::new(),
            max_clock_offset_ms,
            topology: cluster.topology.clone(),
        }
    }

    fn record(&self, world: &Shared, what: String) {
        let mut w = lock(world);
        let t = now_ms(&w);
        w.history.nemesis(t, &what);
    }

    fn pick<T: Clone>(rng: &mut SeededRng, items: &[T]) -> T {
        items[rng.below(items.len() as u64) as usize].clone()
    }

    fn brokers(&self) -> Vec<(String, NodeId)> {
        self.servers
            .iter()
            .filter(|(_, _, b)| *b)
            .map(|(n, id, _)| (n.clone(), *id))
            .collect()
    }

    async fn step(&mut self, fault: Fault, rng: &mut SeededRng, world: &Shared) {
        let hold = Duration::from_millis(100 + rng.below(3_000));
        match fault {
            Fault::Partition | Fault::OneWay => {
                let (a, ai) = Self::pick(rng, &self.nodes);
                let (b, bi) = Self::pick(rng, &self.nodes);
                if ai == bi {
                    return;
                }
                self.net.clog_link(ai, bi);
                if fault == Fault::Partition {
                    self.net.clog_link(bi, ai);
                }
                self.record(
                    world,
                    format!("{} {a} {b} for {}ms", fault.name(), hold.as_millis()),
                );
                tokio::time::sleep(hold).await;
                self.net.unclog_link(ai, bi);
                self.net.unclog_link(bi, ai);
            }
            Fault::Isolate => {
                let (a, ai) = Self::pick(rng, &self.nodes);
                self.net.clog_node(ai);
                self.record(world, format!("isolate {a} for {}ms", hold.as_millis()));
                tokio::time::sleep(hold).await;
                self.net.unclog_node(ai);
            }
            Fault::Swizzle => {
                let mut subset: Vec<(String, NodeId)> = self
                    .nodes
                    .iter()
                    .filter(|_| rng.below(2) == 0)
                    .cloned()
                    .collect();
                let names: Vec<&str> = subset.iter().map(|(n, _)| n.as_str()).collect();
                self.record(world, format!("swizzle [{}]", names.join(",")));
                for (_, id) in &subset {
                    self.net.clog_node(*id);
                    tokio::time::sleep(Duration::from_millis(1 + rng.below(500))).await;
                }
                // Unclog in a random order.
                while !subset.is_empty() {
                    let (_, id) = subset.remove(rng.below(subset.len() as u64) as usize);
                    tokio::time::sleep(Duration::from_millis(1 + rng.below(500))).await;
                    self.net.unclog_node(id);
                }
            }
            Fault::LatencyLoss => {
                let loss = rng.below(20) as f64 / 100.0;
                let max_ms = 10 + rng.below(300);
                self.net.update_config(|c| {
                    c.packet_loss_rate = loss;
                    c.send_latency = Duration::from_millis(1)..Duration::from_millis(max_ms);
                });
                self.record(
                    world,
                    format!(
                        "latency 1..{max_ms}ms loss {loss} for {}ms",
                        hold.as_millis()
                    ),
                );
                tokio::time::sleep(hold).await;
                self.restore_net();
            }
            Fault::ConnReset => {
                if self.clients.is_empty() {
                    return;
                }
                let (a, ai) = Self::pick(rng, &self.clients);
                self.net.reset_node(ai);
                self.record(world, format!("reset connections of {a}"));
            }
            Fault::KillRestart | Fault::PowerLoss => {
                let (name, id, is_broker) = Self::pick(rng, &self.servers);
                if fault == Fault::PowerLoss && !is_broker {
                    return;
                }
                self.power_cycle(name, id, fault == Fault::PowerLoss, rng, world)
                    .await;
            }
            Fault::Replica(f) => self.replica_step(f, hold, rng, world).await,
            Fault::Pause => {
                let (name, id, _) = Self::pick(rng, &self.servers);
                if lock(world).cycling.contains(&id) {
                    return;
                }
                self.handle.pause(id);
                self.record(world, format!("pause {name} for {}ms", hold.as_millis()));
                tokio::time::sleep(hold).await;
                self.handle.resume(id);
            }
            Fault::BitFlipRead => {
                let brokers = self.brokers();
                let (name, id) = Self::pick(rng, &brokers);
                let flipped = self.disks.with(id, |d| {
                    let paths: Vec<String> = d
                        .mem
                        .paths()
                        .into_iter()
                        .filter(|p| p.starts_with("commitlog/"))
                        .collect();
                    if paths.is_empty() {
                        return None;
                    }
                    let path = paths[rng.below(paths.len() as u64) as usize].clone();
                    // Anywhere in what was written, synced or not: pulls read both.
                    let written = d
                        .mem
                        .contents(&path)
                        .and_then(|c| c.iter().rposition(|b| *b != 0))
                        .map_or(0, |last| last as u64 + 1);
                    if written == 0 {
                        return None;
                    }
                    let pos = rng.below(written);
                    let mask = 1u8 << rng.below(8);
                    // A transient fault: the next one to three reads of the byte come back
                    // wrong, then it reads right again.
                    let reads = 1 + rng.below(3) as u32;
                    d.flip_on_reads(&path, pos, mask, reads);
                    Some(format!("{path}@{pos} x{reads}"))
                });
                if let Some(at) = flipped {
                    self.record(world, format!("bitflip-read {name} {at}"));
                }
            }
            Fault::WriteEio | Fault::SyncEio | Fault::NoSpace => {
                let brokers = self.brokers();
                let (name, id) = Self::pick(rng, &brokers);
                self.disks.with(id, |d| match fault {
                    Fault::WriteEio => d
                        .mem
                        .set_fault(FaultOp::Write, Some(StorageError::Io("EIO".to_owned()))),
                    Fault::SyncEio => d
                        .mem
                        .set_fault(FaultOp::Sync, Some(StorageError::Io("EIO".to_owned()))),
                    _ => {
                        let used = d.mem.used_bytes();
                        d.mem.set_capacity_bytes(Some(used));
                    }
                });
                self.record(
                    world,
                    format!("{} {name} for {}ms", fault.name(), hold.as_millis()),
                );
                // A full disk passes (the broker refuses writes meanwhile, a slave drops its
                // link and resumes); an I/O error needs the operator's restart.
                if fault != Fault::NoSpace {
                    self.disk_failed.insert(id);
                }
                tokio::time::sleep(hold).await;
                self.disks.heal(id);
            }
            Fault::Clock => {
                let (name, id) = Self::pick(rng, &self.nodes);
                let skew = Skew {
                    offset_ms: rng.below(2 * self.max_clock_offset_ms + 1) as i64
                        - self.max_clock_offset_ms as i64,
                    drift_ppm: rng.below(2 * scheduled::MAX_DRIFT_PPM) as i64
                        - scheduled::MAX_DRIFT_PPM as i64,
                };
                lock(&self.skews).insert(id, skew);
                self.record(
                    world,
                    format!(
                        "clock {name} offset {}ms drift {}ppm",
                        skew.offset_ms, skew.drift_ppm
                    ),
                );
            }
        }
    }

    /// Kills `name` (a power cut when `power`, else a process crash), restarts it up to 2 s
    /// later.
    async fn power_cycle(
        &mut self,
        name: String,
        id: NodeId,
        power: bool,
        rng: &mut SeededRng,
        world: &Shared,
    ) {
        let down = Duration::from_millis(rng.below(2_000));
        {
            let mut w = lock(world);
            if !w.cycling.insert(id) {
                return;
            }
            let t = now_ms(&w);
            if power {
                let policy = match rng.below(3) {
                    0 => PowerLoss::DropUnsynced,
                    1 => PowerLoss::KeepUnsynced,
                    _ => PowerLoss::TearUnsynced,
                };
                // A torn write usually leaves one damaged sector (TigerBeetle: 80-100%).
                let flip = rng.below(5) != 0;
                self.disks.arm(id, CrashMode::Power { policy, flip });
                // Kept un-synced writes with garbage in the last one are a torn write:
                // that record may be cut off, so the checkers must allow its loss.
                let recorded = if flip && policy == PowerLoss::KeepUnsynced {
                    PowerLoss::TearUnsynced
                } else {
                    policy
                };
                w.history.power_lost(t, &name, recorded.into());
                if self.topology.contains_key(&name) {
                    // A replicated master: its slaves may hold bytes beyond this.
                    let durable = self.disks.with(id, |d| replication::durable_end(&d.mem));
                    w.history.durable_at_power_loss(t, &name, durable);
                }
                if flip {
                    w.history
                        .nemesis(t, &format!("flip a byte of {name}'s un-synced tail"));
                }
            } else {
                self.disks.arm(id, CrashMode::Process);
                w.history.node_crashed(t, &name);
            }
        }
        self.handle.kill(id);
        tokio::time::sleep(down).await;
        self.handle.restart(id);
        let mut w = lock(world);
        w.cycling.remove(&id);
        let t = now_ms(&w);
        w.history.node_restarted(t, &name);
    }

    /// A fault of a replicated group ([`replication`]).
    async fn replica_step(
        &mut self,
        fault: ReplicaFault,
        hold: Duration,
        rng: &mut SeededRng,
        world: &Shared,
    ) {
        match fault {
            ReplicaFault::DestroySlaveDisk => {
                let Some((name, id)) = replication::pick_slave(&self.topology, rng) else {
                    return;
                };
                let down = Duration::from_millis(rng.below(2_000));
                {
                    let mut w = lock(world);
                    let t = now_ms(&w);
                    w.history.node_crashed(t, &name);
                    w.history.disk_destroyed(t, &name);
                }
                self.handle.kill(id);
                replication::destroy_disk(id);
                tokio::time::sleep(down).await;
                self.handle.restart(id);
                let mut w = lock(world);
                let t = now_ms(&w);
                w.history.node_restarted(t, &name);
            }
            ReplicaFault::MemberPowerLoss => {
                if let Some((name, id)) = replication::pick_member(&self.topology, rng) {
                    self.power_cycle(name, id, true, rng, world).await;
                }
            }
            ReplicaFault::MasterSlaveOneWay | ReplicaFault::SlowSlave => {
                let topology = self.topology.clone();
                replication::link_fault(fault, &topology, rng, hold, |what| {
                    self.record(world, what)
                })
                .await;
            }
        }
    }

    fn restore_net(&self) {
        self.net.update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = Duration::from_millis(1)..Duration::from_millis(10);
        });
    }

    /// Ends every fault: links unclogged, network defaults, disks healthy, read flips gone.
    async fn heal(&mut self, world: &Shared) {
        self.restore_net();
        for (_, a) in &self.nodes {
            self.net.unclog_node(*a);
            for (_, b) in &self.nodes {
                self.net.unclog_link(*a, *b);
            }
        }
        for (_, id, is_broker) in &self.servers {
            self.handle.resume(*id);
            if *is_broker {
                self.disks.heal(*id);
                self.disks.with(*id, |d| d.clear_read_flips());
            }
        }
        self.record(world, "heal".to_owned());
        // Brokers that refused to start (their recovery could not read the disk) are started
        // again by an operator once the disk is healthy, like those that saw an I/O error.
        for (name, id, is_broker) in &self.servers {
            if !*is_broker {
                continue;
            }
            if let Some(why) = self.disks.with(*id, |d| d.refused_start.take()) {
                self.record(world, format!("{name} had refused to start: {why}"));
                self.disk_failed.insert(*id);
            }
        }
        for id in std::mem::take(&mut self.disk_failed) {
            let name = self
                .servers
                .iter()
                .find(|(_, s, _)| *s == id)
                .map(|(n, _, _)| n.clone())
                .unwrap_or_default();
            self.disks.arm(id, CrashMode::Process);
            {
                let mut w = lock(world);
                let t = now_ms(&w);
                w.history.node_crashed(t, &name);
            }
            self.handle.kill(id);
            self.handle.restart(id);
            let mut w = lock(world);
            let t = now_ms(&w);
            w.history.node_restarted(t, &name);
        }
        // Let registrations and routes settle.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
