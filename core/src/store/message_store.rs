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
//! # Writes and durability
//!
//! A put encodes the record(s) with the physical and queue offsets filled in, appends them to the
//! CommitLog and writes one ConsumeQueue unit per record, synchronously. Durability is the
//! driver's job: [`MessageStore::sync_request`] names the CommitLog ranges written since the last
//! sync, the driver makes them durable and reports back with [`MessageStore::handle_synced`].
//!
//! ConsumeQueues are made durable by checkpoints: [`MessageStore::checkpoint_request`] names the
//! CommitLog tail and every ConsumeQueue range written since the last checkpoint; once the driver
//! has synced them it calls [`MessageStore::handle_checkpoint_synced`], which writes the
//! [`checkpoint`](super::checkpoint) file. A clean shutdown takes a last checkpoint and calls
//! [`MessageStore::close`], which removes the abort marker.
//!
//! # Recovery
//!
//! [`MessageStore::open`] creates the abort marker and picks where to start verifying:
//!
//! | abort marker | checkpoint | mode  | scan starts at                                        |
//! |--------------|------------|-------|-------------------------------------------------------|
//! | absent       | valid      | clean | the start of the segment holding the checkpoint       |
//! | present      | valid      | crash | the checkpoint's recovery offset                      |
//! | any          | none/bad   | full  | the first segment                                     |
//!
//! Everything before the scan start is trusted: its CommitLog bytes and ConsumeQueue units were
//! durable when the checkpoint was written. Each queue's trusted range is read back from its
//! ConsumeQueue files (and its last unit checked against its record); any disagreement with the
//! scanned records falls back to a full scan. From the start, every record is verified (TOTALSIZE,
//! magic, body CRC, its own physical offset, queue offsets in sequence per queue) and its
//! ConsumeQueue unit is checked and rewritten when it differs or is missing; units past each
//! queue's last record are dropped, and queues with no record left are deleted.
//!
//! The first position holding neither a valid record nor a BLANK filler ends the log. Torn bytes
//! after it are zeroed so every later scan stops there too, unless the bad record is corruption
//! (see [`CommitLog::recover`]): then [`StoreConfig::corrupted_commitlog`] decides between
//! refusing to open and truncating, and the [`RecoveryReport`] carries an error entry.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

mod replica;
pub use replica::ReplicaAppend;

use super::checkpoint::{Checkpoint, ABORT_MARKER_PATH, CHECKPOINT_PATH};
use super::commitlog::{
    self, CommitLog, CorruptionPolicy, ScanOutcome, ScanPlan, ScanReport, Verdict,
};
use super::consume_queue::{self, ConsumeQueue, CqUnit};
use super::index::{IndexConfig, IndexTrust, KeyIndex, QueryResult};
use super::segment::{SegmentStorage, StorageError};
use super::{CommitLogOffset, FileRange, QueueOffset, SyncRequest};
use crate::message::{keys, record_crc, tag_hash_code, MessageRecord, Properties};

/// A pull returns at most this many record bytes (RocketMQ's
/// `maxTransferBytesOnMessageInMemory`), yet always at least one record.
pub const PULL_MAX_BYTES: u64 = 256 * 1024;

/// A pull examines at least this many ConsumeQueue units (`maxFilterMessageSize` 16 000 bytes of
/// units), or `max_count` if larger, before giving up on the filter.
pub const PULL_FILTER_UNITS_MIN: u64 = 16_000 / consume_queue::UNIT_BYTES;

/// The largest queue offset a record can carry: its ConsumeQueue unit's byte position (offset ×
/// 20, also the number in the segment file's name) must fit an int64, as in RocketMQ. A record
/// beyond it was not written by a store and ends the log at recovery.
const QUEUE_OFFSET_MAX: i64 = i64::MAX / consume_queue::UNIT_BYTES as i64;

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
    /// The key index (`messageIndexEnable`, `maxHashSlotNum`, `maxIndexNum`). Its files are
    /// created at full size: in-memory storages want small counts.
    pub index: IndexConfig,
    /// What recovery does with a corrupt CommitLog record that valid data follows
    /// (`recoverCorruptedCommitLog`): refuse to open (default) or truncate there.
    pub corrupted_commitlog: CorruptionPolicy,
    /// Delay of each delay level in ms, level 1 first (`messageDelayLevel`). A record of
    /// `SCHEDULE_TOPIC_XXXX` gets its delivery time (store time + its level's delay) as the
    /// ConsumeQueue tags code, as RocketMQ stores it.
    pub message_delay_level_ms: Vec<u64>,
    /// Appends the whole-record CRC property `__CRC32#` to every stored record
    /// (`enabledAppendPropCRC`, see [`record_crc`]), so that a damaged header field, topic or
    /// property is detected like a damaged body. On by default, unlike RocketMQ (off):
    /// whole-record integrity costs 20 bytes and one CRC per record, and without it a flipped
    /// offset or key is served silently. Off, records carry no such property (one a message
    /// brings along is dropped either way).
    pub append_prop_crc: bool,
    /// Deliberate defects for the simulator's checker tests; always off in production builds
    /// (see [`crate::defects`]).
    pub defects: crate::defects::Defects,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            commitlog_segment_bytes: 1 << 30,
            consume_queue_units_per_segment: 300_000,
            max_message_size_bytes: 4 * 1024 * 1024,
            index: IndexConfig::default(),
            corrupted_commitlog: CorruptionPolicy::Refuse,
            message_delay_level_ms: DEFAULT_MESSAGE_DELAY_LEVEL_MS.to_vec(),
            append_prop_crc: true,
            defects: crate::defects::Defects::NONE,
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
    /// Replicated bytes that do not continue this store's CommitLog: the master sent them for
    /// `offset`, this store ends at `written` (a slave that diverged, or a master that skipped).
    #[error(
        "replicated bytes start at CommitLog offset {offset} but this store ends at {written}; \
         the replica and its master disagree"
    )]
    ReplicaOffsetMismatch { offset: u64, written: u64 },
    /// A replicated record does not continue its queue where this store's queue ends.
    #[error(
        "replicated record at CommitLog offset {offset} has queue offset {queue_offset} in \
         {topic}/{queue_id}, which ends at {expected} here"
    )]
    ReplicaQueueMismatch {
        offset: u64,
        topic: String,
        queue_id: i32,
        queue_offset: u64,
        expected: u64,
    },
    /// A slave's store takes its master's bytes only ([`MessageStore::set_replica`]): a
    /// message of its own would put it at offsets its master uses for others.
    #[error("this store is a slave's copy of its master: it stores no message of its own")]
    ReplicaReadOnly,
    /// The topic cannot name a ConsumeQueue directory, or the queue id is negative.
    #[error("invalid queue {topic}/{queue_id}")]
    InvalidQueue { topic: String, queue_id: i32 },
    /// Recovery found a bad record that is not a torn tail and the policy is to refuse.
    #[error(
        "CommitLog {path} is corrupt at offset {offset} (position {file_position} in the file): \
         {reason}. Refusing to start so nothing is served or dropped silently; inspect the file, \
         or set recoverCorruptedCommitLog=truncate to drop the log from this record on"
    )]
    CorruptCommitLog {
        path: String,
        offset: u64,
        file_position: u64,
        reason: String,
    },
    /// Recovery read a position of the CommitLog again and again and the bytes kept changing:
    /// the disk cannot be read reliably there. Whatever the policy, the log is not ended at a
    /// record that could not be read (it may hold acknowledged messages).
    #[error(
        "CommitLog {path} cannot be read reliably at offset {offset} (position {file_position} \
         in the file): {reads} reads returned different bytes, the last failing with: {reason}. \
         Refusing to start rather than end the log at a record that could not be read; check \
         the disk (kernel log, SMART), then start again"
    )]
    UnreadableCommitLog {
        path: String,
        offset: u64,
        file_position: u64,
        reads: u32,
        reason: String,
    },
    /// [`MessageStore::close`] was called before everything written was durable and covered by
    /// a checkpoint.
    #[error("cannot close cleanly: {0}")]
    NotDurable(String),
}

