//! The message store: CommitLog + ConsumeQueues behind one API the broker uses.
//!
//! # On-disk layout
//!
//! ```text
//! <store root>/
//! ├── commitlog/
//! │   ├── 00000000000000000000          CommitLog segment [0, S)
//! │   └── 00000000001073741824          CommitLog segment [S, 2S)
//! └── consumequeue/
//!     └── <topic>/
//!         └── <queueId>/
//!             ├── 00000000000000000000  units [0, U)      (20 bytes each)
//!             └── 00000000000006000000  units [U, 2U)     (named by byte position U × 20)
//! ```
//!
//! See [`commitlog`](super::commitlog) for segments, records and the BLANK filler, and
//! [`consume_queue`](super::consume_queue) for the 20-byte unit. The layout is RocketMQ's
//! (REMOTING.md §6.9), so its tooling can read our files.
//!
//! # Writes, durability and recovery
//!
//! A put encodes the record(s) with the physical and queue offsets filled in, appends them to the
//! CommitLog and writes one ConsumeQueue unit per record, synchronously. Durability is the
//! driver's job: [`MessageStore::sync_request`] names the CommitLog ranges written since the last
//! sync, the driver makes them durable and reports back with [`MessageStore::handle_synced`].
//! ConsumeQueues are never synced: they are rebuilt from the CommitLog.
//!
//! [`MessageStore::open`] scans the CommitLog from its first segment, verifying every record
//! (TOTALSIZE, magic, body CRC, its own physical offset, queue offsets in sequence per queue). The
//! first position that holds neither a valid record nor a BLANK filler ends the log; torn bytes
//! after it are zeroed so every later scan stops there too. Every scanned record's ConsumeQueue
//! unit is checked and rewritten when it differs or is missing, units past each queue's last
//! record are dropped, and queues with no record left are deleted.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::commitlog::{self, CommitLog, RecordMeta};
use super::consume_queue::{self, ConsumeQueue, CqUnit};
use super::segment::{SegmentStorage, StorageError};
use super::{CommitLogOffset, QueueOffset, SyncRequest};
use crate::message::{keys, tag_hash_code, MessageRecord, Properties};

/// A pull returns at most this many record bytes (RocketMQ's
/// `maxTransferBytesOnMessageInMemory`), yet always at least one record.
pub const PULL_MAX_BYTES: u64 = 256 * 1024;

/// A pull examines at least this many ConsumeQueue units (`maxFilterMessageSize` 16 000 bytes of
/// units), or `max_count` if larger, before giving up on the filter.
pub const PULL_FILTER_UNITS_MIN: u64 = 16_000 / consume_queue::UNIT_BYTES;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Size of one CommitLog segment file (`mappedFileSizeCommitLog`, 1 GiB in RocketMQ). At
    /// most `i32::MAX`: the BLANK filler stores the rest of a segment in an int32. A record
    /// needs its size plus 8 bytes of room, so the largest record is this minus 8.
    pub commitlog_segment_bytes: u64,
    /// Units per ConsumeQueue segment file (`mappedFileSizeConsumeQueue` / 20: 300 000).
    pub consume_queue_units_per_segment: u64,
    /// Largest body accepted (`maxMessageSize`, 4 MiB).
    pub max_message_size_bytes: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            commitlog_segment_bytes: 1 << 30,
            consume_queue_units_per_segment: 300_000,
            max_message_size_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("bad record: {0}")]
    Record(#[from] crate::message::RecordError),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The topic cannot name a ConsumeQueue directory, or the queue id is negative.
    #[error("invalid queue {topic}/{queue_id}")]
    InvalidQueue { topic: String, queue_id: i32 },
}

/// What [`MessageStore::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Valid CommitLog records found.
    pub records_scanned: u64,
    /// Torn bytes after the end of the CommitLog that were zeroed.
    pub bytes_truncated: u64,
    /// CommitLog segment files after the end of the log that were deleted.
    pub commitlog_segments_deleted: u64,
    /// ConsumeQueue units written because they were missing or wrong.
    pub consume_queue_units_rewritten: u64,
    /// ConsumeQueues deleted because no CommitLog record belongs to them.
    pub consume_queues_deleted: u64,
}

/// Where a put landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutResult {
    pub physical_offset: CommitLogOffset,
    pub queue_offset: QueueOffset,
    pub size_bytes: u32,
    pub store_timestamp_ms: i64,
}

/// RocketMQ's GetMessageStatus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetStatus {
    Found,
    NoMatchedMessage,
    MessageWasRemoving,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    NoMessageInQueue,
}

