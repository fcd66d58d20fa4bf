//! Timer messages at any delivery time: RocketMQ 5.x's `TimerMessageStore`.
//!
//! # Routing a send
//!
//! A message with `TIMER_DELAY_SEC`, `TIMER_DELAY_MS` or `TIMER_DELIVER_MS` (read in that order
//! of precedence, as RocketMQ does; a `DELAY` level wins over all three, which are then dropped)
//! is a timer message. Its delivery time is `now + sec × 1000`, `now + ms`, or the absolute
//! epoch ms.
//!
//! * At or before now: stored in its topic at once, like any message.
//! * More than `timerMaxDelaySec` ahead: refused with MESSAGE_ILLEGAL and RocketMQ's remark.
//! * Otherwise: stored in [`TIMER_TOPIC`] queue 0 with `TIMER_OUT_MS` (the delivery time),
//!   `REAL_TOPIC` and `REAL_QID`, then entered into the timer log and wheel ([`store`]).
//!
//! A message already in [`TIMER_TOPIC`] or carrying `TIMER_OUT_MS` is not routed again.
//!
//! # Delivery
//!
//! A timer due at `t` is linked into the slot of `ceil(t / precision) × precision`, never the
//! one before: delivery is at most one precision late and never early (RocketMQ rounds down
//! and may deliver up to one precision early). The broker walks the slots in time order; when
//! a slot's time has come its list is taken out of the wheel, each message read back from the
//! CommitLog and put into its real topic and queue (a new record stored now, with
//! `TIMER_ENQUEUE_MS` / `TIMER_DEQUEUE_MS` added). A message whose `TIMER_OUT_MS` is still
//! ahead (only possible when delivery lagged a whole wheel behind) is moved to its own slot
//! instead, so nothing is ever delivered early. Large slots are delivered
//! [`DELIVER_BATCH`] messages per wake-up.
//!
//! # Progress and recovery
//!
//! `config/timercheck` (RocketMQ's file, 56 bytes, big-endian):
//!
//! ```text
//! 0               8                   16                   24                     32
//! | lastReadTimeMs | lastTimerLogFlushPos | lastTimerQueueOffset | masterTimerQueueOffset |
//! 32              40          48        56
//! | stateVersion  | timestamp | counter |
//! ```
//!
//! * `lastReadTimeMs`: every slot before it is delivered and the re-puts are durable;
//! * `lastTimerLogFlushPos`: the timer log is durable up to here;
//! * `lastTimerQueueOffset`: every message of [`TIMER_TOPIC`] before this queue offset has its
//!   unit in the log before `lastTimerLogFlushPos`.
//!
//! It is written every `timerFlushIntervalMs` with the state of the previous period once the
//! CommitLog is durable past everything that state covers (the log range is synced first), and
//! at shutdown after the final sync: a crash can deliver a message again, never lose one.
//!
//! At open the wheel is rebuilt from the log: units before the flush position are trusted
//! (still checked to point inside the CommitLog); from there each unit's CommitLog record must
//! be a [`TIMER_TOPIC`] message with the next queue offset, and the first that is not ends the
//! log (torn units after a power loss). Units in slots before `lastReadTimeMs` were delivered;
//! the others are linked again. Messages of [`TIMER_TOPIC`] past the last unit are then entered
//! from the ConsumeQueue. Log segments whose units were all delivered are deleted.

pub mod checkpoint;
pub mod store;

use self::checkpoint::{TimerCheckpoint, TIMER_CHECKPOINT_PATH};
use self::store::{TimerStore, TimerStoreConfig, TimerUnit, MAGIC_DEFAULT, MAGIC_ROLL};
use super::{Broker, BrokerError, FlushDiskType};
use crate::message::{keys, tag_hash_code, MessageRecord};
use crate::remoting::codes::response;
use crate::store::message_store::schedule_level;
use crate::store::{CommitLogOffset, PutResult, QueueOffset, SegmentStorage, StoreError};
use crate::topic::TopicConfig;

/// The topic timer messages wait in (queue 0).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Absolute delivery time, epoch ms.
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
/// Delivery delay in seconds from the send.
pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
/// Delivery delay in ms from the send.
pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
/// The delivery time the broker resolved (epoch ms), on a message in [`TIMER_TOPIC`].
pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
/// When the timer entered the wheel (added at delivery).
pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
/// When the timer was delivered (added at delivery).
pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
/// Messages delivered per wake-up; a larger slot continues at once.
pub const DELIVER_BATCH: u32 = 1024;
/// A delivery that failed (full disk, failed storage) is tried again this much later.
const RETRY_AFTER_FAILURE_MS: u64 = 1_000;
/// Empty slots stepped over per wake-up (after a long pause).
const SLOT_STEPS_PER_WAKE: u32 = 100_000;
/// Timer log units examined per read at recovery.
const RECOVERY_CHUNK_UNITS: u64 = 4096;
/// Largest wheel accepted (32 bytes a slot: 1 GiB).
pub const MAX_SLOT_COUNT: u64 = 1 << 25;

