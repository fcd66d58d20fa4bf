//! The store checkpoint and the abort marker.
//!
//! # Checkpoint (`<store root>/checkpoint`)
//!
//! The checkpoint says how far the store's files are known to be durable, so recovery after a
//! crash scans only what lies after it. The first 24 bytes mirror RocketMQ's `StoreCheckpoint`
//! (physic / logics / index message timestamps, big-endian); the rest is what recovery needs:
//!
//! ```text
//!  offset  size  field                         meaning
//!  ------  ----  ----------------------------  ---------------------------------------------
//!       0     8  physicMsgTimestamp   i64      store time of the last durable CommitLog record
//!       8     8  logicsMsgTimestamp   i64      store time of the last record whose ConsumeQueue
//!                                              unit is durable
//!      16     8  indexMsgTimestamp    i64      same for the key index (0 while it has none)
//!      24     4  MAGIC                u32      0x56434B50 ("VCKP")
//!      28     4  VERSION              u32      1
//!      32     8  commitlog durable    u64      every CommitLog byte before it is durable
//!      40     8  consume queue durable u64     every ConsumeQueue unit of a record before this
//!                                              CommitLog offset is durable
//!      48     8  index durable        u64      same for the key index (0 while it has none)
//!      56     4  CRC                  u32      CRC-32 (IEEE) of bytes [0, 56)
//!  ------  ----
//!      60        total
//! ```
//!
//! The driver writes it only after the data it names is durable: the store's
//! [`checkpoint_request`](super::MessageStore::checkpoint_request) names the CommitLog and
//! ConsumeQueue ranges to sync, and
//! [`handle_checkpoint_synced`](super::MessageStore::handle_checkpoint_synced) then replaces the
//! file atomically and durably ([`SegmentStorage::replace`](super::SegmentStorage::replace)).
//! A checkpoint that is short, has another magic or version, or fails its CRC is ignored and
//! recovery scans the whole CommitLog.
//!
//! # Abort marker (`<store root>/abort`)
//!
//! Created (empty, durably) when the store opens and deleted by a clean close after the final
//! checkpoint. Found at open, it means the previous run did not close cleanly: recovery scans
//! from the checkpoint instead of re-checking only the last segment.

/// Path of the checkpoint file (RocketMQ's name).
pub const CHECKPOINT_PATH: &str = "checkpoint";

/// Path of the abort marker (RocketMQ's name).
pub const ABORT_MARKER_PATH: &str = "abort";

/// "VCKP".
pub const CHECKPOINT_MAGIC: u32 = 0x5643_4B50;

/// The layout version written.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Encoded size of a checkpoint.
pub const CHECKPOINT_BYTES: usize = 60;

/// What the store knows to be durable (see the module doc for the byte layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Store time of the last durable CommitLog record (`physicMsgTimestamp`).
    pub physic_msg_timestamp_ms: i64,
    /// Store time of the last record whose ConsumeQueue unit is durable (`logicsMsgTimestamp`).
    pub logics_msg_timestamp_ms: i64,
    /// Store time of the last record the durable key index covers (`indexMsgTimestamp`).
    pub index_msg_timestamp_ms: i64,
    /// Every CommitLog byte before this offset is durable.
    pub commitlog_durable_offset: u64,
    /// Every ConsumeQueue unit of a record before this CommitLog offset is durable.
    pub consume_queue_durable_offset: u64,
    /// Every key index entry of a record before this CommitLog offset is durable (0: none).
    pub index_durable_offset: u64,
}

/// Why a checkpoint file was ignored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is {0} bytes, expected {CHECKPOINT_BYTES}")]
    Length(usize),
    #[error("checkpoint magic {0:#x} is not VCKP")]
    Magic(u32),
    #[error("checkpoint version {0} is not supported")]
    Version(u32),
    #[error("checkpoint CRC mismatch: stored {stored:#x}, computed {computed:#x} (torn write)")]
    Crc { stored: u32, computed: u32 },
}

