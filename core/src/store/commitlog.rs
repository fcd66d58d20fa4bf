//! The CommitLog: every message of every topic, appended to segments named by their start offset.
//!
//! # Layout
//!
//! ```text
//! commitlog/00000000000000000000   segment 0: CommitLog bytes [0, S)
//! commitlog/00000000001073741824   segment 1: CommitLog bytes [S, 2S)      (S = 1 GiB here)
//! ...
//! ```
//!
//! A segment is created at its full size (zero bytes) and named by the global CommitLog offset of
//! its first byte, zero-padded to 20 digits. Records (REMOTING.md §4.2) follow each other with no
//! gaps; a record never spans two segments:
//!
//! ```text
//!  segment file (S bytes)
//! +----------+----------+-----+----------+----------------+-----------------------+
//! | record 0 | record 1 | ... | record n | BLANK filler   | (zeros up to S)       |
//! +----------+----------+-----+----------+----------------+-----------------------+
//!                                        ^ a record of `len` bytes did not fit:
//!                                          len + 8 > S - position
//!
//!  BLANK filler (8 bytes, big-endian):
//! +---------------------------+---------------------------+
//! | TOTALSIZE i32             | MAGICCODE i32             |
//! | = S - position (the       | = 0xCBD43194 (BLANK)      |
//! |   whole rest of the file) |                           |
//! +---------------------------+---------------------------+
//!
//!  record header (first 12 bytes of every record):
//! +---------------------------+---------------------------+---------------------------+
//! | TOTALSIZE i32 @0          | MAGICCODE i32 @4          | BODYCRC i32 @8            | ...
//! +---------------------------+---------------------------+---------------------------+
//! ```
//!
//! After every append at least 8 bytes remain in the segment, so the filler always fits. The
//! write position then moves to the start of the next segment, which is created by the first
//! append that lands in it. The log ends at the first position that holds neither a valid record
//! nor a BLANK filler; recovery zeroes whatever torn bytes lie after that point so every later
//! scan stops at the same place.
//!
//! The CommitLog does not own its storage: the [`MessageStore`](super::MessageStore) passes it in
//! to every call, and keeps it in sync with the ConsumeQueues.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::message_store::{StoreError, READ_ATTEMPTS};
use super::segment::{SegmentStorage, StorageError, SECTOR_BYTES};
use super::{CommitLogOffset, FileRange, SyncRequest};
use crate::message::record::{field_pos, peek_header, MAGIC_BLANK, MAGIC_V1, MAGIC_V2};
use crate::message::{record_crc, sys_flag, MessageRecord, RecordError, RecordView};

/// Size of the end-of-segment BLANK filler, and the space every append leaves free.
pub const BLANK_FILLER_BYTES: u64 = 8;

/// The smallest possible record: IPv4 hosts, V1 magic, empty body, topic and properties.
pub const MIN_RECORD_BYTES: u32 = 91;

/// Directory of the CommitLog segments.
pub const COMMITLOG_DIR: &str = "commitlog";

/// Length of every zero-padded file name (CommitLog and ConsumeQueue segments).
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// The path of the segment starting at `start`.
pub fn segment_path(start: u64) -> String {
    format!("{COMMITLOG_DIR}/{start:020}")
}

/// Parses a 20-digit segment file name; `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    if name.len() != SEGMENT_NAME_DIGITS || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Where an append of a given length lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The CommitLog offset of the appended bytes.
    pub offset: u64,
    /// A BLANK filler to write first, `(position, size)`: the current segment is too full.
    pub blank: Option<(u64, u64)>,
    /// A segment to create before writing, `(start, size)`.
    pub new_segment: Option<(u64, u64)>,
}

fn be_i64(buf: &[u8], pos: usize) -> Option<i64> {
    let bytes: [u8; 8] = buf.get(pos..pos + 8)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// Offset of STORETIMESTAMP in a record whose SYSFLAG is `sys_flag`: right after the born host,
/// which is 8 (IPv4) or 20 (IPv6) bytes long.
pub fn store_timestamp_pos(sys_flag: i32) -> usize {
    let born_host_bytes = if sys_flag & sys_flag::BORNHOST_V6 != 0 {
        20
    } else {
        8
    };
    field_pos::BORN_HOST + born_host_bytes
}

/// Verifies one whole record the way recovery and reads need it, with the one record parser
/// ([`MessageRecord::decode`]): `buf` holds exactly the record, TOTALSIZE matches the sum of its
/// fields, its magic is V1 or V2 and its body CRC is right.
///
/// The body CRC covers neither the header, the topic nor the properties. A record whose last
/// property is `__CRC32#` (written with `enabledAppendPropCRC`, see [`record_crc`]) has its
/// whole-record CRC verified as well, so a damaged byte anywhere in it is an error
/// ([`RecordError::RecordCrcMismatch`], or [`RecordError::Malformed`] for a damaged trailer). Records without one (older data, or the key
/// off) get the body CRC only. For every record the ends of the topic and properties are checked
/// too, as every record this store writes has them: a topic without NUL bytes, and a non-empty
/// property string ending with its 0x02 separator. A record whose last sector never reached the
/// disk fails one of these.
pub fn check_record(buf: Bytes) -> Result<MessageRecord, RecordError> {
    check_record_with(buf, true)
}

/// [`check_record`], with the body and record CRC checks optional (only the deliberate
/// `skip_recovery_crc` defect turns them off).
fn check_record_with(buf: Bytes, check_crc: bool) -> Result<MessageRecord, RecordError> {
    let view = check_view_with(&buf, check_crc)?;
    Ok(MessageRecord::from_view(&buf, &view))
}

/// [`check_record`]'s checks on a borrowed view of the record: nothing is allocated, so the pull
/// path can verify every record it serves at the cost of its CRCs.
pub fn check_record_view(buf: &[u8]) -> Result<RecordView<'_>, RecordError> {
    check_view_with(buf, true)
}

