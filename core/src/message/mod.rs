//! The message format: properties, the stored record (shared by the CommitLog and pull bodies),
//! message ids, batch bodies and tag hash codes.

pub mod batch;
pub mod msg_id;
pub mod properties;
pub mod record;
pub mod record_crc;
pub mod trace;

pub use batch::{decode_batch, encode_batch, BatchEntry};
pub use msg_id::{decode_offset_msg_id, offset_msg_id, MsgIdError, UniqKeyGenerator};
pub use properties::Properties;
pub use record::{body_crc, peek_header, HostAddr, MessageRecord, RecordError, RecordView};

/// MessageSysFlag bits (int32, send header `sysFlag` and record field SYSFLAG).
pub mod sys_flag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_MASK: i32 = 0xC;
    pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOST_V6: i32 = 0x20;
}

/// Well-known property keys.
pub mod keys {
    pub const TAGS: &str = "TAGS";
    pub const KEYS: &str = "KEYS";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const WAIT: &str = "WAIT";
    pub const DELAY: &str = "DELAY";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const PGROUP: &str = "PGROUP";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_ON: &str = "TRACE_ON";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// The whole-record CRC the store appends last (see [`super::record_crc`]).
    pub const CRC32: &str = super::record_crc::PROPERTY_CRC32;
}

/// Java's `String.hashCode` over UTF-16 code units, sign-extended: the ConsumeQueue `tagsCode`.
pub fn tag_hash_code(tag: &str) -> i64 {
    let mut h: i32 = 0;
    for unit in tag.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_hash_codes_match_java() {
        assert_eq!(tag_hash_code("tagA"), 3_552_231);
        assert_eq!(tag_hash_code("TagA"), 2_598_919);
        assert_eq!(tag_hash_code("order"), 106_006_350);
        assert_eq!(tag_hash_code("*"), 42);
        assert_eq!(tag_hash_code("中文"), 646_394);
        assert_eq!(tag_hash_code(""), 0);
    }
}
