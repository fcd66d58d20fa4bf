//! Replicated broker groups in the simulator: a master (`broker-a`, ASYNC_MASTER or
//! SYNC_MASTER) and one or two slaves (`broker-a-s1`, `broker-a-s2`, `brokerRole=SLAVE`, the
//! same brokerName) streaming its CommitLog over HA v1 (`runtime-native/src/ha.rs` over
//! madsim's TCP, the master's bytes read from its SimDisk).
//!
//! ```text
//!  broker-a   10.0.1.x:10911 (+1: HA port)  ◀── HA v1 ──  broker-a-s1  10.0.4.x:10911
//!     ▲ sends, pulls, offsets (clients)                   broker-a-s2  10.0.4.y:10911
//! ```
//!
//! What a seed with replication adds ([`ReplicationPlan`], drawn from its own stream so the
//! other swarm parameters of a seed stay what they were):
//!
//! * faults ([`ReplicaFault`]): a slave's disk destroyed (it restarts empty and re-replicates
//!   from the master's last segment), a one-way partition between a master and a slave, a
//!   slow slave (frozen in short bursts), a power loss of a master or a slave. The swarm's
//!   other faults hit slaves too (they are servers and brokers of the nemesis).
//! * a master's disk is never destroyed: without failover that loses its unreplicated data by
//!   design, and the checkers would have nothing to hold the broker to.
//! * history ([`vostok_core::check::replica`]): after each SEND_OK of a SYNC_MASTER, whether
//!   each slave of the group held the record at its CommitLog offset (read from the slave's
//!   disk when the ack arrives); with each power loss of a master, its durable CommitLog end;
//!   in the healed phase and at the end, each slave's CommitLog compared byte for byte with
//!   its master's, and its queues read back; when faults heal, the commits each slave holds as
//!   its own (consumers commit on a slave while its master is away), which its master's
//!   offsets recorded afterwards must not be below.
//! * a stopped group ([`ReplicationPlan::stop_group`], half of the seeds): a consumer group
//!   catches up on a slave while its master is down and stops there, so that only the slave's
//!   hand-back can bring the master's offsets up to what it committed.
//! * the operator: a slave that differs from its master when faults heal (the master lost
//!   bytes the slave had, which HA v1 cannot truncate) is read back, emptied and restarted, as
//!   RocketMQ's operators are told to; the checkers judge whether a master's power loss
//!   explains the difference. A slave that only lags catches up by itself (bytes it could not
//!   store drop its link, and it resumes from its end).
//! * liveness: before the end, slaves get time to catch up with their masters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use vostok_core::broker::{BrokerConfig, BrokerRole};
use vostok_core::check::{body_crc, History, OpId, ReadBackRecord};
use vostok_core::message::MessageRecord;
use vostok_core::rng::SeededRng;
use vostok_core::store::commitlog::{segment_path, COMMITLOG_DIR};
use vostok_core::store::{MemStorage, MessageStore, QueueOffset, SegmentStorage};

use crate::disk::{CrashMode, SimDisk};

/// The HA port is the broker port + 1 (RocketMQ's default `haListenPort`).
pub const HA_PORT_OFFSET: u16 = 1;
/// `haSendHeartbeatInterval` in the simulator.
const HA_HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// `haHousekeepingInterval` in the simulator.
const HA_HOUSEKEEPING_INTERVAL_MS: u64 = 4_000;
/// How long a slave may take to find its master again once faults heal: a dead link noticed
/// by housekeeping, then the slave's 5 s reconnect wait (`HaSlaveConfig`), then a report.
pub const RELINK_MS: u64 = HA_HOUSEKEEPING_INTERVAL_MS + 5_000 + 1_000;
/// How long the end of a run waits for slaves to catch up with their masters.
const CATCH_UP_LIMIT_MS: u64 = 12_000;

