//! The key index: hash slots and linked entries that find messages by key and time range.
//!
//! # Layout
//!
//! RocketMQ's IndexFile (REMOTING.md §6.9), byte for byte, so its tooling can read our files:
//!
//! ```text
//! index/20240610061320123            one file, named by the UTC store time (yyyyMMddHHmmssSSS)
//!                                    of the first record it indexes
//! +--------------------------------------------------------------+  0
//! | header (40 bytes, big-endian)                                |
//! |   beginTimestamp i64 @0   store time of the first entry (ms) |
//! |   endTimestamp   i64 @8   store time of the last entry (ms)  |
//! |   beginPhyOffset i64 @16  CommitLog offset of the first entry|
//! |   endPhyOffset   i64 @24  CommitLog offset of the last entry |
//! |   hashSlotCount  i32 @32  keys put (RocketMQ counts puts)    |
//! |   indexCount     i32 @36  next entry number (starts at 1)    |
//! +--------------------------------------------------------------+  40
//! | slot 0 | slot 1 | ...            | slot H-1 |   i32 each:     |
//! |                                               newest entry of |
//! |                                               the chain, 0 =  |
//! |                                               empty           |
//! +--------------------------------------------------------------+  40 + 4H
//! | entry 0 (unused) | entry 1 | ... | entry N-1 |  20 bytes each |
//! +--------------------------------------------------------------+  40 + 4H + 20N
//!
//!  entry (20 bytes, big-endian):
//! +--------------+--------------------+-----------------+----------------+
//! | keyHash i32  | phyOffset i64      | timeDiff i32    | prevIndex i32  |
//! | |hashCode|   | record's CommitLog | seconds since   | older entry of |
//! | of the key   | offset             | beginTimestamp  | the same slot  |
//! +--------------+--------------------+-----------------+----------------+
//! ```
//!
//! H = `maxHashSlotNum`, N = `maxIndexNum`. The key of an entry is `<topic>#<key>` for the
//! record's `UNIQ_KEY` and for every space-separated token of its `KEYS` (ROLLBACK transaction
//! records are not indexed); `keyHash` is Java's `String.hashCode` of it made non-negative, and its
//! slot is `keyHash % H`. A put appends an entry whose `prevIndex` is the slot's old value and
//! points the slot at it, so each slot heads a chain from newest to oldest. A file holds N − 1
//! entries; the next put rolls to a new file.
//!
//! # Queries
//!
//! Files are searched newest first, each chain newest first, stopping at `maxNum` answers (at
//! most [`QUERY_MAX_NUM`]). Hash collisions and entries left over from before a crash are
//! harmless: every candidate is read from the CommitLog and kept only when a valid record starts
//! there below the written offset, its topic is the queried one, its store time lies in the range
//! and its `UNIQ_KEY` or `KEYS` holds the key. Each CommitLog offset is answered once.
//!
//! # Durability and recovery
//!
//! The index is derived from the CommitLog and written, not synced, on every put. A file that
//! fills up is synced once, before its successor is created, so every file but the newest is
//! durable. [`KeyIndex::open`] runs after the CommitLog has been recovered and trusts nothing
//! else:
//!
//! 1. files are taken in name order; the first one with the wrong size (truncated, or written with
//!    other slot/entry counts) or an impossible header is deleted with every later file, and the
//!    first one whose entries reach past the end of the CommitLog becomes the newest (later ones
//!    are deleted);
//! 2. the entries of the newest file are checked one by one (non-negative hash and time, offsets
//!    non-decreasing and below the end of the CommitLog, `prevIndex` equal to the slot's value at
//!    that point) and cut at the first one that fails; its slots are rebuilt from the surviving
//!    entries, and the header rewritten from them;
//! 3. every CommitLog record after the last surviving entry's record is indexed again.
//!
//! A process crash thus loses nothing (the page cache survives), a power loss at worst re-reads
//! the records of the newest file, and deleting the whole `index/` directory rebuilds it from the
//! CommitLog. Checking the newest file this way costs one read of its entries and slots (at most
//! 420 MB with RocketMQ's sizes, sparse where unused).
//!
//! Checkpoints make that rare: each one syncs the newest file's header, slots and entries and
//! claims the index up to the records indexed (`index_durable_offset`). After a clean close or a
//! crash with such a checkpoint, step 2 checks only the tail ([`IndexTrust`]): T, the newest
//! entry of a record before that offset, must be the last key of a whole record; every slot
//! pointing past T is walked back along its chain to T, each entry on the way checked (its slot,
//! its record after the checkpoint, prevIndex decreasing, and a prevIndex of 0 not in a sector
//! its keyHash is not in unless that sector holds later entries, as a lost sector reads as
//! zeros), which gives the slot's value at the
//! checkpoint; entries after T are cut and their records indexed again. That reads the slots
//! (20 MB) and the tail, not the entries. Anything that fails falls back to the full check; if
//! that rewrites entries the checkpoint claimed, the claim is withdrawn (the checkpoint file is
//! rewritten without it). After a clean close nothing was written after the checkpoint, so not
//! even the slots are read.
//!
//! Storage failures never fail a put: the record is stored and the index stops growing
//! ([`KeyIndex::failure`]) until the next open catches up.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::commitlog::{check_record, CommitLog};
use super::message_store::StoreError;
use super::segment::{SegmentStorage, StorageError, SECTOR_BYTES};
use super::{CommitLogOffset, FileRange};
use crate::message::{keys, sys_flag, tag_hash_code, MessageRecord, Properties};

