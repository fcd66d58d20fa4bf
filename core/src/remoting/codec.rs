//! Frame codec: an incremental decoder over a growing read buffer, and an encoder.
//!
//! ```text
//! offset  size  field
//!      0     4  total_len      i32: bytes after this word = 4 + header_len + body_len
//!      4     1  serialize_type 0 = JSON, 1 = ROCKETMQ (high byte of the header-length word)
//!      5     3  header_len     u24
//!      8     H  header         json_header or binary_header
//!    8+H     B  body           opaque bytes, B = total_len - 4 - header_len
//! ```
//!
//! All words big-endian. The decoder judges a frame as early as it can: the total length as soon
//! as its 4 bytes are visible (so an oversized frame is refused before it is buffered), the
//! header-length word as soon as its 4 bytes are visible, the header once the whole frame is
//! there. Any error means framing is lost and the connection must be closed, as Java does.

use bytes::{BufMut, BytesMut};

use super::command::{RemotingCommand, SerializeType};
use super::{binary_header, json_header};

/// Largest frame accepted, counting the 4-byte length word itself (RocketMQ's
/// `com.rocketmq.remoting.frameMaxLength` default, 16 MiB). Larger frames close the connection.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Largest header a frame can describe: the header length has 24 bits.
pub const MAX_HEADER_LEN: usize = 0x00FF_FFFF;

/// Bytes before the header: the total-length word and the header-length word.
const PREFIX_LEN: usize = 8;

/// Why a byte stream cannot be decoded. Every variant means the connection must be closed:
/// framing is lost.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame (`len` counts the length word) is larger than the decoder's limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    /// The total length is negative or smaller than the header-length word it must contain.
    #[error("frame length {0} is too small for a header")]
    TooShort(i64),
    /// The header length is larger than what the total length leaves after the header-length word.
    #[error("header length {header_len} exceeds the frame's {available} bytes")]
    HeaderTooLong { header_len: usize, available: usize },
    /// The serialize type byte is neither 0 (JSON) nor 1 (ROCKETMQ).
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
    /// The header bytes do not parse.
    #[error("malformed header: {0}")]
    BadHeader(String),
}

/// Why a command cannot be written as a frame. These are limits of the format, reached only by
/// absurdly large headers or bodies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded header exceeds the 24-bit header length ([`MAX_HEADER_LEN`]).
    #[error("header of {0} bytes exceeds the 24-bit header length")]
    HeaderTooLong(usize),
    /// The frame exceeds what the i32 total length can describe.
    #[error("frame of {0} bytes exceeds the i32 total length")]
    FrameTooLong(usize),
}

/// Decodes frames from a read buffer as bytes arrive.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_frame_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame_len` bytes (length word included).
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    /// Takes one whole frame off the front of `buf`: `Ok(None)` when more bytes are needed (buf
    /// untouched), `Err` when the stream is not RocketMQ remoting (buf untouched too; the
    /// connection must be closed). The body is split off `buf` without copying.
    ///
    /// Call it in a loop until `Ok(None)`: one read may carry several frames.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
        let Some(total_word) = word_at(buf, 0) else {
            return Ok(None);
        };
        let total_word = i32::from_be_bytes(total_word);
        // The total must at least cover the header-length word; negative lengths land here too.
        let total_len = match usize::try_from(total_word) {
            Ok(len) if len >= 4 => len,
            _ => return Err(FrameError::TooShort(i64::from(total_word))),
        };
        let frame_len = total_len + 4;
        if frame_len > self.max_frame_len {
            return Err(FrameError::TooLong {
                len: frame_len,
                max: self.max_frame_len,
            });
        }

        let Some(header_word) = word_at(buf, 4) else {
            return Ok(None);
        };
        let [serialize_byte, len_hi, len_mid, len_lo] = header_word;
        let serialize_type = match serialize_byte {
            0 => SerializeType::Json,
            1 => SerializeType::RocketMq,
            other => return Err(FrameError::UnknownSerializeType(other)),
        };
        let header_len =
            usize::from(len_hi) << 16 | usize::from(len_mid) << 8 | usize::from(len_lo);
        if header_len > total_len - 4 {
            return Err(FrameError::HeaderTooLong {
                header_len,
                available: total_len - 4,
            });
        }

        // No reservation for the missing bytes here: a peer announcing 16 MiB and sending four
        // bytes must not make us allocate 16 MiB. The driver grows the buffer as data arrives.
        if buf.len() < frame_len {
            return Ok(None);
        }
        let header = &buf[PREFIX_LEN..PREFIX_LEN + header_len];
        let mut cmd = match serialize_type {
            SerializeType::Json => json_header::decode(header)?,
            SerializeType::RocketMq => binary_header::decode(header)?,
        };
        // Only now that the header parsed is the frame taken off the buffer.
        let mut frame = buf.split_to(frame_len);
        let _prefix_and_header = frame.split_to(PREFIX_LEN + header_len);
        cmd.body = frame.freeze();
        Ok(Some(cmd))
    }
}