/// Regression seeds ([`crate::REGRESSION_SEEDS`]) found before replication existed: they keep
/// their single brokers, so they still replay the schedule that found their bug.
const SINGLE_BROKER_SEEDS: [u64; 13] = [
    1010234, 5021529, 7004259, 20005536, 20008946, 20017513, 50058809, 60002930, 60080330,
    70003998, 70092968, 80017434, 140000410,
];

/// Replicated regression seeds ([`crate::REGRESSION_SEEDS`]) found before a group could stop
/// ([`ReplicationPlan::stop_group`]): they keep every consumer running, so they still replay
/// the schedule that found their bug.
const NO_STOP_GROUP_SEEDS: [u64; 5] = [1000080, 2000251, 3000321, 9102746, 8200732];

/// A fault of a replicated group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplicaFault {
    /// A slave killed, its disk emptied, restarted: it re-replicates.
    DestroySlaveDisk,
    /// One direction between a master and one of its slaves clogged.
    MasterSlaveOneWay,
    /// A slave frozen in short bursts for a while (a slow disk or a GC-bound JVM).
    SlowSlave,
    /// A power cut of a group member, master or slave.
    MemberPowerLoss,
}

impl ReplicaFault {
    pub const ALL: [ReplicaFault; 4] = [
        ReplicaFault::DestroySlaveDisk,
        ReplicaFault::MasterSlaveOneWay,
        ReplicaFault::SlowSlave,
        ReplicaFault::MemberPowerLoss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReplicaFault::DestroySlaveDisk => "destroy-slave-disk",
            ReplicaFault::MasterSlaveOneWay => "master-slave-one-way",
            ReplicaFault::SlowSlave => "slow-slave",
            ReplicaFault::MemberPowerLoss => "member-power-loss",
        }
    }
}

/// What a seed decides about replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationPlan {
    /// Slaves of every group (1–2).
    pub slaves_per_group: usize,
    /// Per group (broker index): SYNC_MASTER, else ASYNC_MASTER.
    pub sync_master: Vec<bool>,
    /// Slaves have `haMasterAddress` set; else they learn it from the NameServer.
    pub fixed_master_address: bool,
    pub faults: Vec<ReplicaFault>,
    /// One consumer group is cut off from one master, commits on its slave, and stops there;
    /// it starts again only once the masters' offsets have been recorded after the heal, so
    /// that nothing but the slave's hand-back can bring the master's offsets up to what the
    /// group committed (what RocketMQ's slaves lose, #1094). Without it, a group's live
    /// consumers commit on the master again as soon as they reach it and cover a lost
    /// hand-back up.
    pub stop_group: bool,
}

impl ReplicationPlan {
    /// Half of the seeds replicate every broker group; the regression seeds found before
    /// replication existed keep the single brokers they were found with.
    pub fn draw(seed: u64, brokers: usize, no_faults: bool) -> Option<Self> {
        let mut rng = SeededRng::new(seed ^ 0x5245_504c_4943_4100);
        let mut pick = |lo: u64, hi: u64| lo + rng.below(hi - lo + 1);
        let on = pick(0, 1) == 1;
        if !on || SINGLE_BROKER_SEEDS.contains(&seed) {
            return None;
        }
        let slaves_per_group = pick(1, 2) as usize;
        let sync_master = (0..brokers).map(|_| pick(0, 1) == 1).collect();
        let fixed_master_address = pick(0, 1) == 1;
        let mut faults = Vec::new();
        for f in ReplicaFault::ALL {
            if pick(0, 1) == 1 && !no_faults {
                faults.push(f);
            }
        }
        // Drawn last, so that the draws above stay what they were before it existed.
        let stop_group = pick(0, 1) == 1 && !NO_STOP_GROUP_SEEDS.contains(&seed);
        Some(ReplicationPlan {
            slaves_per_group,
            sync_master,
            fixed_master_address,
            faults,
            stop_group,
        })
    }
}