/// Directory of the index files.
pub const INDEX_DIR: &str = "index";
/// Size of the file header.
pub const HEADER_BYTES: u64 = 40;
/// Size of one hash slot.
pub const SLOT_BYTES: u64 = 4;
/// Size of one entry.
pub const ENTRY_BYTES: u64 = 20;
/// The most answers one query returns (RocketMQ's `maxMsgsNumBatch`).
pub const QUERY_MAX_NUM: u32 = 64;
/// `maxNum` of a query by UNIQ_KEY (RocketMQ's `defaultQueryMaxNum`).
pub const UNIQ_KEY_QUERY_MAX_NUM: u32 = 32;
/// Length of a file name: `yyyyMMddHHmmssSSS`.
const FILE_NAME_DIGITS: usize = 17;
/// The latest store time a file name can carry: 9999-12-31T23:59:59.999Z.
const MAX_NAME_MS: u64 = 253_402_300_799_999;
/// Bytes read or compared per step while checking a file at open.
const CHUNK_BYTES: usize = 64 * 1024;

/// Sizes of the index (`maxHashSlotNum`, `maxIndexNum`, `messageIndexEnable`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Build and answer the index at all (`messageIndexEnable`).
    pub enabled: bool,
    /// Hash slots per file (`maxHashSlotNum`, 5 000 000).
    pub hash_slot_count: u32,
    /// Entries per file, entry 0 unused (`maxIndexNum`, 20 000 000).
    pub max_index_count: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            hash_slot_count: 5_000_000,
            max_index_count: 20_000_000,
        }
    }
}

impl IndexConfig {
    /// The size of one index file.
    pub fn file_len_bytes(&self) -> u64 {
        HEADER_BYTES
            + u64::from(self.hash_slot_count) * SLOT_BYTES
            + u64::from(self.max_index_count) * ENTRY_BYTES
    }

    /// Counts the file layout can address: at least one slot and one usable entry, at most
    /// `i32::MAX` each (they are stored as int32).
    fn sanitized(mut self) -> Self {
        self.hash_slot_count = self.hash_slot_count.clamp(1, i32::MAX as u32);
        self.max_index_count = self.max_index_count.clamp(2, i32::MAX as u32);
        self
    }
}

/// The 40-byte file header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Header {
    begin_timestamp_ms: i64,
    end_timestamp_ms: i64,
    begin_phy_offset: i64,
    end_phy_offset: i64,
    hash_slot_count: i32,
    index_count: i32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_BYTES as usize] {
        let mut out = [0u8; HEADER_BYTES as usize];
        out[0..8].copy_from_slice(&self.begin_timestamp_ms.to_be_bytes());
        out[8..16].copy_from_slice(&self.end_timestamp_ms.to_be_bytes());
        out[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        out[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        out[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        out[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        out
    }

    fn decode(buf: &[u8; HEADER_BYTES as usize]) -> Self {
        Self {
            begin_timestamp_ms: be_i64(&buf[0..8]),
            end_timestamp_ms: be_i64(&buf[8..16]),
            begin_phy_offset: be_i64(&buf[16..24]),
            end_phy_offset: be_i64(&buf[24..32]),
            hash_slot_count: be_i32(&buf[32..36]),
            index_count: be_i32(&buf[36..40]),
        }
    }

    /// Entries in use (entry 0 is never used).
    fn entries(&self) -> u32 {
        self.index_count.max(1) as u32 - 1
    }
}

/// One 20-byte entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    key_hash: i32,
    phy_offset: i64,
    time_diff_s: i32,
    prev_index: i32,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_BYTES as usize] {
        let mut out = [0u8; ENTRY_BYTES as usize];
        out[0..4].copy_from_slice(&self.key_hash.to_be_bytes());
        out[4..12].copy_from_slice(&self.phy_offset.to_be_bytes());
        out[12..16].copy_from_slice(&self.time_diff_s.to_be_bytes());
        out[16..20].copy_from_slice(&self.prev_index.to_be_bytes());
        out
    }

    fn decode(buf: &[u8]) -> Self {
        Self {
            key_hash: be_i32(&buf[0..4]),
            phy_offset: be_i64(&buf[4..12]),
            time_diff_s: be_i32(&buf[12..16]),
            prev_index: be_i32(&buf[16..20]),
        }
    }
}

fn be_i32(b: &[u8]) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    i32::from_be_bytes(a)
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// RocketMQ's `indexKeyHashMethod`: `abs(String.hashCode(key))`, 0 for `Integer.MIN_VALUE`.
pub fn key_hash(key: &str) -> i32 {
    (tag_hash_code(key) as i32).checked_abs().unwrap_or(0)
}

/// The index key of `key` in `topic`.
pub fn index_key(topic: &str, key: &str) -> String {
    format!("{topic}#{key}")
}

/// The keys a record is indexed under: its UNIQ_KEY, then each distinct non-empty token of KEYS.
pub fn record_keys(properties: &Properties) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    if let Some(uniq) = properties.get(keys::UNIQ_KEY).filter(|k| !k.is_empty()) {
        out.push(uniq);
    }
    if let Some(list) = properties.get(keys::KEYS) {
        for key in list.split(' ').filter(|k| !k.is_empty()) {
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The file name for a UTC instant: `yyyyMMddHHmmssSSS`.
pub fn file_name(epoch_ms: u64) -> String {
    let ms = epoch_ms.min(MAX_NAME_MS) as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{milli:03}")
}

/// Parses a file name back to its UTC instant; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != FILE_NAME_DIGITS || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| name[r].parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s, milli) = (num(8..10)?, num(10..12)?, num(12..14)?, num(14..17)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if civil_from_days(days) != (y, mo, d) {
        return None;
    }
    let ms = days * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + milli;
    u64::try_from(ms).ok()
}

/// One index file as the index keeps it in memory.
#[derive(Clone, Debug)]
struct IndexFile {
    name_ms: u64,
    header: Header,
}

impl IndexFile {
    fn path(&self) -> String {
        format!("{INDEX_DIR}/{}", file_name(self.name_ms))
    }
}

/// What [`KeyIndex::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexRecovery {
    /// Files deleted because they were unreadable or reached past the end of the CommitLog.
    pub files_deleted: u64,
    /// Entries of the newest file cut because they failed the checks.
    pub entries_dropped: u64,
    /// CommitLog records indexed (again) to bring the index up to date.
    pub records_reindexed: u64,
    /// Only the entries after the checkpoint were checked (the checkpoint had synced the rest);
    /// false when the whole newest file was.
    pub checked_from_checkpoint: bool,
}

