//! ConsumeQueues: per (topic, queue) index of 20-byte units pointing into the CommitLog.
//!
//! # Layout
//!
//! ```text
//! consumequeue/<topic>/<queueId>/00000000000000000000   units [0, U)
//! consumequeue/<topic>/<queueId>/00000000000006000000   units [U, 2U)   (U = 300 000 here)
//! ...
//! ```
//!
//! A segment holds `U` units (`consume_queue_units_per_segment`), is created at its full size
//! (`U × 20` zero bytes) and is named by the byte position of its first unit in the queue
//! (first logical offset × 20), zero-padded to 20 digits. Unit `n` of the queue lives at byte
//! `(n mod U) × 20` of segment `⌊n / U⌋`.
//!
//! ```text
//!  unit (20 bytes, big-endian)
//! +-------------------------------+---------------+-------------------------------+
//! | CommitLog offset i64 @0       | size i32 @8   | tags code i64 @12             |
//! +-------------------------------+---------------+-------------------------------+
//! ```
//!
//! `size` is the record's TOTALSIZE; the tags code is Java's `String.hashCode` of the TAGS
//! property (0 without tags). A unit whose size is 0 was never written.
//!
//! ConsumeQueues are derived data: recovery rebuilds them from the CommitLog, so they are never
//! made durable explicitly.

use std::collections::BTreeSet;

use super::commitlog::parse_segment_name;
use super::message_store::StoreError;
use super::segment::SegmentStorage;
use super::QueueOffset;

/// Size of one ConsumeQueue unit.
pub const UNIT_BYTES: u64 = 20;

/// Directory of all ConsumeQueues.
pub const CONSUME_QUEUE_DIR: &str = "consumequeue";

/// One ConsumeQueue entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CqUnit {
    pub commitlog_offset: i64,
    pub size_bytes: i32,
    pub tags_code: i64,
}

impl CqUnit {
    /// The 20 stored bytes.
    pub fn encode(&self) -> [u8; UNIT_BYTES as usize] {
        let mut out = [0u8; UNIT_BYTES as usize];
        out[..8].copy_from_slice(&self.commitlog_offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.size_bytes.to_be_bytes());
        out[12..].copy_from_slice(&self.tags_code.to_be_bytes());
        out
    }

    /// Decodes the unit at the front of `buf` (at least 20 bytes).
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let commitlog_offset = i64::from_be_bytes(buf.get(..8)?.try_into().ok()?);
        let size_bytes = i32::from_be_bytes(buf.get(8..12)?.try_into().ok()?);
        let tags_code = i64::from_be_bytes(buf.get(12..20)?.try_into().ok()?);
        Some(Self {
            commitlog_offset,
            size_bytes,
            tags_code,
        })
    }
}

/// Whether `topic` can name a ConsumeQueue directory: not empty, not `.` or `..`, no `/` or NUL.
/// The broker validates topic names more strictly; this only keeps paths well-formed.
pub fn is_valid_topic_dir(topic: &str) -> bool {
    !topic.is_empty()
        && topic != "."
        && topic != ".."
        && !topic.contains('/')
        && !topic.contains('\0')
}

/// The directory of one ConsumeQueue.
pub fn queue_dir(topic: &str, queue_id: i32) -> String {
    format!("{CONSUME_QUEUE_DIR}/{topic}/{queue_id}")
}

/// One ConsumeQueue: which segment files exist and the logical offsets it holds.
#[derive(Clone, Debug)]
pub struct ConsumeQueue {
    dir: String,
    units_per_segment: u64,
    /// Existing segment files, by index (`start unit / units_per_segment`).
    segments: BTreeSet<u64>,
    min_offset: u64,
    max_offset: u64,
}

impl ConsumeQueue {
    /// An empty queue with no files.
    pub fn new(topic: &str, queue_id: i32, units_per_segment: u64) -> Self {
        Self {
            dir: queue_dir(topic, queue_id),
            units_per_segment: units_per_segment.max(1),
            segments: BTreeSet::new(),
            min_offset: 0,
            max_offset: 0,
        }
    }

    /// The first offset still readable.
    pub fn min_offset(&self) -> QueueOffset {
        QueueOffset(self.min_offset)
    }