fn check_view_with(buf: &[u8], check_crc: bool) -> Result<RecordView<'_>, RecordError> {
    let (total, _magic) = peek_header(buf)?;
    if total as usize != buf.len() {
        return Err(RecordError::Malformed("TOTALSIZE"));
    }
    let view = RecordView::parse(buf, check_crc)?;
    if view.topic.contains('\0') {
        return Err(RecordError::Malformed("TOPIC"));
    }
    if !view.properties.is_empty() && buf.last() != Some(&PROPERTY_SEPARATOR) {
        return Err(RecordError::Malformed("PROPERTIES"));
    }
    if check_crc {
        record_crc::verify(buf, view.properties.len())?;
    }
    Ok(view)
}

/// The byte that ends every name/value pair of a stored property string.
const PROPERTY_SEPARATOR: u8 = 0x02;

/// What recovery does with a bad record that is followed by valid data, or that lies below the
/// checkpoint's durable offset (`recoverCorruptedCommitLog` in broker.conf).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CorruptionPolicy {
    /// Refuse to open the store; an operator must look at the named file and offset.
    #[default]
    Refuse,
    /// End the log at the bad record, dropping it and everything after it (reported).
    Truncate,
}

/// How a recovery scan runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanPlan {
    /// Where to start verifying: a record boundary (or segment start) everything before which is
    /// trusted. Clamped to the first segment.
    pub start: u64,
    /// Everything before this offset was durable (the checkpoint said so): the log must not end
    /// before it.
    pub trusted_end: u64,
    pub policy: CorruptionPolicy,
    /// The deliberate `skip_recovery_crc` defect (tests only): accept records whose body CRC
    /// does not match.
    pub skip_body_crc: bool,
    /// The deliberate `count_recovery_reads` defect (tests only): a record is bad after
    /// [`READ_ATTEMPTS`] failed reads, whatever they returned.
    pub count_reads: bool,
}

/// What the store's dispatch thinks of a record the scan verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The record belongs to the log.
    Valid,
    /// The record cannot belong to the log (its queue offset breaks the sequence, say).
    Invalid(String),
    /// The trusted state before the scan start disagrees with the log: scan everything instead.
    Rescan,
}

/// A bad record followed by valid data (or below the durable offset): corruption, not a torn
/// tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file holding the bad record.
    pub path: String,
    /// CommitLog offset of the bad record.
    pub offset: u64,
    /// Its position in `path`.
    pub file_position: u64,
    /// Why the record is bad and why it is not a torn tail.
    pub reason: String,
    /// Valid records after it that the truncation dropped.
    pub records_dropped: u64,
    /// CommitLog bytes from the bad record to the end of the valid data after it.
    pub bytes_dropped: u64,
}

/// What a recovery scan found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Where the scan started.
    pub start: u64,
    /// The end of the log it found.
    pub end: u64,
    /// Valid records found.
    pub records_scanned: u64,
    /// Torn bytes after the end of the log that were zeroed.
    pub bytes_truncated: u64,
    /// Segment files past the end of the log that were deleted.
    pub segments_deleted: u64,
    /// Why the log ended where it did (a torn or bad record), `None` at a clean end.
    pub end_reason: Option<String>,
    /// Valid records found after a torn write: the disk kept some later writes but not an
    /// earlier one, so they were never all durable and are dropped with the tail.
    pub records_after_tear: u64,
    /// Corruption dropped under [`CorruptionPolicy::Truncate`].
    pub corruption: Option<Corruption>,
}

/// What [`CommitLog::recover`] returns.
#[derive(Debug)]
pub enum ScanOutcome {
    Done(CommitLog, ScanReport),
    /// The dispatch asked for a full scan; nothing was changed.
    Rescan,
}

/// The CommitLog's in-memory state: its segments and its write and durable positions.
#[derive(Clone, Debug)]
pub struct CommitLog {
    /// Size of segments created from now on.
    segment_bytes: u64,
    /// Existing segment files: start offset → length. Contiguous: each starts where the previous
    /// one ends.
    segments: BTreeMap<u64, u64>,
    /// The next append goes here (the end of the log).
    written: u64,
    /// Everything before this is durable.
    durable: u64,
}

impl CommitLog {
    /// An empty CommitLog (no segments yet).
    pub fn new(segment_bytes: u64) -> Self {
        Self {
            segment_bytes,
            segments: BTreeMap::new(),
            written: 0,
            durable: 0,
        }
    }

    /// The end of the log: where the next append goes.
    pub fn written_offset(&self) -> CommitLogOffset {
        CommitLogOffset(self.written)
    }

    /// Everything before this offset is durable.
    pub fn durable_offset(&self) -> CommitLogOffset {
        CommitLogOffset(self.durable)
    }

    /// The first offset still stored (the start of the first segment).
    pub fn min_offset(&self) -> CommitLogOffset {
        CommitLogOffset(self.segments.keys().next().copied().unwrap_or(self.written))
    }

    /// Start offsets and lengths of the segment files, in order.
    pub fn segments(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.segments.iter().map(|(s, l)| (*s, *l))
    }

    /// The segment holding `offset`, `(start, len)`.
    pub(crate) fn segment_of(&self, offset: u64) -> Option<(u64, u64)> {
        let (start, len) = self.segments.range(..=offset).next_back()?;
        (offset < start + len).then_some((*start, *len))
    }

