//! The timer log and the timer wheel on a [`SegmentStorage`]: RocketMQ's `TimerLog` and
//! `TimerWheel` layouts.
//!
//! # Timer log (`timerlog/<20-digit start offset>`)
//!
//! An append-only log of 52-byte units, one per timer (and one more each time a timer is moved
//! to another slot), in segments of [`TimerStoreConfig::log_segment_bytes`] (a multiple of 52,
//! so a unit never straddles two files). All integers big-endian, as in RocketMQ:
//!
//! ```text
//! 0        4          12       16                 24          28         36        40         44            52
//! +--------+----------+--------+------------------+-----------+----------+---------+----------+-------------+
//! | size   | prevPos  | magic  | currWriteTimeMs  | delayMs   | offsetPy | sizePy  | topicHash| slotTimeMs  |
//! | i32=52 | i64      | i32    | i64              | i32       | i64      | i32     | i32      | i64         |
//! +--------+----------+--------+------------------+-----------+----------+---------+----------+-------------+
//! ```
//!
//! * `prevPos`: the previous unit of the same slot's list (the newest is in the wheel), `-1`
//!   for the first.
//! * `magic`: 1 for a timer entered from a send, 2 for one moved to another slot (a *roll*).
//! * `delayMs`: delivery time minus `currWriteTimeMs` (RocketMQ's field).
//! * `offsetPy` / `sizePy`: the message's record in the CommitLog (topic
//!   `rmq_sys_wheel_timer`).
//! * `topicHash`: Java's `String.hashCode` of the real topic (RocketMQ's metrics field).
//! * `slotTimeMs`: the slot the unit was linked into. RocketMQ keeps these 8 bytes reserved
//!   (zero); here they let recovery tell delivered slots from pending ones.
//!
//! # Timer wheel (`timerwheel`)
//!
//! A fixed array of [`TimerStoreConfig::slot_count`] slots of 32 bytes; the slot of time `t`
//! (a multiple of the precision) is `(t / precision) % slot_count`:
//!
//! ```text
//! 0             8              16             24       28       32
//! +-------------+--------------+--------------+--------+--------+
//! | timeMs i64  | firstPos i64 | lastPos i64  | num i32| magic  |
//! +-------------+--------------+--------------+--------+--------+
//! ```
//!
//! `lastPos` heads the slot's list through the units' `prevPos`; `num` counts its units; a slot
//! with `num` 0 is empty. The wheel is an index over the log: recovery rebuilds it from the log
//! (see the parent module), so it is never synced.
//!
//! Nothing here is kept in memory per timer: the in-memory state is a handful of counters and
//! one entry per timer log segment ([`TimerStore::memory_entries`]).

use std::collections::BTreeMap;

use crate::store::{SegmentStorage, StorageError};

/// Bytes of one timer log unit.
pub const UNIT_BYTES: u64 = 52;
/// Bytes of one wheel slot.
pub const SLOT_BYTES: u64 = 32;
/// The directory of the timer log segments.
pub const TIMER_LOG_DIR: &str = "timerlog";
/// The wheel file.
pub const TIMER_WHEEL_PATH: &str = "timerwheel";
/// `magic` of a unit entered from a send.
pub const MAGIC_DEFAULT: i32 = 1;
/// `magic` of a unit moved to a later slot.
pub const MAGIC_ROLL: i32 = 1 << 1;
/// `magic` of a wheel slot that was written.
const SLOT_MAGIC: i32 = 0x7457_6865; // "tWhe"

/// The path of the timer log segment starting at `start`.
pub fn log_segment_path(start: u64) -> String {
    format!("{TIMER_LOG_DIR}/{start:020}")
}

/// One timer log unit (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerUnit {
    pub prev_pos: i64,
    pub magic: i32,
    pub write_time_ms: i64,
    pub delay_ms: i32,
    pub offset_py: i64,
    pub size_py: i32,
    pub topic_hash: i32,
    pub slot_time_ms: i64,
}