impl fmt::Display for ReplicationPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<&str> = self
            .sync_master
            .iter()
            .map(|s| if *s { "sync" } else { "async" })
            .collect();
        let faults: Vec<&str> = self.faults.iter().map(|x| x.name()).collect();
        write!(
            f,
            "[{}]x{}{} repl_faults=[{}]{}",
            roles.join(","),
            self.slaves_per_group,
            if self.fixed_master_address {
                " ha_addr=fixed"
            } else {
                " ha_addr=namesrv"
            },
            faults.join(","),
            if self.stop_group { " stop_group" } else { "" }
        )
    }
}

/// One replicated group at run time.
#[derive(Clone, Debug)]
pub struct Group {
    pub sync_master: bool,
    pub master: NodeId,
    /// (node name, node)
    pub slaves: Vec<(String, NodeId)>,
}

/// Every replicated group, by broker name.
pub type Topology = BTreeMap<String, Group>;

/// Where a Vostok slave keeps the commits made on it until its master has them.
const SLAVE_OWN_COMMITS_PATH: &str = "config/consumerOffsetsOwnOnSlave.json";

/// How long after faults heal the masters' recorded offsets wait when a group stopped
/// ([`ReplicationPlan::stop_group`]): a slave hands its commits back at its next
/// SlaveSynchronize round, which comes within one period once the master is reachable (a
/// second one when the first round's requests went out on a connection the faults had
/// broken), and the master writes its offsets within one offset persist period after it.
pub const HAND_BACK_MS: u64 = 2 * vostok_core::broker::replication::SLAVE_SYNC_INTERVAL_MS
    + vostok_core::broker::OFFSET_PERSIST_INTERVAL_MS;

/// The slave node name `broker-a-s1`.
pub fn slave_name(broker: &str, id: usize) -> String {
    format!("{broker}-s{id}")
}

/// Slave `id` (from 1) of group `index`'s address.
pub fn slave_ip(index: usize, id: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 4, (index * 2 + id) as u8))
}

/// Whether `addr` (`ip:port`) is a slave's: slaves, and only they, live in 10.0.4.0/24
/// ([`slave_ip`]).
pub fn is_slave_addr(addr: &str) -> bool {
    addr.starts_with("10.0.4.")
}

/// The master's role in `config`, and HA timers short enough for a simulated run.
pub fn configure_master(config: &mut BrokerConfig, plan: &ReplicationPlan, index: usize) {
    config.replication.role = if plan.sync_master[index] {
        BrokerRole::SyncMaster
    } else {
        BrokerRole::AsyncMaster
    };
    // RocketMQ's 5 s heartbeat and 20 s housekeeping would leave a link to a killed peer
    // open for most of a seed's fault phase; the protocol is the same with shorter timers.
    config.replication.ha_send_heartbeat_interval_ms = HA_HEARTBEAT_INTERVAL_MS;
    config.replication.ha_housekeeping_interval_ms = HA_HOUSEKEEPING_INTERVAL_MS;
}

/// A slave's config: its master's, as brokerId `id` at `ip`.
pub fn slave_config(
    master: &BrokerConfig,
    plan: &ReplicationPlan,
    id: usize,
    ip: IpAddr,
) -> BrokerConfig {
    let mut config = master.clone();
    config.broker_id = id as u64;
    config.broker_ip1 = ip;
    config.seed = master.seed ^ ((id as u64) << 40);
    config.replication.role = BrokerRole::Slave;
    if plan.fixed_master_address {
        let addr = SocketAddr::new(master.broker_ip1, master.listen_port + HA_PORT_OFFSET);
        config.replication.ha_master_address = Some(addr.to_string());
    }
    config
}

// ---------------------------------------------------------------------------------------------
// Reading CommitLogs off SimDisks

