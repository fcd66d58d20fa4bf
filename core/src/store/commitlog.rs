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

use super::message_store::StoreError;
use super::segment::SegmentStorage;
use super::{CommitLogOffset, FileRange, SyncRequest};
use crate::message::record::{body_crc, MAGIC_BLANK, MAGIC_V1, MAGIC_V2};
use crate::message::sys_flag;

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

/// What a recovery scan found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Valid records found.
    pub records_scanned: u64,
    /// Torn bytes after the end of the log that were zeroed.
    pub bytes_truncated: u64,
    /// Segment files past the end of the log that were deleted.
    pub segments_deleted: u64,
}

/// The fields of a verified record that the store needs (dispatch, time search).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta<'a> {
    pub total_size_bytes: u32,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub store_timestamp_ms: i64,
    pub topic: &'a str,
    /// The raw property string (decoded leniently, like Java, when its tags are needed).
    pub properties: &'a [u8],
}

fn be_i16(buf: &[u8], pos: usize) -> Option<i16> {
    let bytes = buf.get(pos..pos + 2)?;
    Some(i16::from_be_bytes([bytes[0], bytes[1]]))
}

fn be_i32(buf: &[u8], pos: usize) -> Option<i32> {
    let bytes = buf.get(pos..pos + 4)?;
    Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn be_i64(buf: &[u8], pos: usize) -> Option<i64> {
    let bytes: [u8; 8] = buf.get(pos..pos + 8)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// Offset of STORETIMESTAMP in a record whose SYSFLAG is `sys_flag` (the born host before it is
/// 8 or 20 bytes long).
pub fn store_timestamp_pos(sys_flag: i32) -> usize {
    if sys_flag & sys_flag::BORNHOST_V6 != 0 {
        68
    } else {
        56
    }
}

/// Verifies one whole record the way recovery needs it: `buf` is exactly the record, its
/// TOTALSIZE matches the sum of its fields, its magic is V1 or V2 and its body CRC is right.
/// Returns why not otherwise.
pub fn check_record(buf: &[u8]) -> Result<RecordMeta<'_>, &'static str> {
    let total = be_i32(buf, 0).ok_or("short header")?;
    if total < MIN_RECORD_BYTES as i32 || total as usize != buf.len() {
        return Err("TOTALSIZE");
    }
    let magic = be_i32(buf, 4).ok_or("short header")?;
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err("MAGICCODE");
    }
    let stored_crc = be_i32(buf, 8).ok_or("short header")?;
    let queue_id = be_i32(buf, 12).ok_or("QUEUEID")?;
    let queue_offset = be_i64(buf, 20).ok_or("QUEUEOFFSET")?;
    let physical_offset = be_i64(buf, 28).ok_or("PHYSICALOFFSET")?;
    let flags = be_i32(buf, 36).ok_or("SYSFLAG")?;
    let born_host_bytes = if flags & sys_flag::BORNHOST_V6 != 0 {
        20
    } else {
        8
    };
    let store_host_bytes = if flags & sys_flag::STOREHOST_V6 != 0 {
        20
    } else {
        8
    };
    let store_ts_pos = 48 + born_host_bytes;
    // A port outside 0..=65535 cannot come from a socket address; clients (and
    // `MessageRecord::decode`) refuse such a record, so recovery must not serve it.
    let port_ok = |pos: usize| be_i32(buf, pos).is_some_and(|port| u16::try_from(port).is_ok());
    if !port_ok(48 + born_host_bytes - 4) {
        return Err("BORNHOST");
    }
    if !port_ok(store_ts_pos + 8 + store_host_bytes - 4) {
        return Err("STOREHOST");
    }
    let store_timestamp_ms = be_i64(buf, store_ts_pos).ok_or("STORETIMESTAMP")?;
    // STOREHOST, RECONSUMETIMES (4), PREPARED TRANSACTION OFFSET (8).
    let body_len_pos = store_ts_pos + 8 + store_host_bytes + 4 + 8;
    let body_len = be_i32(buf, body_len_pos).ok_or("BODY length")?;
    let body_len = usize::try_from(body_len).map_err(|_| "BODY length")?;
    let body_start = body_len_pos + 4;
    let body = buf
        .get(body_start..body_start.saturating_add(body_len))
        .ok_or("BODY")?;
    let mut pos = body_start + body_len;
    let topic_len = if magic == MAGIC_V1 {
        let len = *buf.get(pos).ok_or("TOPIC length")? as i8;
        pos += 1;
        usize::try_from(len).map_err(|_| "TOPIC length")?
    } else {
        let len = be_i16(buf, pos).ok_or("TOPIC length")?;
        pos += 2;
        usize::try_from(len).map_err(|_| "TOPIC length")?
    };
    let topic = buf.get(pos..pos + topic_len).ok_or("TOPIC")?;
    let topic = std::str::from_utf8(topic).map_err(|_| "TOPIC")?;
    pos += topic_len;
    let props_len = be_i16(buf, pos).ok_or("PROPERTIES length")?;
    let props_len = usize::try_from(props_len).map_err(|_| "PROPERTIES length")?;
    pos += 2;
    let properties = buf.get(pos..pos + props_len).ok_or("PROPERTIES")?;
    pos += props_len;
    if pos != buf.len() {
        return Err("TOTALSIZE");
    }
    if body_crc(body) != stored_crc as u32 {
        return Err("BODYCRC");
    }
    Ok(RecordMeta {
        total_size_bytes: total as u32,
        queue_id,
        queue_offset,
        physical_offset,
        store_timestamp_ms,
        topic,
        properties,
    })
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
    fn segment_of(&self, offset: u64) -> Option<(u64, u64)> {
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
        let buf = self.read(storage, offset, total as u64)?;
        match check_record(&buf) {
            Ok(meta) if meta.physical_offset == offset as i64 => Ok(Some(buf)),
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

    /// Opens the CommitLog found in `storage`: scans from the first segment, calling `on_record`
    /// for every valid record in order, stops at the first invalid one and truncates there
    /// (zeroing torn bytes, deleting later segments).
    ///
    /// `on_record` may reject a record (`Ok(false)`): the log then ends before it.
    pub fn recover<S, F>(
        storage: &mut S,
        segment_bytes: u64,
        mut on_record: F,
    ) -> Result<(Self, ScanReport), StoreError>
    where
        S: SegmentStorage,
        F: FnMut(&mut S, u64, &RecordMeta<'_>) -> Result<bool, StoreError>,
    {
        let mut segments = BTreeMap::new();
        for name in storage.list(COMMITLOG_DIR)? {
            if let Some(start) = parse_segment_name(&name) {
                let len = storage.len(&segment_path(start))?;
                segments.insert(start, len);
            }
        }
        let mut report = ScanReport::default();
        let first = segments.keys().next().copied().unwrap_or(0);
        // The end of the log once the scan stops.
        let mut end = first;
        'segments: for (&start, &len) in &segments {
            if start != end {
                // A gap: nothing after it belongs to the log.
                break;
            }
            let path = segment_path(start);
            let mut pos = 0u64;
            loop {
                end = start + pos;
                if pos + BLANK_FILLER_BYTES > len {
                    break 'segments;
                }
                let mut header = [0u8; 8];
                storage.read_at(&path, pos, &mut header)?;
                let total = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                let magic = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                if magic == MAGIC_BLANK && total as i64 == (len - pos) as i64 {
                    end = start + len;
                    continue 'segments;
                }
                if (magic != MAGIC_V1 && magic != MAGIC_V2)
                    || total < MIN_RECORD_BYTES as i32
                    || total as u64 + BLANK_FILLER_BYTES > len - pos
                {
                    break 'segments;
                }
                let mut buf = vec![0u8; total as usize];
                storage.read_at(&path, pos, &mut buf)?;
                let Ok(meta) = check_record(&buf) else {
                    break 'segments;
                };
                if meta.physical_offset != (start + pos) as i64
                    || !on_record(storage, start + pos, &meta)?
                {
                    break 'segments;
                }
                report.records_scanned += 1;
                pos += total as u64;
            }
        }

        // Truncate: zero the torn bytes of the segment holding the end, delete later segments.
        let mut kept = BTreeMap::new();
        for (&start, &len) in &segments {
            if start > end {
                storage.delete(&segment_path(start))?;
                report.segments_deleted += 1;
                continue;
            }
            if start == end && len < BLANK_FILLER_BYTES && segment_bytes > len {
                // A segment file too short even for a BLANK filler (created but never given its
                // size, or cut short) holds nothing of the log and cannot take an append: as it
                // is, every put would fail. Give it the size it should have had. (Deleting it
                // instead would move the end of the log back to 0 at the next recovery.)
                let path = segment_path(start);
                storage.truncate(&path, segment_bytes)?;
                kept.insert(start, segment_bytes);
                continue;
            }
            if start + len > end {
                report.bytes_truncated +=
                    zero_tail(storage, &segment_path(start), end - start, len)?;
            }
            kept.insert(start, len);
        }
        let log = Self {
            segment_bytes,
            segments: kept,
            written: end,
            // What recovery found may still sit in a page cache only: ask for all of it to be
            // made durable again before anything appended after it counts as durable.
            durable: first,
        };
        Ok((log, report))
    }
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
        match buf[..n].iter().rposition(|b| *b != 0) {
            Some(i) => last_nonzero_end = pos + i as u64 + 1,
            None => break,
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