/// What a query found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Matching stored records, verbatim, newest first.
    pub records: Vec<Bytes>,
    /// Store time of the newest indexed entry (`indexLastUpdateTimestamp`), 0 without one.
    pub index_last_update_timestamp_ms: i64,
    /// CommitLog offset of the newest indexed entry (`indexLastUpdatePhyoffset`).
    pub index_last_update_phy_offset: i64,
}

/// The key index over its files in `index/`.
#[derive(Clone, Debug)]
pub struct KeyIndex {
    config: IndexConfig,
    /// Oldest first; the last one takes new entries.
    files: Vec<IndexFile>,
    /// Every record before this CommitLog offset has been indexed (in memory only: recomputed
    /// from the files at open).
    indexed_end: u64,
    /// Why indexing stopped, once a storage call failed.
    failure: Option<String>,
    recovery: IndexRecovery,
    /// Entries of records before this CommitLog offset are durable and were not rewritten by
    /// [`KeyIndex::open`] (0: no claim): what the checkpoint on disk may keep saying.
    durable_claim: u64,
}

/// What the last checkpoint says of the index, for [`KeyIndex::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexTrust {
    /// The checkpoint's `index_durable_offset`: every entry of a record before this CommitLog
    /// offset, and the newest file's slots and header as they were then, were made durable.
    pub durable_offset: u64,
    /// The store closed cleanly after that checkpoint, so nothing was written after it.
    pub clean: bool,
}

impl KeyIndex {
    /// Opens the index after the CommitLog was recovered: checks and repairs the files, then
    /// indexes every record written after the last one indexed. Never fails: a storage error
    /// leaves the index answering from what it has ([`KeyIndex::failure`] says why).
    ///
    /// With `trust` (a valid checkpoint that synced the index) only the newest file's entries
    /// after the checkpoint are checked, and its slots repaired from them (module docs).
    pub fn open<S: SegmentStorage>(
        storage: &mut S,
        config: IndexConfig,
        commitlog: &CommitLog,
        trust: Option<IndexTrust>,
    ) -> Self {
        let mut index = Self {
            config: config.sanitized(),
            files: Vec::new(),
            indexed_end: commitlog.min_offset().0,
            failure: None,
            recovery: IndexRecovery::default(),
            durable_claim: 0,
        };
        if !index.config.enabled {
            // Nothing is checked or rewritten: what the checkpoint claimed stays true.
            index.durable_claim = trust.map_or(0, |t| t.durable_offset);
            return index;
        }
        let result = index
            .load(storage, commitlog, trust)
            .and_then(|()| index.catch_up(storage, commitlog));
        if let Err(err) = result {
            index.failure.get_or_insert(err.to_string());
        }
        index
    }

    /// What [`KeyIndex::open`] found and repaired.
    pub fn recovery(&self) -> &IndexRecovery {
        &self.recovery
    }

    /// Why the index stopped growing, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Paths of the index files, oldest first.
    pub fn file_paths(&self) -> Vec<String> {
        self.files.iter().map(IndexFile::path).collect()
    }

    /// Every record before this CommitLog offset is indexed.
    pub fn indexed_end(&self) -> CommitLogOffset {
        CommitLogOffset(self.indexed_end)
    }

    /// What a checkpoint syncs to claim the index up to [`KeyIndex::indexed_end`]: the newest
    /// file's header, slots and entries (older files were synced when they filled up). Returns
    /// the ranges, the offset claimed and the store time of the newest entry; `None` when the
    /// index claims nothing new (disabled, or stopped by a failure).
    pub fn checkpoint_ranges(&self) -> Option<(Vec<FileRange>, u64, i64)> {
        if !self.config.enabled || self.failure.is_some() {
            return None;
        }
        let (ranges, end_ms) = match self.files.last() {
            Some(file) => (
                vec![FileRange {
                    path: file.path(),
                    start: 0,
                    end: self.entry_pos(file.header.index_count.max(1) as u32),
                }],
                file.header.end_timestamp_ms,
            ),
            None => (Vec::new(), 0),
        };
        Some((ranges, self.indexed_end, end_ms))
    }

    /// The part of the checkpoint's `index_durable_offset` that is still true after
    /// [`KeyIndex::open`]: 0 when recovery rewrote entries below it.
    pub fn durable_claim(&self) -> u64 {
        self.durable_claim
    }

    fn entry_pos(&self, index: u32) -> u64 {
        HEADER_BYTES
            + u64::from(self.config.hash_slot_count) * SLOT_BYTES
            + u64::from(index) * ENTRY_BYTES
    }

    fn slot_pos(&self, key_hash: i32) -> u64 {
        HEADER_BYTES + (key_hash as u64 % u64::from(self.config.hash_slot_count)) * SLOT_BYTES
    }

