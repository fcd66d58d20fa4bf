//! When the broker asks its driver to make the CommitLog durable (ASYNC_FLUSH), and when it takes
//! a checkpoint.
//!
//! RocketMQ's `FlushRealTimeService`, decided here with `now_ms` in and executed by the driver:
//!
//! * every `flushIntervalCommitLog` (500 ms) a tick looks at the un-synced bytes and flushes when
//!   they span at least `flushCommitLogLeastPages` (4) OS pages of 4 KiB, or when the write
//!   position has left the segment the durable position is in (a full segment is flushed
//!   whatever its size);
//! * when `flushCommitLogThoroughInterval` (10 s) has passed since the last thorough tick, a tick
//!   flushes whatever there is, even below the least pages;
//! * `flushCommitLogTimed=true` (RocketMQ 5's default): the flusher sleeps the whole interval, so
//!   only ticks flush. `false`: every put wakes it (RocketMQ's `waitForRunning`), so a put that
//!   brings the un-synced bytes to the least pages flushes at once.
//!
//! Under SYNC_FLUSH sends that wait are flushed by group commit as they arrive; a tick flushes
//! whatever else was written (least pages 0).
//!
//! Checkpoints: every `flushIntervalConsumeQueue` (1 s, the period of RocketMQ's ConsumeQueue
//! flush, which writes its checkpoint) the broker takes one if anything changed. It is a stream
//! of its own, beside the CommitLog's syncs:
//!
//! ```text
//!  puts ──▶ Sync (CommitLog tail) ──▶ handle_synced ──▶ durable D, waiting sends answered
//!                                                        │ (read when the checkpoint is taken)
//!  tick ──▶ Checkpoint (ConsumeQueue + index ranges, ◀───┘
//!           claims the CommitLog up to D) ──▶ sync, write file ──▶ handle_checkpoint_written
//! ```
//!
//! The tick also flushes the CommitLog tail; when a Sync is in flight then, the checkpoint is
//! taken as it completes, so it claims what that Sync made durable.
//!
//! A checkpoint claims only CommitLog bytes some Sync already made durable, so it syncs none of
//! them and never waits for, or holds up, a group commit; a driver runs the two on separate
//! threads. (Before, one Sync covered both, and every second a group commit waited behind the
//! ConsumeQueues' and the key index's syncs.)

use super::{Broker, BrokerOutput, CheckpointFailure, FlushDiskType};
use crate::store::{CheckpointRequest, SegmentStorage};

/// RocketMQ's `OS_PAGE_SIZE`: what `flushCommitLogLeastPages` counts.
pub const OS_PAGE_BYTES: u64 = 4096;

/// The ASYNC_FLUSH knobs (broker.conf keys in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushConfig {
    /// Tick period (`flushIntervalCommitLog`, 500 ms).
    pub interval_ms: u64,
    /// Pages of un-synced bytes a tick needs before flushing (`flushCommitLogLeastPages`, 4).
    pub least_pages: u64,
    /// A tick at least this long after the last thorough one flushes anything
    /// (`flushCommitLogThoroughInterval`, 10 s).
    pub thorough_interval_ms: u64,
    /// Only ticks flush (`flushCommitLogTimed`, true); false: a put reaching the least pages
    /// flushes at once.
    pub timed: bool,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            interval_ms: 500,
            least_pages: 4,
            thorough_interval_ms: 10_000,
            timed: true,
        }
    }
}

/// Whether `[durable, written)` is worth a flush with `least_pages`.
pub fn enough_to_flush(durable: u64, written: u64, least_pages: u64, segment_bytes: u64) -> bool {
    if written <= durable {
        return false;
    }
    if least_pages == 0 {
        return true;
    }
    let segment_bytes = segment_bytes.max(1);
    if written / segment_bytes != durable / segment_bytes {
        return true;
    }
    written / OS_PAGE_BYTES - durable / OS_PAGE_BYTES >= least_pages
}

/// The flush timer state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    config: FlushConfig,
    next_tick_ms: u64,
    last_thorough_ms: u64,
}

impl FlushPolicy {
    pub fn new(config: FlushConfig, now_ms: u64) -> Self {
        Self {
            config,
            next_tick_ms: now_ms + config.interval_ms.max(1),
            last_thorough_ms: now_ms,
        }
    }

