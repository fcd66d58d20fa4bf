//! A broker group's replication (REPLICATION.md §1): the master streams its CommitLog to its
//! slaves over HA v1 ([`crate::ha`]); a slave appends it at the same offsets and builds its own
//! queues; a SYNC_MASTER answers a send once a slave has it.
//!
//! | `brokerRole` | takes sends | HA | a send is answered |
//! |---|---|---|---|
//! | ASYNC_MASTER (default) | yes | serves slaves on `haListenPort` | after the write (and the sync, under SYNC_FLUSH) |
//! | SYNC_MASTER | yes | as above | once also acked by `inSyncReplicas − 1` slaves (one when unset: RocketMQ 4.x's rule, see below); 11 SLAVE_NOT_AVAILABLE at once when too few slaves are close enough, 12 FLUSH_SLAVE_TIMEOUT after `slaveTimeout` |
//! | SLAVE | no: 14 SERVICE_NOT_AVAILABLE | follows `haMasterAddress`, else the `haServerAddr` its NameServer names | — |
//!
//! RocketMQ 5's classic SYNC_MASTER waits for `inSyncReplicas − 1` slaves with a default of
//! 1, that is for none (REPLICATION.md §1.4); 4.x waits for one. Vostok takes 4.x's rule
//! unless `inSyncReplicas` is set, so a SYNC_MASTER is what its name says by default; setting
//! `inSyncReplicas=1` gives 5.x's behaviour.
//!
//! An ack only counts for bytes its link was shown ([`crate::ha::master`]), so a peer that
//! fakes acks is closed, never counted.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::{Broker, BrokerOutput};
use crate::ha::{
    HaFrame, HaMaster, HaMasterConfig, HaSlave, HaSlaveConfig, MasterAction, SlaveAction,
};
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::store::{SegmentStorage, StoreError};
use crate::ConnId;

/// `brokerRole`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BrokerRole {
    #[default]
    AsyncMaster,
    SyncMaster,
    Slave,
}

impl BrokerRole {
    /// broker.conf's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "ASYNC_MASTER" => Some(Self::AsyncMaster),
            "SYNC_MASTER" => Some(Self::SyncMaster),
            "SLAVE" => Some(Self::Slave),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::AsyncMaster => "ASYNC_MASTER",
            Self::SyncMaster => "SYNC_MASTER",
            Self::Slave => "SLAVE",
        }
    }

    pub fn is_master(self) -> bool {
        self != Self::Slave
    }
}

/// The replication keys of broker.conf, with RocketMQ's meanings and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `brokerRole`.
    pub role: BrokerRole,
    /// `haListenPort`; 0 means `listenPort + 1`.
    pub ha_listen_port: u16,
    /// `brokerIP2`: the address slaves reach the HA port at (`brokerIP1` when unset).
    pub broker_ip2: Option<IpAddr>,
    /// `haMasterAddress`: a slave's fixed master HA address; else the NameServer's.
    pub ha_master_address: Option<String>,
    /// `haSendHeartbeatInterval`.
    pub ha_send_heartbeat_interval_ms: u64,
    /// `haHousekeepingInterval`.
    pub ha_housekeeping_interval_ms: u64,
    /// `haTransferBatchSize`.
    pub ha_transfer_batch_bytes: u64,
    /// `haSlaveFallbehindMax`: a slave further behind does not count for the SYNC_MASTER
    /// pre-check.
    pub ha_slave_fallbehind_max_bytes: u64,
    /// `slaveTimeout`: the SYNC_MASTER wait.
    pub slave_timeout_ms: u64,
    /// `inSyncReplicas` (replicas counting the master); unset: one slave (see the module).
    pub in_sync_replicas: Option<u32>,
    /// `slaveReadEnable`.
    pub slave_read_enable: bool,
    /// `offsetCheckInSlave`.
    pub offset_check_in_slave: bool,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            role: BrokerRole::AsyncMaster,
            ha_listen_port: 0,
            broker_ip2: None,
            ha_master_address: None,
            ha_send_heartbeat_interval_ms: 5_000,
            ha_housekeeping_interval_ms: 20_000,
            ha_transfer_batch_bytes: 32 * 1024,
            ha_slave_fallbehind_max_bytes: 256 * 1024 * 1024,
            slave_timeout_ms: 3_000,
            in_sync_replicas: None,
            slave_read_enable: false,
            offset_check_in_slave: false,
        }
    }
}

