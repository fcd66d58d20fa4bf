//! Retention: which CommitLog segments expire and when disk usage forces cleaning.
//!
//! RocketMQ's `CleanCommitLogService`, with its keys and defaults:
//!
//! | key | default | here |
//! |---|---|---|
//! | `fileReservedTime` | 72 h | [`RetentionConfig::file_reserved_time_ms`] |
//! | `deleteWhen` | `"04"` | [`RetentionConfig::delete_when_hours`] (local hours, `;`-separated) |
//! | `diskMaxUsedSpaceRatio` | 75 % | above it, expired segments go without waiting for `deleteWhen` |
//! | `diskSpaceCleanForciblyRatio` | 85 % | above it, the oldest segments go even if not expired |
//! | `diskSpaceWarningLevelRatio` | 90 % | above it, sends are refused as "disk full" (code 14) |
//! | `cleanResourceInterval` | 10 s | how often a cleaning run happens |
//! | `deleteFileBatchMax` | 10 | segments deleted per run at most |
//!
//! Every `cleanResourceInterval` a run checks whether it may delete: the local hour is one of
//! `deleteWhen`, or the disk is fuller than `diskMaxUsedSpaceRatio`. If so it deletes CommitLog
//! segments oldest first, stopping at the first one it must keep, never touching the segment
//! being written:
//!
//! ```text
//!  commitlog/  [seg 0][seg 1][seg 2][seg 3][seg 4 (written)]
//!               expired expired  kept   ...        never deleted
//!               ──────deleted──────▶ min offset = start of seg 2
//!  consumequeue/T/0: units pointing below the new min are unreachable; the queue's min offset
//!  moves to its first unit at or past it, and files holding only such units are deleted.
//! ```
//!
//! A segment has expired when `now ≥ age + fileReservedTime`. RocketMQ takes the age from the
//! file's mtime; the core has no clock and no mtimes, so the age is the store timestamp of the
//! segment's last record. That is the same instant up to the flush delay (the last write into a
//! closed segment is its last record), it is deterministic (tests, simulation), and it survives
//! copies and restores of the store that reset mtimes.
//!
//! Forced cleaning (disk above `diskSpaceCleanForciblyRatio`, `cleanFileForciblyEnable`) deletes
//! the oldest segments whether expired or not, but unlike RocketMQ (which then deletes up to
//! `deleteFileBatchMax` at once) it stops as soon as the disk usage estimated from the last
//! driver report, less the segments deleted, is back under that ratio: space pressure costs the
//! least data it can.
//!
//! The driver reports disk usage ([`Retention::handle_disk_usage`]); the latest report also
//! decides whether sends are refused ([`Retention::is_disk_full`]). Sends are accepted again as
//! soon as a report shows usage at or under `diskSpaceWarningLevelRatio` (RocketMQ waits for the
//! next cleaning run and for usage under the force ratio, which users meet as writes that "do not
//! recover by themselves after space is freed").

use std::collections::BTreeMap;

use super::message_store::{DeletedSegment, MessageStore, StoreError};
use super::segment::SegmentStorage;

/// One hour, RocketMQ's unit for `fileReservedTime`.
pub const HOUR_MS: u64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS as i64;

/// Retention and disk-space settings (RocketMQ's names in the field docs).
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionConfig {
    /// `fileReservedTime` (hours in broker.conf): how long a CommitLog segment is kept after its
    /// last record was stored.
    pub file_reserved_time_ms: u64,
    /// `deleteWhen`: local hours of the day (0–23) in which expired segments are deleted.
    pub delete_when_hours: Vec<u8>,
    /// `diskMaxUsedSpaceRatio` (percent in broker.conf): above this, expired segments are
    /// deleted at any hour.
    pub disk_max_used_space_ratio: f64,
    /// `diskSpaceCleanForciblyRatio`: above this, segments are deleted even before they expire
    /// (when `clean_file_forcibly_enable`).
    pub disk_space_clean_forcibly_ratio: f64,
    /// `diskSpaceWarningLevelRatio`: above this, sends are refused as disk full.
    pub disk_space_warning_level_ratio: f64,
    /// `cleanFileForciblyEnable`.
    pub clean_file_forcibly_enable: bool,
    /// `cleanResourceInterval`: time between cleaning runs.
    pub clean_resource_interval_ms: u64,
    /// `deleteFileBatchMax`: segments deleted per run at most.
    pub delete_file_batch_max: usize,
    /// Local time minus UTC, for `deleteWhen`. The driver knows the time zone; the core does not.
    pub local_utc_offset_ms: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            file_reserved_time_ms: 72 * HOUR_MS,
            delete_when_hours: vec![4],
            disk_max_used_space_ratio: 0.75,
            disk_space_clean_forcibly_ratio: 0.85,
            disk_space_warning_level_ratio: 0.90,
            clean_file_forcibly_enable: true,
            clean_resource_interval_ms: 10_000,
            delete_file_batch_max: 10,
            local_utc_offset_ms: 0,
        }
    }
}