    /// The offset the next unit gets (= units ever appended).
    pub fn max_offset(&self) -> QueueOffset {
        QueueOffset(self.max_offset)
    }

    /// Indexes of the existing segment files (`first unit / units per segment`), in order.
    pub fn segment_indexes(&self) -> Vec<u64> {
        self.segments.iter().copied().collect()
    }

    fn segment_bytes(&self) -> u64 {
        self.units_per_segment * UNIT_BYTES
    }

    /// The path of segment `index`.
    pub fn segment_path(&self, index: u64) -> String {
        format!("{}/{:020}", self.dir, index * self.segment_bytes())
    }

    /// Appends a unit at the max offset.
    pub fn append<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        unit: &CqUnit,
    ) -> Result<(), StoreError> {
        let offset = self.max_offset;
        self.write_unit(storage, offset, unit)?;
        self.max_offset = offset + 1;
        Ok(())
    }

    /// Appends a unit a replicated record names at `offset`: the queue's max, or, for a queue
    /// with nothing yet (a replica that started in the middle of its master's history), any
    /// offset, which becomes its first.
    pub fn append_at<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        offset: u64,
        unit: &CqUnit,
    ) -> Result<bool, StoreError> {
        if self.max_offset == 0 && self.segments.is_empty() {
            self.min_offset = offset;
            self.max_offset = offset;
        }
        if offset != self.max_offset {
            return Ok(false);
        }
        self.append(storage, unit)?;
        Ok(true)
    }

    /// Forgets units appended at and after `max` (a failed put). Their bytes are overwritten by
    /// the next appends, and recovery zeroes any left past the max.
    pub fn rollback(&mut self, max: QueueOffset) {
        if max.0 < self.max_offset {
            self.max_offset = max.0.max(self.min_offset);
        }
    }

    /// Writes `unit` at `offset`, creating its segment file if needed. Does not move min/max.
    pub fn write_unit<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        offset: u64,
        unit: &CqUnit,
    ) -> Result<(), StoreError> {
        let index = offset / self.units_per_segment;
        let path = self.segment_path(index);
        if !self.segments.contains(&index) {
            storage.create(&path, self.segment_bytes())?;
            self.segments.insert(index);
        }
        let pos = (offset % self.units_per_segment) * UNIT_BYTES;
        storage.write_at(&path, pos, &unit.encode())?;
        Ok(())
    }

    /// The unit at `offset` as stored (a zero unit when its file does not exist).
    pub fn read_unit<S: SegmentStorage>(
        &self,
        storage: &S,
        offset: u64,
    ) -> Result<CqUnit, StoreError> {
        let index = offset / self.units_per_segment;
        if !self.segments.contains(&index) {
            return Ok(CqUnit::default());
        }
        let mut buf = [0u8; UNIT_BYTES as usize];
        let pos = (offset % self.units_per_segment) * UNIT_BYTES;
        storage.read_at(&self.segment_path(index), pos, &mut buf)?;
        Ok(CqUnit::decode(&buf).unwrap_or_default())
    }

    /// Up to `count` units from `offset`, never past the end of `offset`'s segment file nor past
    /// the max offset. Every returned unit lies in `[min, max)` and must be valid.
    pub fn read_units<S: SegmentStorage>(
        &self,
        storage: &S,
        offset: u64,
        count: u64,
    ) -> Result<Vec<CqUnit>, StoreError> {
        if offset < self.min_offset || offset >= self.max_offset {
            return Ok(Vec::new());
        }
        let index = offset / self.units_per_segment;
        let in_segment = self.units_per_segment - offset % self.units_per_segment;
        let n = count.min(in_segment).min(self.max_offset - offset);
        if !self.segments.contains(&index) {
            return Err(StoreError::Corrupt(format!(
                "{}: missing segment for offset {offset}",
                self.dir
            )));
        }
        let mut buf = vec![0u8; (n * UNIT_BYTES) as usize];
        let pos = (offset % self.units_per_segment) * UNIT_BYTES;
        storage.read_at(&self.segment_path(index), pos, &mut buf)?;
        let mut units = Vec::with_capacity(n as usize);
        for (i, chunk) in buf.chunks_exact(UNIT_BYTES as usize).enumerate() {
            let unit = CqUnit::decode(chunk).unwrap_or_default();
            if unit.size_bytes <= 0 || unit.commitlog_offset < 0 {
                return Err(StoreError::Corrupt(format!(
                    "{}: unit {} is empty",
                    self.dir,
                    offset + i as u64
                )));
            }
            units.push(unit);
        }
        Ok(units)
    }

    /// Loads the segment list of a queue found on disk. Files whose name or size does not match
    /// the configured geometry are deleted (the queue is rebuilt from the CommitLog). Min and max
    /// stay 0 until [`ConsumeQueue::set_range`].
    pub fn load<S: SegmentStorage>(
        storage: &mut S,
        topic: &str,
        queue_id: i32,
        units_per_segment: u64,
    ) -> Result<Self, StoreError> {
        let mut queue = Self::new(topic, queue_id, units_per_segment);
        let segment_bytes = queue.segment_bytes();
        for name in storage.list(&queue.dir)? {
            let path = format!("{}/{name}", queue.dir);
            let fits = match parse_segment_name(&name) {
                Some(start) if start % segment_bytes == 0 => {
                    storage.len(&path)? == segment_bytes && {
                        queue.segments.insert(start / segment_bytes);
                        true
                    }
                }
                _ => false,
            };
            if !fits {
                storage.delete(&path)?;
            }
        }
        Ok(queue)
    }

    /// Sets the readable range after recovery, zeroing units at and after `max` and deleting
    /// segment files that hold only such units.
    pub fn set_range<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        min: u64,
        max: u64,
    ) -> Result<(), StoreError> {
        self.min_offset = min;
        self.max_offset = max;
        let segments: Vec<u64> = self.segments.iter().copied().collect();
        for index in segments {
            let start = index * self.units_per_segment;
            let end = start + self.units_per_segment;
            let path = self.segment_path(index);
            if start >= max {
                storage.delete(&path)?;
                self.segments.remove(&index);
            } else if end > max {
                let from = (max - start) * UNIT_BYTES;
                let len = self.segment_bytes() - from;
                let mut tail = vec![0u8; len as usize];
                storage.read_at(&path, from, &mut tail)?;
                if tail.iter().any(|b| *b != 0) {
                    tail.fill(0);
                    storage.write_at(&path, from, &tail)?;
                }
            }
        }
        Ok(())
    }

    /// Deletes every file of the queue.
    pub fn delete_all<S: SegmentStorage>(&mut self, storage: &mut S) -> Result<(), StoreError> {
        for index in std::mem::take(&mut self.segments) {
            storage.delete(&self.segment_path(index))?;
        }
        self.min_offset = 0;
        self.max_offset = 0;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Retention: the queue follows the CommitLog's min offset.

impl ConsumeQueue {
    /// After the CommitLog's oldest segments were deleted: moves the min offset to the first unit
    /// pointing at or after `min_commitlog_offset` (RocketMQ's `correctMinOffset`; the max
    /// offset when every unit points below it) and deletes the segment files whose units are all
    /// below the new min. The file holding the last unit is kept, as RocketMQ keeps a queue's
    /// last file, so an emptied queue keeps its max offset. Returns how many files were deleted.
    pub fn delete_expired<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        min_commitlog_offset: u64,
    ) -> Result<u64, StoreError> {
        // Units point at increasing CommitLog offsets: binary search the first one kept.
        let (mut low, mut high) = (self.min_offset, self.max_offset);
        while low < high {
            let mid = low + (high - low) / 2;
            let unit = self.read_unit(storage, mid)?;
            if unit.size_bytes > 0 && (unit.commitlog_offset as u64) >= min_commitlog_offset {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        self.min_offset = low;
        let last_index = self.max_offset.saturating_sub(1) / self.units_per_segment;
        let expired: Vec<u64> = self
            .segments
            .iter()
            .copied()
            .filter(|index| {
                (index + 1) * self.units_per_segment <= self.min_offset && *index < last_index
            })
            .collect();
        let mut deleted = 0;
        for index in expired {
            match storage.delete(&self.segment_path(index)) {
                Ok(()) | Err(super::segment::StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.segments.remove(&index);
            deleted += 1;
        }
        Ok(deleted)
    }
}