impl ReplicationConfig {
    /// Slave acks a SYNC_MASTER send waits for.
    pub fn needed_slave_acks(&self) -> usize {
        match (self.role, self.in_sync_replicas) {
            (BrokerRole::SyncMaster, None) => 1,
            (BrokerRole::SyncMaster, Some(n)) => n.saturating_sub(1) as usize,
            _ => 0,
        }
    }
}

/// What replication asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaOutput {
    /// Write `header`, then `len` bytes of the CommitLog segment file `path` from
    /// `file_offset` (straight from the file), then call `handle_ha_written(link, 12 + len)`.
    Transfer {
        link: ConnId,
        header: [u8; 12],
        path: String,
        file_offset: u64,
        len: u64,
    },
    /// Write an 8-byte offset report on the link.
    Report { link: ConnId, report: [u8; 8] },
    /// Connect to a master's HA port, then call `handle_ha_connected` or
    /// `handle_ha_connect_failed`.
    Connect { addr: String },
    /// Close the link (after what was queued on it); `reason` is logged.
    Close { link: ConnId, reason: String },
}

/// The role's side of HA.
#[derive(Debug)]
pub(super) enum Replication {
    Master(HaMaster),
    Slave(SlaveSide),
}

/// A slave: its HA link, and SlaveSynchronize (RocketMQ's `SlaveSynchronize`: the master's
/// topic configs and subscription groups, copied every [`SLAVE_SYNC_INTERVAL_MS`] over a
/// remoting connection to the master's main port and applied when their data version
/// differs; its consumer offsets, where the master's value wins as RocketMQ's `putAll` except
/// over commits made on this slave the master has not had yet; its delay offsets and its timer
/// checkpoint's read position).
#[derive(Debug)]
pub(super) struct SlaveSide {
    link: HaSlave,
    /// The master's broker address (`masterAddr` of the NameServer's answer).
    master_addr: Option<String>,
    next_sync_ms: u64,
    /// Requests in flight to the master, by opaque.
    pending: BTreeMap<i32, SyncItem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SyncItem {
    Topics,
    Groups,
    ConsumerOffsets,
    DelayOffsets,
    TimerCheckpoint,
    /// A commit handed back to the master: (topic, group, queue id, offset).
    HandBack(String, String, i32, i64),
}

/// RocketMQ 4.x's SlaveSynchronize period (the first run 3 s after start).
pub const SLAVE_SYNC_INTERVAL_MS: u64 = 10_000;
const SLAVE_SYNC_FIRST_MS: u64 = 3_000;

/// The ext field of an UPDATE_CONSUMER_OFFSET (15) a Vostok slave sends its master to hand
/// back a commit consumers made on the slave while the master was away. A Vostok master takes
/// it only when it is ahead of its own value; RocketMQ ignores unknown ext fields and applies it.
pub(super) const HANDED_BACK_EXT: &str = "fromSlave";

impl Replication {
    /// `written`: where the CommitLog ends as the broker opens.
    pub(super) fn new(config: &super::BrokerConfig, now_ms: u64, written: u64) -> Self {
        let r = &config.replication;
        if r.role.is_master() {
            let mut master = HaMaster::new(HaMasterConfig {
                transfer_batch_bytes: r.ha_transfer_batch_bytes,
                heartbeat_interval_ms: r.ha_send_heartbeat_interval_ms,
                housekeeping_interval_ms: r.ha_housekeeping_interval_ms,
                segment_bytes: config.store.commitlog_segment_bytes,
            });
            master.since_open(written);
            Self::Master(master)
        } else {
            Self::Slave(SlaveSide {
                link: HaSlave::new(
                    HaSlaveConfig {
                        heartbeat_interval_ms: r.ha_send_heartbeat_interval_ms,
                        housekeeping_interval_ms: r.ha_housekeeping_interval_ms,
                        reconnect_interval_ms: 5_000,
                    },
                    r.ha_master_address.clone().filter(|a| a.len() >= 6),
                ),
                master_addr: None,
                next_sync_ms: now_ms + SLAVE_SYNC_FIRST_MS,
                pending: BTreeMap::new(),
            })
        }
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// The HA port: `haListenPort`, else `listenPort + 1`.
    pub fn ha_listen_port(&self) -> u16 {
        match self.config.replication.ha_listen_port {
            0 => self.config.listen_port.wrapping_add(1),
            port => port,
        }
    }

    /// `brokerIP2:haListenPort`, what the NameServer tells slaves.
    pub(super) fn ha_server_addr(&self) -> String {
        let ip = self
            .config
            .replication
            .broker_ip2
            .unwrap_or(self.config.broker_ip1);
        SocketAddr::new(ip, self.ha_listen_port()).to_string()
    }

    /// A slave connected to this master's HA port.
    pub fn handle_ha_accepted(&mut self, now_ms: u64, link: ConnId, peer: SocketAddr) {
        match &mut self.replication {
            Replication::Master(master) => master.handle_accepted(now_ms, link, peer.to_string()),
            Replication::Slave(_) => self.emit_ha(HaOutput::Close {
                link,
                reason: format!("{peer} connected to the HA port of a slave"),
            }),
        }
    }

    /// Bytes on an HA link (a slave's reports, or a master's frames).
    pub fn handle_ha_bytes(&mut self, now_ms: u64, link: ConnId, bytes: &[u8]) {
        let (min, max) = (
            self.store.min_commitlog_offset().0,
            self.store.written_offset().0,
        );
        match &mut self.replication {
            Replication::Master(master) => {
                let actions = master.handle_bytes(now_ms, link, bytes, min, max);
                self.emit_master(actions);
                self.release_durable_sends();
            }
            Replication::Slave(side) => {
                let (frames, actions) = side.link.handle_bytes(now_ms, link, bytes);
                self.apply_frames(now_ms, frames);
                self.emit_slave(actions);
            }
        }
        self.pump_replication(now_ms);
    }

    /// An HA link closed.
    pub fn handle_ha_closed(&mut self, now_ms: u64, link: ConnId) {
        match &mut self.replication {
            Replication::Master(master) => master.handle_closed(link),
            Replication::Slave(side) => side.link.handle_closed(now_ms, link),
        }
    }

    /// The connection a `Connect` asked for is up.
    pub fn handle_ha_connected(&mut self, now_ms: u64, link: ConnId) {
        let written = self.store.written_offset().0;
        if let Replication::Slave(side) = &mut self.replication {
            // The master is back: synchronize (and hand back commits made here) at once.
            side.next_sync_ms = side.next_sync_ms.min(now_ms);
            let actions = side.link.handle_connected(now_ms, link, written);
            self.emit_slave(actions);
        } else {
            self.emit_ha(HaOutput::Close {
                link,
                reason: "a master does not connect to anyone's HA port".to_owned(),
            });
        }
    }

    /// The connection a `Connect` asked for failed.
    pub fn handle_ha_connect_failed(&mut self, now_ms: u64) {
        if let Replication::Slave(side) = &mut self.replication {
            side.link.handle_connect_failed(now_ms);
        }
    }

    /// The driver wrote `bytes` of a `Transfer`.
    pub fn handle_ha_written(&mut self, now_ms: u64, link: ConnId, bytes: u64) {
        if let Replication::Master(master) = &mut self.replication {
            master.handle_written(link, bytes);
        }
        self.pump_replication(now_ms);
    }

    /// Streams what slaves have not been sent, heartbeats, reconnects and housekeeping.
    pub(super) fn pump_replication(&mut self, now_ms: u64) {
        let written = self.store.written_offset().0;
        match &mut self.replication {
            Replication::Master(master) => {
                let commitlog_end = |offset: u64| {
                    let size = self.config.store.commitlog_segment_bytes.max(1);
                    offset - offset % size + size
                };
                let actions = master.poll(now_ms, written, commitlog_end);
                self.emit_master(actions);
            }
            Replication::Slave(side) => {
                let actions = side.link.poll(now_ms, written);
                self.emit_slave(actions);
                self.synchronize_from_master(now_ms);
            }
        }
    }

    /// When replication next needs a `handle_timeout`.
    pub(super) fn replication_deadline_ms(&self) -> Option<u64> {
        let links = match &self.replication {
            Replication::Master(master) => master.next_deadline_ms(),
            Replication::Slave(side) => {
                let sync = side.master_addr.as_ref().map(|_| side.next_sync_ms);
                side.link.next_deadline_ms().into_iter().chain(sync).min()
            }
        };
        let waits = self
            .waiting_sends
            .iter()
            .filter(|w| !w.replica_failed)
            .filter_map(|w| w.replica_deadline_ms)
            .min();
        links.into_iter().chain(waits).min()
    }

    /// Is the send ending at `end` covered by enough slave acks?
    pub(super) fn replicated(&self, end: u64) -> bool {
        let needed = self.config.replication.needed_slave_acks();
        if self.config.store.defects.ack_before_slave_report() {
            return true;
        }
        match &self.replication {
            Replication::Master(master) => master.acks_at_least(end) >= needed,
            Replication::Slave(_) => true,
        }
    }

    /// RocketMQ 4.x's `isSlaveOK` before a SYNC_MASTER send waits: enough slaves connected
    /// and within `haSlaveFallbehindMax` of `end`. `None` when the send may wait.
    pub(super) fn slave_not_available(&self, end: u64) -> Option<String> {
        let needed = self.config.replication.needed_slave_acks();
        if needed == 0 {
            return None;
        }
        let Replication::Master(master) = &self.replication else {
            return None;
        };
        let limit = self.config.replication.ha_slave_fallbehind_max_bytes;
        let close_enough = master
            .links()
            .filter(|(_, l)| l.acked.is_some_and(|a| end.saturating_sub(a) < limit))
            .count();
        (close_enough < needed).then(|| {
            format!(
                "{close_enough} slave(s) within haSlaveFallbehindMax ({limit} bytes) of this \
                 message; SYNC_MASTER needs {needed}"
            )
        })
    }

    /// SYNC_MASTER waits past `slaveTimeout` fail with FLUSH_SLAVE_TIMEOUT (answered once any
    /// flush wait is over too, as RocketMQ combines the two).
    pub(super) fn expire_replica_waits(&mut self, now_ms: u64) {
        let mut expired = false;
        for w in &mut self.waiting_sends {
            if !w.replica_failed && w.replica_deadline_ms.is_some_and(|d| now_ms >= d) {
                w.replica_failed = true;
                w.response.code = response::FLUSH_SLAVE_TIMEOUT;
                w.response.remark = Some(format!(
                    "no slave acked the message within slaveTimeout ({} ms); it is stored on \
                     the master",
                    self.config.replication.slave_timeout_ms
                ));
                expired = true;
            }
        }
        if expired {
            self.release_durable_sends();
        }
    }

    /// A slave learns its master from its NameServer's REGISTER_BROKER answer: the broker
    /// address (`masterAddr`, for SlaveSynchronize) and the HA address (`haServerAddr`, unless
    /// `haMasterAddress` fixes it). A missing one keeps the old, as RocketMQ does.
    pub(super) fn learn_master_addr(&mut self, answer: &RemotingCommand) {
        let fixed = self.config.replication.ha_master_address.is_some();
        let Replication::Slave(side) = &mut self.replication else {
            return;
        };
        if let Some(addr) = answer.ext("masterAddr").filter(|a| !a.is_empty()) {
            side.master_addr = Some(addr.to_owned());
        }
        if !fixed {
            let actions = side
                .link
                .set_master_addr(answer.ext("haServerAddr").map(str::to_owned));
            self.emit_slave(actions);
        }
    }

    /// Asks the master for its topics and groups when due (their answers come back through
    /// `handle_namesrv_response`, on the connection the driver keeps per address).
    fn synchronize_from_master(&mut self, now_ms: u64) {
        let Replication::Slave(side) = &mut self.replication else {
            return;
        };
        let Some(master) = side.master_addr.clone() else {
            return;
        };
        if now_ms < side.next_sync_ms {
            return;
        }
        side.next_sync_ms = now_ms + SLAVE_SYNC_INTERVAL_MS;
        // Answers of an earlier round that never came are dropped with it.
        side.pending.clear();
        // Hand back first: the master answers a connection's requests in order, so the offset
        // table it sends below already has them and confirms them.
        let hand_back = if self.config.store.defects.slave_hands_nothing_back() {
            Vec::new()
        } else {
            self.offsets.handed_back()
        };
        for (topic, group, queue_id, offset) in hand_back {
            let opaque = self.next_opaque();
            let mut command =
                RemotingCommand::request(crate::remoting::codes::request::UPDATE_CONSUMER_OFFSET)
                    .with_ext("consumerGroup", &group)
                    .with_ext("topic", &topic)
                    .with_ext("queueId", queue_id)
                    .with_ext("commitOffset", offset)
                    .with_ext(HANDED_BACK_EXT, "true");
            command.opaque = opaque;
            if let Replication::Slave(side) = &mut self.replication {
                side.pending
                    .insert(opaque, SyncItem::HandBack(topic, group, queue_id, offset));
            }
            self.outputs.push_back(BrokerOutput::SendToNamesrv {
                addr: master.clone(),
                command,
            });
        }
        for (code, item) in [
            (
                crate::remoting::codes::request::GET_ALL_TOPIC_CONFIG,
                SyncItem::Topics,
            ),
            (
                crate::remoting::codes::request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
                SyncItem::Groups,
            ),
            (
                crate::remoting::codes::request::GET_ALL_CONSUMER_OFFSET,
                SyncItem::ConsumerOffsets,
            ),
            (
                crate::remoting::codes::request::GET_ALL_DELAY_OFFSET,
                SyncItem::DelayOffsets,
            ),
            (
                crate::remoting::codes::request::GET_TIMER_CHECK_POINT,
                SyncItem::TimerCheckpoint,
            ),
        ] {
            let opaque = self.next_opaque();
            let mut command = RemotingCommand::request(code);
            command.opaque = opaque;
            if let Replication::Slave(side) = &mut self.replication {
                side.pending.insert(opaque, item);
            }
            self.outputs.push_back(BrokerOutput::SendToNamesrv {
                addr: master.clone(),
                command,
            });
        }
    }

    /// A master's answer to a SlaveSynchronize request, if `answer` is one.
    pub(super) fn handle_master_answer(&mut self, addr: &str, answer: &RemotingCommand) -> bool {
        let Replication::Slave(side) = &mut self.replication else {
            return false;
        };
        if side.master_addr.as_deref() != Some(addr) {
            return false;
        }
        let Some(item) = side.pending.remove(&answer.opaque) else {
            return false;
        };
        if answer.code != response::SUCCESS {
            return true;
        }
        if let SyncItem::HandBack(topic, group, queue_id, offset) = &item {
            // The master has it (taken, or kept its own further value, or stopped it at its
            // queue's end): from now on the master's value for it is the slave's again.
            self.offsets
                .handed_back_taken(topic, group, *queue_id, *offset);
            return true;
        }
        if item == SyncItem::ConsumerOffsets {
            // Persisted with the next periodic offset write.
            let _ = self.offsets.put_all_from_master(&answer.body);
            return true;
        }
        if item == SyncItem::DelayOffsets {
            // A table that does not parse or a failed write: the next round tries again.
            let _ = self.take_delay_offsets_from_master(&answer.body);
            return true;
        }
        if item == SyncItem::TimerCheckpoint {
            let _ = self.take_timer_checkpoint_from_master(&answer.body);
            return true;
        }
        let Ok(value) = crate::remoting::lenient::parse_fastjson(&answer.body) else {
            return true;
        };
        match item {
            SyncItem::Topics => {
                if let Ok(wrapper) = serde_json::from_value(value) {
                    self.replace_topics_from_master(wrapper);
                }
            }
            SyncItem::Groups => {
                if let Ok(wrapper) = serde_json::from_value(value) {
                    self.replace_groups_from_master(wrapper);
                }
            }
            SyncItem::ConsumerOffsets
            | SyncItem::DelayOffsets
            | SyncItem::TimerCheckpoint
            | SyncItem::HandBack(..) => {}
        }
        true
    }

    /// Appends a master's frames to this slave's store, in order.
    fn apply_frames(&mut self, now_ms: u64, frames: Vec<HaFrame>) {
        for frame in frames {
            let written = self.store.written_offset().0;
            if frame.body.is_empty() {
                // A heartbeat names where the master continues; an empty slave accepts any.
                let empty = self.store.commitlog_segments().is_empty();
                if !empty && frame.offset != written {
                    self.refuse_replication(format!(
                        "the master continues at CommitLog offset {}, this slave ends at \
                         {written}",
                        frame.offset
                    ));
                    return;
                }
                continue;
            }
            match self.store.append_replicated(frame.offset, &frame.body) {
                Ok(_) => {}
                Err(StoreError::ReplicaOffsetMismatch { offset, written }) => {
                    self.refuse_replication(format!(
                        "the master sent CommitLog offset {offset}, this slave ends at {written}: \
                         they disagree; empty this slave's store to follow this master"
                    ));
                    return;
                }
                Err(e) => {
                    // Not a disagreement: these bytes could not be stored this time. The
                    // link is dropped (and logged) and replication resumes from this slave's
                    // end, which the store cut back to its last whole record.
                    let reason = format!(
                        "the master's CommitLog bytes at {} could not be stored: {e}; \
                         reconnecting",
                        frame.offset
                    );
                    if let Replication::Slave(side) = &mut self.replication {
                        let actions = side.link.drop_link(now_ms, reason);
                        self.emit_slave(actions);
                    }
                    return;
                }
            }
        }
        let written = self.store.written_offset().0;
        if let Replication::Slave(side) = &mut self.replication {
            let actions = side.link.handle_appended(now_ms, written);
            self.emit_slave(actions);
        }
        self.wake_all_held_pulls(now_ms);
    }

    fn refuse_replication(&mut self, reason: String) {
        if let Replication::Slave(side) = &mut self.replication {
            let actions = side.link.refuse(format!("replication stopped: {reason}"));
            self.emit_slave(actions);
        }
    }

    fn emit_master(&mut self, actions: Vec<MasterAction>) {
        for action in actions {
            let output = match action {
                MasterAction::Transfer {
                    link,
                    header,
                    offset,
                    len,
                } => {
                    let size = self.config.store.commitlog_segment_bytes.max(1);
                    let start = offset - offset % size;
                    HaOutput::Transfer {
                        link,
                        header,
                        path: crate::store::commitlog::segment_path(start),
                        file_offset: offset - start,
                        len,
                    }
                }
                MasterAction::Close { link, reason } => HaOutput::Close { link, reason },
            };
            self.emit_ha(output);
        }
    }

    fn emit_slave(&mut self, actions: Vec<SlaveAction>) {
        for action in actions {
            let output = match action {
                SlaveAction::Connect { addr } => HaOutput::Connect { addr },
                SlaveAction::Send { link, report } => HaOutput::Report { link, report },
                SlaveAction::Close { link, reason } => HaOutput::Close { link, reason },
            };
            self.emit_ha(output);
        }
    }

    fn emit_ha(&mut self, output: HaOutput) {
        self.outputs.push_back(BrokerOutput::Ha(output));
    }

    /// GET_BROKER_HA_STATUS (907): RocketMQ's `HARuntimeInfo`. A master lists its slave links
    /// (`slaveAckOffset`, `diff` to its CommitLog end, `inSync` within haSlaveFallbehindMax,
    /// `transferFromWhere`, and Vostok's `lagMillis`: how long since the slave's ack last
    /// reached the end); a slave describes its link to its master. `transferredByteInSecond`
    /// is not measured and stays 0.
    pub(super) fn handle_ha_status(&self, now_ms: u64, req: &RemotingCommand) -> RemotingCommand {
        use serde_json::json;
        let written = self.store.written_offset().0;
        let limit = self.config.replication.ha_slave_fallbehind_max_bytes;
        let body = match &self.replication {
            Replication::Master(master) => {
                let links: Vec<serde_json::Value> = master
                    .links()
                    .map(|(_, l)| {
                        let acked = l.acked.unwrap_or(0);
                        let diff = written.saturating_sub(acked);
                        json!({
                            "addr": l.peer,
                            "diff": diff,
                            "inSync": l.acked.is_some() && diff < limit,
                            "lagMillis": if diff == 0 { 0 } else { now_ms.saturating_sub(l.caught_up_ms) },
                            "slaveAckOffset": acked,
                            "transferFromWhere": l.next_transfer.unwrap_or(0),
                            "transferredByteInSecond": 0,
                        })
                    })
                    .collect();
                let in_sync = links.iter().filter(|l| l["inSync"] == true).count();
                json!({
                    "haClientRuntimeInfo": {"activated": false, "lastReadTimestamp": 0,
                        "lastWriteTimestamp": 0, "masterFlushOffset": 0, "maxOffset": 0,
                        "transferredByteInSecond": 0},
                    "haConnectionInfo": links,
                    "inSyncSlaveNums": in_sync,
                    "master": true,
                    "masterCommitLogMaxOffset": written,
                })
            }
            Replication::Slave(side) => {
                let (read, report) = side.link.last_read_and_report_ms().unwrap_or((0, 0));
                json!({
                    "haClientRuntimeInfo": {
                        "activated": side.link.link().is_some(),
                        "lastReadTimestamp": read,
                        "lastWriteTimestamp": report,
                        "masterAddr": side.link.master_addr().unwrap_or_default(),
                        "masterFlushOffset": 0,
                        "maxOffset": written,
                        "refused": side.link.refused(),
                        "transferredByteInSecond": 0,
                    },
                    "haConnectionInfo": [],
                    "inSyncSlaveNums": 0,
                    "master": false,
                    "masterCommitLogMaxOffset": 0,
                })
            }
        };
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// Why this slave stopped following its master, if it did (their logs differ).
    pub fn replication_refused(&self) -> Option<&str> {
        match &self.replication {
            Replication::Slave(side) => side.link.refused(),
            Replication::Master(_) => None,
        }
    }

    /// Is this broker a slave (it takes no sends)?
    pub fn is_slave(&self) -> bool {
        matches!(self.replication, Replication::Slave(_))
    }

    /// Per slave link: peer, acked CommitLog offset, bytes behind this master's end, and ms
    /// since its ack last reached the end (for `haStatus`).
    pub fn ha_status(&self, now_ms: u64) -> Vec<(String, u64, u64, u64)> {
        let written = self.store.written_offset().0;
        match &self.replication {
            Replication::Master(master) => master
                .links()
                .map(|(_, l)| {
                    let acked = l.acked.unwrap_or(0);
                    let behind = written.saturating_sub(acked);
                    let behind_ms = if behind == 0 {
                        0
                    } else {
                        now_ms.saturating_sub(l.caught_up_ms)
                    };
                    (l.peer.clone(), acked, behind, behind_ms)
                })
                .collect(),
            Replication::Slave(_) => Vec::new(),
        }
    }
}