impl TimerUnit {
    /// The 52 bytes of the unit.
    pub fn encode(&self) -> [u8; UNIT_BYTES as usize] {
        let mut out = [0u8; UNIT_BYTES as usize];
        out[0..4].copy_from_slice(&(UNIT_BYTES as i32).to_be_bytes());
        out[4..12].copy_from_slice(&self.prev_pos.to_be_bytes());
        out[12..16].copy_from_slice(&self.magic.to_be_bytes());
        out[16..24].copy_from_slice(&self.write_time_ms.to_be_bytes());
        out[24..28].copy_from_slice(&self.delay_ms.to_be_bytes());
        out[28..36].copy_from_slice(&self.offset_py.to_be_bytes());
        out[36..40].copy_from_slice(&self.size_py.to_be_bytes());
        out[40..44].copy_from_slice(&self.topic_hash.to_be_bytes());
        out[44..52].copy_from_slice(&self.slot_time_ms.to_be_bytes());
        out
    }

    /// Parses a unit; `None` when its size or magic says it is no unit (zeros, torn bytes).
    pub fn decode(raw: &[u8]) -> Option<Self> {
        let raw: &[u8; UNIT_BYTES as usize] = raw.get(..UNIT_BYTES as usize)?.try_into().ok()?;
        let i32_at = |p: usize| i32::from_be_bytes([raw[p], raw[p + 1], raw[p + 2], raw[p + 3]]);
        let i64_at = |p: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[p..p + 8]);
            i64::from_be_bytes(b)
        };
        let unit = Self {
            prev_pos: i64_at(4),
            magic: i32_at(12),
            write_time_ms: i64_at(16),
            delay_ms: i32_at(24),
            offset_py: i64_at(28),
            size_py: i32_at(36),
            topic_hash: i32_at(40),
            slot_time_ms: i64_at(44),
        };
        let valid = i32_at(0) == UNIT_BYTES as i32
            && (unit.magic == MAGIC_DEFAULT || unit.magic == MAGIC_ROLL)
            && unit.offset_py >= 0
            && unit.size_py > 0
            && unit.slot_time_ms >= 0;
        valid.then_some(unit)
    }
}

/// One wheel slot (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub time_ms: i64,
    pub first_pos: i64,
    pub last_pos: i64,
    pub num: i32,
}

impl Slot {
    fn encode(&self) -> [u8; SLOT_BYTES as usize] {
        let mut out = [0u8; SLOT_BYTES as usize];
        if self.num == 0 {
            return out;
        }
        out[0..8].copy_from_slice(&self.time_ms.to_be_bytes());
        out[8..16].copy_from_slice(&self.first_pos.to_be_bytes());
        out[16..24].copy_from_slice(&self.last_pos.to_be_bytes());
        out[24..28].copy_from_slice(&self.num.to_be_bytes());
        out[28..32].copy_from_slice(&SLOT_MAGIC.to_be_bytes());
        out
    }

    fn decode(raw: &[u8; SLOT_BYTES as usize]) -> Self {
        let i64_at = |p: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[p..p + 8]);
            i64::from_be_bytes(b)
        };
        let num = i32::from_be_bytes([raw[24], raw[25], raw[26], raw[27]]);
        let magic = i32::from_be_bytes([raw[28], raw[29], raw[30], raw[31]]);
        if magic != SLOT_MAGIC || num <= 0 {
            return Self::default();
        }
        Self {
            time_ms: i64_at(0),
            first_pos: i64_at(8),
            last_pos: i64_at(16),
            num,
        }
    }

    /// Whether the slot holds no unit.
    pub fn is_empty(&self) -> bool {
        self.num <= 0
    }
}

/// Sizes of the timer files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerStoreConfig {
    /// Slot width (`timerPrecisionMs`).
    pub precision_ms: u64,
    /// Slots of the wheel; the wheel spans `slot_count × precision_ms`.
    pub slot_count: u64,
    /// Bytes of one timer log segment, a multiple of [`UNIT_BYTES`].
    pub log_segment_bytes: u64,
}

