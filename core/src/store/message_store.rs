//! The message store: CommitLog + ConsumeQueues behind one API the broker uses.

use bytes::Bytes;

use super::segment::{SegmentStorage, StorageError};
use super::{CommitLogOffset, QueueOffset, SyncRequest};
use crate::message::MessageRecord;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Size of one CommitLog segment file (`mappedFileSizeCommitLog`, 1 GiB in RocketMQ).
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

pub struct MessageStore<S: SegmentStorage> {
    storage: S,
    config: StoreConfig,
}

impl<S: SegmentStorage> MessageStore<S> {
    /// Opens (and recovers) the store over `storage`.
    pub fn open(storage: S, config: StoreConfig) -> Result<Self, StoreError> {
        let _ = (&storage, &config);
        todo!()
    }

    /// Appends one record to the CommitLog and dispatches it to its ConsumeQueue. The store fills
    /// `physical_offset` and `queue_offset`; everything else comes from the caller.
    pub fn put(&mut self, record: MessageRecord) -> Result<PutResult, StoreError> {
        let _ = record;
        todo!()
    }

    /// Appends a batch contiguously (one segment), queue offsets consecutive.
    pub fn put_batch(&mut self, records: Vec<MessageRecord>) -> Result<Vec<PutResult>, StoreError> {
        let _ = records;
        todo!()
    }

    /// Up to `max_count` records from `offset` whose tags code passes `filter`.
    pub fn get(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_count: u32,
        filter: &dyn Fn(i64) -> bool,
    ) -> Result<GetResult, StoreError> {
        let _ = (topic, queue_id, offset, max_count, filter);
        todo!()
    }

    /// The next offset to be written in a queue (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> QueueOffset {
        let _ = (topic, queue_id);
        todo!()
    }

    pub fn min_offset(&self, topic: &str, queue_id: i32) -> QueueOffset {
        let _ = (topic, queue_id);
        todo!()
    }

    /// The first offset whose message was stored at or after `timestamp_ms` (RocketMQ's search
    /// semantics).
    pub fn offset_by_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
    ) -> QueueOffset {
        let _ = (topic, queue_id, timestamp_ms);
        todo!()
    }

    pub fn earliest_store_time_ms(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let _ = (topic, queue_id);
        todo!()
    }

    /// The record at a CommitLog offset (VIEW_MESSAGE_BY_ID, send-back).
    pub fn read_record(&self, offset: CommitLogOffset) -> Result<Option<Bytes>, StoreError> {
        let _ = offset;
        todo!()
    }

    /// The end of written CommitLog bytes.
    pub fn written_offset(&self) -> CommitLogOffset {
        todo!()
    }

    /// The CommitLog is durable up to here.
    pub fn durable_offset(&self) -> CommitLogOffset {
        todo!()
    }

    /// What to make durable to cover everything written so far; `None` when already durable.
    pub fn sync_request(&self) -> Option<SyncRequest> {
        todo!()
    }

    /// The driver made a [`SyncRequest`] durable.
    pub fn handle_synced(&mut self, up_to: CommitLogOffset) {
        let _ = up_to;
        todo!()
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
}