/// The key (`key_property`) of the record at CommitLog `offset` on `mem`, if a whole record
/// with a good CRC starts there.
fn key_at(mem: &MemStorage, offset: u64, segment_bytes: u64, key_property: &str) -> Option<String> {
    let start = offset - offset % segment_bytes;
    let path = segment_path(start);
    let pos = offset - start;
    let mut size = [0u8; 4];
    mem.read_at(&path, pos, &mut size).ok()?;
    let total = u32::from_be_bytes(size) as u64;
    if total < 8 || pos + total > segment_bytes {
        return None;
    }
    let mut raw = vec![0u8; total as usize];
    mem.read_at(&path, pos, &mut raw).ok()?;
    let record = MessageRecord::decode(&Bytes::from(raw), true).ok()?;
    record.properties.get(key_property).map(str::to_owned)
}

/// Records, after a SYNC_MASTER's SEND_OK, whether each slave of its group holds the record
/// (`offset_msg_id` names its CommitLog offset) with the send's `key`.
#[allow(clippy::too_many_arguments)]
pub fn record_at_ack(
    history: &mut History,
    t: u64,
    topology: &Topology,
    broker: &str,
    op: OpId,
    offset_msg_id: &str,
    key: &str,
    segment_bytes: u64,
    key_property: &str,
) {
    let Some(group) = topology.get(broker).filter(|g| g.sync_master) else {
        return;
    };
    let Ok((_, offset)) = vostok_core::message::msg_id::decode_offset_msg_id(offset_msg_id) else {
        return;
    };
    let disks = madsim::plugin::simulator::<SimDisk>();
    for (name, node) in &group.slaves {
        let held = disks.with(*node, |d| {
            key_at(&d.mem, offset, segment_bytes, key_property).as_deref() == Some(key)
        });
        history.replica_at_ack(t, op, name, held);
    }
}

/// The durable end of the CommitLog on `mem`: the first segment not synced to its end ends
/// it. (A finished segment whose blank tail was never synced counts as not synced: the
/// estimate can only be low, which explains more differences, never fewer.)
pub fn durable_end(mem: &MemStorage) -> u64 {
    let mut end = 0;
    for path in mem.paths() {
        let Some(name) = path.strip_prefix(&format!("{COMMITLOG_DIR}/")) else {
            continue;
        };
        let Some(start) = vostok_core::store::commitlog::parse_segment_name(name) else {
            continue;
        };
        let synced = mem.synced_len(&path).unwrap_or(0);
        let len = mem.len(&path).unwrap_or(0);
        end = start + synced;
        if synced < len {
            break;
        }
    }
    end
}

/// A rough CommitLog end of a live disk: the last non-zero byte of the last segment (records
/// of the workload end with their properties, never with a zero). Only for waiting.
fn written_end_estimate(mem: &MemStorage) -> u64 {
    let prefix = format!("{COMMITLOG_DIR}/");
    let last = mem
        .paths()
        .into_iter()
        .filter_map(|p| {
            let start =
                vostok_core::store::commitlog::parse_segment_name(p.strip_prefix(&prefix)?)?;
            Some((start, p))
        })
        .max();
    let Some((start, path)) = last else {
        return 0;
    };
    mem.contents(&path)
        .and_then(|c| c.iter().rposition(|b| *b != 0))
        .map_or(start, |last| start + last as u64 + 1)
}

/// A store opened (recovered) on a copy of a disk, as a restart would see it.
fn open_copy(
    mem: MemStorage,
    config: vostok_core::store::StoreConfig,
) -> Option<MessageStore<MemStorage>> {
    MessageStore::open(mem, config).ok()
}