/// The timer log and wheel of one store.
#[derive(Debug)]
pub struct TimerStore {
    config: TimerStoreConfig,
    /// Timer log segment start → the latest slot time of a unit in it (for retention).
    segments: BTreeMap<u64, i64>,
    /// Where the next unit goes.
    log_end: u64,
    /// Units linked into the wheel and not detached since.
    pending: u64,
    /// Whether the wheel file exists with the configured size.
    wheel_ready: bool,
}

impl TimerStore {
    /// The timer files found in `storage` (none yet is fine: they are created on the first
    /// timer). The log ends at the end of its last segment until [`TimerStore::set_log_end`]
    /// says where its valid units end; the wheel is not read.
    pub fn open<S: SegmentStorage>(
        storage: &S,
        config: TimerStoreConfig,
    ) -> Result<Self, StorageError> {
        let mut segments = BTreeMap::new();
        let mut log_end = 0;
        for name in storage.list(TIMER_LOG_DIR)? {
            let Some(start) = name
                .parse::<u64>()
                .ok()
                .filter(|s| name.len() == 20 && s % UNIT_BYTES == 0)
            else {
                continue;
            };
            let len = storage.len(&log_segment_path(start))?;
            segments.insert(start, i64::MAX);
            log_end = start + len - len % UNIT_BYTES;
        }
        Ok(Self {
            config,
            segments,
            log_end,
            pending: 0,
            wheel_ready: false,
        })
    }

    pub fn config(&self) -> &TimerStoreConfig {
        &self.config
    }

    /// Where the next unit goes.
    pub fn log_end(&self) -> u64 {
        self.log_end
    }

    /// The first position of the log still stored.
    pub fn log_min(&self) -> u64 {
        self.segments.keys().next().copied().unwrap_or(self.log_end)
    }

    /// Units linked into the wheel and not taken out since.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// How many entries the in-memory state holds: one per timer log segment. Everything per
    /// timer is in the files.
    pub fn memory_entries(&self) -> usize {
        self.segments.len()
    }