    /// Step 1 and 2 of recovery (module docs).
    fn load<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        commitlog: &CommitLog,
        trust: Option<IndexTrust>,
    ) -> Result<(), StoreError> {
        let log_end = commitlog.written_offset().0 as i64;
        let expected_len = self.config.file_len_bytes();
        // Names sort chronologically (fixed width); anything else in the directory is not ours.
        let names: Vec<(u64, String)> = storage
            .list(INDEX_DIR)?
            .into_iter()
            .filter_map(|n| parse_file_name(&n).map(|ms| (ms, n)))
            .collect();
        let mut keep = 0;
        for (ms, name) in &names {
            let path = format!("{INDEX_DIR}/{name}");
            if storage.len(&path)? != expected_len || file_name(*ms) != *name {
                break;
            }
            let mut buf = [0u8; HEADER_BYTES as usize];
            storage.read_at(&path, 0, &mut buf)?;
            let header = Header::decode(&buf);
            let sane = header.index_count >= 0
                && header.index_count as u32 <= self.config.max_index_count
                && header.begin_phy_offset <= header.end_phy_offset
                && header.begin_phy_offset >= 0;
            // A file after one that reaches past the log is newer than the log's end.
            let previous_reaches_past = self
                .files
                .last()
                .is_some_and(|f| f.header.entries() > 0 && f.header.end_phy_offset >= log_end);
            if !sane || previous_reaches_past {
                break;
            }
            self.files.push(IndexFile {
                name_ms: *ms,
                header,
            });
            keep += 1;
        }
        for (_, name) in &names[keep..] {
            storage.delete(&format!("{INDEX_DIR}/{name}"))?;
            self.recovery.files_deleted += 1;
        }
        let trust = trust.filter(|t| t.durable_offset > 0);
        let mut checked_tail = false;
        if !self.files.is_empty() {
            checked_tail = match trust {
                Some(t) => self.check_newest_tail(storage, commitlog, t)?,
                None => false,
            };
            self.recovery.checked_from_checkpoint = checked_tail;
            if !checked_tail {
                self.check_newest(storage, commitlog)?;
            }
        }
        // Where indexing resumes: after the record of the newest entry.
        self.indexed_end = commitlog.min_offset().0;
        let newest = self.files.len();
        let last = self
            .files
            .iter()
            .enumerate()
            .rev()
            .find(|(_, f)| f.header.entries() > 0);
        if let Some((i, file)) = last {
            let phy = file.header.end_phy_offset.max(0) as u64;
            let record = commitlog.read_record(storage, phy)?;
            self.indexed_end = match record {
                // The last record of an older file may have had more keys in the newest file,
                // whose entries were all cut: it is indexed again whole.
                Some(record) if i + 1 == newest => phy + record.len() as u64,
                // Indexed again; duplicate entries are filtered by queries.
                _ => phy,
            }
            .max(self.indexed_end);
        }
        // Entries from here on are (re)written by this run: the checkpoint may not claim them.
        if let Some(t) = trust {
            if checked_tail || self.files.is_empty() || self.indexed_end >= t.durable_offset {
                self.durable_claim = t.durable_offset;
            }
        }
        Ok(())
    }

    /// Step 2 of recovery after a checkpoint that synced the index (`trust`): the entries of
    /// records before `trust.durable_offset` are durable, and so were the slots when it was
    /// taken. Finds the last such entry (T), checks it against its record, and rebuilds each
    /// slot pointing past T by walking its chain back to T, checking every entry on the way.
    /// Returns false, having changed nothing, when anything fails: the full check runs instead.
    fn check_newest_tail<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        commitlog: &CommitLog,
        trust: IndexTrust,
    ) -> Result<bool, StoreError> {
        let log_end = commitlog.written_offset().0;
        let durable = trust.durable_offset.min(log_end) as i64;
        let floor = match self.files.len() {
            n if n >= 2 => self.files[n - 2].header.end_phy_offset,
            _ => 0,
        };
        let Some(file) = self.files.last() else {
            return Ok(true);
        };
        let path = file.path();
        let header = file.header;
        let claimed = header.entries();
        let max_entry = self.config.max_index_count - 1;

        // T: the newest entry whose record lies before the durable offset. Entries after the
        // checkpoint point at or past it, so the search from the top ends within the tail.
        let mut trusted = claimed.min(max_entry);
        while trusted > 0 {
            let e = self.read_entry(storage, &path, trusted)?;
            let zero = e == Entry::decode(&[0u8; ENTRY_BYTES as usize]);
            if !zero && e.phy_offset < durable {
                if e.phy_offset < floor {
                    return Ok(false);
                }
                break;
            }
            trusted -= 1;
        }
        if trusted == 0 && self.files.len() >= 2 {
            // Indexing would resume after the previous file's last record, whose later keys
            // may be among the entries cut here: the full check keeps them instead.
            return Ok(false);
        }
        let (mut begin, mut end) = (None, None);
        if trusted > 0 {
            // Entry T must be the last key of a whole record, and entry 1 where the header
            // begins.
            let last = self.read_entry(storage, &path, trusted)?;
            let Some(record) = commitlog.read_record(storage, last.phy_offset as u64)? else {
                return Ok(false);
            };
            let Ok(meta) = check_record(Bytes::from(record)) else {
                return Ok(false);
            };
            let keys: Vec<i32> = record_keys(&meta.properties)
                .into_iter()
                .map(|k| key_hash(&index_key(&meta.topic, k)))
                .collect();
            let mut group = 1;
            while group < trusted
                && self.read_entry(storage, &path, trusted - group)?.phy_offset == last.phy_offset
            {
                group += 1;
            }
            if group as usize != keys.len() || keys.last() != Some(&last.key_hash) {
                return Ok(false);
            }
            let first = self.read_entry(storage, &path, 1)?;
            if first.phy_offset != header.begin_phy_offset {
                return Ok(false);
            }
            begin = Some((header.begin_phy_offset, header.begin_timestamp_ms));
            end = Some((last.phy_offset, meta.store_timestamp_ms));
        }

        // A clean close wrote nothing after the checkpoint: the slots are as it synced them.
        let mut changed: Vec<(usize, i32)> = Vec::new();
        let mut highest = claimed;
        if !(trust.clean && trusted == claimed) {
            let slot_count = self.config.hash_slot_count as usize;
            let slots_per_chunk = CHUNK_BYTES / SLOT_BYTES as usize;
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut visited = 0u64;
            let mut first_slot = 0usize;
            while first_slot < slot_count {
                let n = slots_per_chunk.min(slot_count - first_slot);
                let chunk = &mut buf[..n * SLOT_BYTES as usize];
                storage.read_at(&path, HEADER_BYTES + first_slot as u64 * SLOT_BYTES, chunk)?;
                for (k, raw) in chunk.chunks_exact(SLOT_BYTES as usize).enumerate() {
                    let mut v = be_i32(raw);
                    if v < 0 {
                        return Ok(false);
                    }
                    if v as u32 <= trusted {
                        continue;
                    }
                    let slot = first_slot + k;
                    // Walk back through entries written after the checkpoint.
                    while v as u32 > trusted {
                        visited += 1;
                        if v as u32 > max_entry || visited > u64::from(max_entry) {
                            return Ok(false);
                        }
                        highest = highest.max(v as u32);
                        let e = self.read_entry(storage, &path, v as u32)?;
                        // Written after the checkpoint, for a record after it, in this slot,
                        // pointing back.
                        let ok = e.key_hash >= 0
                            && e.key_hash as usize % slot_count == slot
                            && e.prev_index >= 0
                            && e.prev_index < v
                            && e.phy_offset >= durable;
                        if !ok {
                            return Ok(false);
                        }
                        if e.prev_index == 0
                            && !self.prev_index_sector_written(storage, &path, v as u32)?
                        {
                            return Ok(false);
                        }
                        v = e.prev_index;
                    }
                    if v > 0 {
                        // The chain lands on a durable entry of the same slot.
                        let e = self.read_entry(storage, &path, v as u32)?;
                        if e.key_hash < 0 || e.key_hash as usize % slot_count != slot {
                            return Ok(false);
                        }
                    }
                    changed.push((slot, v));
                }
                first_slot += n;
            }
        }

        // Repair: drop the entries after T, point the slots back at T's chains, rewrite the
        // header; the records after T's are indexed again.
        self.recovery.entries_dropped += u64::from(highest.saturating_sub(trusted));
        let mut pos = self.entry_pos(trusted + 1);
        let drop_end = self.entry_pos(highest.min(max_entry) + 1);
        let zeros = vec![0u8; CHUNK_BYTES];
        while pos < drop_end {
            let n = (drop_end - pos).min(CHUNK_BYTES as u64) as usize;
            storage.write_at(&path, pos, &zeros[..n])?;
            pos += n as u64;
        }
        for (slot, value) in changed {
            storage.write_at(
                &path,
                HEADER_BYTES + slot as u64 * SLOT_BYTES,
                &value.to_be_bytes(),
            )?;
        }
        let mut new_header = Header {
            index_count: trusted as i32 + 1,
            hash_slot_count: trusted as i32,
            ..Header::default()
        };
        if let (Some((bp, bt)), Some((ep, et))) = (begin, end) {
            new_header.begin_phy_offset = bp;
            new_header.begin_timestamp_ms = bt;
            new_header.end_phy_offset = ep;
            new_header.end_timestamp_ms = et;
        }
        if new_header != header {
            storage.write_at(&path, 0, &new_header.encode())?;
        }
        if let Some(file) = self.files.last_mut() {
            file.header = new_header;
        }
        Ok(true)
    }

    /// Step 2 of recovery: checks the newest file's entries, cuts them at the first bad one and
    /// rebuilds its slots and header from the rest.
    fn check_newest<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        commitlog: &CommitLog,
    ) -> Result<(), StoreError> {
        let log_end = commitlog.written_offset().0 as i64;
        let floor = match self.files.len() {
            n if n >= 2 => self.files[n - 2].header.end_phy_offset,
            _ => 0,
        };
        let Some(file) = self.files.last() else {
            return Ok(());
        };
        let path = file.path();
        let header = file.header;
        let claimed = header.entries();
        let (mut valid, mut slots) = self.scan_entries(storage, &path, claimed, floor, log_end)?;
        // A crash between the keys of one record leaves it half indexed: cut its entries and
        // index it again whole.
        if valid > 0 {
            let last = self.read_entry(storage, &path, valid)?;
            let mut group = 1;
            while group < valid
                && self.read_entry(storage, &path, valid - group)?.phy_offset == last.phy_offset
            {
                group += 1;
            }
            let expected = match commitlog.read_record(storage, last.phy_offset as u64)? {
                Some(record) => match check_record(Bytes::from(record)) {
                    Ok(meta) => Some(record_keys(&meta.properties).len() as u32),
                    Err(_) => None,
                },
                None => None,
            };
            if expected != Some(group) {
                (valid, slots) =
                    self.scan_entries(storage, &path, valid - group, floor, log_end)?;
            }
        }
        // The first entry must be the record the header starts at; the last one's record gives
        // the end of the header.
        let mut begin = None;
        let mut end = None;
        if valid > 0 {
            let first = self.read_entry(storage, &path, 1)?;
            if let Some(record) = commitlog.read_record(storage, first.phy_offset as u64)? {
                let ts = check_record(Bytes::from(record))
                    .map(|m| m.store_timestamp_ms)
                    .ok();
                if first.phy_offset == header.begin_phy_offset
                    && ts == Some(header.begin_timestamp_ms)
                {
                    begin = Some((header.begin_phy_offset, header.begin_timestamp_ms));
                }
            }
            if begin.is_some() {
                let last = self.read_entry(storage, &path, valid)?;
                if let Some(record) = commitlog.read_record(storage, last.phy_offset as u64)? {
                    if let Ok(meta) = check_record(Bytes::from(record)) {
                        end = Some((last.phy_offset, meta.store_timestamp_ms));
                    }
                }
            }
            if begin.is_none() || end.is_none() {
                // Nothing ties the entries to the header: index the file's records again.
                slots.iter_mut().for_each(|s| *s = 0);
                valid = 0;
            }
        }
        self.recovery.entries_dropped += u64::from(claimed - valid);

        // Zero the dropped entries so a later check cannot mistake them for new ones.
        let mut pos = self.entry_pos(valid + 1);
        let drop_end = self.entry_pos(claimed + 1);
        let zeros = vec![0u8; CHUNK_BYTES];
        while pos < drop_end {
            let n = (drop_end - pos).min(CHUNK_BYTES as u64) as usize;
            storage.write_at(&path, pos, &zeros[..n])?;
            pos += n as u64;
        }
        // Rewrite the slots that differ from the rebuilt ones, a chunk at a time.
        let slots_per_chunk = CHUNK_BYTES / SLOT_BYTES as usize;
        let mut disk = vec![0u8; CHUNK_BYTES];
        let mut want = vec![0u8; CHUNK_BYTES];
        for (c, chunk) in slots.chunks(slots_per_chunk).enumerate() {
            let len = chunk.len() * SLOT_BYTES as usize;
            let pos = HEADER_BYTES + (c * slots_per_chunk) as u64 * SLOT_BYTES;
            storage.read_at(&path, pos, &mut disk[..len])?;
            for (w, s) in want.chunks_exact_mut(4).zip(chunk) {
                w.copy_from_slice(&s.to_be_bytes());
            }
            if disk[..len] != want[..len] {
                storage.write_at(&path, pos, &want[..len])?;
            }
        }
        let mut new_header = Header {
            index_count: valid as i32 + 1,
            hash_slot_count: valid as i32,
            ..Header::default()
        };
        if let (Some((bp, bt)), Some((ep, et))) = (begin, end) {
            new_header.begin_phy_offset = bp;
            new_header.begin_timestamp_ms = bt;
            new_header.end_phy_offset = ep;
            new_header.end_timestamp_ms = et;
        }
        storage.write_at(&path, 0, &new_header.encode())?;
        if let Some(file) = self.files.last_mut() {
            file.header = new_header;
        }
        Ok(())
    }

    /// Whether a prevIndex of 0 read from entry `index` was written, not lost. A lost sector
    /// reads as zeros; when the field shares its sector with the entry's keyHash, that checked
    /// keyHash shows the sector was written. Otherwise the field starts a sector holding nothing
    /// of the entry before it; any other non-zero byte there (a later entry) was written after
    /// it, and the sector reached the disk whole. All zeros: it cannot be told (false).
    fn prev_index_sector_written<S: SegmentStorage>(
        &self,
        storage: &S,
        path: &str,
        index: u32,
    ) -> Result<bool, StorageError> {
        let pos = self.entry_pos(index);
        let prev_pos = pos + 16;
        if pos / SECTOR_BYTES == prev_pos / SECTOR_BYTES {
            return Ok(true);
        }
        let sector_end = (prev_pos / SECTOR_BYTES + 1) * SECTOR_BYTES;
        let end = sector_end.min(self.config.file_len_bytes());
        let mut buf = vec![0u8; (end - prev_pos) as usize];
        storage.read_at(path, prev_pos, &mut buf)?;
        Ok(buf
            .get(4..)
            .is_some_and(|rest| rest.iter().any(|b| *b != 0)))
    }

    /// Checks entries `1..=limit` of `path` in order; returns how many lead the file without a
    /// failed check, and the slots they build.
    fn scan_entries<S: SegmentStorage>(
        &self,
        storage: &S,
        path: &str,
        limit: u32,
        floor: i64,
        log_end: i64,
    ) -> Result<(u32, Vec<i32>), StoreError> {
        let slot_count = self.config.hash_slot_count as u64;
        let mut slots = vec![0i32; slot_count as usize];
        let mut valid = 0u32;
        let mut last_phy = floor;
        let mut buf = vec![0u8; CHUNK_BYTES - CHUNK_BYTES % ENTRY_BYTES as usize];
        let per_chunk = (buf.len() as u64 / ENTRY_BYTES) as u32;
        while valid < limit {
            let first = valid + 1;
            let n = per_chunk.min(limit - valid);
            let chunk = &mut buf[..(n as u64 * ENTRY_BYTES) as usize];
            storage.read_at(path, self.entry_pos(first), chunk)?;
            for (k, raw) in chunk.chunks_exact(ENTRY_BYTES as usize).enumerate() {
                let e = Entry::decode(raw);
                let slot = (e.key_hash.max(0) as u64 % slot_count) as usize;
                let ok = e.key_hash >= 0
                    && e.time_diff_s >= 0
                    && e.phy_offset >= last_phy
                    && e.phy_offset < log_end
                    && e.prev_index == slots[slot]
                    && raw.iter().any(|b| *b != 0);
                if !ok {
                    return Ok((valid, slots));
                }
                valid = first + k as u32;
                slots[slot] = valid as i32;
                last_phy = e.phy_offset;
            }
        }
        Ok((valid, slots))
    }

    fn read_entry<S: SegmentStorage>(
        &self,
        storage: &S,
        path: &str,
        index: u32,
    ) -> Result<Entry, StorageError> {
        let mut buf = [0u8; ENTRY_BYTES as usize];
        storage.read_at(path, self.entry_pos(index), &mut buf)?;
        Ok(Entry::decode(&buf))
    }

    /// Step 3 of recovery: indexes every record from `indexed_end` to the end of the log.
    fn catch_up<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        commitlog: &CommitLog,
    ) -> Result<(), StoreError> {
        let end = commitlog.written_offset().0;
        let mut pos = self.indexed_end.max(commitlog.min_offset().0);
        while pos < end && self.failure.is_none() {
            let Some(record) = commitlog.read_record(storage, pos)? else {
                // A BLANK filler: the log goes on in the next segment.
                pos = commitlog
                    .segments()
                    .map(|(start, _)| start)
                    .find(|start| *start > pos)
                    .unwrap_or(end);
                continue;
            };
            let record_len_bytes = record.len();
            let meta = check_record(Bytes::from(record))
                .map_err(|why| StoreError::Corrupt(format!("record at {pos}: {why}")))?;
            self.index_keys(
                storage,
                &meta.topic,
                &meta.properties,
                meta.sys_flag,
                pos,
                record_len_bytes as _,
                meta.store_timestamp_ms,
            );
            self.recovery.records_reindexed += 1;
            pos += record_len_bytes as u64;
        }
        Ok(())
    }

    /// Indexes one record just stored at `physical_offset`. A storage failure stops the index
    /// (see [`KeyIndex::failure`]); it never fails the put.
    pub fn put_record<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        record: &MessageRecord,
        physical_offset: u64,
        size_bytes: u32,
    ) {
        self.index_keys(
            storage,
            &record.topic,
            &record.properties,
            record.sys_flag,
            physical_offset,
            size_bytes,
            record.store_timestamp_ms,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn index_keys<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        topic: &str,
        properties: &Properties,
        flags: i32,
        physical_offset: u64,
        size_bytes: u32,
        store_timestamp_ms: i64,
    ) {
        if !self.config.enabled || self.failure.is_some() || physical_offset < self.indexed_end {
            return;
        }
        if flags & sys_flag::TRANSACTION_MASK != sys_flag::TRANSACTION_ROLLBACK {
            for key in record_keys(properties) {
                let key = index_key(topic, key);
                if let Err(err) = self.put_key(storage, &key, physical_offset, store_timestamp_ms) {
                    self.failure = Some(err.to_string());
                    return;
                }
            }
        }
        self.indexed_end = physical_offset + u64::from(size_bytes);
    }

    /// The file new entries go to, rolling to a new one when the newest is full.
    fn writable_file<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        store_timestamp_ms: i64,
    ) -> Result<usize, StorageError> {
        let max = self.config.max_index_count;
        if let Some(last) = self.files.last() {
            if (last.header.index_count.max(1) as u32) < max {
                return Ok(self.files.len() - 1);
            }
            // Sealed: make it durable before anything depends on it being complete.
            storage.sync(&last.path(), 0, self.config.file_len_bytes())?;
        }
        let previous = self.files.last().map(|f| (f.name_ms, f.header));
        let mut name_ms = (store_timestamp_ms.max(0) as u64).min(MAX_NAME_MS);
        if let Some((prev_ms, _)) = previous {
            name_ms = name_ms.max(prev_ms + 1);
        }
        let mut header = Header {
            index_count: 1,
            ..Header::default()
        };
        if let Some((_, prev)) = previous {
            header.begin_phy_offset = prev.end_phy_offset;
            header.end_phy_offset = prev.end_phy_offset;
            header.begin_timestamp_ms = prev.end_timestamp_ms;
            header.end_timestamp_ms = prev.end_timestamp_ms;
        }
        let file = loop {
            let file = IndexFile { name_ms, header };
            match storage.create(&file.path(), self.config.file_len_bytes()) {
                Ok(()) => break file,
                // A stray file of that name (not loaded): take the next millisecond.
                Err(StorageError::AlreadyExists(_)) if name_ms < MAX_NAME_MS => name_ms += 1,
                Err(err) => return Err(err),
            }
        };
        storage.write_at(&file.path(), 0, &header.encode())?;
        self.files.push(file);
        Ok(self.files.len() - 1)
    }

    fn put_key<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        key: &str,
        phy_offset: u64,
        store_timestamp_ms: i64,
    ) -> Result<(), StorageError> {
        let at = self.writable_file(storage, store_timestamp_ms)?;
        let file = &self.files[at];
        let path = file.path();
        let mut header = file.header;
        let count = header.index_count.max(1);
        let hash = key_hash(key);
        let slot_pos = self.slot_pos(hash);
        let mut slot = [0u8; 4];
        storage.read_at(&path, slot_pos, &mut slot)?;
        let mut prev = i32::from_be_bytes(slot);
        if prev <= 0 || prev > count {
            prev = 0;
        }
        if count <= 1 {
            header.begin_phy_offset = phy_offset as i64;
            header.begin_timestamp_ms = store_timestamp_ms;
        }
        let time_diff_s = if header.begin_timestamp_ms <= 0 {
            0
        } else {
            (store_timestamp_ms.saturating_sub(header.begin_timestamp_ms) / 1000)
                .clamp(0, i64::from(i32::MAX)) as i32
        };
        let entry = Entry {
            key_hash: hash,
            phy_offset: phy_offset as i64,
            time_diff_s,
            prev_index: prev,
        };
        storage.write_at(&path, self.entry_pos(count as u32), &entry.encode())?;
        storage.write_at(&path, slot_pos, &count.to_be_bytes())?;
        header.hash_slot_count = header.hash_slot_count.saturating_add(1);
        header.index_count = count + 1;
        header.end_phy_offset = phy_offset as i64;
        header.end_timestamp_ms = store_timestamp_ms;
        storage.write_at(&path, 0, &header.encode())?;
        self.files[at].header = header;
        Ok(())
    }

    /// Up to `max_num` (at most [`QUERY_MAX_NUM`]) records of `topic` whose UNIQ_KEY or KEYS
    /// holds `key`, stored within `[begin_ms, end_ms]`, newest first, each verified against
    /// the CommitLog (module docs).
    #[allow(clippy::too_many_arguments)]
    pub fn query<S: SegmentStorage>(
        &self,
        storage: &S,
        commitlog: &CommitLog,
        topic: &str,
        key: &str,
        max_num: u32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<QueryResult, StoreError> {
        let mut out = QueryResult::default();
        if let Some(last) = self.files.last() {
            out.index_last_update_timestamp_ms = last.header.end_timestamp_ms;
            out.index_last_update_phy_offset = last.header.end_phy_offset;
        }
        let max_num = max_num.min(QUERY_MAX_NUM) as usize;
        if !self.config.enabled || max_num == 0 || begin_ms > end_ms {
            return Ok(out);
        }
        let full_key = index_key(topic, key);
        let hash = key_hash(&full_key);
        let mut seen = BTreeSet::new();
        for file in self.files.iter().rev() {
            if out.records.len() >= max_num {
                break;
            }
            let h = &file.header;
            if h.entries() > 0 && begin_ms <= h.end_timestamp_ms && end_ms >= h.begin_timestamp_ms {
                self.search_file(
                    storage, commitlog, file, hash, topic, key, max_num, begin_ms, end_ms,
                    &mut seen, &mut out,
                )?;
            }
            if h.begin_timestamp_ms < begin_ms {
                break;
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn search_file<S: SegmentStorage>(
        &self,
        storage: &S,
        commitlog: &CommitLog,
        file: &IndexFile,
        hash: i32,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_ms: i64,
        end_ms: i64,
        seen: &mut BTreeSet<u64>,
        out: &mut QueryResult,
    ) -> Result<(), StoreError> {
        let path = file.path();
        let count = file.header.index_count;
        let mut slot = [0u8; 4];
        storage.read_at(&path, self.slot_pos(hash), &mut slot)?;
        let mut next = i32::from_be_bytes(slot);
        // Entry numbers strictly decrease along a chain, so the walk ends.
        while next > 0 && next < count && out.records.len() < max_num {
            let entry = self.read_entry(storage, &path, next as u32)?;
            if entry.time_diff_s < 0 {
                break;
            }
            // The entry's time is truncated to whole seconds since the file's begin.
            let time_ms = file
                .header
                .begin_timestamp_ms
                .saturating_add(i64::from(entry.time_diff_s) * 1000);
            if entry.key_hash == hash
                && time_ms <= end_ms
                && time_ms.saturating_add(999) >= begin_ms
            {
                if let Some(record) = verify(
                    storage,
                    commitlog,
                    entry.phy_offset,
                    topic,
                    key,
                    begin_ms,
                    end_ms,
                    seen,
                )? {
                    out.records.push(record);
                }
            }
            if entry.prev_index >= next || time_ms.saturating_add(1000) <= begin_ms {
                break;
            }
            next = entry.prev_index;
        }
        Ok(())
    }

    /// Deletes the index files whose entries all point below `offset` (the CommitLog's new
    /// first offset after retention deleted segments), oldest first; the newest file is always
    /// kept. Returns how many files were deleted.
    pub fn delete_files_below<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        offset: CommitLogOffset,
    ) -> Result<u64, StorageError> {
        let mut deleted = 0;
        while self.files.len() > 1 && (self.files[0].header.end_phy_offset as u64) < offset.0 {
            storage.delete(&self.files[0].path())?;
            self.files.remove(0);
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// The record at `phy` when it answers the query: it starts there below the end of the log, was
/// not answered already, belongs to `topic`, was stored in the range and carries `key`.
#[allow(clippy::too_many_arguments)]
fn verify<S: SegmentStorage>(
    storage: &S,
    commitlog: &CommitLog,
    phy: i64,
    topic: &str,
    key: &str,
    begin_ms: i64,
    end_ms: i64,
    seen: &mut BTreeSet<u64>,
) -> Result<Option<Bytes>, StoreError> {
    let Ok(phy) = u64::try_from(phy) else {
        return Ok(None);
    };
    if phy < commitlog.min_offset().0 || phy >= commitlog.written_offset().0 || seen.contains(&phy)
    {
        return Ok(None);
    }
    let Some(record) = commitlog.read_record(storage, phy)? else {
        return Ok(None);
    };
    let record = Bytes::from(record);
    let Ok(meta) = check_record(record.clone()) else {
        return Ok(None);
    };
    if meta.topic != topic || meta.store_timestamp_ms < begin_ms || meta.store_timestamp_ms > end_ms
    {
        return Ok(None);
    }
    if !record_keys(&meta.properties).contains(&key) {
        return Ok(None);
    }
    seen.insert(phy);
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_in_utc() {
        assert_eq!(file_name(0), "19700101000000000");
        assert_eq!(file_name(1_718_000_000_123), "20240610061320123");
        assert_eq!(
            parse_file_name("20240610061320123"),
            Some(1_718_000_000_123)
        );
        for ms in [0, 951_782_400_000, 1_709_164_800_999, MAX_NAME_MS] {
            assert_eq!(parse_file_name(&file_name(ms)), Some(ms));
        }
        for bad in [
            "2024061006132012",
            "2024061006132012x",
            "20241310061320123",
            "20230229000000000",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_hash_matches_java() {
        // "TopicA#k1".hashCode() and abs(Integer.MIN_VALUE) handling.
        assert_eq!(key_hash("a"), 97);
        assert_eq!(key_hash(""), 0);
        let h = tag_hash_code("TopicA#k1") as i32;
        assert_eq!(key_hash("TopicA#k1"), h.abs());
        // "polygenelubricants" hashes to Integer.MIN_VALUE in Java.
        assert_eq!(tag_hash_code("polygenelubricants") as i32, i32::MIN);
        assert_eq!(key_hash("polygenelubricants"), 0);
    }

    #[test]
    fn record_keys_take_uniq_key_and_keys_tokens() {
        let mut p = Properties::new();
        p.insert(keys::UNIQ_KEY, "U1");
        p.insert(keys::KEYS, " a  b a U1 ");
        assert_eq!(record_keys(&p), vec!["U1", "a", "b"]);
        assert!(record_keys(&Properties::new()).is_empty());
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod store_tests;
