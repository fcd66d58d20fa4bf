//! Message ids the broker hands out and the batch body it expands: the broker's one door to
//! `crate::message::msg_id` and `crate::message::batch`.

use bytes::Bytes;

pub use crate::message::batch::BatchEntry;
pub use crate::message::msg_id::{offset_msg_id, UniqKeyGenerator};

/// Splits a batch body into entries; `Err` carries a human-readable reason.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>, String> {
    crate::message::batch::decode_batch(body).map_err(|e| e.to_string())
}