/// The first offset in `[from, to)` where the two CommitLogs differ, reading `segment_bytes`
/// segments; `to` beyond the master's end differs at the master's end.
fn first_difference(
    slave: &MemStorage,
    master: &MemStorage,
    range: std::ops::Range<u64>,
    master_end: u64,
    segment_bytes: u64,
) -> Option<u64> {
    let mut at = range.start;
    while at < range.end.min(master_end) {
        let start = at - at % segment_bytes;
        let stop = range.end.min(master_end).min(start + segment_bytes);
        let len = (stop - at) as usize;
        let mut a = vec![0u8; len];
        let mut b = vec![0u8; len];
        let path = segment_path(start);
        let read_a = slave.read_at(&path, at - start, &mut a);
        let read_b = master.read_at(&path, at - start, &mut b);
        if read_a.is_err() || read_b.is_err() {
            return Some(at);
        }
        if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
            return Some(at + i as u64);
        }
        at = stop;
    }
    (range.end > master_end).then_some(master_end.max(range.start))
}

/// A slave compared with its master: records the comparison; returns whether they differ.
#[allow(clippy::too_many_arguments)]
fn compare(
    history: &mut History,
    t: u64,
    name: &str,
    broker: &str,
    slave: &MessageStore<MemStorage>,
    master: &MessageStore<MemStorage>,
    segment_bytes: u64,
) -> bool {
    let slave_range = slave.min_commitlog_offset().0..slave.written_offset().0;
    let master_end = master.written_offset().0;
    let diff = first_difference(
        slave.storage(),
        master.storage(),
        slave_range.clone(),
        master_end,
        segment_bytes,
    );
    history.replica_compared(t, name, broker, slave_range, master_end, diff);
    diff.is_some()
}

/// Records every queue of `topics` on a slave's store, named as the master's queues.
fn read_back_slave(
    history: &mut History,
    t: u64,
    name: &str,
    broker: &str,
    store: &MessageStore<MemStorage>,
    topics: &[&str],
    key_property: &str,
) {
    let mut records = Vec::new();
    for topic in topics {
        for queue_id in store.queue_ids(topic) {
            let queue = vostok_core::check::QueueRef::new(broker, topic, queue_id as u32);
            let max = store.max_offset(topic, queue_id).0;
            let mut offset = store.min_offset(topic, queue_id).0;
            while offset < max {
                let Ok(got) =
                    store.get_unverified(topic, queue_id, QueueOffset(offset), 32, &|_| true)
                else {
                    break;
                };
                if got.records.is_empty() {
                    break;
                }
                for raw in &got.records {
                    let decoded = MessageRecord::decode(raw, true);
                    let ok = decoded.is_ok();
                    let (key, crc) = decoded
                        .or_else(|_| MessageRecord::decode(raw, false))
                        .map(|r| {
                            (
                                r.properties.get(key_property).unwrap_or("").to_owned(),
                                body_crc(&r.body),
                            )
                        })
                        .unwrap_or_default();
                    records.push(ReadBackRecord {
                        queue: queue.clone(),
                        queue_offset: offset,
                        key,
                        body_crc: crc,
                        record_crc_ok: ok,
                    });
                    offset += 1;
                }
                offset = offset.max(got.next_begin_offset.0);
            }
        }
    }
    history.replica_read_back(t, name, broker, records);
}

/// What the replication steps of a run need from the harness.
pub struct Env<'a> {
    pub handle: &'a Handle,
    pub topology: &'a Topology,
    pub store_config: vostok_core::store::StoreConfig,
    pub topics: &'a [&'a str],
    pub key_property: &'a str,
}

