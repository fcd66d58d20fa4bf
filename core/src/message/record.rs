//! The stored message record: one CommitLog record, and one element of a pull body.
//!
//! (layout table: see the module docs written with the implementation)

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::Properties;

/// MAGICCODE of a V1 record (1-byte topic length).
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// MAGICCODE of a V2 record (2-byte topic length; written only for topics over 127 bytes).
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// MAGICCODE of the blank filler at the end of a CommitLog segment.
pub const MAGIC_BLANK: i32 = 0xCBD4_3194_u32 as i32;

/// A born or store host: IPv4 or IPv6 address and port.
pub type HostAddr = SocketAddr;

/// A decoded (or to-be-encoded) record. `total_size`, `magic` and `body_crc` are derived on
/// encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: HostAddr,
    pub store_timestamp_ms: i64,
    pub store_host: HostAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    pub properties: Properties,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("bad magic code {0:#x}")]
    BadMagic(i32),
    #[error("body CRC mismatch: stored {stored:#x}, computed {computed:#x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record field {0} is malformed")]
    Malformed(&'static str),
    #[error("topic of {0} bytes is too long")]
    TopicTooLong(usize),
    #[error("properties of {0} bytes exceed 32767")]
    PropertiesTooLong(usize),
}

impl MessageRecord {
    /// The encoded size of this record.
    pub fn encoded_len(&self) -> usize {
        todo!()
    }

    /// Appends the record. Sets TOTALSIZE, MAGICCODE (V1 unless the topic needs V2), BODYCRC and
    /// the host-IPv6 bits of SYSFLAG from the hosts.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), RecordError> {
        let _ = out;
        todo!()
    }

    /// Decodes one record from the front of `buf` (which may hold more), verifying the body CRC
    /// when `check_crc`.
    pub fn decode(buf: &Bytes, check_crc: bool) -> Result<MessageRecord, RecordError> {
        let _ = (buf, check_crc);
        todo!()
    }
}

/// The body CRC as RocketMQ stores it: CRC-32 (IEEE) masked with `0x7FFF_FFFF`.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}