    /// Where an append of `len` bytes lands; an error when it can never fit in one segment.
    pub fn place(&self, len: u64) -> Result<Placement, StoreError> {
        let too_large = || StoreError::MessageTooLarge {
            size: len as usize,
            max: self.segment_bytes.saturating_sub(BLANK_FILLER_BYTES) as usize,
        };
        let next_start = match self.segment_of(self.written) {
            Some((start, seg_len)) => {
                let remaining = start + seg_len - self.written;
                if len.saturating_add(BLANK_FILLER_BYTES) <= remaining {
                    return Ok(Placement {
                        offset: self.written,
                        blank: None,
                        new_segment: None,
                    });
                }
                if len.saturating_add(BLANK_FILLER_BYTES) > self.segment_bytes {
                    return Err(too_large());
                }
                return Ok(Placement {
                    offset: start + seg_len,
                    blank: Some((self.written, remaining)),
                    new_segment: Some((start + seg_len, self.segment_bytes)),
                });
            }
            None => self.written,
        };
        if len.saturating_add(BLANK_FILLER_BYTES) > self.segment_bytes {
            return Err(too_large());
        }
        Ok(Placement {
            offset: next_start,
            blank: None,
            new_segment: Some((next_start, self.segment_bytes)),
        })
    }

    /// Writes `bytes` as planned by [`CommitLog::place`] (with the same length) and moves the
    /// write position past them.
    pub fn write<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        placement: &Placement,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if let Some((pos, size)) = placement.blank {
            let (start, _) = self
                .segment_of(pos)
                .ok_or_else(|| StoreError::Corrupt(format!("no segment holds {pos}")))?;
            let mut filler = [0u8; BLANK_FILLER_BYTES as usize];
            filler[..4].copy_from_slice(&(size as i32).to_be_bytes());
            filler[4..].copy_from_slice(&MAGIC_BLANK.to_be_bytes());
            storage.write_at(&segment_path(start), pos - start, &filler)?;
            // The filler is part of the log: from here on the segment is closed.
            self.written = pos + size;
        }
        if let Some((start, size)) = placement.new_segment {
            // A rolled-back append may have created the segment already.
            if let std::collections::btree_map::Entry::Vacant(entry) = self.segments.entry(start) {
                storage.create(&segment_path(start), size)?;
                entry.insert(size);
            }
        }
        let (start, _) = self
            .segment_of(placement.offset)
            .ok_or_else(|| StoreError::Corrupt(format!("no segment holds {}", placement.offset)))?;
        storage.write_at(&segment_path(start), placement.offset - start, bytes)?;
        self.written = placement.offset + bytes.len() as u64;
        Ok(())
    }

    /// Writes `bytes` exactly at `offset`, the log's end, as a master's replication stream
    /// carries them: whole records, BLANK fillers, the zeros after a filler, or part of a
    /// record. Segment files are created as the bytes reach them (every segment
    /// `segment_bytes` long, so boundaries fall where the master's do). An empty log starts at
    /// `offset` (a new replica gets no older history); otherwise `offset` must be the write
    /// position.
    pub fn append_raw<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        // Offsets are Java longs on the wire; keep every sum below i64::MAX.
        let fits = offset
            .checked_add(bytes.len() as u64)
            .and_then(|end| end.checked_add(self.segment_bytes))
            .is_some_and(|end| end <= i64::MAX as u64);
        if !fits {
            return Err(StoreError::Corrupt(format!(
                "replicated bytes at CommitLog offset {offset} reach past the largest offset"
            )));
        }
        if self.segments.is_empty() && self.written == 0 {
            self.written = offset;
            self.durable = offset;
        }
        if offset != self.written {
            return Err(StoreError::ReplicaOffsetMismatch {
                offset,
                written: self.written,
            });
        }
        let mut pos = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let start = pos - pos % self.segment_bytes;
            if let std::collections::btree_map::Entry::Vacant(entry) = self.segments.entry(start) {
                storage.create(&segment_path(start), self.segment_bytes)?;
                entry.insert(self.segment_bytes);
            }
            let seg_len = self.segments[&start];
            let room = (start + seg_len).saturating_sub(pos);
            if room == 0 {
                return Err(StoreError::Corrupt(format!(
                    "segment {start} ({seg_len} bytes) cannot hold replicated bytes at {pos}: \
                     the master's mappedFileSizeCommitLog differs ({} here)",
                    self.segment_bytes
                )));
            }
            let take = room.min(rest.len() as u64) as usize;
            storage.write_at(&segment_path(start), pos - start, &rest[..take])?;
            pos += take as u64;
            rest = &rest[take..];
            self.written = pos;
        }
        Ok(())
    }

    /// Moves the write position back to `offset` after a failed append, zeroing (best effort)
    /// the bytes written past it so a later recovery does not find them.
    pub fn rollback<S: SegmentStorage>(&mut self, storage: &mut S, offset: u64) {
        if offset >= self.written {
            return;
        }
        let mut pos = offset;
        while pos < self.written {
            let Some((start, len)) = self.segment_of(pos) else {
                break;
            };
            let end = (start + len).min(self.written);
            let zeros = vec![0u8; (end - pos) as usize];
            let _ = storage.write_at(&segment_path(start), pos - start, &zeros);
            pos = end;
        }
        self.written = offset;
        self.durable = self.durable.min(offset);
    }

    /// `len` bytes at `offset`, which must lie in one segment and before the write position.
    pub fn read<S: SegmentStorage>(
        &self,
        storage: &S,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let end = offset.saturating_add(len);
        let out_of_range = || {
            StoreError::Corrupt(format!(
                "CommitLog read [{offset}, {end}) outside the log [{}, {})",
                self.min_offset().0,
                self.written
            ))
        };
        let (start, seg_len) = self.segment_of(offset).ok_or_else(out_of_range)?;
        if end > start + seg_len || end > self.written {
            return Err(out_of_range());
        }
        let mut buf = vec![0u8; len as usize];
        storage.read_at(&segment_path(start), offset - start, &mut buf)?;
        Ok(buf)
    }

    /// The whole verified record starting at `offset`, `None` when no valid record starts there
    /// (offsets can come from clients). TOTALSIZE is read and bounds-checked first.
    pub fn read_record<S: SegmentStorage>(
        &self,
        storage: &S,
        offset: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((start, seg_len)) = self.segment_of(offset) else {
            return Ok(None);
        };
        let limit = (start + seg_len).min(self.written);
        if offset + BLANK_FILLER_BYTES > limit {
            return Ok(None);
        }
        let mut header = [0u8; 8];
        storage.read_at(&segment_path(start), offset - start, &mut header)?;
        let total = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let magic = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if (magic != MAGIC_V1 && magic != MAGIC_V2)
            || total < MIN_RECORD_BYTES as i32
            || offset + total as u64 > limit
        {
            return Ok(None);
        }
        let buf = Bytes::from(self.read(storage, offset, total as u64)?);
        match check_record(buf.clone()) {
            Ok(record) if record.physical_offset == offset as i64 => Ok(Some(buf.to_vec())),
            _ => Ok(None),
        }
    }

    /// What to make durable to cover `[durable, written)`; `None` when already durable.
    pub fn sync_request(&self) -> Option<SyncRequest> {
        if self.durable >= self.written {
            return None;
        }
        let ranges: Vec<FileRange> = self
            .segments
            .iter()
            .filter(|(start, len)| **start < self.written && **start + **len > self.durable)
            .map(|(start, len)| FileRange {
                path: segment_path(*start),
                start: self.durable.saturating_sub(*start),
                end: (self.written - start).min(*len),
            })
            .collect();
        Some(SyncRequest {
            ranges,
            up_to: CommitLogOffset(self.written),
        })
    }

    /// The driver made everything before `up_to` durable.
    pub fn handle_synced(&mut self, up_to: CommitLogOffset) {
        self.durable = self.durable.max(up_to.0.min(self.written));
    }

    /// Opens the CommitLog found in `storage`: trusts everything before `plan.start`, verifies
    /// every record from there (one parser: [`check_record`]; its own physical offset; then
    /// `dispatch`), and ends the log at the first position holding neither a valid record nor a
    /// BLANK filler.
    ///
    /// Where the scan stops it decides between a torn tail and corruption. It is corruption when
    /// the stop lies below `plan.trusted_end`, or when a valid record follows it and no lost
    /// sector explains the gap (a run of zeros from the bad record, or a whole zero sector, up
    /// to a sector boundary: what a power loss leaves of writes that never reached the disk).
    /// Corruption returns [`StoreError::CorruptCommitLog`] under [`CorruptionPolicy::Refuse`];
    /// otherwise, and for a torn tail, the log is truncated there (torn bytes zeroed, later
    /// segments deleted).
    pub fn recover<S, F>(
        storage: &mut S,
        segment_bytes: u64,
        plan: ScanPlan,
        mut dispatch: F,
    ) -> Result<ScanOutcome, StoreError>
    where
        S: SegmentStorage,
        F: FnMut(&mut S, u64, u32, &MessageRecord) -> Result<Verdict, StoreError>,
    {
        let mut segments = BTreeMap::new();
        for name in storage.list(COMMITLOG_DIR)? {
            if let Some(start) = parse_segment_name(&name) {
                let len = storage.len(&segment_path(start))?;
                segments.insert(start, len);
            }
        }
        let first = segments.keys().next().copied().unwrap_or(0);
        let start = plan.start.max(first);
        let mut report = ScanReport {
            start,
            ..ScanReport::default()
        };
        // Scan: `cur` is the end of the log so far.
        let mut cur = start;
        let stop_reason: Option<String> = loop {
            let Some((&seg, &len)) = segments.range(..=cur).next_back() else {
                break (!segments.is_empty()).then(|| "no segment holds the offset".to_string());
            };
            if cur >= seg + len {
                // Past the last segment (or a gap): a clean end only at the very end.
                let later = segments.range(cur..).next().is_some();
                break later.then(|| format!("no segment holds offset {cur}"));
            }
            let pos = cur - seg;
            if pos + BLANK_FILLER_BYTES > len {
                break Some("segment ends without a BLANK filler".to_string());
            }
            // A position that fails its check is read again before the log is ended there: a
            // read that came back wrong must not cut off records that were durable, or merely
            // written before a process crash. Only bytes that read back the same way
            // READ_ATTEMPTS times in a row count as what the disk holds.
            let attempt = || scan_step(storage, seg, len, cur, plan.skip_body_crc);
            let step = if plan.count_reads {
                read_counted(attempt)?
            } else {
                read_settled(attempt)?
            };
            let (total, record) = match step {
                Settled::Good(ScanStep::Blank) => {
                    cur = seg + len;
                    continue;
                }
                Settled::Good(ScanStep::Unwritten) => break Some(UNWRITTEN.to_string()),
                Settled::Good(ScanStep::Record(total, record)) => (total, record),
                Settled::Bad(reason, _) => break Some(reason),
                Settled::Unsettled(reason) => {
                    return Err(unreadable(&segment_path(seg), seg, cur, reason));
                }
            };
            match dispatch(storage, cur, total, &record)? {
                Verdict::Valid => {}
                Verdict::Invalid(reason) => break Some(reason),
                Verdict::Rescan => return Ok(ScanOutcome::Rescan),
            }
            report.records_scanned += 1;
            cur += total as u64;
        };
        let end = cur;
        report.end = end;

        // Torn tail or corruption?
        if let Some(reason) = &stop_reason {
            let (seg, len) = segments
                .range(..=end)
                .next_back()
                .map(|(s, l)| (*s, *l))
                .filter(|(s, l)| end < s + l)
                .unwrap_or((end, 0));
            let next = find_next_valid(storage, &segments, end)?;
            let corrupt = if end < plan.trusted_end {
                Some(format!(
                    "{reason}; the checkpoint says the log was durable up to {}",
                    plan.trusted_end
                ))
            } else if let Some(next) = next {
                let gap_end = if next < seg + len { next - seg } else { len };
                if len > 0 && lost_sector_in(storage, seg, end - seg, gap_end)? {
                    report.records_after_tear = count_chain(storage, &segments, next)?.0;
                    None
                } else {
                    Some(format!("{reason}; a valid record follows at offset {next}"))
                }
            } else {
                None
            };
            if let Some(why) = corrupt {
                let path = segment_path(seg);
                if plan.policy == CorruptionPolicy::Refuse {
                    return Err(StoreError::CorruptCommitLog {
                        path,
                        offset: end,
                        file_position: end - seg,
                        reason: why,
                    });
                }
                let (records_dropped, chain_end) = match next {
                    Some(next) => count_chain(storage, &segments, next)?,
                    None => (0, end),
                };
                report.corruption = Some(Corruption {
                    path,
                    offset: end,
                    file_position: end - seg,
                    reason: why,
                    records_dropped,
                    bytes_dropped: chain_end.saturating_sub(end),
                });
            }
        }
        // Unwritten space is the normal end of a log, not worth a report line.
        report.end_reason = stop_reason.filter(|r| r != UNWRITTEN);

        // Truncate: zero the torn bytes of the segment holding the end, delete later segments.
        let mut kept = BTreeMap::new();
        for (&seg, &len) in &segments {
            if seg > end {
                storage.delete(&segment_path(seg))?;
                report.segments_deleted += 1;
                continue;
            }
            if seg == end && len < BLANK_FILLER_BYTES && segment_bytes > len {
                // A segment file too short even for a BLANK filler (created but never given its
                // size, or cut short) holds nothing of the log and cannot take an append: as it
                // is, every put would fail. Give it the size it should have had. (Deleting it
                // instead would move the end of the log back to 0 at the next recovery.)
                storage.truncate(&segment_path(seg), segment_bytes)?;
                kept.insert(seg, segment_bytes);
                continue;
            }
            if seg + len > end {
                report.bytes_truncated += zero_tail(storage, &segment_path(seg), end - seg, len)?;
            }
            kept.insert(seg, len);
        }
        let log = Self {
            segment_bytes,
            segments: kept,
            written: end,
            // What the scan found may still sit in a page cache only: it is made durable again
            // before anything appended after it counts as durable.
            durable: plan.trusted_end.min(end).max(first.min(end)),
        };
        Ok(ScanOutcome::Done(log, report))
    }
}