fn be_u32(buf: &[u8], pos: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[pos..pos + 4]);
    u32::from_be_bytes(b)
}

fn be_u64(buf: &[u8], pos: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[pos..pos + 8]);
    u64::from_be_bytes(b)
}

impl Checkpoint {
    /// The 60 stored bytes.
    pub fn encode(&self) -> [u8; CHECKPOINT_BYTES] {
        let mut out = [0u8; CHECKPOINT_BYTES];
        out[0..8].copy_from_slice(&self.physic_msg_timestamp_ms.to_be_bytes());
        out[8..16].copy_from_slice(&self.logics_msg_timestamp_ms.to_be_bytes());
        out[16..24].copy_from_slice(&self.index_msg_timestamp_ms.to_be_bytes());
        out[24..28].copy_from_slice(&CHECKPOINT_MAGIC.to_be_bytes());
        out[28..32].copy_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
        out[32..40].copy_from_slice(&self.commitlog_durable_offset.to_be_bytes());
        out[40..48].copy_from_slice(&self.consume_queue_durable_offset.to_be_bytes());
        out[48..56].copy_from_slice(&self.index_durable_offset.to_be_bytes());
        let crc = crc32fast::hash(&out[..56]);
        out[56..60].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes and verifies a stored checkpoint.
    pub fn decode(buf: &[u8]) -> Result<Self, CheckpointError> {
        if buf.len() != CHECKPOINT_BYTES {
            return Err(CheckpointError::Length(buf.len()));
        }
        let stored = be_u32(buf, 56);
        let computed = crc32fast::hash(&buf[..56]);
        if stored != computed {
            return Err(CheckpointError::Crc { stored, computed });
        }
        let magic = be_u32(buf, 24);
        if magic != CHECKPOINT_MAGIC {
            return Err(CheckpointError::Magic(magic));
        }
        let version = be_u32(buf, 28);
        if version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(version));
        }
        Ok(Self {
            physic_msg_timestamp_ms: be_u64(buf, 0) as i64,
            logics_msg_timestamp_ms: be_u64(buf, 8) as i64,
            index_msg_timestamp_ms: be_u64(buf, 16) as i64,
            commitlog_durable_offset: be_u64(buf, 32),
            consume_queue_durable_offset: be_u64(buf, 40),
            index_durable_offset: be_u64(buf, 48),
        })
    }

    /// The CommitLog offset below which everything the checkpoint covers is durable: recovery
    /// re-verifies from here. The key index counts only once it writes an offset.
    pub fn recovery_offset(&self) -> u64 {
        let mut offset = self
            .commitlog_durable_offset
            .min(self.consume_queue_durable_offset);
        if self.index_durable_offset > 0 {
            offset = offset.min(self.index_durable_offset);
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let cp = Checkpoint {
            physic_msg_timestamp_ms: 0x0102_0304_0506_0708,
            logics_msg_timestamp_ms: 9,
            index_msg_timestamp_ms: 0,
            commitlog_durable_offset: 4096,
            consume_queue_durable_offset: 4000,
            index_durable_offset: 0,
        };
        let bytes = cp.encode();
        assert_eq!(&bytes[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[24..28], b"VCKP");
        assert_eq!(&bytes[32..40], &4096u64.to_be_bytes());
        assert_eq!(Checkpoint::decode(&bytes), Ok(cp));
        assert_eq!(cp.recovery_offset(), 4000);
    }

    #[test]
    fn torn_or_foreign_checkpoints_are_refused() {
        let bytes = Checkpoint::default().encode();
        for i in 0..CHECKPOINT_BYTES {
            let mut torn = bytes;
            torn[i] ^= 0x40;
            assert!(Checkpoint::decode(&torn).is_err(), "byte {i}");
        }
        assert_eq!(
            Checkpoint::decode(&bytes[..30]),
            Err(CheckpointError::Length(30))
        );
        // RocketMQ's own 4 KiB checkpoint is not ours.
        assert!(Checkpoint::decode(&[0u8; 4096]).is_err());
    }
}