#[derive(Clone, Debug)]
pub struct GetResult {
    pub status: GetStatus,
    pub next_begin_offset: QueueOffset,
    pub min_offset: QueueOffset,
    pub max_offset: QueueOffset,
    /// Stored records, verbatim.
    pub records: Vec<Bytes>,
}

/// The storage engine: one CommitLog and a ConsumeQueue per (topic, queue id), over a
/// [`SegmentStorage`].
///
/// Calling discipline: every method runs to completion synchronously against the storage; the
/// only asynchronous step is durability. After writes, the driver takes
/// [`MessageStore::sync_request`], makes its ranges durable and calls
/// [`MessageStore::handle_synced`] with its `up_to`.
pub struct MessageStore<S: SegmentStorage> {
    storage: S,
    config: StoreConfig,
    commitlog: CommitLog,
    /// topic → queue id → queue. Nested so lookups by `&str` need no allocation.
    queues: BTreeMap<String, BTreeMap<i32, ConsumeQueue>>,
    recovery: RecoveryReport,
}

/// The largest queue offset a record can carry: its ConsumeQueue unit's byte position (offset ×
/// 20, also the number in the segment file's name) must fit an int64, as in RocketMQ. A record
/// beyond it was not written by a store and ends the log at recovery.
const QUEUE_OFFSET_MAX: i64 = i64::MAX / consume_queue::UNIT_BYTES as i64;

/// The ConsumeQueue tags code of a raw property string: the hash of TAGS, 0 without tags.
fn tags_code_of_properties(properties: &[u8]) -> i64 {
    if properties.is_empty() {
        return 0;
    }
    tags_code(&Properties::parse(&String::from_utf8_lossy(properties)))
}

fn tags_code(properties: &Properties) -> i64 {
    properties.get(keys::TAGS).map(tag_hash_code).unwrap_or(0)
}

/// Per-queue progress of the recovery scan.
struct Seen {
    first: u64,
    next: u64,
}

impl<S: SegmentStorage> MessageStore<S> {
    /// Opens (and recovers) the store over `storage`: an empty storage gives an empty store.
    pub fn open(mut storage: S, config: StoreConfig) -> Result<Self, StoreError> {
        let units_per_segment = config.consume_queue_units_per_segment.max(1);
        let mut queues: BTreeMap<String, BTreeMap<i32, ConsumeQueue>> = BTreeMap::new();
        for topic in storage.list_dirs(consume_queue::CONSUME_QUEUE_DIR)? {
            if !consume_queue::is_valid_topic_dir(&topic) {
                continue;
            }
            let topic_dir = format!("{}/{topic}", consume_queue::CONSUME_QUEUE_DIR);
            for name in storage.list_dirs(&topic_dir)? {
                // Only canonical decimal names: "007" would alias queue 7.
                let Some(queue_id) = name
                    .parse::<i32>()
                    .ok()
                    .filter(|id| *id >= 0 && id.to_string() == name)
                else {
                    continue;
                };
                let queue = ConsumeQueue::load(&mut storage, &topic, queue_id, units_per_segment)?;
                queues
                    .entry(topic.clone())
                    .or_default()
                    .insert(queue_id, queue);
            }
        }

        let mut seen: BTreeMap<String, BTreeMap<i32, Seen>> = BTreeMap::new();
        let mut rewritten = 0u64;
        let on_record = |storage: &mut S, offset: u64, meta: &RecordMeta<'_>| {
            if meta.queue_id < 0
                || meta.queue_offset < 0
                || meta.queue_offset > QUEUE_OFFSET_MAX
                || !consume_queue::is_valid_topic_dir(meta.topic)
            {
                return Ok(false);
            }
            let queue_offset = meta.queue_offset as u64;
            let progress = seen.get(meta.topic).and_then(|q| q.get(&meta.queue_id));
            if let Some(progress) = progress {
                // Queue offsets are assigned in append order; a record out of sequence was not
                // written by this store and ends the log.
                if progress.next != queue_offset {
                    return Ok(false);
                }
            }
            let queue = queues
                .entry(meta.topic.to_string())
                .or_default()
                .entry(meta.queue_id)
                .or_insert_with(|| ConsumeQueue::new(meta.topic, meta.queue_id, units_per_segment));
            let unit = CqUnit {
                commitlog_offset: offset as i64,
                size_bytes: meta.total_size_bytes as i32,
                tags_code: tags_code_of_properties(meta.properties),
            };
            if queue.read_unit(storage, queue_offset)? != unit {
                queue.write_unit(storage, queue_offset, &unit)?;
                rewritten += 1;
            }
            seen.entry(meta.topic.to_string())
                .or_default()
                .entry(meta.queue_id)
                .or_insert(Seen {
                    first: queue_offset,
                    next: queue_offset,
                })
                .next = queue_offset + 1;
            Ok(true)
        };
        let (commitlog, scan) =
            CommitLog::recover(&mut storage, config.commitlog_segment_bytes, on_record)?;