    /// A tick at `now_ms` (due or not): whether to flush `[durable, written)` now.
    pub fn on_tick(
        &mut self,
        now_ms: u64,
        durable: u64,
        written: u64,
        segment_bytes: u64,
        sync_flush: bool,
    ) -> bool {
        if now_ms < self.next_tick_ms {
            return false;
        }
        self.next_tick_ms = now_ms + self.config.interval_ms.max(1);
        let mut least = self.config.least_pages;
        if sync_flush {
            least = 0;
        }
        if now_ms >= self.last_thorough_ms + self.config.thorough_interval_ms {
            self.last_thorough_ms = now_ms;
            least = 0;
        }
        enough_to_flush(durable, written, least, segment_bytes)
    }

    /// After a put: whether it wakes the flusher into flushing now (untimed mode only).
    pub fn on_put(&self, durable: u64, written: u64, segment_bytes: u64) -> bool {
        !self.config.timed
            && enough_to_flush(durable, written, self.config.least_pages, segment_bytes)
    }

    /// When the next tick that would flush `[durable, written)` is due; `None` when nothing is
    /// un-synced. Below the least pages only the thorough tick can flush (more bytes come with
    /// puts, after which the driver asks again).
    pub fn deadline_ms(
        &self,
        durable: u64,
        written: u64,
        segment_bytes: u64,
        sync_flush: bool,
    ) -> Option<u64> {
        if written <= durable {
            return None;
        }
        let least = if sync_flush {
            0
        } else {
            self.config.least_pages
        };
        if enough_to_flush(durable, written, least, segment_bytes) {
            return Some(self.next_tick_ms);
        }
        Some(
            self.next_tick_ms
                .max(self.last_thorough_ms + self.config.thorough_interval_ms),
        )
    }
}

impl<S: SegmentStorage> Broker<S> {
    fn sync_flush(&self) -> bool {
        self.config.flush_disk_type == FlushDiskType::SyncFlush
    }

    /// The flush and checkpoint timers at `now_ms`.
    pub(super) fn flush_tick(&mut self, now_ms: u64) {
        let (durable, written) = (self.store.durable_offset().0, self.store.written_offset().0);
        let segment_bytes = self.config.store.commitlog_segment_bytes;
        let sync_flush = self.sync_flush();
        if self
            .flush_policy
            .on_tick(now_ms, durable, written, segment_bytes, sync_flush)
        {
            self.request_sync_if_idle();
        }
        if now_ms >= self.next_checkpoint_ms {
            // Vostok's bound on an ASYNC_FLUSH tail: the checkpoint period flushes the CommitLog
            // too (as a Sync of its own), so a quiet broker's writes are durable within it,
            // not only at the thorough interval.
            self.request_sync_if_idle();
            if self.sync_in_flight {
                // The checkpoint follows that Sync's completion, so it claims what it made
                // durable (one sync later, not one period later); it never waits in front of it.
                self.next_checkpoint_ms = now_ms + self.config.checkpoint_interval_ms.max(1);
                self.checkpoint_after_sync = true;
            } else {
                self.request_checkpoint_if_idle(now_ms);
            }
        }
    }

    /// A Sync completed: the checkpoint that waited for it is taken now.
    pub(super) fn checkpoint_after_synced(&mut self) {
        if std::mem::take(&mut self.checkpoint_after_sync) {
            self.take_checkpoint();
        }
    }

    /// After an ASYNC_FLUSH put: an untimed flusher is woken by it.
    pub(super) fn after_async_put(&mut self) {
        let (durable, written) = (self.store.durable_offset().0, self.store.written_offset().0);
        if self
            .flush_policy
            .on_put(durable, written, self.config.store.commitlog_segment_bytes)
        {
            self.request_sync_if_idle();
        }
    }

    /// Takes a checkpoint unless one is in flight (the next period takes it then). Nothing
    /// changed: nothing to do until the next period.
    pub(super) fn request_checkpoint_if_idle(&mut self, now_ms: u64) {
        if self.checkpoint_in_flight || self.durability_failure.is_some() || self.shut_down {
            return;
        }
        self.next_checkpoint_ms = now_ms + self.config.checkpoint_interval_ms.max(1);
        self.take_checkpoint();
    }

    /// Emits a checkpoint if anything changed, unless one is in flight (the next period takes
    /// it then).
    fn take_checkpoint(&mut self) {
        if self.checkpoint_in_flight || self.durability_failure.is_some() || self.shut_down {
            return;
        }
        if !self.store.background_checkpoint_due() {
            return;
        }
        self.checkpoint_in_flight = true;
        self.outputs.push_back(BrokerOutput::Checkpoint(
            self.store.background_checkpoint_request(),
        ));
    }