    /// The segment starts of the timer log, oldest first.
    pub fn segment_starts(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// The wheel slot index of a slot time.
    fn slot_index(&self, slot_time_ms: i64) -> u64 {
        (slot_time_ms.max(0) as u64 / self.config.precision_ms.max(1)) % self.config.slot_count
    }

    /// Creates the wheel file as empty slots, replacing whatever was there: the wheel is
    /// rebuilt from the log.
    pub fn reset_wheel<S: SegmentStorage>(&mut self, storage: &mut S) -> Result<(), StorageError> {
        match storage.delete(TIMER_WHEEL_PATH) {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        storage.create(TIMER_WHEEL_PATH, self.config.slot_count * SLOT_BYTES)?;
        self.wheel_ready = true;
        self.pending = 0;
        Ok(())
    }

    /// Whether the wheel file was created by [`TimerStore::reset_wheel`].
    pub fn has_wheel(&self) -> bool {
        self.wheel_ready
    }

    /// The slot of `slot_time_ms` as stored (it may hold another period's time).
    pub fn read_slot<S: SegmentStorage>(
        &self,
        storage: &S,
        slot_time_ms: i64,
    ) -> Result<Slot, StorageError> {
        let mut raw = [0u8; SLOT_BYTES as usize];
        let pos = self.slot_index(slot_time_ms) * SLOT_BYTES;
        storage.read_at(TIMER_WHEEL_PATH, pos, &mut raw)?;
        Ok(Slot::decode(&raw))
    }

    fn write_slot<S: SegmentStorage>(
        &self,
        storage: &mut S,
        slot_time_ms: i64,
        slot: &Slot,
    ) -> Result<(), StorageError> {
        let pos = self.slot_index(slot_time_ms) * SLOT_BYTES;
        storage.write_at(TIMER_WHEEL_PATH, pos, &slot.encode())
    }

    /// The unit at `pos`; `None` when no valid unit is there.
    pub fn read_unit<S: SegmentStorage>(
        &self,
        storage: &S,
        pos: u64,
    ) -> Result<Option<TimerUnit>, StorageError> {
        let Some((&start, _)) = self.segments.range(..=pos).next_back() else {
            return Ok(None);
        };
        if pos + UNIT_BYTES > self.log_end
            || pos + UNIT_BYTES > start + self.config.log_segment_bytes
        {
            return Ok(None);
        }
        let mut raw = [0u8; UNIT_BYTES as usize];
        storage.read_at(&log_segment_path(start), pos - start, &mut raw)?;
        Ok(TimerUnit::decode(&raw))
    }

    /// Appends `unit` to the log and links it as the newest unit of its slot
    /// (`unit.slot_time_ms`); its `prev_pos` is set here. Returns its position.
    pub fn append<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        mut unit: TimerUnit,
    ) -> Result<u64, StorageError> {
        let slot_time = unit.slot_time_ms;
        let slot = self.read_slot(storage, slot_time)?;
        let joins = !slot.is_empty();
        unit.prev_pos = if joins { slot.last_pos } else { -1 };
        let seg_bytes = self.config.log_segment_bytes;
        let start = self.log_end - self.log_end % seg_bytes;
        if let std::collections::btree_map::Entry::Vacant(entry) = self.segments.entry(start) {
            storage.create(&log_segment_path(start), seg_bytes)?;
            entry.insert(i64::MIN);
        }
        let pos = self.log_end;
        storage.write_at(&log_segment_path(start), pos - start, &unit.encode())?;
        self.log_end = pos + UNIT_BYTES;
        if let Some(max) = self.segments.get_mut(&start) {
            *max = (*max).max(slot_time);
        }
        self.link_at(storage, slot_time, slot, pos)?;
        Ok(pos)
    }

    /// Makes the unit at `pos` the newest of the slot (already read as `slot`).
    fn link_at<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        slot_time: i64,
        slot: Slot,
        pos: u64,
    ) -> Result<(), StorageError> {
        let updated = if slot.is_empty() {
            Slot {
                time_ms: slot_time,
                first_pos: pos as i64,
                last_pos: pos as i64,
                num: 1,
            }
        } else {
            // Two periods in one slot only when delivery lags a whole wheel behind: the slot
            // keeps the earlier time and later units are moved on when it is delivered.
            Slot {
                time_ms: slot.time_ms.min(slot_time),
                last_pos: pos as i64,
                num: slot.num.saturating_add(1),
                ..slot
            }
        };
        self.write_slot(storage, slot_time, &updated)?;
        self.pending += 1;
        Ok(())
    }