/// Why a scan stops at zeros: the normal end of the log.
const UNWRITTEN: &str = "unwritten space";

/// The most reads recovery spends on one position whose bytes keep changing from read to read.
/// Past it the disk cannot be read reliably there, and recovery refuses to start
/// ([`StoreError::UnreadableCommitLog`]) rather than end the log at a record it could not read.
pub const UNSETTLED_READ_LIMIT: u32 = 16;

/// One read and check of a position: what it found (or why it failed its check), and the bytes
/// it read, for [`read_settled`] to compare with the next read.
pub(crate) type Attempt<T> = Result<(Result<T, String>, Vec<u8>), StoreError>;

/// What repeated reads of one position came to ([`read_settled`]).
#[derive(Debug)]
pub(crate) enum Settled<T> {
    /// A read passed its check.
    Good(T),
    /// [`READ_ATTEMPTS`] reads in a row returned the same bytes and failed the check: the damage
    /// is on the disk. The check's reason, and the bytes.
    Bad(String, Vec<u8>),
    /// Every read failed, and the bytes changed from read to read for [`UNSETTLED_READ_LIMIT`]
    /// reads: what the disk holds there is unknown.
    Unsettled(String),
}

/// Runs `attempt` (one read and check of a position: the outcome, and the bytes it read) until a
/// read passes, or until the same failing bytes came back [`READ_ATTEMPTS`] times in a row.
///
/// A transient read fault (a flaky controller, cable or DIMM) returns bytes that differ from
/// what the disk holds for a few reads, then the right ones; comparing reads is what tells it
/// from damage on the medium, which reads back the same every time. Counting reads alone would
/// judge a record damaged when two faults in it wear off one after the other.
pub(crate) fn read_settled<T>(
    mut attempt: impl FnMut() -> Attempt<T>,
) -> Result<Settled<T>, StoreError> {
    let mut last: Option<Vec<u8>> = None;
    let mut same_in_a_row = 0;
    let mut reason = String::new();
    for _ in 0..UNSETTLED_READ_LIMIT {
        let (outcome, bytes) = attempt()?;
        match outcome {
            Ok(good) => return Ok(Settled::Good(good)),
            Err(why) => reason = why,
        }
        if last.as_ref() == Some(&bytes) {
            same_in_a_row += 1;
        } else {
            same_in_a_row = 1;
            last = Some(bytes.clone());
        }
        if same_in_a_row >= READ_ATTEMPTS {
            return Ok(Settled::Bad(reason, bytes));
        }
    }
    Ok(Settled::Unsettled(reason))
}