    /// Does what a driver does with a `Sync` output, through the store's own storage (for
    /// drivers whose storage syncs inline: tests, the playground, benchmarks).
    pub fn sync_inline(&mut self, now_ms: u64, request: &crate::store::SyncRequest) {
        let storage = self.store.storage_mut();
        for range in &request.ranges {
            if let Err(e) = storage.sync(&range.path, range.start, range.end) {
                let reason = format!("{}: {e}", range.path);
                return self.handle_sync_failed(now_ms, &reason);
            }
        }
        self.handle_synced(now_ms, request.up_to);
    }

    /// Does what a driver does with a `Checkpoint` output, through the store's own storage (for
    /// drivers whose storage syncs inline: tests, the playground, the fuzzer).
    pub fn write_checkpoint_inline(&mut self, now_ms: u64, request: &CheckpointRequest) {
        let storage = self.store.storage_mut();
        for range in &request.sync.ranges {
            if let Err(e) = storage.sync(&range.path, range.start, range.end) {
                let reason = format!("{}: {e}", range.path);
                return self.handle_checkpoint_failed(now_ms, CheckpointFailure::Sync(reason));
            }
        }
        match storage.replace(request.file_path(), &request.file_contents()) {
            Ok(()) => self.handle_checkpoint_written(now_ms, request),
            Err(e) => {
                let reason = format!("{}: {e}", request.file_path());
                self.handle_checkpoint_failed(now_ms, CheckpointFailure::WriteFile(reason));
            }
        }
    }

    /// When `handle_timeout` must next run for flushing or checkpointing.
    pub(super) fn flush_deadline_ms(&self) -> Option<u64> {
        let (durable, written) = (self.store.durable_offset().0, self.store.written_offset().0);
        let mut next = self.flush_policy.deadline_ms(
            durable,
            written,
            self.config.store.commitlog_segment_bytes,
            self.sync_flush(),
        );
        // While a checkpoint is in flight the next period takes the next one.
        if !self.checkpoint_in_flight
            && self.durability_failure.is_none()
            && self.store.background_checkpoint_due()
        {
            next = Some(next.map_or(self.next_checkpoint_ms, |n| n.min(self.next_checkpoint_ms)));
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 1 << 30;

    #[test]
    fn least_pages_count_whole_pages_and_full_segments() {
        assert!(!enough_to_flush(0, 0, 4, SEG));
        assert!(!enough_to_flush(0, 4 * 4096 - 1, 4, SEG));
        assert!(enough_to_flush(0, 4 * 4096, 4, SEG));
        // Pages are counted on page numbers, as RocketMQ does.
        assert!(enough_to_flush(4095, 3 * 4096, 3, SEG));
        assert!(enough_to_flush(10, 11, 0, SEG));
        // A rolled segment is flushed whatever its size.
        assert!(enough_to_flush(SEG - 100, SEG + 10, 4, SEG));
    }

    #[test]
    fn ticks_flush_at_least_pages_or_at_the_thorough_interval() {
        let config = FlushConfig::default();
        let mut p = FlushPolicy::new(config, 0);
        let small = 1000;
        // Not a tick yet.
        assert!(!p.on_tick(100, 0, 100_000, SEG, false));
        // A tick below the least pages does nothing until 10 s have passed.
        assert!(!p.on_tick(500, 0, small, SEG, false));
        assert_eq!(p.deadline_ms(0, small, SEG, false), Some(10_000));
        let mut t = 1000;
        while t < 10_000 {
            assert!(!p.on_tick(t, 0, small, SEG, false), "{t}");
            t += 500;
        }
        assert!(p.on_tick(10_000, 0, small, SEG, false));
        // The thorough clock restarted.
        assert!(!p.on_tick(10_500, 0, small, SEG, false));
        // Enough pages: the next tick flushes.
        assert_eq!(p.deadline_ms(0, 5 * 4096, SEG, false), Some(11_000));
        assert!(p.on_tick(11_000, 0, 5 * 4096, SEG, false));
        // Nothing written: no deadline.
        assert_eq!(p.deadline_ms(50, 50, SEG, false), None);
        // SYNC_FLUSH ticks flush anything.
        assert!(p.on_tick(11_500, 0, 1, SEG, true));
    }

    #[test]
    fn untimed_flushes_on_the_put_that_reaches_the_least_pages() {
        let timed = FlushPolicy::new(FlushConfig::default(), 0);
        assert!(!timed.on_put(0, 5 * 4096, SEG));
        let untimed = FlushPolicy::new(
            FlushConfig {
                timed: false,
                ..FlushConfig::default()
            },
            0,
        );
        assert!(!untimed.on_put(0, 3 * 4096, SEG));
        assert!(untimed.on_put(0, 4 * 4096, SEG));
    }
}