/// Parses `deleteWhen`: hours of the day separated by `;` (`"04"`, `"01;13"`). Empty entries
/// are skipped.
pub fn parse_delete_when(value: &str) -> Result<Vec<u8>, String> {
    let mut hours = Vec::new();
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<u8>() {
            Ok(h) if h < 24 => hours.push(h),
            _ => return Err(format!("{entry:?} is not an hour of the day (00-23)")),
        }
    }
    hours.sort_unstable();
    hours.dedup();
    Ok(hours)
}

/// The local hour of the day (0–23) at `now_ms` for a local offset from UTC.
pub fn local_hour(now_ms: u64, local_utc_offset_ms: i64) -> u8 {
    let local = (now_ms as i64).saturating_add(local_utc_offset_ms);
    (local.rem_euclid(DAY_MS) / HOUR_MS as i64) as u8
}

/// Space on the file system holding the store, as the driver last measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Space in use plus [`Self::available_bytes`] (blocks reserved for root left out, as
    /// RocketMQ and `df` count).
    pub total_bytes: u64,
    /// Free space the broker can use.
    pub available_bytes: u64,
}

impl DiskUsage {
    /// Used fraction of the disk, 0.0–1.0 (0 for a disk of size 0), rounded up to a whole
    /// percent as RocketMQ's `getDiskPartitionSpaceUsedPercent` does: the thresholds
    /// (`diskMaxUsedSpaceRatio`, `diskSpaceWarningLevelRatio`, …) trip at the same usage.
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        let used = u128::from(self.total_bytes.saturating_sub(self.available_bytes));
        let percent = (used * 100).div_ceil(u128::from(self.total_bytes));
        percent as f64 / 100.0
    }
}

/// Why a segment was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanReason {
    /// Older than `fileReservedTime`.
    Expired,
    /// Not expired, but the disk was above `diskSpaceCleanForciblyRatio`.
    Forced,
}

/// What a cleaning run deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub deleted: Vec<(DeletedSegment, CleanReason)>,
}

/// The retention policy's state: the latest disk usage, the next run, segment ages.
#[derive(Clone, Debug)]
pub struct Retention {
    config: RetentionConfig,
    usage: Option<DiskUsage>,
    next_clean_ms: u64,
    /// Last store timestamp of closed segments, by start offset: a closed segment never
    /// changes, so each is walked once.
    segment_times: BTreeMap<u64, Option<i64>>,
}