/// The deliberate `count_recovery_reads` defect: [`READ_ATTEMPTS`] reads, the position bad
/// when all of them failed, whether or not they agreed.
fn read_counted<T>(mut attempt: impl FnMut() -> Attempt<T>) -> Result<Settled<T>, StoreError> {
    let mut last = (String::new(), Vec::new());
    for _ in 0..READ_ATTEMPTS {
        match attempt()? {
            (Ok(good), _) => return Ok(Settled::Good(good)),
            (Err(why), bytes) => last = (why, bytes),
        }
    }
    Ok(Settled::Bad(last.0, last.1))
}

/// The error for a position of the segment `path` (starting at `seg`) whose bytes never read
/// back the same way [`READ_ATTEMPTS`] times in a row during recovery.
fn unreadable(path: &str, seg: u64, offset: u64, reason: String) -> StoreError {
    StoreError::UnreadableCommitLog {
        path: path.to_string(),
        offset,
        file_position: offset - seg,
        reads: UNSETTLED_READ_LIMIT,
        reason,
    }
}

/// The bytes `[pos, pos + n)` of the segment starting at `seg`, once [`READ_ATTEMPTS`] reads in
/// a row returned the same.
fn read_stable<S: SegmentStorage>(
    storage: &S,
    seg: u64,
    pos: u64,
    n: usize,
) -> Result<Vec<u8>, StoreError> {
    let path = segment_path(seg);
    let read = || -> Attempt<std::convert::Infallible> {
        let mut buf = vec![0u8; n];
        storage.read_at(&path, pos, &mut buf)?;
        Ok((Err("reads disagree".to_string()), buf))
    };
    match read_settled(read)? {
        Settled::Bad(_, bytes) => Ok(bytes),
        Settled::Good(never) => match never {},
        Settled::Unsettled(reason) => Err(unreadable(&path, seg, seg + pos, reason)),
    }
}