/// How [`MessageStore::open`] recovered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// No abort marker: the previous run closed cleanly; only the segment holding the checkpoint
    /// was re-verified.
    Clean,
    /// The abort marker was there: the previous run crashed; everything after the checkpoint was
    /// verified.
    Crash,
    /// No valid checkpoint (a new store, a torn checkpoint, or the trusted state disagreed with
    /// the log): every segment was verified.
    #[default]
    Full,
}

/// How loud a [`RecoveryEntry`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecoveryLevel {
    Info,
    Warn,
    /// Data that was durable is damaged: an operator must look.
    Error,
}

/// One line of the recovery report, for the driver's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryEntry {
    pub level: RecoveryLevel,
    /// The CommitLog offset concerned, if any.
    pub offset: Option<u64>,
    pub message: String,
}

/// What [`MessageStore::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub mode: RecoveryMode,
    /// The abort marker was found (the previous run did not close cleanly).
    pub abort_marker_found: bool,
    /// The valid checkpoint found, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Where verification started.
    pub scan_start: CommitLogOffset,
    /// The end of the recovered CommitLog.
    pub end: CommitLogOffset,
    /// Valid CommitLog records verified.
    pub records_scanned: u64,
    /// Torn bytes after the end of the CommitLog that were zeroed.
    pub bytes_truncated: u64,
    /// CommitLog segment files after the end of the log that were deleted.
    pub commitlog_segments_deleted: u64,
    /// ConsumeQueue units written because they were missing or wrong.
    pub consume_queue_units_rewritten: u64,
    /// ConsumeQueues deleted because no CommitLog record belongs to them.
    pub consume_queues_deleted: u64,
    /// Valid records dropped because they followed a torn write (never durable together).
    pub records_after_tear_dropped: u64,
    /// Valid records dropped with a corrupt record under [`CorruptionPolicy::Truncate`].
    pub corrupt_records_dropped: u64,
    /// CommitLog bytes dropped with a corrupt record under [`CorruptionPolicy::Truncate`].
    pub corrupt_bytes_dropped: u64,
    /// What happened, in order; [`RecoveryLevel::Error`] entries name damaged durable data.
    pub entries: Vec<RecoveryEntry>,
}

impl RecoveryReport {
    fn note(&mut self, level: RecoveryLevel, offset: Option<u64>, message: String) {
        self.entries.push(RecoveryEntry {
            level,
            offset,
            message,
        });
    }
}

/// What a driver makes durable for a checkpoint, and the checkpoint it then writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRequest {
    /// What to make durable first (see [`MessageStore::checkpoint_request`] and
    /// [`MessageStore::background_checkpoint_request`]); `up_to` is the CommitLog offset the
    /// checkpoint claims.
    pub sync: SyncRequest,
    /// Written by [`MessageStore::handle_checkpoint_synced`] once `sync` is durable.
    pub checkpoint: Checkpoint,
    /// Queues covered: (topic, queue id) → the max offset synced.
    covered: BTreeMap<(String, i32), u64>,
}

impl CheckpointRequest {
    /// The file a driver writing the checkpoint itself replaces, once `sync` is durable.
    pub fn file_path(&self) -> &'static str {
        CHECKPOINT_PATH
    }

    /// What that file then holds.
    pub fn file_contents(&self) -> Vec<u8> {
        self.checkpoint.encode().to_vec()
    }
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
    /// Why the record at `next_begin_offset` was not served: it failed its check on every one of
    /// [`READ_ATTEMPTS`] reads ([`MessageStore::get`] stops before it; the reader tries again
    /// later and never moves past it).
    pub damaged: Option<String>,
}

/// How many times a record that fails its check is read before it is reported damaged. A read
/// that comes back wrong once (a flaky cable or controller) is read right again; bytes damaged
/// on the medium stay damaged.
pub const READ_ATTEMPTS: u32 = 4;

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
    /// topic → queue id → first queue offset written since the last checkpoint.
    cq_dirty: BTreeMap<String, BTreeMap<i32, u64>>,
    /// The last checkpoint written or found.
    last_checkpoint: Option<Checkpoint>,
    /// Store time of the last record appended or recovered.
    last_store_timestamp_ms: i64,
    /// [`MessageStore::close`] removed the abort marker; the next append puts it back.
    closed: bool,
    /// Replicated CommitLog bytes before this offset are in the ConsumeQueues and the index
    /// (see `replica`); equal to the written offset except while a replicated record is
    /// still partial.
    replica_dispatched: u64,
    /// A slave's store: local puts are refused ([`MessageStore::set_replica`]).
    replica: bool,
    /// The key index, brought up to date with the CommitLog at open.
    index: KeyIndex,
    /// Deleted topics: topic → the CommitLog written offset when it was deleted. Recovery
    /// dispatches none of its records before that offset, so a deleted topic's queues never
    /// come back from the records its ConsumeQueues had indexed (`DELETED_TOPICS_PATH`).
    deleted_topics: BTreeMap<String, u64>,
}

/// The deleted topics, `{"<topic>":<commitlog offset>,…}`: replaced whole, kept until
/// retention has removed every record before the offset.
pub const DELETED_TOPICS_PATH: &str = "deletedTopics.json";

/// RocketMQ's default `messageDelayLevel`: 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m
/// 1h 2h.
pub const DEFAULT_MESSAGE_DELAY_LEVEL_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// The topic delayed messages wait in, one queue per delay level (queue id = level - 1).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// The delay level a record of [`SCHEDULE_TOPIC`] waits at (its `DELAY` property, clamped to
/// the highest level), `None` when it has none.
pub fn schedule_level(properties: &Properties, level_count: usize) -> Option<usize> {
    let level: i64 = properties.get(keys::DELAY)?.trim().parse().ok()?;
    (level > 0 && level_count > 0).then(|| (level as u64).min(level_count as u64) as usize)
}