    /// Re-links an existing unit at `pos` (recovery): rewrites its `prev_pos` and
    /// `slot_time_ms` when they differ. Returns whether the unit was rewritten.
    pub fn relink<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        pos: u64,
        mut unit: TimerUnit,
        slot_time_ms: i64,
    ) -> Result<bool, StorageError> {
        let slot = self.read_slot(storage, slot_time_ms)?;
        let prev = if slot.is_empty() { -1 } else { slot.last_pos };
        let rewrite = unit.prev_pos != prev || unit.slot_time_ms != slot_time_ms;
        if rewrite {
            unit.prev_pos = prev;
            unit.slot_time_ms = slot_time_ms;
            let Some((&start, _)) = self.segments.range(..=pos).next_back() else {
                return Err(StorageError::NotFound(log_segment_path(pos)));
            };
            storage.write_at(&log_segment_path(start), pos - start, &unit.encode())?;
        }
        self.note_slot_time(pos, slot_time_ms);
        self.link_at(storage, slot_time_ms, slot, pos)?;
        Ok(rewrite)
    }

    /// Records that the segment holding `pos` has a unit in the slot of `slot_time_ms`.
    pub fn note_slot_time(&mut self, pos: u64, slot_time_ms: i64) {
        if let Some((_, max)) = self.segments.range_mut(..=pos).next_back() {
            *max = if *max == i64::MAX {
                slot_time_ms
            } else {
                (*max).max(slot_time_ms)
            };
        }
    }

    /// Forgets what [`TimerStore::open`] assumed about segment contents (before a rescan).
    pub fn clear_slot_times(&mut self) {
        for max in self.segments.values_mut() {
            *max = i64::MIN;
        }
    }

    /// Takes the units of the slot of `slot_time_ms` out of the wheel when it holds any due at
    /// or before it; returns the slot (its `last_pos` heads the list to deliver).
    pub fn detach<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        slot_time_ms: i64,
    ) -> Result<Option<Slot>, StorageError> {
        let slot = self.read_slot(storage, slot_time_ms)?;
        if slot.is_empty() || slot.time_ms > slot_time_ms {
            return Ok(None);
        }
        self.write_slot(storage, slot_time_ms, &Slot::default())?;
        self.pending = self.pending.saturating_sub(slot.num as u64);
        Ok(Some(slot))
    }

    /// Up to `max_units` units from `pos` on (within one segment): `(position, unit)`, the unit
    /// `None` where no valid unit is. Empty at the end of the log. A position in no segment
    /// (before the first one) continues at the next segment.
    pub fn read_chunk<S: SegmentStorage>(
        &self,
        storage: &S,
        pos: u64,
        max_units: u64,
    ) -> Result<Vec<(u64, Option<TimerUnit>)>, StorageError> {
        let seg_bytes = self.config.log_segment_bytes;
        let mut pos = pos + (UNIT_BYTES - pos % UNIT_BYTES) % UNIT_BYTES;
        let start = match self.segments.range(..=pos).next_back() {
            Some((&start, _)) if pos < start + seg_bytes => start,
            _ => match self.segments.range(pos..).next() {
                Some((&start, _)) => {
                    pos = start;
                    start
                }
                None => return Ok(Vec::new()),
            },
        };
        let end = (start + seg_bytes).min(self.log_end);
        let n = (end.saturating_sub(pos) / UNIT_BYTES).min(max_units.max(1));
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (n * UNIT_BYTES) as usize];
        storage.read_at(&log_segment_path(start), pos - start, &mut buf)?;
        Ok(buf
            .chunks_exact(UNIT_BYTES as usize)
            .enumerate()
            .map(|(k, raw)| (pos + k as u64 * UNIT_BYTES, TimerUnit::decode(raw)))
            .collect())
    }

    /// Ends the log at `pos`: zeroes what follows in its segment and deletes later segments.
    pub fn truncate<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        pos: u64,
    ) -> Result<(), StorageError> {
        let seg_bytes = self.config.log_segment_bytes;
        let later: Vec<u64> = self.segments.range(pos..).map(|(s, _)| *s).collect();
        for start in later {
            storage.delete(&log_segment_path(start))?;
            self.segments.remove(&start);
        }
        if let Some((&start, _)) = self.segments.range(..pos).next_back() {
            let seg_end = start + seg_bytes;
            let zero_end = self.log_end.clamp(pos, seg_end);
            if zero_end > pos {
                let zeros = vec![0u8; (zero_end - pos) as usize];
                storage.write_at(&log_segment_path(start), pos - start, &zeros)?;
            }
        }
        self.log_end = pos;
        Ok(())
    }

    /// Makes the log durable from `from` to its end.
    pub fn sync_log<S: SegmentStorage>(
        &self,
        storage: &mut S,
        from: u64,
    ) -> Result<(), StorageError> {
        let seg_bytes = self.config.log_segment_bytes;
        for (&start, _) in self.segments.range(..self.log_end) {
            let seg_end = (start + seg_bytes).min(self.log_end);
            if seg_end <= from {
                continue;
            }
            let lo = from.max(start) - start;
            storage.sync(&log_segment_path(start), lo, seg_end - start)?;
        }
        Ok(())
    }

    /// Retention: deletes the log segments (never the one being written) whose units all sit
    /// in slots before `read_time_ms`, that is, were all delivered. Returns how many.
    pub fn delete_delivered_segments<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        read_time_ms: i64,
    ) -> Result<u64, StorageError> {
        let current = self.log_end - self.log_end % self.config.log_segment_bytes;
        let done: Vec<u64> = self
            .segments
            .iter()
            .take_while(|(start, max)| **start < current && **max < read_time_ms)
            .map(|(s, _)| *s)
            .collect();
        for start in &done {
            storage.delete(&log_segment_path(*start))?;
            self.segments.remove(start);
        }
        Ok(done.len() as u64)
    }
}