        let mut report = RecoveryReport {
            records_scanned: scan.records_scanned,
            bytes_truncated: scan.bytes_truncated,
            commitlog_segments_deleted: scan.segments_deleted,
            consume_queue_units_rewritten: rewritten,
            consume_queues_deleted: 0,
        };
        for (topic, topic_queues) in queues.iter_mut() {
            let topic_seen = seen.get(topic.as_str());
            let mut empty = Vec::new();
            for (queue_id, queue) in topic_queues.iter_mut() {
                match topic_seen.and_then(|s| s.get(queue_id)) {
                    Some(progress) => {
                        queue.set_range(&mut storage, progress.first, progress.next)?
                    }
                    None => {
                        queue.delete_all(&mut storage)?;
                        report.consume_queues_deleted += 1;
                        empty.push(*queue_id);
                    }
                }
            }
            for queue_id in empty {
                topic_queues.remove(&queue_id);
            }
        }
        queues.retain(|_, q| !q.is_empty());

        Ok(Self {
            storage,
            config,
            commitlog,
            queues,
            recovery: report,
        })
    }

    /// What [`MessageStore::open`] found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Appends one record to the CommitLog and dispatches it to its ConsumeQueue. The store fills
    /// `physical_offset` and `queue_offset`; everything else comes from the caller.
    pub fn put(&mut self, record: MessageRecord) -> Result<PutResult, StoreError> {
        let mut results = self.append(vec![record])?;
        results
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a put stored nothing".to_string()))
    }

    /// Appends a batch contiguously (one segment), queue offsets consecutive. Nothing is stored
    /// when any record is rejected.
    pub fn put_batch(&mut self, records: Vec<MessageRecord>) -> Result<Vec<PutResult>, StoreError> {
        self.append(records)
    }

    fn append(&mut self, mut records: Vec<MessageRecord>) -> Result<Vec<PutResult>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let max = self.config.max_message_size_bytes as usize;
        for record in &records {
            if record.body.len() > max {
                return Err(StoreError::MessageTooLarge {
                    size: record.body.len(),
                    max,
                });
            }
            if record.queue_id < 0 || !consume_queue::is_valid_topic_dir(&record.topic) {
                return Err(StoreError::InvalidQueue {
                    topic: record.topic.clone(),
                    queue_id: record.queue_id,
                });
            }
        }
        let lens: Vec<u64> = records.iter().map(|r| r.encoded_len() as u64).collect();
        let total: u64 = lens.iter().sum();
        let placement = self.commitlog.place(total)?;

        // Assign offsets and encode everything before touching the storage.
        let mut queue_maxes: BTreeMap<(String, i32), u64> = BTreeMap::new();
        let mut buf = BytesMut::with_capacity(total as usize);
        let mut results = Vec::with_capacity(records.len());
        let mut units = Vec::with_capacity(records.len());
        let mut pos = placement.offset;
        for (record, len) in records.iter_mut().zip(&lens) {
            let key = (record.topic.clone(), record.queue_id);
            let current = self.max_offset(&record.topic, record.queue_id).0;
            let next = queue_maxes.entry(key).or_insert(current);
            record.physical_offset = pos as i64;
            record.queue_offset = *next as i64;
            let before = buf.len();
            record.encode(&mut buf)?;
            if (buf.len() - before) as u64 != *len {
                return Err(StoreError::Corrupt(format!(
                    "record encoded to {} bytes, expected {len}",
                    buf.len() - before
                )));
            }
            results.push(PutResult {
                physical_offset: CommitLogOffset(pos),
                queue_offset: QueueOffset(*next),
                size_bytes: *len as u32,
                store_timestamp_ms: record.store_timestamp_ms,
            });
            units.push(CqUnit {
                commitlog_offset: pos as i64,
                size_bytes: *len as i32,
                tags_code: tags_code(&record.properties),
            });
            *next += 1;
            pos += len;
        }

        let written_before = self.commitlog.written_offset().0;
        if let Err(err) = self.commitlog.write(&mut self.storage, &placement, &buf) {
            self.commitlog.rollback(&mut self.storage, written_before);
            return Err(err);
        }
        let units_per_segment = self.config.consume_queue_units_per_segment;
        for (record, unit) in records.iter().zip(&units) {
            let queue = self
                .queues
                .entry(record.topic.clone())
                .or_default()
                .entry(record.queue_id)
                .or_insert_with(|| {
                    ConsumeQueue::new(&record.topic, record.queue_id, units_per_segment)
                });
            if let Err(err) = queue.append(&mut self.storage, unit) {
                // Undo the whole put: a stored record without its unit would get its queue
                // offset assigned twice.
                self.rollback_queues(&records, &queue_maxes);
                self.commitlog.rollback(&mut self.storage, written_before);
                return Err(err);
            }
        }
        Ok(results)
    }

    /// Moves every queue touched by a failed put back to where it was before it.
    fn rollback_queues(
        &mut self,
        records: &[MessageRecord],
        queue_maxes: &BTreeMap<(String, i32), u64>,
    ) {
        let mut before: BTreeMap<(&str, i32), u64> = BTreeMap::new();
        for record in records {
            let key = (record.topic.as_str(), record.queue_id);
            let count = before.entry(key).or_insert(0);
            *count += 1;
        }
        for ((topic, queue_id), count) in before {
            let Some(end) = queue_maxes.get(&(topic.to_string(), queue_id)) else {
                continue;
            };
            if let Some(queue) = self
                .queues
                .get_mut(topic)
                .and_then(|q| q.get_mut(&queue_id))
            {
                queue.rollback(QueueOffset(end - count));
            }
        }
    }

    fn queue(&self, topic: &str, queue_id: i32) -> Option<&ConsumeQueue> {
        self.queues.get(topic)?.get(&queue_id)
    }

    /// Up to `max_count` records from `offset` whose tags code passes `filter` (REMOTING.md
    /// §6.10). At most [`PULL_MAX_BYTES`] of records but always at least one;
    /// `next_begin_offset` points past every unit examined, matched or not.
    pub fn get(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_count: u32,
        filter: &dyn Fn(i64) -> bool,
    ) -> Result<GetResult, StoreError> {
        let (min, max) = match self.queue(topic, queue_id) {
            Some(queue) => (queue.min_offset().0, queue.max_offset().0),
            None => (0, 0),
        };
        let result = |status, next| GetResult {
            status,
            next_begin_offset: QueueOffset(next),
            min_offset: QueueOffset(min),
            max_offset: QueueOffset(max),
            records: Vec::new(),
        };
        let offset = offset.0;
        if max == 0 {
            return Ok(result(GetStatus::NoMessageInQueue, 0));
        }
        if offset < min {
            return Ok(result(GetStatus::OffsetTooSmall, min));
        }
        if offset == max {
            return Ok(result(GetStatus::OffsetOverflowOne, offset));
        }
        if offset > max {
            // RocketMQ 5.x: the client is sent back to the end of the queue.
            return Ok(result(GetStatus::OffsetOverflowBadly, max));
        }
        let Some(queue) = self.queue(topic, queue_id) else {
            return Ok(result(GetStatus::NoMessageInQueue, 0));
        };

        let mut out = result(GetStatus::NoMatchedMessage, offset);
        let unit_budget = PULL_FILTER_UNITS_MIN.max(max_count as u64);
        let mut next = offset;
        let mut total_bytes = 0u64;
        'scan: while next < max && next - offset < unit_budget {
            let units = queue.read_units(&self.storage, next, unit_budget - (next - offset))?;
            if units.is_empty() {
                break;
            }
            for unit in units {
                let size = unit.size_bytes as u64;
                let count = out.records.len() as u64;
                if count > 0 && (count >= max_count as u64 || total_bytes + size > PULL_MAX_BYTES) {
                    break 'scan;
                }
                if filter(unit.tags_code) {
                    let bytes =
                        self.commitlog
                            .read(&self.storage, unit.commitlog_offset as u64, size)?;
                    if bytes.get(..4) != Some(&(unit.size_bytes).to_be_bytes()[..]) {
                        return Err(StoreError::Corrupt(format!(
                            "{topic}/{queue_id} unit {next} points at no record"
                        )));
                    }
                    total_bytes += size;
                    out.records.push(Bytes::from(bytes));
                    out.status = GetStatus::Found;
                }
                next += 1;
            }
        }
        out.next_begin_offset = QueueOffset(next);
        Ok(out)
    }

    /// The next offset to be written in a queue (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> QueueOffset {
        self.queue(topic, queue_id)
            .map(|q| q.max_offset())
            .unwrap_or_default()
    }

    /// The first offset still readable in a queue (0 for an unknown queue).
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> QueueOffset {
        self.queue(topic, queue_id)
            .map(|q| q.min_offset())
            .unwrap_or_default()
    }

    /// The store timestamp of the record at `offset` of `queue`.
    fn store_time_at(&self, queue: &ConsumeQueue, offset: u64) -> Result<i64, StoreError> {
        let unit = queue
            .read_units(&self.storage, offset, 1)?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("no unit at {offset}")))?;
        // Enough of the header to reach STORETIMESTAMP with an IPv6 born host.
        const HEADER_BYTES: u64 = 76;
        let header = self.commitlog.read(
            &self.storage,
            unit.commitlog_offset as u64,
            HEADER_BYTES.min(unit.size_bytes as u64),
        )?;
        let sys_flag_bytes: [u8; 4] = header
            .get(36..40)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt("short record".to_string()))?;
        let pos = commitlog::store_timestamp_pos(i32::from_be_bytes(sys_flag_bytes));
        let ts: [u8; 8] = header
            .get(pos..pos + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt("short record".to_string()))?;
        Ok(i64::from_be_bytes(ts))
    }

    /// The first offset whose message was stored at or after `timestamp_ms` (RocketMQ's search
    /// semantics, lower boundary): the min offset when every message is newer, the max offset
    /// when every message is older, 0 for an unknown queue. A storage failure answers the min
    /// offset.
    pub fn offset_by_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
    ) -> QueueOffset {
        let Some(queue) = self.queue(topic, queue_id) else {
            return QueueOffset(0);
        };
        let (min, max) = (queue.min_offset().0, queue.max_offset().0);
        if min >= max {
            return QueueOffset(max);
        }
        let search = || -> Result<u64, StoreError> {
            if self.store_time_at(queue, max - 1)? < timestamp_ms {
                return Ok(max);
            }
            // Invariant: store time at `high` >= timestamp; everything before `low` is older.
            let (mut low, mut high) = (min, max - 1);
            while low < high {
                let mid = low + (high - low) / 2;
                if self.store_time_at(queue, mid)? < timestamp_ms {
                    low = mid + 1;
                } else {
                    high = mid;
                }
            }
            Ok(low)
        };
        QueueOffset(search().unwrap_or(min))
    }

    /// The store time of the oldest message still in a queue.
    pub fn earliest_store_time_ms(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let queue = self.queue(topic, queue_id)?;
        let min = queue.min_offset().0;
        if min >= queue.max_offset().0 {
            return None;
        }
        self.store_time_at(queue, min).ok()
    }

    /// The record at a CommitLog offset (VIEW_MESSAGE_BY_ID, send-back); `None` when no valid
    /// record starts there.
    pub fn read_record(&self, offset: CommitLogOffset) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .commitlog
            .read_record(&self.storage, offset.0)?
            .map(Bytes::from))
    }

    /// The end of written CommitLog bytes.
    pub fn written_offset(&self) -> CommitLogOffset {
        self.commitlog.written_offset()
    }

    /// The CommitLog is durable up to here.
    pub fn durable_offset(&self) -> CommitLogOffset {
        self.commitlog.durable_offset()
    }

    /// The first CommitLog offset still stored.
    pub fn min_commitlog_offset(&self) -> CommitLogOffset {
        self.commitlog.min_offset()
    }

    /// What to make durable to cover everything written so far; `None` when already durable.
    /// Right after [`MessageStore::open`] this covers the whole recovered log: it may have
    /// survived a crash in a page cache only.
    pub fn sync_request(&self) -> Option<SyncRequest> {
        self.commitlog.sync_request()
    }

    /// The driver made a [`SyncRequest`] durable.
    pub fn handle_synced(&mut self, up_to: CommitLogOffset) {
        self.commitlog.handle_synced(up_to);
    }

    /// Makes everything written durable through the storage itself, for drivers whose storage
    /// syncs inline (tests, the playground).
    pub fn sync_inline(&mut self) -> Result<(), StoreError> {
        if let Some(request) = self.sync_request() {
            for range in &request.ranges {
                self.storage.sync(&range.path, range.start, range.end)?;
            }
            self.handle_synced(request.up_to);
        }
        Ok(())
    }

    /// Topics with at least one queue, sorted.
    pub fn topics(&self) -> impl Iterator<Item = &str> + '_ {
        self.queues.keys().map(String::as_str)
    }

    /// Queue ids of `topic` that hold (or held) messages, sorted.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        self.queues
            .get(topic)
            .map(|q| q.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The underlying storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The underlying storage, for small config files next to the store and for tests. Writing
    /// into the CommitLog or ConsumeQueue files behind the store's back is for fault injection
    /// only.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Closes the store and hands its storage back (to reopen it, say).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
}