/// What the recovery scan finds at one position of the log.
enum ScanStep {
    /// The BLANK filler that ends a segment.
    Blank,
    /// Zeros: never written.
    Unwritten,
    /// A verified record of `TOTALSIZE` bytes.
    Record(u32, Box<MessageRecord>),
}

/// Reads and checks the position `cur` of the segment starting at `seg` (`len` bytes): what is
/// there, or why it is neither a record nor a filler nor unwritten space; and the bytes read
/// (the header alone when it was bad already, else the whole record).
fn scan_step<S: SegmentStorage>(
    storage: &S,
    seg: u64,
    len: u64,
    cur: u64,
    skip_body_crc: bool,
) -> Attempt<ScanStep> {
    let pos = cur - seg;
    let path = segment_path(seg);
    let mut header = [0u8; 8];
    storage.read_at(&path, pos, &mut header)?;
    let (total, magic) = peek_header(&header)?;
    if magic == MAGIC_BLANK && total as u64 == len - pos {
        return Ok((Ok(ScanStep::Blank), header.to_vec()));
    }
    if header == [0u8; 8] {
        return Ok((Ok(ScanStep::Unwritten), header.to_vec()));
    }
    if (magic != MAGIC_V1 && magic != MAGIC_V2)
        || total < MIN_RECORD_BYTES
        || total as u64 + BLANK_FILLER_BYTES > len - pos
    {
        let why = format!("bad header: TOTALSIZE {total}, MAGICCODE {magic:#x}");
        return Ok((Err(why), header.to_vec()));
    }
    let mut buf = vec![0u8; total as usize];
    storage.read_at(&path, pos, &mut buf)?;
    let bytes = Bytes::from(buf);
    let outcome = match check_record_with(bytes.clone(), !skip_body_crc) {
        Ok(record) if record.physical_offset == cur as i64 => {
            Ok(ScanStep::Record(total, Box::new(record)))
        }
        Ok(record) => Err(format!(
            "PHYSICALOFFSET {} at offset {cur}",
            record.physical_offset
        )),
        Err(e) => Err(e.to_string()),
    };
    Ok((outcome, bytes.to_vec()))
}

/// The first valid record after the bad position `bad`: in the rest of its segment (up to the
/// last non-zero byte before a zero chunk), else at the start of a later segment.
fn find_next_valid<S: SegmentStorage>(
    storage: &S,
    segments: &BTreeMap<u64, u64>,
    bad: u64,
) -> Result<Option<u64>, StoreError> {
    if let Some((&seg, &len)) = segments.range(..=bad).next_back() {
        if bad < seg + len {
            let path = segment_path(seg);
            let from = bad - seg;
            // "Nothing follows" is believed only once the rest of the segment reads back the
            // same way READ_ATTEMPTS times: a transient fault in the next record's magic or
            // offset would otherwise pass a corruption off as a torn tail.
            let search = || -> Attempt<Option<u64>> {
                let (data, nonzero) = read_nonzero_run(storage, &path, from, len)?;
                if nonzero == 0 {
                    // Nothing but zeros (the normal end of a log): no fault of a few bits
                    // could have hidden a whole record there.
                    return Ok((Ok(None), data));
                }
                // A record's MAGICCODE (never zero) ends before the last non-zero byte does.
                for x in 1..nonzero.saturating_sub(4) {
                    let Some(magic) = data.get(x + 4..x + 8) else {
                        break;
                    };
                    let magic = i32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
                    if magic != MAGIC_V1 && magic != MAGIC_V2 {
                        continue;
                    }
                    let offset = bad + x as u64;
                    if be_i64(&data, x + field_pos::PHYSICAL_OFFSET) != Some(offset as i64) {
                        continue;
                    }
                    if record_at(storage, &path, seg, len, offset)?.is_some() {
                        return Ok((Ok(Some(offset)), data));
                    }
                }
                Ok((Err("no valid record".to_string()), data))
            };
            match read_settled(search)? {
                Settled::Good(Some(offset)) => return Ok(Some(offset)),
                Settled::Good(None) => {}
                Settled::Bad(..) => {}
                Settled::Unsettled(reason) => return Err(unreadable(&path, seg, bad, reason)),
            }
        }
    }
    for (&seg, &len) in segments.range(bad + 1..) {
        if record_at(storage, &segment_path(seg), seg, len, seg)?.is_some() {
            return Ok(Some(seg));
        }
    }
    Ok(None)
}