/// The 4 bytes at `offset`, if present.
fn word_at(buf: &[u8], offset: usize) -> Option<[u8; 4]> {
    let bytes = buf.get(offset..offset + 4)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    Some(word)
}

/// The header encoding `encode` will really use for `cmd`: `cmd.serialize_type`, except that a
/// command the binary header cannot represent (code or version outside i16, a language that is
/// not a RocketMQ enum name, an ext key of 32 KiB or more) is sent as JSON. Peers that send
/// ROCKETMQ headers decode JSON too (REMOTING.md §1.3), so falling back never strands them.
pub fn wire_serialize_type(cmd: &RemotingCommand) -> SerializeType {
    match cmd.serialize_type {
        SerializeType::RocketMq if binary_header::can_encode(cmd) => SerializeType::RocketMq,
        _ => SerializeType::Json,
    }
}

/// Appends `cmd` as one frame, its header in [`wire_serialize_type`]. The body is copied into
/// `out`.
///
/// A frame the format cannot describe (see [`EncodeError`]; a header over 16 MiB or a frame over
/// 2 GiB) is not written at all: `out` is left as it was. Callers that need to know use
/// [`try_encode`].
pub fn encode(cmd: &RemotingCommand, out: &mut BytesMut) {
    // Unreachable for every frame a peer would accept; `out` is left intact on failure.
    let _ = try_encode(cmd, out);
}

/// Appends `cmd` as one frame like [`encode`], reporting a frame the format cannot describe
/// instead of skipping it. On error `out` is left as it was.
pub fn try_encode(cmd: &RemotingCommand, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    out.reserve(PREFIX_LEN + cmd.body.len() + 64);
    // The two words are patched once the header length is known.
    out.put_slice(&[0u8; PREFIX_LEN]);
    let serialize_type = match wire_serialize_type(cmd) {
        SerializeType::RocketMq if binary_header::encode(cmd, out) => SerializeType::RocketMq,
        _ => {
            json_header::encode(cmd, out);
            SerializeType::Json
        }
    };
    let header_len = out.len() - start - PREFIX_LEN;
    if header_len > MAX_HEADER_LEN {
        out.truncate(start);
        return Err(EncodeError::HeaderTooLong(header_len));
    }
    let total_len = 4 + header_len + cmd.body.len();
    let Ok(total_word) = i32::try_from(total_len) else {
        out.truncate(start);
        return Err(EncodeError::FrameTooLong(total_len + 4));
    };
    // header_len < 2^24, so it fits below the serialize type byte.
    let header_word = (serialize_type as u32) << 24 | header_len as u32;
    out[start..start + 4].copy_from_slice(&total_word.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&header_word.to_be_bytes());
    out.extend_from_slice(&cmd.body);
    Ok(())
}