/// The timer knobs (RocketMQ's `MessageStoreConfig` names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// `timerWheelEnable`: whether timer messages are accepted (refused with SYSTEM_ERROR when
    /// not).
    pub enable: bool,
    /// `timerPrecisionMs`: the slot width; delivery is at most this late.
    pub precision_ms: u64,
    /// `timerMaxDelaySec`: the furthest delivery time accepted, from the send.
    pub max_delay_sec: u64,
    /// `mappedFileSizeTimerLog`: bytes of a timer log segment (rounded down to 52-byte units).
    pub log_segment_bytes: u64,
    /// `timerFlushIntervalMs`: how often the timer checkpoint is written when it changed.
    pub flush_interval_ms: u64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            precision_ms: 1_000,
            max_delay_sec: 3 * 24 * 3_600,
            log_segment_bytes: 100 * 1024 * 1024,
            flush_interval_ms: 1_000,
        }
    }
}

impl TimerConfig {
    /// `timerMaxDelaySec` in ms.
    pub fn max_delay_ms(&self) -> u64 {
        self.max_delay_sec.saturating_mul(1_000)
    }

    /// Slots of the wheel: twice the longest delay, so pending timers never share a slot with
    /// another period's unless delivery lags more than the longest delay behind.
    pub fn slot_count(&self) -> u64 {
        let precision = self.precision_ms.max(1);
        (2 * self.max_delay_ms()).div_ceil(precision) + 2
    }

    /// Checks the values make a usable wheel.
    pub fn validate(&self) -> Result<(), String> {
        if self.precision_ms == 0 {
            return Err("timerPrecisionMs must be at least 1".to_owned());
        }
        if self.max_delay_sec == 0 || self.max_delay_ms() > i32::MAX as u64 {
            // The timer log keeps the delay as an int32 of ms, as RocketMQ does.
            return Err("timerMaxDelaySec must be from 1 to 2147483 (24.8 days)".to_owned());
        }
        if self.slot_count() > MAX_SLOT_COUNT {
            return Err(format!(
                "timerMaxDelaySec / timerPrecisionMs needs {} wheel slots, more than {MAX_SLOT_COUNT}",
                self.slot_count()
            ));
        }
        if self.log_segment_bytes < store::UNIT_BYTES {
            return Err("mappedFileSizeTimerLog must be at least 52 bytes".to_owned());
        }
        Ok(())
    }

    fn store_config(&self) -> TimerStoreConfig {
        TimerStoreConfig {
            precision_ms: self.precision_ms.max(1),
            slot_count: self.slot_count().clamp(1, MAX_SLOT_COUNT),
            log_segment_bytes: (self.log_segment_bytes / store::UNIT_BYTES).max(1)
                * store::UNIT_BYTES,
        }
    }
}

/// Why a send was not stored.
#[derive(Debug)]
pub(crate) enum TimerPutError {
    /// Refused with this response code and remark.
    Rejected { code: i32, remark: String },
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for TimerPutError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The timer state of the broker: a few counters; everything per timer is in the files.
#[derive(Debug)]
pub(super) struct Timer {
    store: TimerStore,
    /// The next slot time to deliver; every slot before it is done.
    cursor_ms: i64,
    /// The next unit of the slot being delivered (taken out of the wheel).
    chain: Option<u64>,
    /// Queue offset of [`TIMER_TOPIC`] up to which every message has its unit in the log.
    enqueued_queue_offset: u64,
    /// What `timercheck` holds.
    persisted: TimerCheckpoint,
    /// A checkpoint to write once the CommitLog is durable up to the offset given.
    pending: Option<(TimerCheckpoint, CommitLogOffset)>,
    /// The log is durable up to here.
    synced_log_pos: u64,
    next_persist_ms: u64,
    /// When delivery needs the broker next; `None` when nothing waits.
    next_deliver_ms: Option<u64>,
}

impl Timer {
    /// The timer files and checkpoint as found (the wheel is rebuilt by `init_timer`).
    pub(super) fn load<S: SegmentStorage>(
        storage: &S,
        config: &TimerConfig,
        now_ms: u64,
    ) -> Result<Self, BrokerError> {
        let persisted = match storage
            .read_all(TIMER_CHECKPOINT_PATH)
            .map_err(StoreError::from)?
        {
            None => TimerCheckpoint::default(),
            Some(bytes) => {
                TimerCheckpoint::decode(&bytes).map_err(|reason| BrokerError::CorruptConfig {
                    path: TIMER_CHECKPOINT_PATH.to_owned(),
                    reason,
                })?
            }
        };
        let store = TimerStore::open(storage, config.store_config()).map_err(StoreError::from)?;
        Ok(Self {
            store,
            cursor_ms: persisted.last_read_time_ms,
            chain: None,
            enqueued_queue_offset: persisted.last_timer_queue_offset.max(0) as u64,
            synced_log_pos: persisted.last_timer_log_flush_pos.max(0) as u64,
            persisted,
            pending: None,
            next_persist_ms: now_ms + config.flush_interval_ms.max(1),
            next_deliver_ms: None,
        })
    }