/// The valid record (or BLANK filler, as `0`) at `offset` of segment `seg`: its length.
fn record_at<S: SegmentStorage>(
    storage: &S,
    path: &str,
    seg: u64,
    len: u64,
    offset: u64,
) -> Result<Option<u64>, StoreError> {
    let pos = offset - seg;
    if pos + BLANK_FILLER_BYTES > len {
        return Ok(None);
    }
    // Read and checked as the scan does (one parser, settled reads): a candidate that a
    // transient fault hides must not turn a corruption into a torn tail, nor end a chain early.
    match read_settled(|| scan_step(storage, seg, len, offset, false))? {
        Settled::Good(ScanStep::Blank) => Ok(Some(len - pos)),
        Settled::Good(ScanStep::Record(total, _)) => Ok(Some(total as u64)),
        Settled::Good(ScanStep::Unwritten) | Settled::Bad(..) => Ok(None),
        Settled::Unsettled(reason) => Err(unreadable(path, seg, offset, reason)),
    }
}

/// Follows valid records (and BLANK fillers into later segments) from `offset`: how many records
/// and where the chain ends.
fn count_chain<S: SegmentStorage>(
    storage: &S,
    segments: &BTreeMap<u64, u64>,
    mut offset: u64,
) -> Result<(u64, u64), StoreError> {
    let mut records = 0;
    while let Some((&seg, &len)) = segments.range(..=offset).next_back() {
        if offset >= seg + len {
            break;
        }
        let path = segment_path(seg);
        let mut header = [0u8; 8];
        storage.read_at(&path, offset - seg, &mut header)?;
        let blank = peek_header(&header)?.1 == MAGIC_BLANK;
        match record_at(storage, &path, seg, len, offset)? {
            Some(n) => {
                records += u64::from(!blank);
                offset += n;
            }
            None => break,
        }
    }
    Ok((records, offset))
}

/// Whether `[from, to)` of `path` holds what a power loss leaves of writes that never reached
/// the disk: zeros from `from` up to a sector boundary (or the end of the file), or a whole
/// zero sector.
fn lost_sector_in<S: SegmentStorage>(
    storage: &S,
    seg: u64,
    from: u64,
    to: u64,
) -> Result<bool, StoreError> {
    if to <= from {
        return Ok(false);
    }
    let file_len = storage.len(&segment_path(seg))?;
    // A lost sector may reach into the valid record after the gap: its first TOTALSIZE bytes
    // are zeros anyway. Read up to the end of the sector holding `to`.
    let read_end = (to.div_ceil(SECTOR_BYTES) * SECTOR_BYTES)
        .min(file_len)
        .max(to);
    // Zeros are believed once they read back the same way READ_ATTEMPTS times: a transient
    // fault that cleared a byte must not make a lost sector of a corruption.
    let buf = read_stable(storage, seg, from, (read_end - from) as usize)?;
    let zero = |a: u64, b: u64| {
        buf[(a - from) as usize..(b - from) as usize]
            .iter()
            .all(|x| *x == 0)
    };
    // Zeros from the bad record itself to the end of its sector (or of the file). A short run
    // must reach the magic (never zero in a record): a record under 64 KiB has two zero bytes
    // at its start anyway. Three or four zeros count when the magic after them is intact (the
    // sector holding the rest of TOTALSIZE was lost). A genuinely damaged record under 256
    // bytes starting 3 or 4 bytes before a sector boundary is the one case this mistakes for a
    // lost write.
    let first_boundary = ((from / SECTOR_BYTES + 1) * SECTOR_BYTES).min(file_len);
    let run = first_boundary.saturating_sub(from);
    if first_boundary <= read_end && zero(from, first_boundary) {
        let magic_intact = buf.len() >= 8 && {
            let m = &buf[4..8];
            let magic = i32::from_be_bytes([m[0], m[1], m[2], m[3]]);
            magic == MAGIC_V1 || magic == MAGIC_V2
        };
        if run >= 5 || (run >= 3 && magic_intact) {
            return Ok(true);
        }
    }
    // A whole zero sector starting in the gap.
    let mut sector = from.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    while sector < to && sector + SECTOR_BYTES <= read_end {
        if zero(sector, sector + SECTOR_BYTES) {
            return Ok(true);
        }
        sector += SECTOR_BYTES;
    }
    Ok(false)
}

/// The bytes of `path` from `from` up to the last non-zero byte before the first all-zero
/// 64 KiB chunk (or the end of the file).
/// Also returns the end of the last non-zero byte in the result (0: all zeros).
fn read_nonzero_run<S: SegmentStorage>(
    storage: &S,
    path: &str,
    from: u64,
    len: u64,
) -> Result<(Vec<u8>, usize), StoreError> {
    const CHUNK_BYTES: u64 = 64 * 1024;
    let mut out = Vec::new();
    let mut pos = from;
    let mut last_nonzero_end = 0usize;
    while pos < len {
        let n = CHUNK_BYTES.min(len - pos) as usize;
        let at = out.len();
        out.resize(at + n, 0);
        storage.read_at(path, pos, &mut out[at..])?;
        match nonzero_end(&out[at..]) {
            0 => break,
            end => last_nonzero_end = at + end,
        }
        pos += n as u64;
    }
    // A record may end in zeros: keep a record's worth of them for the candidate checks.
    out.truncate((last_nonzero_end + 64 * 1024).min(out.len()));
    Ok((out, last_nonzero_end))
}

