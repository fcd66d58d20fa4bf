//! Retention runs, the driver's disk-usage feed, and how a full or failing disk answers sends.
//!
//! The driver measures the file system holding the store (statvfs) every few seconds and calls
//! [`Broker::handle_disk_usage`]. Above `diskSpaceWarningLevelRatio` sends are refused with
//! SERVICE_NOT_AVAILABLE (14) and RocketMQ's remark; the first report at or under it lets them
//! through again. Independently of the ratio, a segment file that cannot be created for lack of
//! space fails just that send the same way, and the next send tries again: service resumes by
//! itself as soon as space is back.
//!
//! Response codes (RocketMQ's `SendMessageProcessor` for each `PutMessageStatus`):
//!
//! | cause | code | remark |
//! |---|---|---|
//! | disk above the warning ratio, or no space for a new segment | 14 SERVICE_NOT_AVAILABLE | "service not available now. It may be caused by one of the following reasons: the broker's disk is full [CL: r CQ: r INDEX: r], …" |
//! | any other storage error (EIO) | 1 SYSTEM_ERROR | "create mapped file failed, server is busy or broken." + the error |
//!
//! A failed put leaves the store as it was (the CommitLog write position and every touched
//! ConsumeQueue are rolled back), so nothing already stored is affected.

use super::Broker;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::store::retention::{CleanReport, DiskUsage};
use crate::store::{SegmentStorage, StorageError, StoreError};

impl<S: SegmentStorage> Broker<S> {
    /// The driver measured the disk holding the store.
    pub fn handle_disk_usage(&mut self, now_ms: u64, usage: DiskUsage) {
        let _ = now_ms;
        self.retention.handle_disk_usage(usage);
    }

    /// The driver's local time offset from UTC, for `deleteWhen` (set again when it changes).
    pub fn set_local_utc_offset_ms(&mut self, offset_ms: i64) {
        self.retention.set_local_utc_offset_ms(offset_ms);
    }

    /// The latest disk usage, less what retention deleted since.
    pub fn disk_usage(&self) -> Option<DiskUsage> {
        self.retention.disk_usage()
    }

    /// Sends are refused because the disk is above `diskSpaceWarningLevelRatio`.
    pub fn is_disk_full(&self) -> bool {
        self.retention.is_disk_full()
    }

    /// What the last cleaning run deleted, or why it failed; `None` when no run happened since
    /// the last call.
    pub fn take_last_clean(&mut self) -> Option<Result<CleanReport, StoreError>> {
        self.last_clean.take()
    }

    /// Runs retention when due (from `handle_timeout`).
    pub(super) fn run_retention(&mut self, now_ms: u64) {
        if let Some(result) = self.retention.handle_timeout(now_ms, &mut self.store) {
            self.last_clean = Some(result);
        }
    }

    /// When retention next needs a `handle_timeout`: only while there is a segment it could
    /// delete or the disk is under pressure, so an idle broker is not woken for nothing.
    pub(super) fn retention_deadline(&self) -> Option<u64> {
        let deletable = self.store.commitlog_segments().len() > 1;
        deletable.then(|| self.retention.next_clean_ms())
    }

    /// RocketMQ's "disk is full" remark with the latest used ratio.
    pub(super) fn disk_full_remark(&self) -> String {
        let ratio = self.retention.used_ratio_or_unknown();
        format!(
            "service not available now. It may be caused by one of the following reasons: \
             the broker's disk is full [CL: {ratio:5.2} CQ: {ratio:5.2} INDEX: {ratio:5.2}], \
             messages are put to the slave, message store has been shut down, etc."
        )
    }

    /// SERVICE_NOT_AVAILABLE when the disk is above the warning ratio (checked right before a
    /// put, after the request itself was validated, as RocketMQ's `checkStoreStatus`).
    pub(super) fn disk_full_response(&self, req: &RemotingCommand) -> Option<RemotingCommand> {
        self.is_disk_full().then(|| {
            RemotingCommand::response_to(
                req,
                response::SERVICE_NOT_AVAILABLE,
                Some(self.disk_full_remark()),
            )
        })
    }

    /// The answer to a put the store refused.
    pub(super) fn store_error_response(
        &self,
        req: &RemotingCommand,
        err: &StoreError,
    ) -> RemotingCommand {
        let (code, remark) = match err {
            StoreError::MessageTooLarge { .. } | StoreError::Record(_) => (
                response::MESSAGE_ILLEGAL,
                format!("storing the message failed: {err}"),
            ),
            StoreError::Storage(StorageError::NoSpace) | StoreError::ReplicaReadOnly => {
                (response::SERVICE_NOT_AVAILABLE, self.disk_full_remark())
            }
            StoreError::Storage(_) => (
                response::SYSTEM_ERROR,
                format!("create mapped file failed, server is busy or broken. ({err})"),
            ),
            _ => (
                response::SYSTEM_ERROR,
                format!("storing the message failed: {err}"),
            ),
        };
        RemotingCommand::response_to(req, code, Some(remark))
    }
}