    /// The next instant the timer needs `handle_timeout`.
    pub(super) fn deadline_ms(&self) -> Option<u64> {
        let persist = (self.pending.is_some() || self.snapshot() != self.persisted)
            .then_some(self.next_persist_ms);
        match (self.next_deliver_ms, persist) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The checkpoint of the current state.
    fn snapshot(&self) -> TimerCheckpoint {
        TimerCheckpoint {
            last_read_time_ms: self.cursor_ms,
            last_timer_log_flush_pos: self.store.log_end() as i64,
            last_timer_queue_offset: self.enqueued_queue_offset as i64,
            master_timer_queue_offset: self.enqueued_queue_offset as i64,
            ..self.persisted
        }
    }
}

/// What the timer holds, for monitoring and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerStats {
    /// Timers linked into the wheel, not yet delivered.
    pub pending: u64,
    /// The next slot time to deliver (epoch ms).
    pub cursor_ms: i64,
    /// Where the next timer log unit goes.
    pub log_end: u64,
    /// Timer log segment files.
    pub log_segments: usize,
    /// Entries of in-memory state (one per log segment); bounded whatever the number of timers.
    pub memory_entries: usize,
    /// Queue offset of [`TIMER_TOPIC`] up to which every message is in the wheel.
    pub enqueued_queue_offset: u64,
    /// What `config/timercheck` holds.
    pub checkpoint: TimerCheckpoint,
    /// When delivery needs the broker next (`None`: nothing waits).
    pub next_delivery_ms: Option<u64>,
}

/// The smallest multiple of `precision` at or after `t`.
fn align_up(t: i64, precision: u64) -> i64 {
    let p = precision.max(1) as i64;
    let t = t.max(0);
    (t / p + i64::from(t % p != 0)).saturating_mul(p)
}

fn align_down(t: i64, precision: u64) -> i64 {
    let p = precision.max(1) as i64;
    t.max(0) / p * p
}

/// The delivery time a message asks for, `None` when it is no timer message;
/// `Err` when a property is not a number.
fn requested_delivery_ms(
    properties: &crate::message::Properties,
    now_ms: u64,
) -> Option<Result<i64, String>> {
    let now = now_ms as i64;
    let parse = |name: &str| -> Option<Result<i64, String>> {
        properties.get(name).map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("{name} {v:?} is not a number"))
        })
    };
    if let Some(sec) = parse(TIMER_DELAY_SEC) {
        return Some(sec.map(|s| now.saturating_add(s.saturating_mul(1_000))));
    }
    if let Some(ms) = parse(TIMER_DELAY_MS) {
        return Some(ms.map(|m| now.saturating_add(m)));
    }
    parse(TIMER_DELIVER_MS)
}

impl<S: SegmentStorage> Broker<S> {
    /// GET_TIMER_CHECK_POINT (60): `timercheck` as last written, RocketMQ's 56 bytes (what a
    /// RocketMQ 5 slave copies).
    pub(super) fn handle_get_timer_checkpoint(
        &self,
        req: &crate::remoting::RemotingCommand,
    ) -> crate::remoting::RemotingCommand {
        crate::remoting::RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(self.timer.persisted.encode())
    }

    /// A slave takes its master's timer progress (RocketMQ 5's `syncTimerCheckPoint`): the
    /// master's `lastReadTimeMs`, `masterTimerQueueOffset` and data version, its own log
    /// positions kept. A slave keeps no timer log of its own, so those stay 0: promoted to
    /// master, it enters every timer message from its queue again and delivers at once those
    /// due before the master's read time (at least once, never lost).
    pub(super) fn take_timer_checkpoint_from_master(&mut self, body: &[u8]) -> Result<(), String> {
        let master = TimerCheckpoint::decode(body)?;
        let adopted = TimerCheckpoint {
            last_read_time_ms: master.last_read_time_ms,
            master_timer_queue_offset: master.master_timer_queue_offset,
            state_version: master.state_version,
            timestamp_ms: master.timestamp_ms,
            counter: master.counter,
            ..self.timer.persisted
        };
        if adopted == self.timer.persisted {
            return Ok(());
        }
        self.store
            .storage_mut()
            .replace(TIMER_CHECKPOINT_PATH, &adopted.encode())
            .map_err(|e| e.to_string())?;
        self.timer.persisted = adopted;
        self.timer.cursor_ms = adopted.last_read_time_ms;
        Ok(())
    }