impl Retention {
    /// The first run is one interval after `now_ms`.
    pub fn new(config: RetentionConfig, now_ms: u64) -> Self {
        Self {
            next_clean_ms: now_ms.saturating_add(config.clean_resource_interval_ms.max(1)),
            config,
            usage: None,
            segment_times: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &RetentionConfig {
        &self.config
    }

    /// The driver's local time offset changed (daylight saving time).
    pub fn set_local_utc_offset_ms(&mut self, offset_ms: i64) {
        self.config.local_utc_offset_ms = offset_ms;
    }

    /// The driver measured the disk.
    pub fn handle_disk_usage(&mut self, usage: DiskUsage) {
        self.usage = Some(usage);
    }

    /// The latest disk usage (less what cleaning deleted since), if the driver ever reported.
    pub fn disk_usage(&self) -> Option<DiskUsage> {
        self.usage
    }

    /// The used ratio RocketMQ shows in its "disk is full [CL: … ]" remark: -1 when unknown.
    pub fn used_ratio_or_unknown(&self) -> f64 {
        self.usage.map_or(-1.0, |u| u.used_ratio())
    }

    /// Sends must be refused: the disk is above `diskSpaceWarningLevelRatio`.
    pub fn is_disk_full(&self) -> bool {
        self.usage
            .is_some_and(|u| u.used_ratio() > self.config.disk_space_warning_level_ratio)
    }

    /// The local hour at `now_ms` is one of `deleteWhen`.
    pub fn is_time_to_delete(&self, now_ms: u64) -> bool {
        let hour = local_hour(now_ms, self.config.local_utc_offset_ms);
        self.config.delete_when_hours.contains(&hour)
    }

    /// When the next run is due.
    pub fn next_clean_ms(&self) -> u64 {
        self.next_clean_ms
    }

    /// Runs a cleaning pass if one is due; `None` when it was not.
    pub fn handle_timeout<S: SegmentStorage>(
        &mut self,
        now_ms: u64,
        store: &mut MessageStore<S>,
    ) -> Option<Result<CleanReport, StoreError>> {
        if now_ms < self.next_clean_ms {
            return None;
        }
        self.next_clean_ms = now_ms.saturating_add(self.config.clean_resource_interval_ms.max(1));
        Some(self.clean(now_ms, store))
    }

    /// One cleaning run (RocketMQ's `deleteExpiredFiles`).
    pub fn clean<S: SegmentStorage>(
        &mut self,
        now_ms: u64,
        store: &mut MessageStore<S>,
    ) -> Result<CleanReport, StoreError> {
        let mut report = CleanReport::default();
        let ratio = self.usage.map(|u| u.used_ratio());
        let space_to_delete = ratio.is_some_and(|r| r > self.config.disk_max_used_space_ratio);
        if !self.is_time_to_delete(now_ms) && !space_to_delete {
            return Ok(report);
        }
        while report.deleted.len() < self.config.delete_file_batch_max {
            let Some((start, _)) = store.commitlog_segments().first().copied() else {
                break;
            };
            if store.current_commitlog_segment() == Some(start) {
                break;
            }
            let last_ms = match self.segment_times.get(&start) {
                Some(t) => *t,
                None => {
                    let t = store.segment_last_store_timestamp_ms(start)?;
                    self.segment_times.insert(start, t);
                    t
                }
            };
            // A closed segment with no record holds nothing to keep.
            let expired = last_ms.is_none_or(|t| {
                (now_ms as i64) >= t.saturating_add(self.config.file_reserved_time_ms as i64)
            });
            let forced = self.config.clean_file_forcibly_enable
                && self
                    .usage
                    .is_some_and(|u| u.used_ratio() > self.config.disk_space_clean_forcibly_ratio);
            let reason = if expired {
                CleanReason::Expired
            } else if forced {
                CleanReason::Forced
            } else {
                break;
            };
            let Some(deleted) = store.delete_oldest_commitlog_segment()? else {
                break;
            };
            self.segment_times.remove(&start);
            if let Some(usage) = &mut self.usage {
                usage.available_bytes = usage
                    .available_bytes
                    .saturating_add(deleted.len_bytes)
                    .min(usage.total_bytes);
            }
            report.deleted.push((deleted, reason));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;

    use super::*;
    use crate::message::{MessageRecord, Properties};
    use crate::store::{GetStatus, MemStorage, QueueOffset, StoreConfig};

    /// 2024-06-10 00:00:00 UTC.
    const MIDNIGHT_UTC_MS: u64 = 1_717_977_600_000;

    fn record(topic: &str, queue_id: i32, body: &str, store_ms: u64) -> MessageRecord {
        let host: SocketAddr = "127.0.0.1:10911".parse().expect("address");
        MessageRecord {
            queue_id,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp_ms: store_ms as i64,
            born_host: host,
            store_timestamp_ms: store_ms as i64,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::copy_from_slice(body.as_bytes()),
            topic: topic.to_owned(),
            properties: Properties::new(),
        }
    }

    fn config() -> StoreConfig {
        StoreConfig {
            commitlog_segment_bytes: 1024,
            consume_queue_units_per_segment: 4,
            // Small enough for MemStorage, which allocates whole index files.
            index: crate::store::index::IndexConfig {
                enabled: true,
                hash_slot_count: 64,
                max_index_count: 512,
            },
            ..StoreConfig::default()
        }
    }

    /// Puts `n` messages of ~130 bytes on TopicA/0, one store millisecond apart from `t0`, and
    /// makes them durable.
    fn fill(store: &mut MessageStore<MemStorage>, n: usize, t0: u64) {
        for i in 0..n {
            store
                .put(record("TopicA", 0, &format!("body-{i:04}"), t0 + i as u64))
                .expect("put");
        }
        store.sync_inline().expect("sync");
    }

    fn retention(reserved_ms: u64, hours: &[u8]) -> Retention {
        let config = RetentionConfig {
            file_reserved_time_ms: reserved_ms,
            delete_when_hours: hours.to_vec(),
            ..RetentionConfig::default()
        };
        Retention::new(config, 0)
    }

    #[test]
    fn delete_when_parses_and_matches_the_local_hour() {
        assert_eq!(parse_delete_when("04"), Ok(vec![4]));
        assert_eq!(parse_delete_when("13;01; 01;"), Ok(vec![1, 13]));
        assert!(parse_delete_when("24").is_err());
        assert!(parse_delete_when("4am").is_err());
        assert_eq!(local_hour(MIDNIGHT_UTC_MS + 4 * HOUR_MS, 0), 4);
        // UTC+8: 20:00 UTC is 04:00 the next day.
        assert_eq!(
            local_hour(MIDNIGHT_UTC_MS + 20 * HOUR_MS, 8 * HOUR_MS as i64),
            4
        );
        // UTC-5: 02:00 UTC is 21:00 the day before.
        assert_eq!(
            local_hour(MIDNIGHT_UTC_MS + 2 * HOUR_MS, -5 * HOUR_MS as i64),
            21
        );
        let r = retention(HOUR_MS, &[4]);
        assert!(r.is_time_to_delete(MIDNIGHT_UTC_MS + 4 * HOUR_MS + 59 * 60_000));
        assert!(!r.is_time_to_delete(MIDNIGHT_UTC_MS + 5 * HOUR_MS));
    }

    #[test]
    fn expired_segments_go_at_delete_when_and_queues_follow() {
        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        let t0 = MIDNIGHT_UTC_MS + 3 * HOUR_MS;
        fill(&mut store, 40, t0);
        let segments = store.commitlog_segments();
        assert!(segments.len() >= 4, "{segments:?}");
        let mut r = retention(HOUR_MS, &[4]);

        // 04:00 is deleteWhen, but no segment is an hour old yet.
        let report = r.clean(t0 + HOUR_MS, &mut store).expect("clean");
        assert!(report.deleted.is_empty());

        // 05:00: old enough, but not deleteWhen and the disk is not full.
        assert!(r
            .clean(MIDNIGHT_UTC_MS + 5 * HOUR_MS, &mut store)
            .expect("clean")
            .deleted
            .is_empty());

        // 04:30 the next day: every closed segment expired, the current one stays.
        let report = r
            .clean(MIDNIGHT_UTC_MS + 28 * HOUR_MS + 30 * 60_000, &mut store)
            .expect("clean");
        assert_eq!(report.deleted.len(), segments.len() - 1);
        assert!(report
            .deleted
            .iter()
            .all(|(_, reason)| *reason == CleanReason::Expired));
        let current = store.current_commitlog_segment().expect("current");
        assert_eq!(store.commitlog_segments(), vec![*segments.last().unwrap()]);
        assert_eq!(store.min_commitlog_offset().0, current);

        // The queue's min offset is its first unit in the remaining segment.
        let min = store.min_offset("TopicA", 0);
        assert!(min.0 > 0 && min.0 < 40, "{min:?}");
        let got = store
            .get("TopicA", 0, QueueOffset(0), 32, &|_| true)
            .expect("get");
        assert_eq!(got.status, GetStatus::OffsetTooSmall);
        assert_eq!(got.next_begin_offset, min);
        let got = store.get("TopicA", 0, min, 64, &|_| true).expect("get");
        assert_eq!(got.status, GetStatus::Found);
        assert_eq!(got.records.len() as u64, 40 - min.0);
        let first = MessageRecord::decode(&got.records[0], true).expect("decode");
        assert!(first.physical_offset as u64 >= current);
        assert_eq!(first.body, format!("body-{:04}", min.0).as_bytes());

        // ConsumeQueue files wholly below the new min are gone.
        let cq_files: Vec<String> = store
            .storage()
            .paths()
            .into_iter()
            .filter(|p| p.starts_with("consumequeue/TopicA/0/"))
            .collect();
        assert_eq!(
            cq_files.len() as u64,
            39 / 4 - min.0 / 4 + 1,
            "{cq_files:?}"
        );

        // A reopen starts from the first remaining segment with the same offsets.
        let mut store = MessageStore::open(store.into_storage(), config()).expect("reopen");
        assert_eq!(store.min_offset("TopicA", 0), min);
        assert_eq!(store.correct_min_offsets(), Ok(0));
        assert_eq!(store.min_offset("TopicA", 0), min);
        assert_eq!(store.max_offset("TopicA", 0), QueueOffset(40));
        assert_eq!(store.min_commitlog_offset().0, current);
    }

    #[test]
    fn unexpired_segments_stay_and_deletion_stops_at_the_first_one() {
        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        let t0 = MIDNIGHT_UTC_MS;
        fill(&mut store, 10, t0);
        // Later messages are an hour younger.
        fill(&mut store, 30, t0 + HOUR_MS);
        let before = store.commitlog_segments();
        let mut r = retention(HOUR_MS, &(0..24).collect::<Vec<_>>());
        let report = r.clean(t0 + HOUR_MS + 100, &mut store).expect("clean");
        // Only the segments whose last record is from the first batch expired.
        assert!(!report.deleted.is_empty());
        for (deleted, _) in &report.deleted {
            let last = store.segment_last_store_timestamp_ms(deleted.start.0);
            assert_eq!(last, Ok(None), "deleted segments are gone");
        }
        let kept = store.commitlog_segments();
        assert!(kept.len() > 1 && kept.len() < before.len(), "{kept:?}");
        let oldest_kept = store
            .segment_last_store_timestamp_ms(kept[0].0)
            .expect("read")
            .expect("has records");
        assert!(oldest_kept >= (t0 + HOUR_MS) as i64);
    }

    #[test]
    fn a_fuller_disk_cleans_early_then_forcibly() {
        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        let t0 = MIDNIGHT_UTC_MS + 10 * HOUR_MS;
        fill(&mut store, 40, t0);
        let n = store.commitlog_segments().len();
        // deleteWhen never matches, nothing has expired yet.
        let mut r = retention(72 * HOUR_MS, &[]);
        let now = t0 + 1000;
        r.handle_disk_usage(DiskUsage {
            total_bytes: 100_000,
            available_bytes: 20_000,
        });
        // 80 %: above diskMaxUsedSpaceRatio, but nothing expired and not forced yet.
        assert!(r.clean(now, &mut store).expect("clean").deleted.is_empty());
        assert!(!r.is_disk_full());

        // Expired segments do go at 80 % without waiting for deleteWhen.
        let report = r.clean(now + 72 * HOUR_MS, &mut store).expect("clean");
        assert_eq!(report.deleted.len(), n - 1);

        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        fill(&mut store, 40, t0);
        // 91 %: disk full, sends refused; force-delete until under 85 % (1024 bytes a segment).
        r.handle_disk_usage(DiskUsage {
            total_bytes: 20_000,
            available_bytes: 1_800,
        });
        assert!(r.is_disk_full());
        let report = r.clean(now, &mut store).expect("clean");
        assert_eq!(report.deleted.len(), 2, "{report:?}");
        assert!(report
            .deleted
            .iter()
            .all(|(_, reason)| *reason == CleanReason::Forced));
        assert!(r.disk_usage().expect("usage").used_ratio() <= 0.85);
        assert!(!r.is_disk_full());
        // The driver's next report decides.
        r.handle_disk_usage(DiskUsage {
            total_bytes: 20_000,
            available_bytes: 10_000,
        });
        assert!(r.clean(now, &mut store).expect("clean").deleted.is_empty());
    }

    #[test]
    fn the_current_segment_is_never_deleted() {
        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        fill(&mut store, 3, MIDNIGHT_UTC_MS);
        assert_eq!(store.commitlog_segments().len(), 1);
        let mut r = retention(0, &(0..24).collect::<Vec<_>>());
        r.handle_disk_usage(DiskUsage {
            total_bytes: 100,
            available_bytes: 0,
        });
        let report = r
            .clean(MIDNIGHT_UTC_MS + 100 * HOUR_MS, &mut store)
            .expect("clean");
        assert!(report.deleted.is_empty());
        assert_eq!(store.max_offset("TopicA", 0), QueueOffset(3));
        assert_eq!(store.min_offset("TopicA", 0), QueueOffset(0));
        assert!(store
            .delete_oldest_commitlog_segment()
            .expect("ok")
            .is_none());
    }

    #[test]
    fn segments_not_yet_durable_are_kept() {
        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        for i in 0..40 {
            store
                .put(record(
                    "TopicA",
                    0,
                    &format!("body-{i:04}"),
                    MIDNIGHT_UTC_MS,
                ))
                .expect("put");
        }
        let mut r = retention(0, &(0..24).collect::<Vec<_>>());
        let now = MIDNIGHT_UTC_MS + HOUR_MS;
        assert!(r.clean(now, &mut store).expect("clean").deleted.is_empty());
        store.sync_inline().expect("sync");
        assert!(!r.clean(now, &mut store).expect("clean").deleted.is_empty());
    }

    #[test]
    fn runs_happen_every_interval() {
        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        let mut r = Retention::new(RetentionConfig::default(), 1_000);
        assert!(r.handle_timeout(1_000, &mut store).is_none());
        assert_eq!(r.next_clean_ms(), 11_000);
        assert!(r.handle_timeout(11_000, &mut store).is_some());
        assert_eq!(r.next_clean_ms(), 21_000);
    }

    #[test]
    fn a_failed_segment_delete_keeps_everything_readable() {
        let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
        fill(&mut store, 40, MIDNIGHT_UTC_MS);
        let before = store.commitlog_segments();
        store.storage_mut().set_fault(
            crate::store::segment::FaultOp::Delete,
            Some(crate::store::StorageError::Io("EIO".into())),
        );
        let mut r = retention(0, &(0..24).collect::<Vec<_>>());
        assert!(r.clean(MIDNIGHT_UTC_MS + HOUR_MS, &mut store).is_err());
        assert_eq!(store.commitlog_segments(), before);
        assert_eq!(store.min_offset("TopicA", 0), QueueOffset(0));
        let got = store
            .get("TopicA", 0, QueueOffset(0), 64, &|_| true)
            .expect("get");
        assert_eq!(got.records.len(), 40);
        store
            .storage_mut()
            .set_fault(crate::store::segment::FaultOp::Delete, None);
        let report = r
            .clean(MIDNIGHT_UTC_MS + HOUR_MS, &mut store)
            .expect("clean");
        assert_eq!(report.deleted.len(), before.len() - 1);
    }

    #[test]
    fn the_used_ratio_rounds_up_to_a_percent_as_rocketmq_reports_it() {
        let ratio = |total_bytes, available_bytes| {
            DiskUsage {
                total_bytes,
                available_bytes,
            }
            .used_ratio()
        };
        assert_eq!(ratio(10_000, 5_000), 0.5);
        // 74.01 % is 75 %: a 75 % threshold trips, as on RocketMQ's broker.
        assert_eq!(ratio(10_000, 2_599), 0.75);
        assert_eq!(ratio(10_000, 10_000), 0.0);
        assert_eq!(ratio(0, 0), 0.0);
    }
}