/// The ConsumeQueue tags code of a record: the hash of its tags, or for a delayed message
/// waiting in [`SCHEDULE_TOPIC`] its delivery time in epoch ms.
fn tags_code(record: &MessageRecord, delay_level_ms: &[u64]) -> i64 {
    if record.topic == SCHEDULE_TOPIC {
        if let Some(level) = schedule_level(&record.properties, delay_level_ms.len()) {
            let delay_ms = delay_level_ms.get(level - 1).copied().unwrap_or(0);
            return record
                .store_timestamp_ms
                .saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
        }
    }
    record
        .properties
        .get(keys::TAGS)
        .map(tag_hash_code)
        .unwrap_or(0)
}

/// Per-queue progress of the recovery scan.
struct Seen {
    first: u64,
    next: u64,
}

/// Every ConsumeQueue found on disk: topic → queue id → queue (min and max still unset).
fn load_queues<S: SegmentStorage>(
    storage: &mut S,
    units_per_segment: u64,
) -> Result<BTreeMap<String, BTreeMap<i32, ConsumeQueue>>, StoreError> {
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
            let queue = ConsumeQueue::load(storage, &topic, queue_id, units_per_segment)?;
            queues
                .entry(topic.clone())
                .or_default()
                .insert(queue_id, queue);
        }
    }
    Ok(queues)
}

/// The trusted range `[min, max)` of a queue whose units for records before `start` are durable:
/// the first unit in its first file, then (by bisection) the end of the run of units that point
/// before `start` in increasing order. `None` when it has no such unit.
fn trusted_queue_range<S: SegmentStorage>(
    storage: &S,
    queue: &ConsumeQueue,
    units_per_segment: u64,
    start: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let indexes = queue.segment_indexes();
    let (Some(first), Some(last)) = (indexes.first(), indexes.last()) else {
        return Ok(None);
    };
    let mut min = None;
    for offset in first * units_per_segment..(first + 1) * units_per_segment {
        if queue.read_unit(storage, offset)?.size_bytes > 0 {
            min = Some(offset);
            break;
        }
    }
    let Some(min) = min else {
        return Ok(None);
    };
    let first_unit = queue.read_unit(storage, min)?;
    let valid = |offset: u64| -> Result<bool, StoreError> {
        let unit = queue.read_unit(storage, offset)?;
        // Queue records are in CommitLog order, each at least the smallest record apart: a unit
        // with a torn (zeroed) offset fails this.
        let floor = first_unit.commitlog_offset as u64
            + (offset - min) * u64::from(commitlog::MIN_RECORD_BYTES);
        Ok(unit.size_bytes > 0
            && unit.commitlog_offset >= 0
            && (unit.commitlog_offset as u64) < start
            && unit.commitlog_offset as u64 >= floor)
    };
    if !valid(min)? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (min, (last + 1) * units_per_segment);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if valid(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Some((min, lo + 1)))
}

/// The offset after the last unit of a queue none of whose records is left in the CommitLog,
/// when that unit points below `log_min` (retention deleted its record): the queue's min and
/// max offset, so consumers never see its offsets go backwards. `None` when the queue has no such
/// unit: its units point at records the recovery did not find, and it is deleted.
fn expired_queue_max<S: SegmentStorage>(
    storage: &S,
    queue: &ConsumeQueue,
    units_per_segment: u64,
    log_min: u64,
) -> Result<Option<u64>, StoreError> {
    const CHUNK_UNITS: u64 = 4096;
    let mut buf = vec![0u8; (CHUNK_UNITS * consume_queue::UNIT_BYTES) as usize];
    for index in queue.segment_indexes().into_iter().rev() {
        let path = queue.segment_path(index);
        // Newest units last: read the file backwards a chunk at a time.
        let mut end = units_per_segment;
        while end > 0 {
            let start = end.saturating_sub(CHUNK_UNITS);
            let chunk = &mut buf[..((end - start) * consume_queue::UNIT_BYTES) as usize];
            storage.read_at(&path, start * consume_queue::UNIT_BYTES, chunk)?;
            let units = chunk.chunks_exact(consume_queue::UNIT_BYTES as usize);
            for (k, raw) in units.enumerate().rev() {
                let unit = CqUnit::decode(raw).unwrap_or_default();
                if unit.size_bytes > 0
                    && unit.commitlog_offset >= 0
                    && (unit.commitlog_offset as u64) < log_min
                {
                    return Ok(Some(index * units_per_segment + start + k as u64 + 1));
                }
            }
            end = start;
        }
    }
    Ok(None)
}

/// The CommitLog segment files: start → length.
fn list_commitlog_segments<S: SegmentStorage>(
    storage: &S,
) -> Result<BTreeMap<u64, u64>, StoreError> {
    let mut segments = BTreeMap::new();
    for name in storage.list(commitlog::COMMITLOG_DIR)? {
        if let Some(start) = commitlog::parse_segment_name(&name) {
            segments.insert(start, storage.len(&commitlog::segment_path(start))?);
        }
    }
    Ok(segments)
}

/// Whether the record at `offset` is the one `unit` says: queue `topic`/`queue_id`, queue offset
/// `queue_offset`, CRC intact.
fn unit_matches_record<S: SegmentStorage>(
    storage: &S,
    segments: &BTreeMap<u64, u64>,
    unit: &CqUnit,
    topic: &str,
    queue_id: i32,
    queue_offset: u64,
    one_read: bool,
) -> Result<bool, StoreError> {
    let offset = unit.commitlog_offset as u64;
    let Some((&seg, &len)) = segments.range(..=offset).next_back() else {
        return Ok(false);
    };
    let size = unit.size_bytes as u64;
    if offset + size > seg + len {
        return Ok(false);
    }
    // Read like the scan reads: a transient fault here costs a full scan, never a record.
    // (`one_read`: the deliberate `count_recovery_reads` defect.)
    let attempt = || -> commitlog::Attempt<()> {
        let mut buf = vec![0u8; size as usize];
        storage.read_at(&commitlog::segment_path(seg), offset - seg, &mut buf)?;
        let matches = match commitlog::check_record(Bytes::copy_from_slice(&buf)) {
            Ok(r) => {
                r.physical_offset == offset as i64
                    && r.topic == topic
                    && r.queue_id == queue_id
                    && r.queue_offset == queue_offset as i64
            }
            Err(_) => false,
        };
        Ok((matches.then_some(()).ok_or_else(String::new), buf))
    };
    if one_read {
        return Ok(attempt()?.0.is_ok());
    }
    Ok(matches!(
        commitlog::read_settled(attempt)?,
        commitlog::Settled::Good(())
    ))
}

