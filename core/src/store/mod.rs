//! The storage engine: CommitLog, ConsumeQueues and small config files over one narrow seam,
//! the [`SegmentStorage`] trait.
//!
//! Offsets are typed so they cannot be confused: a [`CommitLogOffset`] is a byte offset in the
//! global CommitLog, a [`QueueOffset`] is a logical index in one ConsumeQueue.

pub mod checkpoint;
pub mod commitlog;
pub mod consume_queue;
pub mod index;
pub mod message_store;
pub mod retention;
pub mod segment;

#[cfg(test)]
mod record_crc_tests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;

pub use checkpoint::Checkpoint;
pub use commitlog::CorruptionPolicy;
pub use message_store::{
    CheckpointRequest, GetResult, GetStatus, MessageStore, PutResult, RecoveryEntry, RecoveryLevel,
    RecoveryMode, RecoveryReport, StoreConfig, StoreError,
};
pub use segment::{MemStorage, PowerLoss, SegmentStorage, StorageError};

/// A byte offset in the global CommitLog (segment start offset + position in the segment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitLogOffset(pub u64);

/// A logical offset in one ConsumeQueue: the index of a message in its queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueOffset(pub u64);

/// A range of one file the store needs made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRange {
    pub path: String,
    pub start: u64,
    pub end: u64,
}

/// What the store asks a driver to make durable. Once every range is synced the driver reports
/// `up_to` back (`MessageStore::handle_synced`), which may release waiting SYNC_FLUSH sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    pub ranges: Vec<FileRange>,
    /// The CommitLog is durable up to here once every range is.
    pub up_to: CommitLogOffset,
}