impl Env<'_> {
    fn segment_bytes(&self) -> u64 {
        self.store_config.commitlog_segment_bytes.max(1)
    }

    fn open_disk_copy(&self, node: NodeId) -> Option<MessageStore<MemStorage>> {
        let mem = madsim::plugin::simulator::<SimDisk>().with(node, |d| d.mem.clone());
        open_copy(mem, self.store_config.clone())
    }

    /// Records, as commits of the master's queues on each slave, what consumers committed on
    /// each slave while they could not reach its master and the master has not confirmed yet
    /// (the slave's `config/consumerOffsetsOwnOnSlave.json`). The master takes them back once
    /// the slave reaches it again, so its next recorded offsets must not be lower (the
    /// `offset-regression` checker), which is what RocketMQ's slaves lose (#1094). Groups
    /// whose master lost power are left out: a commit on the slave may then lie past the
    /// master's recovered queue end, where the master stops it.
    pub fn record_own_commits(&self, history: &mut History, t: u64) {
        let disks = madsim::plugin::simulator::<SimDisk>();
        for (broker, group) in self.topology {
            let master_lost_power = history.events().iter().any(|e| {
                matches!(&e.kind, vostok_core::check::EventKind::PowerLost { node, .. } if node == broker)
            });
            if master_lost_power {
                continue;
            }
            for (name, node) in &group.slaves {
                let own = disks.with(*node, |d| {
                    d.mem.read_all(SLAVE_OWN_COMMITS_PATH).ok().flatten()
                });
                crate::harness::committed_offsets_of(history, t, broker, Some(name), own);
            }
        }
    }

    /// The healed phase's operator: every slave that differs from its master is read back,
    /// then emptied and restarted (it re-replicates).
    pub fn empty_diverged_slaves(&self, history: &mut History, t: u64) {
        for (broker, group) in self.topology {
            let Some(master) = self.open_disk_copy(group.master) else {
                continue;
            };
            for (name, node) in &group.slaves {
                let Some(slave) = self.open_disk_copy(*node) else {
                    continue;
                };
                let differs = compare(
                    history,
                    t,
                    name,
                    broker,
                    &slave,
                    &master,
                    self.segment_bytes(),
                );
                if !differs {
                    continue;
                }
                read_back_slave(
                    history,
                    t,
                    name,
                    broker,
                    &slave,
                    self.topics,
                    self.key_property,
                );
                history.nemesis(t, &format!("operator empties diverged slave {name}"));
                history.node_crashed(t, name);
                history.disk_destroyed(t, name);
                self.handle.kill(*node);
                destroy_disk(*node);
                self.handle.restart(*node);
                history.node_restarted(t, name);
            }
        }
    }

    /// Waits (bounded) until every slave's CommitLog reaches its master's end.
    pub async fn wait_caught_up(&self) {
        let disks = madsim::plugin::simulator::<SimDisk>();
        let end = madsim::time::Instant::now() + Duration::from_millis(CATCH_UP_LIMIT_MS);
        while madsim::time::Instant::now() < end {
            let behind = self.topology.values().any(|g| {
                let master = disks.with(g.master, |d| written_end_estimate(&d.mem));
                g.slaves
                    .iter()
                    .any(|(_, n)| disks.with(*n, |d| written_end_estimate(&d.mem)) < master)
            });
            if !behind {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The end: every slave stopped (process crash), its disk recovered, compared with its
    /// master's (recovered on a copy) and read back. Masters keep running for the harness's
    /// own read-back.
    pub fn read_back(&self, history: &mut History, t: u64) {
        let disks = madsim::plugin::simulator::<SimDisk>();
        for (broker, group) in self.topology {
            let master = self.open_disk_copy(group.master);
            for (name, node) in &group.slaves {
                disks.arm(*node, CrashMode::Process);
                self.handle.kill(*node);
                let mem = disks.with(*node, |d| std::mem::take(&mut d.mem));
                let Some(slave) = open_copy(mem, self.store_config.clone()) else {
                    history.nemesis(t, &format!("read-back {name}: store does not open"));
                    continue;
                };
                if let Some(master) = &master {
                    compare(
                        history,
                        t,
                        name,
                        broker,
                        &slave,
                        master,
                        self.segment_bytes(),
                    );
                }
                read_back_slave(
                    history,
                    t,
                    name,
                    broker,
                    &slave,
                    self.topics,
                    self.key_property,
                );
            }
        }
    }
}

/// The consumer groups some slave holds commits of `topic` for that its master has not
/// confirmed (read from the slaves' `config/consumerOffsetsOwnOnSlave.json`, as written).
pub fn groups_committed_on_slaves(topology: &Topology, topic: &str) -> BTreeSet<String> {
    let disks = madsim::plugin::simulator::<SimDisk>();
    let mut groups = BTreeSet::new();
    for group in topology.values() {
        for (_, node) in &group.slaves {
            let own = disks.with(*node, |d| {
                d.mem.read_all(SLAVE_OWN_COMMITS_PATH).ok().flatten()
            });
            let Some(file) = own.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                continue;
            };
            let Some(table) = file.get("offsetTable").and_then(|v| v.as_object()) else {
                continue;
            };
            for (key, queues) in table {
                if let Some((t, g)) = key.split_once('@') {
                    if t == topic && queues.as_object().is_some_and(|q| !q.is_empty()) {
                        groups.insert(g.to_owned());
                    }
                }
            }
        }
    }
    groups
}

/// Empties `node`'s disk (the node is down).
pub fn destroy_disk(node: NodeId) {
    madsim::plugin::simulator::<SimDisk>().with(node, |d| {
        d.mem = MemStorage::new();
        d.fence_log.clear();
        d.refused_start = None;
        d.next_crash = CrashMode::Process;
    });
}

/// The nemesis' one-way partition between a master and a slave, or the slow slave: picks a
/// group and a slave, holds the fault for `hold`, and returns what it did for the trace.
pub async fn link_fault(
    fault: ReplicaFault,
    topology: &Topology,
    rng: &mut SeededRng,
    hold: Duration,
    mut record: impl FnMut(String),
) {
    let groups: Vec<(&String, &Group)> = topology.iter().collect();
    if groups.is_empty() {
        return;
    }
    let (broker, group) = groups[rng.below(groups.len() as u64) as usize];
    let (name, slave) = &group.slaves[rng.below(group.slaves.len() as u64) as usize];
    let net = NetSim::current();
    let handle = Handle::current();
    match fault {
        ReplicaFault::MasterSlaveOneWay => {
            let (source, target, arrow) = if rng.below(2) == 0 {
                (group.master, *slave, "->")
            } else {
                (*slave, group.master, "<-")
            };
            net.clog_link(source, target);
            record(format!(
                "one-way {broker} {arrow} {name} for {}ms",
                hold.as_millis()
            ));
            tokio::time::sleep(hold).await;
            net.unclog_link(source, target);
        }
        ReplicaFault::SlowSlave => {
            record(format!("slow {name} for {}ms", hold.as_millis()));
            let end = madsim::time::Instant::now() + hold;
            while madsim::time::Instant::now() < end {
                handle.pause(*slave);
                tokio::time::sleep(Duration::from_millis(50 + rng.below(250))).await;
                handle.resume(*slave);
                tokio::time::sleep(Duration::from_millis(10 + rng.below(40))).await;
            }
        }
        ReplicaFault::DestroySlaveDisk | ReplicaFault::MemberPowerLoss => {}
    }
}

/// Picks a slave of any group: (node name, node).
pub fn pick_slave(topology: &Topology, rng: &mut SeededRng) -> Option<(String, NodeId)> {
    let slaves: Vec<&(String, NodeId)> = topology.values().flat_map(|g| &g.slaves).collect();
    if slaves.is_empty() {
        return None;
    }
    Some(slaves[rng.below(slaves.len() as u64) as usize].clone())
}

/// Picks a member (master or slave) of any group: (node name, node).
pub fn pick_member(topology: &Topology, rng: &mut SeededRng) -> Option<(String, NodeId)> {
    let mut members: Vec<(String, NodeId)> = Vec::new();
    for (broker, g) in topology {
        members.push((broker.clone(), g.master));
        members.extend(g.slaves.iter().cloned());
    }
    if members.is_empty() {
        return None;
    }
    Some(members[rng.below(members.len() as u64) as usize].clone())
}