/// The end of the last non-zero byte of `buf` (0 when it is all zeros), a word at a time:
/// recovery looks at up to a chunk of never-written bytes after the end of every log.
fn nonzero_end(buf: &[u8]) -> usize {
    const WORD: usize = std::mem::size_of::<u64>();
    let words = buf.len() / WORD;
    // The tail that does not fill a word, then whole words from the end.
    if let Some(i) = buf[words * WORD..].iter().rposition(|b| *b != 0) {
        return words * WORD + i + 1;
    }
    for w in (0..words).rev() {
        let chunk = &buf[w * WORD..(w + 1) * WORD];
        if u64::from_ne_bytes(chunk.try_into().unwrap_or([0; WORD])) != 0 {
            let i = chunk.iter().rposition(|b| *b != 0).unwrap_or(0);
            return w * WORD + i + 1;
        }
    }
    0
}

/// Zeroes the torn bytes after the end of the log in `[from, len)` of `path`; returns how many
/// bytes that spans.
///
/// Appends are sequential, so whatever a crash left behind the end sits right after it: the scan
/// stops at the first chunk that is entirely zero instead of reading the rest of the segment
/// (up to 1 GiB of never-written, sparse bytes on every open).
fn zero_tail<S: SegmentStorage>(
    storage: &mut S,
    path: &str,
    from: u64,
    len: u64,
) -> Result<u64, StoreError> {
    const CHUNK_BYTES: u64 = 64 * 1024;
    let mut last_nonzero_end = from;
    let mut pos = from;
    let mut buf = vec![0u8; CHUNK_BYTES as usize];
    while pos < len {
        let n = CHUNK_BYTES.min(len - pos) as usize;
        storage.read_at(path, pos, &mut buf[..n])?;
        match nonzero_end(&buf[..n]) {
            0 => break,
            end => last_nonzero_end = pos + end as u64,
        }
        pos += n as u64;
    }
    let torn = last_nonzero_end - from;
    let mut pos = from;
    while pos < last_nonzero_end {
        let n = CHUNK_BYTES.min(last_nonzero_end - pos) as usize;
        buf[..n].fill(0);
        storage.write_at(path, pos, &buf[..n])?;
        pos += n as u64;
    }
    Ok(torn)
}

// ---------------------------------------------------------------------------------------------
// Retention: what ages out and how the oldest segment goes.

impl CommitLog {
    /// The segment holding the write position, which retention never deletes; when the write
    /// position sits exactly at the end of the last segment (its BLANK filler written, the next
    /// one not created yet), the last segment. `None` when there is no segment.
    pub fn current_segment_start(&self) -> Option<u64> {
        self.segment_of(self.written)
            .map(|(start, _)| start)
            .or_else(|| self.segments.keys().next_back().copied())
    }

    /// The store timestamp of the last record of the segment starting at `start`, found by
    /// following TOTALSIZE from the segment's first record (8-byte header reads) up to its BLANK
    /// filler, the end of the log or the first byte that starts no record. `None` for an unknown
    /// segment or one that holds no record.
    pub fn last_store_timestamp_ms<S: SegmentStorage>(
        &self,
        storage: &S,
        start: u64,
    ) -> Result<Option<i64>, StoreError> {
        let Some(&len) = self.segments.get(&start) else {
            return Ok(None);
        };
        let limit = len.min(self.written.saturating_sub(start));
        let path = segment_path(start);
        let mut pos = 0u64;
        let mut last = None;
        while pos + BLANK_FILLER_BYTES <= limit {
            let mut header = [0u8; 8];
            storage.read_at(&path, pos, &mut header)?;
            let total = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let magic = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            if (magic != MAGIC_V1 && magic != MAGIC_V2)
                || total < MIN_RECORD_BYTES as i32
                || pos + total as u64 > limit
            {
                break;
            }
            last = Some(pos);
            pos += total as u64;
        }
        let Some(pos) = last else {
            return Ok(None);
        };
        let mut flag = [0u8; 4];
        storage.read_at(&path, pos + 36, &mut flag)?;
        let ts_pos = store_timestamp_pos(i32::from_be_bytes(flag)) as u64;
        let mut ts = [0u8; 8];
        storage.read_at(&path, pos + ts_pos, &mut ts)?;
        Ok(Some(i64::from_be_bytes(ts)))
    }

    /// Deletes the oldest segment unless it is the current one (see
    /// [`CommitLog::current_segment_start`]) or not wholly durable yet. Returns its
    /// `(start, len)`. The min offset moves to
    /// the start of the next segment.
    pub fn delete_first_segment<S: SegmentStorage>(
        &mut self,
        storage: &mut S,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let Some((&start, &len)) = self.segments.iter().next() else {
            return Ok(None);
        };
        // Never the segment being written, nor one a sync may still be asked to cover.
        if Some(start) == self.current_segment_start() || start + len > self.durable {
            return Ok(None);
        }
        match storage.delete(&segment_path(start)) {
            // Already gone (removed by hand, say): forget it all the same.
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            // Kept, whole and readable: the next run tries again.
            Err(e) => return Err(e.into()),
        }
        self.segments.remove(&start);
        Ok(Some((start, len)))
    }
}