    fn timer_config(&self) -> &TimerConfig {
        &self.config.timer
    }

    /// Creates [`TIMER_TOPIC`] when timers are enabled, rebuilds the wheel from the timer log
    /// and enters messages of the timer topic the log does not have yet (see the module doc).
    pub(super) fn init_timer(&mut self, now_ms: u64) -> Result<(), BrokerError> {
        if self.timer_config().enable && !self.topics.topics.contains_key(TIMER_TOPIC) {
            self.topics
                .topics
                .insert(TIMER_TOPIC.to_owned(), TopicConfig::new(TIMER_TOPIC, 1));
            self.topics.data_version.bump(now_ms);
            self.persist_topics();
        }
        let queue_max = self.store.max_offset(TIMER_TOPIC, 0).0;
        self.clamp_timer_progress_to_recovered_queue(queue_max)?;
        let has_log = self.timer.store.memory_entries() > 0;
        if !has_log && queue_max == 0 {
            return Ok(());
        }
        self.rebuild_timer_wheel(now_ms)
            .map_err(BrokerError::Store)?;
        match self.timer_catch_up(now_ms) {
            // A record of the timer queue that failed its check is entered by a later wake-up
            // (timer_deliver_due catches up while the queue is ahead of the log).
            Ok(()) | Err(StoreError::Corrupt(_)) => {}
            Err(e) => return Err(BrokerError::Store(e)),
        }
        self.timer.next_deliver_ms = Some(now_ms);
        Ok(())
    }

    /// After a power loss `timercheck` may count messages of [`TIMER_TOPIC`] that recovery did
    /// not keep (`lastTimerQueueOffset` beyond the queue's recovered max). New timer messages
    /// get those queue offsets again and would never be entered, so the checkpoint is lowered
    /// to the recovered max, and written at once: left ahead, a crash before the next
    /// checkpoint would make the next start skip what was stored at those offsets meanwhile.
    /// (The checkpoint holds no CommitLog offset; units pointing past the recovered CommitLog
    /// end are dropped by [`Self::rebuild_timer_wheel`].)
    fn clamp_timer_progress_to_recovered_queue(
        &mut self,
        queue_max: u64,
    ) -> Result<(), BrokerError> {
        let max = queue_max.min(i64::MAX as u64) as i64;
        let cp = self.timer.persisted;
        self.timer.enqueued_queue_offset = self.timer.enqueued_queue_offset.min(queue_max);
        if cp.last_timer_queue_offset <= max && cp.master_timer_queue_offset <= max {
            return Ok(());
        }
        let clamped = TimerCheckpoint {
            last_timer_queue_offset: cp.last_timer_queue_offset.min(max),
            master_timer_queue_offset: cp.master_timer_queue_offset.min(max),
            counter: cp.counter.saturating_add(1),
            ..cp
        };
        self.store
            .storage_mut()
            .replace(TIMER_CHECKPOINT_PATH, &clamped.encode())
            .map_err(StoreError::from)?;
        self.timer.persisted = clamped;
        Ok(())
    }