impl<S: SegmentStorage> MessageStore<S> {
    /// Opens (and recovers) the store over `storage`: an empty storage gives an empty store.
    /// See the module doc for the recovery modes; a corrupt CommitLog under
    /// [`CorruptionPolicy::Refuse`] gives [`StoreError::CorruptCommitLog`].
    pub fn open(mut storage: S, config: StoreConfig) -> Result<Self, StoreError> {
        let units_per_segment = config.consume_queue_units_per_segment.max(1);
        let mut report = RecoveryReport::default();
        let checkpoint = match storage.read_all(CHECKPOINT_PATH)? {
            None => None,
            Some(bytes) => match Checkpoint::decode(&bytes) {
                Ok(cp) => Some(cp),
                Err(e) => {
                    report.note(
                        RecoveryLevel::Warn,
                        None,
                        format!("{e}; the checkpoint is ignored and every segment verified"),
                    );
                    None
                }
            },
        };
        report.checkpoint = checkpoint;
        report.abort_marker_found = storage.read_all(ABORT_MARKER_PATH)?.is_some();
        // From here until a clean close the store counts as open: a crash during recovery is a
        // crash too.
        storage.replace(ABORT_MARKER_PATH, b"")?;

        let segments = list_commitlog_segments(&storage)?;
        // Retention deleted everything before the first segment.
        let log_min = segments.keys().next().copied().unwrap_or(0);
        let mut deleted_topics: BTreeMap<String, u64> =
            match storage.read_all(DELETED_TOPICS_PATH)? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    report.note(
                        RecoveryLevel::Warn,
                        None,
                        format!("{DELETED_TOPICS_PATH} is unreadable ({e}); ignored"),
                    );
                    BTreeMap::new()
                }),
                None => BTreeMap::new(),
            };
        // A tombstone whose records retention has removed has nothing left to hide.
        deleted_topics.retain(|_, end| *end > log_min);
        let trusted_end = checkpoint.map_or(0, |cp| cp.commitlog_durable_offset);
        let full = ScanPlan {
            start: 0,
            trusted_end,
            policy: config.corrupted_commitlog,
            skip_body_crc: config.defects.skip_recovery_crc(),
            count_reads: config.defects.count_recovery_reads(),
        };
        let mut plan = full;
        report.mode = RecoveryMode::Full;
        if let Some(cp) = checkpoint {
            let offset = cp.recovery_offset();
            if report.abort_marker_found {
                report.mode = RecoveryMode::Crash;
                plan.start = offset;
            } else {
                // Re-verify at least one whole segment: the one holding the last byte before
                // the checkpoint's offset.
                report.mode = RecoveryMode::Clean;
                plan.start = segments
                    .range(..=offset.saturating_sub(1))
                    .next_back()
                    .map_or(0, |(s, _)| *s);
            }
        }

        let (commitlog, scan, mut queues, trusted, seen, rewritten) = loop {
            let mut queues = load_queues(&mut storage, units_per_segment)?;
            // Each queue's range of units for records before the scan start.
            let mut trusted: BTreeMap<(String, i32), (u64, u64)> = BTreeMap::new();
            let mut consistent = true;
            if plan.start > 0 {
                'queues: for (topic, topic_queues) in &queues {
                    for (queue_id, queue) in topic_queues {
                        let Some((min, max)) =
                            trusted_queue_range(&storage, queue, units_per_segment, plan.start)?
                        else {
                            continue;
                        };
                        let last = queue.read_unit(&storage, max - 1)?;
                        if (last.commitlog_offset as u64) < log_min {
                            // Every record of the queue expired: nothing to check it against.
                            // The queue keeps its offsets (see `expired_queue_max`).
                            continue;
                        }
                        if !unit_matches_record(
                            &storage,
                            &segments,
                            &last,
                            topic,
                            *queue_id,
                            max - 1,
                            config.defects.count_recovery_reads(),
                        )? {
                            report.note(
                                RecoveryLevel::Warn,
                                Some(last.commitlog_offset as u64),
                                format!(
                                    "ConsumeQueue {topic}/{queue_id} unit {} does not match its \
                                     record; verifying every segment",
                                    max - 1
                                ),
                            );
                            consistent = false;
                            break 'queues;
                        }
                        trusted.insert((topic.clone(), *queue_id), (min, max));
                    }
                }
            }
            if !consistent {
                plan = full;
                report.mode = RecoveryMode::Full;
                continue;
            }

            let mut seen: BTreeMap<String, BTreeMap<i32, Seen>> = BTreeMap::new();
            let mut rewritten = 0u64;
            let rescan_allowed = plan.start > 0;
            let dispatch = |storage: &mut S, offset: u64, size: u32, record: &MessageRecord| {
                if record.queue_id < 0
                    || record.queue_offset < 0
                    || record.queue_offset > QUEUE_OFFSET_MAX
                    || !consume_queue::is_valid_topic_dir(&record.topic)
                {
                    return Ok(Verdict::Invalid(format!(
                        "record names no valid queue ({}/{}, queue offset {})",
                        record.topic, record.queue_id, record.queue_offset
                    )));
                }
                if deleted_topics
                    .get(&record.topic)
                    .is_some_and(|end| offset < *end)
                {
                    // A record of a topic deleted after it was written: valid, in no queue.
                    return Ok(Verdict::Valid);
                }
                let queue_offset = record.queue_offset as u64;
                let progress = seen
                    .get(&record.topic)
                    .and_then(|q| q.get(&record.queue_id));
                if let Some(progress) = progress {
                    // Queue offsets are assigned in append order; a record out of sequence was
                    // not written by this store.
                    if progress.next != queue_offset {
                        return Ok(Verdict::Invalid(format!(
                            "queue offset {queue_offset} of {}/{} breaks the sequence (expected \
                             {})",
                            record.topic, record.queue_id, progress.next
                        )));
                    }
                } else if let Some((_, max)) = trusted.get(&(record.topic.clone(), record.queue_id))
                {
                    if *max != queue_offset && rescan_allowed {
                        return Ok(Verdict::Rescan);
                    }
                }
                let queue = queues
                    .entry(record.topic.clone())
                    .or_default()
                    .entry(record.queue_id)
                    .or_insert_with(|| {
                        ConsumeQueue::new(&record.topic, record.queue_id, units_per_segment)
                    });
                let unit = CqUnit {
                    commitlog_offset: offset as i64,
                    size_bytes: size as i32,
                    tags_code: tags_code(record, &config.message_delay_level_ms),
                };
                if queue.read_unit(storage, queue_offset)? != unit {
                    queue.write_unit(storage, queue_offset, &unit)?;
                    rewritten += 1;
                }
                // Recovery hook: every record of the recovered range passes here, in CommitLog
                // order, after its ConsumeQueue unit (derived indexes rebuild from it).
                seen.entry(record.topic.clone())
                    .or_default()
                    .entry(record.queue_id)
                    .or_insert(Seen {
                        first: queue_offset,
                        next: queue_offset,
                    })
                    .next = queue_offset + 1;
                Ok(Verdict::Valid)
            };
            match CommitLog::recover(&mut storage, config.commitlog_segment_bytes, plan, dispatch)?
            {
                ScanOutcome::Done(log, scan) => {
                    break (log, scan, queues, trusted, seen, rewritten);
                }
                ScanOutcome::Rescan => {
                    report.note(
                        RecoveryLevel::Warn,
                        None,
                        "ConsumeQueues disagree with the CommitLog after the checkpoint; \
                         verifying every segment"
                            .to_string(),
                    );
                    plan = full;
                    report.mode = RecoveryMode::Full;
                }
            }
        };

        report.scan_start = CommitLogOffset(scan.start);
        report.end = CommitLogOffset(scan.end);
        report.records_scanned = scan.records_scanned;
        report.bytes_truncated = scan.bytes_truncated;
        report.commitlog_segments_deleted = scan.segments_deleted;
        report.consume_queue_units_rewritten = rewritten;
        report.records_after_tear_dropped = scan.records_after_tear;
        Self::report_scan(&mut report, &scan);

        // Each queue's range: its trusted part, extended by what the scan found.
        let mut cq_dirty: BTreeMap<String, BTreeMap<i32, u64>> = BTreeMap::new();
        for (topic, topic_queues) in queues.iter_mut() {
            let topic_seen = seen.get(topic.as_str());
            let mut empty = Vec::new();
            for (queue_id, queue) in topic_queues.iter_mut() {
                let trusted = trusted.get(&(topic.clone(), *queue_id)).copied();
                let scanned = topic_seen.and_then(|s| s.get(queue_id));
                let range = match (trusted, scanned) {
                    (Some((min, _)), Some(s)) => Some((min, s.next)),
                    (Some(range), None) => Some(range),
                    (None, Some(s)) => Some((s.first, s.next)),
                    // No record of the queue is left in the CommitLog: keep its offsets when
                    // retention expired them all, as RocketMQ keeps a queue's last file.
                    (None, None) => expired_queue_max(&storage, queue, units_per_segment, log_min)?
                        .map(|max| {
                            report.note(
                                RecoveryLevel::Info,
                                None,
                                format!(
                                    "ConsumeQueue {topic}/{queue_id}: every record expired; its \
                                     offsets stay at {max}"
                                ),
                            );
                            (max, max)
                        }),
                };
                match range {
                    Some((min, max)) => {
                        queue.set_range(&mut storage, min, max)?;
                        if let Some(s) = scanned {
                            // Units the scan verified or rewrote may sit in a page cache only.
                            cq_dirty
                                .entry(topic.clone())
                                .or_default()
                                .insert(*queue_id, s.first);
                        }
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

        // The index repairs itself against the recovered CommitLog (see `index`).
        // A checkpoint that synced the index vouches for it up to its index offset.
        let index_trust = match (report.mode, checkpoint) {
            (RecoveryMode::Clean | RecoveryMode::Crash, Some(cp)) => Some(IndexTrust {
                durable_offset: cp.index_durable_offset,
                clean: report.mode == RecoveryMode::Clean,
            }),
            _ => None,
        };
        let index = KeyIndex::open(&mut storage, config.index.clone(), &commitlog, index_trust);

        // A truncation below the checkpoint (operator's choice) makes it claim too much.
        let mut last_checkpoint = checkpoint;
        if let Some(cp) = checkpoint {
            let end = scan.end;
            // Nor may it claim index entries this open rewrote.
            let index_claim = index.durable_claim().min(end);
            if cp.commitlog_durable_offset > end
                || cp.consume_queue_durable_offset > end
                || cp.index_durable_offset > index_claim
            {
                let clamped = Checkpoint {
                    commitlog_durable_offset: cp.commitlog_durable_offset.min(end),
                    consume_queue_durable_offset: cp.consume_queue_durable_offset.min(end),
                    index_durable_offset: index_claim,
                    ..cp
                };
                storage.replace(CHECKPOINT_PATH, &clamped.encode())?;
                last_checkpoint = Some(clamped);
            }
        }

        let mut store = Self {
            storage,
            config,
            commitlog,
            queues,
            recovery: report,
            index,
            cq_dirty,
            last_checkpoint,
            last_store_timestamp_ms: checkpoint.map_or(0, |cp| cp.physic_msg_timestamp_ms),
            closed: false,
            replica_dispatched: 0,
            replica: false,
            deleted_topics,
        };
        store.replica_dispatched = store.commitlog.written_offset().0;
        store.last_store_timestamp_ms = store
            .last_store_timestamp_ms
            .max(store.last_record_store_time().unwrap_or(0));
        Ok(store)
    }

    /// Turns what the scan found into report entries.
    fn report_scan(report: &mut RecoveryReport, scan: &ScanReport) {
        let mode = match report.mode {
            RecoveryMode::Clean => "clean shutdown",
            RecoveryMode::Crash => "crash",
            RecoveryMode::Full => "full scan",
        };
        let marker = if report.abort_marker_found {
            "abort marker found (the previous run did not close cleanly)"
        } else {
            "no abort marker"
        };
        let checkpoint = match &report.checkpoint {
            Some(cp) => format!("checkpoint at {}", cp.recovery_offset()),
            None => "no valid checkpoint".to_string(),
        };
        report.note(
            RecoveryLevel::Info,
            Some(scan.start),
            format!(
                "recovery ({mode}): {marker}, {checkpoint}; verified {} records from offset {}; \
                 the log ends at {}",
                scan.records_scanned, scan.start, scan.end
            ),
        );
        if let Some(reason) = &scan.end_reason {
            report.note(
                RecoveryLevel::Warn,
                Some(scan.end),
                format!(
                    "torn tail at offset {}: {reason}; {} bytes zeroed, {} segment files deleted",
                    scan.end, scan.bytes_truncated, scan.segments_deleted
                ),
            );
        }
        if scan.records_after_tear > 0 {
            report.note(
                RecoveryLevel::Warn,
                Some(scan.end),
                format!(
                    "{} valid records after the torn write at {} were dropped: the disk kept \
                     them without the write before them, so they were never durable",
                    scan.records_after_tear, scan.end
                ),
            );
        }
        if let Some(c) = &scan.corruption {
            report.corrupt_records_dropped = c.records_dropped;
            report.corrupt_bytes_dropped = c.bytes_dropped;
            report.note(
                RecoveryLevel::Error,
                Some(c.offset),
                format!(
                    "CORRUPT CommitLog {} at offset {} (position {}): {}; truncated as \
                     configured, dropping {} valid records and {} bytes after it",
                    c.path, c.offset, c.file_position, c.reason, c.records_dropped, c.bytes_dropped
                ),
            );
        }
    }

    /// Store time of the last record in the log, if any.
    fn last_record_store_time(&self) -> Option<i64> {
        self.queues
            .iter()
            .flat_map(|(topic, qs)| qs.keys().map(move |q| (topic.as_str(), *q)))
            .filter_map(|(topic, q)| {
                let queue = self.queue(topic, q)?;
                let max = queue.max_offset().0;
                (max > queue.min_offset().0)
                    .then(|| self.store_time_at(queue, max - 1).ok())
                    .flatten()
            })
            .max()
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

    /// Makes this store a slave's copy: from now on it stores only what
    /// [`MessageStore::append_replicated`] brings, and every put is refused.
    pub fn set_replica(&mut self, replica: bool) {
        self.replica = replica;
    }

    fn append(&mut self, mut records: Vec<MessageRecord>) -> Result<Vec<PutResult>, StoreError> {
        if self.replica {
            return Err(StoreError::ReplicaReadOnly);
        }
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
        // A `__CRC32#` the message brings along (a re-put or retry copies its stored properties)
        // describes other bytes: drop it, and reserve a fresh last one when the key is on.
        for record in &mut records {
            if self.config.append_prop_crc {
                record_crc::reserve(&mut record.properties);
            } else {
                record_crc::strip(&mut record.properties);
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
            if self.config.append_prop_crc {
                // Every field is final now: offsets and the store timestamp were set above.
                record_crc::seal(&mut buf[before..])?;
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
                tags_code: tags_code(record, &self.config.message_delay_level_ms),
            });
            *next += 1;
            pos += len;
        }

        if self.closed {
            // Writing after a clean close: the store is open again until the next close.
            self.storage.replace(ABORT_MARKER_PATH, b"")?;
            self.closed = false;
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
            // The deliberate `drop_consume_queue_entry` defect (tests only) leaves the entry
            // unwritten: the queue's offsets still advance past it.
            let dropped = CqUnit::default();
            let unit = if self
                .config
                .defects
                .drop_consume_queue_entry(queue.max_offset().0 + 1)
            {
                &dropped
            } else {
                unit
            };
            if let Err(err) = queue.append(&mut self.storage, unit) {
                // Undo the whole put: a stored record without its unit would get its queue
                // offset assigned twice.
                self.rollback_queues(&records, &queue_maxes);
                self.commitlog.rollback(&mut self.storage, written_before);
                return Err(err);
            }
        }
        for (record, result) in records.iter().zip(&results) {
            self.index.put_record(
                &mut self.storage,
                record,
                result.physical_offset.0,
                result.size_bytes,
            );
            self.mark_cq_dirty(&record.topic, record.queue_id, result.queue_offset.0);
            self.last_store_timestamp_ms =
                self.last_store_timestamp_ms.max(record.store_timestamp_ms);
        }
        self.replica_dispatched = self.commitlog.written_offset().0;
        Ok(results)
    }

    /// Remembers that `topic`/`queue_id` has units from `offset` on that no checkpoint covers.
    fn mark_cq_dirty(&mut self, topic: &str, queue_id: i32, offset: u64) {
        match self.cq_dirty.get_mut(topic) {
            Some(queues) => {
                queues.entry(queue_id).or_insert(offset);
            }
            None => {
                self.cq_dirty
                    .entry(topic.to_string())
                    .or_default()
                    .insert(queue_id, offset);
            }
        }
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
    ///
    /// Every record served is verified first ([`commitlog::check_record_view`], which allocates
    /// nothing: body CRC, the whole-record CRC property when present, layout) and must be the
    /// record its ConsumeQueue unit names: same topic, queue id, queue offset, CommitLog offset
    /// and size. A record that fails is read
    /// again, up to [`READ_ATTEMPTS`] reads; if it still fails, the result ends before it with
    /// `damaged` set and `next_begin_offset` at its queue offset, so no reader ever skips it.
    pub fn get(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_count: u32,
        filter: &dyn Fn(i64) -> bool,
    ) -> Result<GetResult, StoreError> {
        self.get_with(topic, queue_id, offset, max_count, filter, true)
    }

    /// [`MessageStore::get`] without the verification: the stored bytes as they are, for
    /// forensic read-backs that judge the records themselves.
    pub fn get_unverified(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_count: u32,
        filter: &dyn Fn(i64) -> bool,
    ) -> Result<GetResult, StoreError> {
        self.get_with(topic, queue_id, offset, max_count, filter, false)
    }

    /// The record a ConsumeQueue unit points at, verified (see [`MessageStore::get`]).
    /// `Ok(Err(reason))`: it failed its check on every read.
    fn read_verified(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: u64,
        unit: &CqUnit,
    ) -> Result<Result<Bytes, String>, StoreError> {
        let mut reason = String::new();
        for _ in 0..READ_ATTEMPTS {
            let bytes = self.commitlog.read(
                &self.storage,
                unit.commitlog_offset as u64,
                unit.size_bytes as u64,
            )?;
            match commitlog::check_record_view(&bytes) {
                Ok(record)
                    if record.topic == topic
                        && record.queue_id == queue_id
                        && record.queue_offset == queue_offset as i64
                        && record.physical_offset == unit.commitlog_offset =>
                {
                    return Ok(Ok(Bytes::from(bytes)));
                }
                Ok(record) => {
                    reason = format!(
                        "the record at CommitLog offset {} is {}/{}@{} (physical offset {})",
                        unit.commitlog_offset,
                        record.topic,
                        record.queue_id,
                        record.queue_offset,
                        record.physical_offset
                    );
                }
                Err(e) => reason = e.to_string(),
            }
        }
        Ok(Err(format!(
            "{topic}/{queue_id}@{queue_offset} failed its check on {READ_ATTEMPTS} reads: {reason}"
        )))
    }

    fn get_with(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_count: u32,
        filter: &dyn Fn(i64) -> bool,
        verify: bool,
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
            damaged: None,
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
                    let bytes = if verify {
                        match self.read_verified(topic, queue_id, next, &unit)? {
                            Ok(bytes) => bytes,
                            Err(reason) => {
                                out.damaged = Some(reason);
                                break 'scan;
                            }
                        }
                    } else {
                        let bytes = self.commitlog.read(
                            &self.storage,
                            unit.commitlog_offset as u64,
                            size,
                        )?;
                        if bytes.get(..4) != Some(&(unit.size_bytes).to_be_bytes()[..]) {
                            return Err(StoreError::Corrupt(format!(
                                "{topic}/{queue_id} unit {next} points at no record"
                            )));
                        }
                        Bytes::from(bytes)
                    };
                    total_bytes += size;
                    out.records.push(bytes);
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

    /// Up to `count` ConsumeQueue units of a queue from `offset`, for inspection (the playground
    /// draws them); fewer at the end of the queue, none for an unknown queue or an offset outside
    /// it.
    pub fn consume_queue_units(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        count: u64,
    ) -> Result<Vec<consume_queue::CqUnit>, StoreError> {
        let Some(queue) = self.queue(topic, queue_id) else {
            return Ok(Vec::new());
        };
        let mut units = Vec::new();
        let mut next = offset.0;
        // `read_units` stops at the end of a ConsumeQueue segment file.
        while (units.len() as u64) < count {
            let got = queue.read_units(&self.storage, next, count - units.len() as u64)?;
            if got.is_empty() {
                break;
            }
            next += got.len() as u64;
            units.extend(got);
        }
        Ok(units)
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

    /// Where in the CommitLog the message at `offset` of a queue starts; `None` when the queue
    /// holds no unit there (unknown queue, offset outside `[min, max)`, or unreadable).
    pub fn commitlog_offset_at(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
    ) -> Option<CommitLogOffset> {
        let queue = self.queue(topic, queue_id)?;
        let unit = queue.read_units(&self.storage, offset, 1).ok()?.pop()?;
        u64::try_from(unit.commitlog_offset)
            .ok()
            .map(CommitLogOffset)
    }

    /// Deletes every ConsumeQueue of `topic` (DELETE_TOPIC_IN_BROKER): its messages are no
    /// longer reachable by queue offset; their CommitLog records stay until retention removes
    /// their segments, as in RocketMQ, and a tombstone keeps recovery from indexing them again.
    /// Returns how many queues were deleted.
    pub fn delete_topic(&mut self, topic: &str) -> Result<usize, StoreError> {
        if !self.queues.contains_key(topic) {
            return Ok(0);
        }
        // The tombstone first: once it is durable, no recovery brings the queues back.
        let mut deleted = self.deleted_topics.clone();
        deleted.insert(topic.to_owned(), self.commitlog.written_offset().0);
        let json = serde_json::to_vec(&deleted).unwrap_or_default();
        self.storage.replace(DELETED_TOPICS_PATH, &json)?;
        self.deleted_topics = deleted;
        let queues = self.queues.remove(topic).unwrap_or_default();
        self.cq_dirty.remove(topic);
        let count = queues.len();
        for (_, mut queue) in queues {
            queue.delete_all(&mut self.storage)?;
        }
        Ok(count)
    }

    /// The store time of the record at `offset` of a queue; `None` outside the queue or when it
    /// cannot be read.
    pub fn store_time_ms_at(&self, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
        let queue = self.queue(topic, queue_id)?;
        if offset < queue.min_offset().0 || offset >= queue.max_offset().0 {
            return None;
        }
        self.store_time_at(queue, offset).ok()
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
    /// record starts there. A record that fails its check is read again, up to
    /// [`READ_ATTEMPTS`] reads, before `None` is believed.
    pub fn read_record(&self, offset: CommitLogOffset) -> Result<Option<Bytes>, StoreError> {
        for _ in 0..READ_ATTEMPTS {
            if let Some(bytes) = self.commitlog.read_record(&self.storage, offset.0)? {
                return Ok(Some(Bytes::from(bytes)));
            }
            if offset < self.min_commitlog_offset() || offset >= self.written_offset() {
                break;
            }
        }
        Ok(None)
    }

    /// QUERY_MESSAGE: up to `max_num` records of `topic` indexed under `key` (a KEYS token or the
    /// UNIQ_KEY) stored within `[begin_ms, end_ms]`, newest first (see
    /// [`index`](super::index)).
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max_num: u32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<QueryResult, StoreError> {
        self.index.query(
            &self.storage,
            &self.commitlog,
            topic,
            key,
            max_num,
            begin_ms,
            end_ms,
        )
    }

    /// The key index.
    pub fn index(&self) -> &KeyIndex {
        &self.index
    }

    /// Retention: deletes the index files whose entries all point below `offset` (the
    /// CommitLog's new first offset), never the newest. Returns how many were deleted.
    pub fn delete_index_files_below(&mut self, offset: CommitLogOffset) -> Result<u64, StoreError> {
        Ok(self.index.delete_files_below(&mut self.storage, offset)?)
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

    /// Whether a checkpoint would say more than the last one: something was written since.
    pub fn checkpoint_due(&self) -> bool {
        self.checkpoint_due_at(self.commitlog.written_offset())
    }

    /// Whether a [`MessageStore::background_checkpoint_request`] would say more than the last
    /// checkpoint: the CommitLog became durable further, or ConsumeQueue units wait for a sync.
    pub fn background_checkpoint_due(&self) -> bool {
        self.checkpoint_due_at(self.background_claim())
    }

    fn checkpoint_due_at(&self, claim: CommitLogOffset) -> bool {
        match &self.last_checkpoint {
            Some(cp) => cp.commitlog_durable_offset != claim.0 || !self.cq_dirty.is_empty(),
            None => claim.0 > 0 || !self.cq_dirty.is_empty(),
        }
    }

    /// What a background checkpoint claims of the CommitLog: what is durable already.
    /// A replica's partial record is never claimed: recovery must be free to drop it as a torn
    /// tail (its master sends it again).
    fn background_claim(&self) -> CommitLogOffset {
        CommitLogOffset(
            self.commitlog
                .durable_offset()
                .0
                .min(self.replica_dispatched),
        )
    }

    /// What to make durable for a checkpoint of everything written so far: the CommitLog tail
    /// and every ConsumeQueue range written since the last checkpoint. Once the driver has synced
    /// every range it calls [`MessageStore::handle_checkpoint_synced`] with this request. Puts
    /// may continue meanwhile; the checkpoint then covers what was written when it was taken.
    /// This is the checkpoint of a shutdown; a running broker takes
    /// [`MessageStore::background_checkpoint_request`]s.
    pub fn checkpoint_request(&self) -> CheckpointRequest {
        let ranges = self
            .commitlog
            .sync_request()
            .map(|r| r.ranges)
            .unwrap_or_default();
        let claim = self
            .commitlog
            .written_offset()
            .0
            .min(self.replica_dispatched);
        self.checkpoint_request_claiming(CommitLogOffset(claim), ranges)
    }

    /// A checkpoint that leaves the CommitLog to the group commit: it claims the CommitLog only
    /// as far as it is durable already and syncs nothing but ConsumeQueue and index ranges, so
    /// a driver can sync it on its own thread, beside (never in front of) the CommitLog's
    /// syncs. Units of records past the claim are synced too, which is harmless: recovery
    /// trusts a queue only for records before the claim and rebuilds the rest from the
    /// CommitLog. The driver syncs `sync.ranges`, writes the file
    /// ([`CheckpointRequest::file_path`], [`CheckpointRequest::file_contents`]) durably, and
    /// hands the request back to [`MessageStore::handle_checkpoint_written`].
    pub fn background_checkpoint_request(&self) -> CheckpointRequest {
        let mut request = self.checkpoint_request_claiming(self.background_claim(), Vec::new());
        if self.config.defects.checkpoint_skips_queue_sync() {
            request
                .sync
                .ranges
                .retain(|r| !r.path.starts_with(consume_queue::CONSUME_QUEUE_DIR));
        }
        request
    }

    /// A checkpoint claiming the CommitLog up to `claim`, whose sync covers `ranges` (the
    /// CommitLog's share, if any), every ConsumeQueue range written since the last checkpoint,
    /// and the index's newest file.
    fn checkpoint_request_claiming(
        &self,
        claim: CommitLogOffset,
        mut ranges: Vec<FileRange>,
    ) -> CheckpointRequest {
        let units_per_segment = self.config.consume_queue_units_per_segment.max(1);
        let mut covered = BTreeMap::new();
        for (topic, queues) in &self.cq_dirty {
            for (queue_id, from) in queues {
                let Some(queue) = self.queue(topic, *queue_id) else {
                    continue;
                };
                let max = queue.max_offset().0;
                let mut offset = (*from).max(queue.min_offset().0);
                while offset < max {
                    let index = offset / units_per_segment;
                    let segment_end = ((index + 1) * units_per_segment).min(max);
                    ranges.push(FileRange {
                        path: queue.segment_path(index),
                        start: (offset % units_per_segment) * consume_queue::UNIT_BYTES,
                        end: (segment_end - index * units_per_segment) * consume_queue::UNIT_BYTES,
                    });
                    offset = segment_end;
                }
                covered.insert((topic.clone(), *queue_id), max);
            }
        }
        let previous = self.last_checkpoint.unwrap_or_default();
        // The index's newest file is synced with the rest, so the checkpoint can claim it (as
        // far as the CommitLog claim goes); a stopped index keeps its old claim (what it had
        // made durable stays so).
        let (index_durable_offset, index_msg_timestamp_ms) = match self.index.checkpoint_ranges() {
            Some((index_ranges, indexed_end, end_ms)) => {
                ranges.extend(index_ranges);
                (indexed_end.min(claim.0), end_ms)
            }
            None => (
                previous.index_durable_offset.min(claim.0),
                previous.index_msg_timestamp_ms,
            ),
        };
        CheckpointRequest {
            sync: SyncRequest {
                ranges,
                up_to: claim,
            },
            checkpoint: Checkpoint {
                physic_msg_timestamp_ms: self.last_store_timestamp_ms,
                logics_msg_timestamp_ms: self.last_store_timestamp_ms,
                index_msg_timestamp_ms,
                commitlog_durable_offset: claim.0,
                consume_queue_durable_offset: claim.0,
                index_durable_offset,
            },
            covered,
        }
    }

    /// The driver made every range of `request` durable: the CommitLog counts as durable up to
    /// its `up_to`, and the checkpoint file is replaced (atomically and durably).
    pub fn handle_checkpoint_synced(
        &mut self,
        request: &CheckpointRequest,
    ) -> Result<(), StoreError> {
        self.commitlog.handle_synced(request.sync.up_to);
        self.storage
            .replace(CHECKPOINT_PATH, &request.checkpoint.encode())?;
        self.handle_checkpoint_written(request);
        Ok(())
    }

    /// The driver made every range of a [`MessageStore::background_checkpoint_request`] durable
    /// and then replaced the checkpoint file with its contents: the ConsumeQueue units it
    /// covered no longer wait for a sync, and it is the last checkpoint.
    pub fn handle_checkpoint_written(&mut self, request: &CheckpointRequest) {
        for ((topic, queue_id), synced_max) in &request.covered {
            let max = self.max_offset(topic, *queue_id).0;
            let Some(queues) = self.cq_dirty.get_mut(topic.as_str()) else {
                continue;
            };
            if let Some(from) = queues.get_mut(queue_id) {
                if max <= *synced_max {
                    queues.remove(queue_id);
                } else {
                    *from = (*from).max(*synced_max);
                }
            }
            if queues.is_empty() {
                self.cq_dirty.remove(topic.as_str());
            }
        }
        self.last_checkpoint = Some(request.checkpoint);
    }

    /// The last checkpoint written (or found at open).
    pub fn last_checkpoint(&self) -> Option<&Checkpoint> {
        self.last_checkpoint.as_ref()
    }

    /// Closes the store cleanly: removes the abort marker, so the next open trusts the
    /// checkpoint. Call it last, after a final [`MessageStore::checkpoint_request`] was synced
    /// and handed to [`MessageStore::handle_checkpoint_synced`]; it refuses (keeping the marker,
    /// so the next open verifies everything after the checkpoint) while anything written is not
    /// durable or not covered by the checkpoint. A put after a close re-opens the store.
    pub fn close(&mut self) -> Result<(), StoreError> {
        let written = self.commitlog.written_offset().0;
        let durable = self.commitlog.durable_offset().0;
        let covered = self
            .last_checkpoint
            .is_some_and(|cp| cp.commitlog_durable_offset == written);
        if durable < written || !covered || !self.cq_dirty.is_empty() {
            return Err(StoreError::NotDurable(format!(
                "written {written}, durable {durable}, last checkpoint {:?}, {} topics with \
                 unsynced ConsumeQueue units",
                self.last_checkpoint.map(|cp| cp.commitlog_durable_offset),
                self.cq_dirty.len()
            )));
        }
        match self.storage.delete(ABORT_MARKER_PATH) {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.closed = true;
        Ok(())
    }

    /// Makes everything durable and closes cleanly through the storage itself, for drivers whose
    /// storage syncs inline (tests, the playground).
    pub fn close_inline(&mut self) -> Result<(), StoreError> {
        let request = self.checkpoint_request();
        for range in &request.sync.ranges {
            self.storage.sync(&range.path, range.start, range.end)?;
        }
        self.handle_checkpoint_synced(&request)?;
        self.close()
    }

    /// Takes a checkpoint through the storage itself (tests, the playground).
    pub fn checkpoint_inline(&mut self) -> Result<(), StoreError> {
        let request = self.checkpoint_request();
        for range in &request.sync.ranges {
            self.storage.sync(&range.path, range.start, range.end)?;
        }
        self.handle_checkpoint_synced(&request)
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

// ---------------------------------------------------------------------------------------------
// Retention hook: the policy (what expires, when) lives in `retention.rs`; this is the mechanism.

/// One CommitLog segment deleted by [`MessageStore::delete_oldest_commitlog_segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedSegment {
    /// Start offset of the deleted segment.
    pub start: CommitLogOffset,
    /// Its file size (the space given back).
    pub len_bytes: u64,
    /// ConsumeQueue segment files deleted because every unit in them pointed into it or before.
    pub consume_queue_files_deleted: u64,
    /// Key index files deleted because every entry in them pointed below the new min offset.
    pub index_files_deleted: u64,
}

impl<S: SegmentStorage> MessageStore<S> {
    /// Start offsets and sizes of the CommitLog segment files, oldest first.
    pub fn commitlog_segments(&self) -> Vec<(u64, u64)> {
        self.commitlog.segments().collect()
    }

    /// The segment being written, which is never deleted.
    pub fn current_commitlog_segment(&self) -> Option<u64> {
        self.commitlog.current_segment_start()
    }

    /// The store timestamp of the last record of the segment starting at `start`: the segment's
    /// age for retention (see `retention.rs` for why not the file's mtime).
    pub fn segment_last_store_timestamp_ms(&self, start: u64) -> Result<Option<i64>, StoreError> {
        self.commitlog.last_store_timestamp_ms(&self.storage, start)
    }

    /// Deletes the oldest CommitLog segment unless it is the one being written, then moves every
    /// ConsumeQueue's min offset past the records it held and deletes the ConsumeQueue files left
    /// with no reachable unit. `None` when only the current segment is left.
    pub fn delete_oldest_commitlog_segment(
        &mut self,
    ) -> Result<Option<DeletedSegment>, StoreError> {
        let Some((start, len_bytes)) = self.commitlog.delete_first_segment(&mut self.storage)?
        else {
            return Ok(None);
        };
        let consume_queue_files_deleted = self.correct_min_offsets()?;
        let index_files_deleted = self.delete_index_files_below(self.commitlog.min_offset())?;
        Ok(Some(DeletedSegment {
            start: CommitLogOffset(start),
            len_bytes,
            consume_queue_files_deleted,
            index_files_deleted,
        }))
    }

    /// Moves every ConsumeQueue's min offset to its first unit at or past the CommitLog's min
    /// offset (RocketMQ's `correctMinOffset`) and deletes ConsumeQueue files left with no
    /// reachable unit. Retention does this as it deletes; calling it after [`MessageStore::open`]
    /// keeps it true whatever the ConsumeQueue files said before a restart. Returns how many
    /// files were deleted.
    pub fn correct_min_offsets(&mut self) -> Result<u64, StoreError> {
        let min = self.commitlog.min_offset().0;
        let mut deleted = 0;
        for queue in self.queues.values_mut().flat_map(|q| q.values_mut()) {
            deleted += queue.delete_expired(&mut self.storage, min)?;
        }
        Ok(deleted)
    }
}