    fn rebuild_timer_wheel(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let precision = self.timer.store.config().precision_ms;
        let span_ms = (self.timer.store.config().slot_count * precision) as i64;
        let cp = self.timer.persisted;
        let storage = self.store.storage_mut();
        self.timer.store.reset_wheel(storage)?;
        self.timer.store.clear_slot_times();
        let now_floor = align_down(now_ms as i64, precision);
        // Start where delivery stopped, but never so far back that pending timers would not fit
        // in one turn of the wheel (after a long stop): those are all due now anyway.
        let oldest = now_floor
            - (span_ms - self.timer_config().max_delay_ms() as i64 - 2 * precision as i64).max(0);
        let base = if cp.last_read_time_ms > 0 {
            cp.last_read_time_ms
        } else {
            now_floor
        };
        let cursor = align_down(base.max(oldest), precision);
        let trusted_end = cp.last_timer_log_flush_pos.max(0) as u64;
        let mut expected: Option<u64> =
            (cp.last_read_time_ms > 0).then_some(cp.last_timer_queue_offset.max(0) as u64);
        let log_min = self.store.min_commitlog_offset().0;
        let log_written = self.store.written_offset().0;
        let mut min_linked: Option<i64> = None;
        let mut cut: Option<u64> = None;
        // Units rewritten in place must be synced again before a checkpoint relies on them.
        let mut first_rewrite: Option<u64> = None;
        let mut pos = self.timer.store.log_min();
        'scan: loop {
            let chunk =
                self.timer
                    .store
                    .read_chunk(self.store.storage(), pos, RECOVERY_CHUNK_UNITS)?;
            if chunk.is_empty() {
                break;
            }
            for (at, unit) in chunk {
                pos = at + store::UNIT_BYTES;
                let trusted = at < trusted_end;
                let unit = unit.filter(|u| {
                    u.offset_py as u64 >= log_min
                        && (u.offset_py as u64).saturating_add(u.size_py as u64) <= log_written
                });
                let Some(unit) = unit else {
                    if trusted {
                        // Its message is gone (retention) or the unit is damaged: skipped.
                        continue;
                    }
                    cut = Some(at);
                    break 'scan;
                };
                if !trusted {
                    // Written after the last checkpoint: it must name the next message of the
                    // timer queue, or the log ends here (a torn write or a lost record).
                    let record = self
                        .store
                        .read_record(CommitLogOffset(unit.offset_py as u64))?
                        .filter(|b| b.len() == unit.size_py as usize)
                        .and_then(|b| MessageRecord::decode(&b, false).ok())
                        .filter(|r| r.topic == TIMER_TOPIC);
                    let Some(record) = record else {
                        cut = Some(at);
                        break 'scan;
                    };
                    // A torn unit can name the right message and still carry a wrong slot
                    // (its last bytes in a sector that never reached the disk): zeros there
                    // would pass it for delivered. Every writer puts a unit at or after the
                    // slot of its message's delivery time, so one before it ends the log; the
                    // message is entered again from the ConsumeQueue.
                    let due = record
                        .properties
                        .get(TIMER_OUT_MS)
                        .and_then(|v| v.trim().parse::<i64>().ok());
                    if due.is_some_and(|due| unit.slot_time_ms < align_up(due, precision)) {
                        cut = Some(at);
                        break 'scan;
                    }
                    if unit.magic == MAGIC_DEFAULT {
                        let q = record.queue_offset.max(0) as u64;
                        if expected.is_some_and(|e| e != q) {
                            cut = Some(at);
                            break 'scan;
                        }
                        expected = Some(q + 1);
                    }
                }
                if unit.slot_time_ms < cp.last_read_time_ms {
                    // Delivered before the checkpoint.
                    self.timer.store.note_slot_time(at, unit.slot_time_ms);
                    continue;
                }
                let slot = unit.slot_time_ms.max(cursor);
                min_linked = Some(min_linked.map_or(slot, |m| m.min(slot)));
                let rewritten =
                    self.timer
                        .store
                        .relink(self.store.storage_mut(), at, unit, slot)?;
                if rewritten && first_rewrite.is_none() {
                    first_rewrite = Some(at);
                }
            }
        }
        if let Some(at) = cut {
            self.timer.store.truncate(self.store.storage_mut(), at)?;
        } else if self.timer.store.log_end() > pos {
            // The rest of the last segment holds no unit yet.
            self.timer.store.truncate(self.store.storage_mut(), pos)?;
        }
        self.timer.cursor_ms = min_linked.map_or(cursor.max(now_floor), |m| m.max(cursor));
        self.timer.chain = None;
        if let Some(next) = expected {
            self.timer.enqueued_queue_offset = next;
        }
        // The log is durable only up to the checkpoint's position and where a unit was
        // rewritten; the next checkpoint syncs the rest.
        self.timer.synced_log_pos = trusted_end
            .min(first_rewrite.unwrap_or(u64::MAX))
            .min(self.timer.store.log_end());
        Ok(())
    }

    /// Enters every message of [`TIMER_TOPIC`] the log does not have yet, from its
    /// ConsumeQueue.
    fn timer_catch_up(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let max = self.store.max_offset(TIMER_TOPIC, 0).0;
        let mut offset = self
            .timer
            .enqueued_queue_offset
            .max(self.store.min_offset(TIMER_TOPIC, 0).0);
        while offset < max {
            let got = self
                .store
                .get(TIMER_TOPIC, 0, QueueOffset(offset), 32, &|_| true)?;
            if let (Some(reason), true) = (&got.damaged, got.records.is_empty()) {
                // The record failed its check on every read: entered later, never passed over.
                self.timer.enqueued_queue_offset = offset;
                return Err(StoreError::Corrupt(reason.clone()));
            }
            if got.records.is_empty() {
                offset = got.next_begin_offset.0.max(offset + 1);
                continue;
            }
            for bytes in &got.records {
                match MessageRecord::decode(bytes, false) {
                    Ok(record) => {
                        let due = record
                            .properties
                            .get(TIMER_OUT_MS)
                            .and_then(|v| v.trim().parse::<i64>().ok())
                            .unwrap_or(now_ms as i64);
                        let real_topic = record.properties.get(keys::REAL_TOPIC).unwrap_or("");
                        self.timer_enqueue(
                            now_ms,
                            record.physical_offset,
                            bytes.len() as i32,
                            due,
                            tag_hash_code(real_topic) as i32,
                        )?;
                        offset = record.queue_offset.max(0) as u64 + 1;
                    }
                    // Not a message: nothing to deliver.
                    Err(_) => offset += 1,
                }
                self.timer.enqueued_queue_offset = offset;
            }
        }
        self.timer.enqueued_queue_offset = self.timer.enqueued_queue_offset.max(offset);
        Ok(())
    }

    /// Appends a unit for the message at `offset_py` due at `due_ms` and links it into its slot.
    fn timer_enqueue(
        &mut self,
        now_ms: u64,
        offset_py: i64,
        size_py: i32,
        due_ms: i64,
        topic_hash: i32,
    ) -> Result<(), StoreError> {
        let precision = self.timer.store.config().precision_ms;
        if !self.timer.store.has_wheel() {
            self.timer.store.reset_wheel(self.store.storage_mut())?;
        }
        if self.timer.store.pending() == 0 && self.timer.chain.is_none() {
            // Nothing waits: delivery may start from now.
            self.timer.cursor_ms = self
                .timer
                .cursor_ms
                .max(align_down(now_ms as i64, precision));
        }
        let slot = align_up(due_ms, precision).max(self.timer.cursor_ms);
        let unit = TimerUnit {
            prev_pos: -1,
            magic: MAGIC_DEFAULT,
            write_time_ms: now_ms as i64,
            delay_ms: (due_ms - now_ms as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            offset_py,
            size_py,
            topic_hash,
            slot_time_ms: slot,
        };
        self.timer.store.append(self.store.storage_mut(), unit)?;
        self.metrics.timer_enqueue_total += 1;
        let due = slot.max(0) as u64;
        self.timer.next_deliver_ms = Some(self.timer.next_deliver_ms.map_or(due, |d| d.min(due)));
        Ok(())
    }

    /// Stores a message, routing a timer message through [`TIMER_TOPIC`] and a delayed one
    /// through the delay levels (see the module doc). Every send of a single message goes
    /// through here.
    pub(crate) fn put_with_timer_routing(
        &mut self,
        now_ms: u64,
        mut record: MessageRecord,
    ) -> Result<PutResult, TimerPutError> {
        let levels = self.config.store.message_delay_level_ms.len();
        if schedule_level(&record.properties, levels).is_some() {
            // A delay level wins (RocketMQ's `checkIfTimerMessage`).
            for name in [TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS] {
                record.properties.remove(name);
            }
            return Ok(self.put_with_delay_routing(record)?);
        }
        let rerouted = record.topic == TIMER_TOPIC || record.properties.contains(TIMER_OUT_MS);
        let requested = if rerouted {
            None
        } else {
            requested_delivery_ms(&record.properties, now_ms)
        };
        let Some(requested) = requested else {
            let to_timer_topic = record.topic == TIMER_TOPIC;
            let put = self.put_with_delay_routing(record)?;
            if to_timer_topic {
                // Sent straight to the timer topic: entered like any timer (or shortly, if
                // the queue cannot be read now; the message is stored either way).
                if self.timer_catch_up(now_ms).is_err() {
                    self.timer.next_deliver_ms = Some(now_ms + RETRY_AFTER_FAILURE_MS);
                }
            }
            return Ok(put);
        };
        if !self.timer_config().enable {
            return Err(TimerPutError::Rejected {
                code: response::SYSTEM_ERROR,
                remark: "accurate timer message is not enabled, timerWheelEnable is false"
                    .to_owned(),
            });
        }
        let max_delay_ms = self.timer_config().max_delay_ms();
        let illegal = || TimerPutError::Rejected {
            code: response::MESSAGE_ILLEGAL,
            remark: format!(
                "timer message illegal, the delay time should not be bigger than the max delay \
                 {max_delay_ms}ms; or if set del msg, the delay time should be bigger than the \
                 current time"
            ),
        };
        let due_ms = requested.map_err(|_| illegal())?;
        let now = now_ms as i64;
        if due_ms <= now {
            // Due already: delivered at once.
            return Ok(self.store.put(record)?);
        }
        if (due_ms - now) as u64 > max_delay_ms {
            return Err(illegal());
        }
        let real_topic = std::mem::replace(&mut record.topic, TIMER_TOPIC.to_owned());
        let topic_hash = tag_hash_code(&real_topic) as i32;
        record.properties.insert(TIMER_OUT_MS, due_ms.to_string());
        record.properties.insert(keys::REAL_TOPIC, real_topic);
        record
            .properties
            .insert(keys::REAL_QID, record.queue_id.to_string());
        record.queue_id = 0;
        let put = self.store.put(record)?;
        if put.queue_offset.0 == self.timer.enqueued_queue_offset {
            let entered = self.timer_enqueue(
                now_ms,
                put.physical_offset.0 as i64,
                put.size_bytes as i32,
                due_ms,
                topic_hash,
            );
            match entered {
                Ok(()) => self.timer.enqueued_queue_offset = put.queue_offset.0 + 1,
                // The message is stored; it enters the wheel from the queue once the log can
                // be written again.
                Err(_) => self.timer.next_deliver_ms = Some(now_ms + RETRY_AFTER_FAILURE_MS),
            }
        } else if self.timer_catch_up(now_ms).is_err() {
            self.timer.next_deliver_ms = Some(now_ms + RETRY_AFTER_FAILURE_MS);
        }
        Ok(put)
    }

    /// Delivers every due timer and writes the checkpoint when its period has come.
    pub(super) fn timer_tick(&mut self, now_ms: u64) {
        if self.timer.next_deliver_ms.is_some_and(|due| due <= now_ms) {
            if self.durability_failure.is_some() || self.is_disk_full() {
                // Sends are refused now; deliveries wait too and are looked at again shortly.
                self.timer.next_deliver_ms = Some(now_ms + RETRY_AFTER_FAILURE_MS);
            } else {
                self.timer_deliver_due(now_ms);
            }
        }
        if now_ms >= self.timer.next_persist_ms {
            self.persist_timer_checkpoint();
            self.timer.next_persist_ms = now_ms + self.timer_config().flush_interval_ms.max(1);
        }
    }

    fn timer_deliver_due(&mut self, now_ms: u64) {
        let mut delivered = false;
        let next = match self.timer_deliver(now_ms, &mut delivered) {
            Ok(next) => next,
            // Tried again shortly from where it stopped; nothing was skipped.
            Err(_) => Some(now_ms + RETRY_AFTER_FAILURE_MS),
        };
        self.timer.next_deliver_ms = next;
        if self.store.max_offset(TIMER_TOPIC, 0).0 > self.timer.enqueued_queue_offset
            && self.timer_catch_up(now_ms).is_err()
        {
            self.timer.next_deliver_ms = Some(now_ms + RETRY_AFTER_FAILURE_MS);
        }
        if delivered {
            match self.config.flush_disk_type {
                FlushDiskType::AsyncFlush => self.after_async_put(),
                FlushDiskType::SyncFlush => self.request_sync_if_idle(),
            }
        }
    }

    /// Walks the due slots; returns when it needs the broker next.
    fn timer_deliver(
        &mut self,
        now_ms: u64,
        delivered: &mut bool,
    ) -> Result<Option<u64>, StoreError> {
        let precision = self.timer.store.config().precision_ms;
        let now = now_ms as i64;
        let mut budget = DELIVER_BATCH;
        let mut steps = SLOT_STEPS_PER_WAKE;
        loop {
            if let Some(pos) = self.timer.chain {
                if budget == 0 {
                    return Ok(Some(now_ms));
                }
                let unit = self.timer.store.read_unit(self.store.storage(), pos)?;
                let Some(unit) = unit else {
                    // The rest of the list is unreadable; recovery would not have linked it.
                    self.timer.chain = None;
                    continue;
                };
                self.timer_deliver_unit(now_ms, unit, delivered)?;
                self.timer.chain = (unit.prev_pos >= 0).then_some(unit.prev_pos as u64);
                budget -= 1;
                continue;
            }
            if self.timer.store.pending() == 0 {
                // Nothing waits: every slot up to now is done.
                self.timer.cursor_ms = self
                    .timer
                    .cursor_ms
                    .max(align_down(now, precision) + precision as i64);
                return Ok(None);
            }
            if self.timer.cursor_ms > now {
                return Ok(Some(self.timer.cursor_ms as u64));
            }
            if steps == 0 {
                return Ok(Some(now_ms));
            }
            steps -= 1;
            let cursor = self.timer.cursor_ms;
            match self.timer.store.detach(self.store.storage_mut(), cursor)? {
                Some(slot) if slot.last_pos >= 0 => self.timer.chain = Some(slot.last_pos as u64),
                _ => self.timer.cursor_ms = cursor + precision as i64,
            }
        }
    }

    /// Puts one due timer's message into its real queue, or moves it to a later slot when its
    /// time has not come.
    fn timer_deliver_unit(
        &mut self,
        now_ms: u64,
        unit: TimerUnit,
        delivered: &mut bool,
    ) -> Result<(), StoreError> {
        let offset_py = CommitLogOffset(unit.offset_py.max(0) as u64);
        let Some(bytes) = self.store.read_record(offset_py)? else {
            if offset_py >= self.store.min_commitlog_offset() {
                // Still in the log but it failed its check on every read: delivered by a later
                // wake-up from this unit, never passed over.
                return Err(StoreError::Corrupt(format!(
                    "the timer message at CommitLog offset {} failed its check",
                    offset_py.0
                )));
            }
            // The message is gone (retention): nothing left to deliver.
            return Ok(());
        };
        let Ok(stored) = MessageRecord::decode(&bytes, false) else {
            return Ok(());
        };
        if stored.topic != TIMER_TOPIC {
            return Ok(());
        }
        let due_ms = stored
            .properties
            .get(TIMER_OUT_MS)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(unit.write_time_ms.saturating_add(unit.delay_ms as i64));
        if due_ms > now_ms as i64 {
            let precision = self.timer.store.config().precision_ms;
            let slot = align_up(due_ms, precision).max(self.timer.cursor_ms + precision as i64);
            let rolled = TimerUnit {
                magic: MAGIC_ROLL,
                write_time_ms: now_ms as i64,
                slot_time_ms: slot,
                ..unit
            };
            self.timer.store.append(self.store.storage_mut(), rolled)?;
            return Ok(());
        }
        let Some(record) = Self::timer_real_message(now_ms, unit, stored) else {
            // No usable real topic: it cannot be delivered anywhere.
            return Ok(());
        };
        let (topic, queue_id) = (record.topic.clone(), record.queue_id);
        self.store.put(record)?;
        self.metrics.timer_dequeue_total += 1;
        *delivered = true;
        self.ensure_topic_of_delivered(now_ms, &topic, queue_id);
        self.wake_held_pulls(now_ms, &topic, queue_id);
        Ok(())
    }

    /// The message a timer stands for, as it goes into its real queue.
    fn timer_real_message(
        now_ms: u64,
        unit: TimerUnit,
        stored: MessageRecord,
    ) -> Option<MessageRecord> {
        let mut real = super::schedule::unpark(now_ms, stored, TIMER_TOPIC)?;
        real.properties
            .insert(TIMER_ENQUEUE_MS, unit.write_time_ms.to_string());
        real.properties.insert(TIMER_DEQUEUE_MS, now_ms.to_string());
        Some(real)
    }

    /// Writes `timercheck` with the state of the last snapshot once the CommitLog is durable
    /// past what it covers (syncing the timer log first), then snapshots the current state if
    /// it changed.
    fn persist_timer_checkpoint(&mut self) {
        let durable = self.store.durable_offset();
        if let Some((cp, end)) = self.timer.pending {
            if end > durable {
                return;
            }
            if cp != self.timer.persisted {
                let from = self.timer.synced_log_pos;
                let storage = self.store.storage_mut();
                if self.timer.store.sync_log(storage, from).is_err() {
                    // The next period tries again.
                    return;
                }
                let mut cp = cp;
                cp.counter = self.timer.persisted.counter + 1;
                cp.timestamp_ms = cp.last_read_time_ms;
                if storage
                    .replace(TIMER_CHECKPOINT_PATH, &cp.encode())
                    .is_err()
                {
                    return;
                }
                self.timer.synced_log_pos = cp.last_timer_log_flush_pos.max(0) as u64;
                self.timer.persisted = cp;
                // Segments whose timers were all delivered are no longer needed.
                let _ = self
                    .timer
                    .store
                    .delete_delivered_segments(storage, cp.last_read_time_ms);
            }
            self.timer.pending = None;
        }
        let current = self.timer.snapshot();
        if current != self.timer.persisted {
            let written = self.store.written_offset();
            self.timer.pending = Some((current, written));
            if written <= durable {
                self.persist_timer_checkpoint();
            }
        }
    }

    /// A sync completed: writes the checkpoint waiting for it.
    pub(super) fn timer_synced(&mut self) {
        if self.timer.pending.is_some() {
            self.persist_timer_checkpoint();
        }
    }

    /// Shutdown: snapshots the current state; it is written once the final sync makes
    /// everything durable ([`Broker::timer_synced`]), or at once if it already is.
    pub(super) fn persist_timer_at_shutdown(&mut self) {
        let current = self.timer.snapshot();
        if current != self.timer.persisted {
            self.timer.pending = Some((current, self.store.written_offset()));
        }
        self.persist_timer_checkpoint();
    }

    /// What the timer holds.
    pub fn timer_stats(&self) -> TimerStats {
        TimerStats {
            pending: self.timer.store.pending(),
            cursor_ms: self.timer.cursor_ms,
            log_end: self.timer.store.log_end(),
            log_segments: self.timer.store.segment_starts().len(),
            memory_entries: self.timer.store.memory_entries(),
            enqueued_queue_offset: self.timer.enqueued_queue_offset,
            checkpoint: self.timer.persisted,
            next_delivery_ms: self.timer.next_deliver_ms,
        }
    }
}
