//! Frame codec: an incremental decoder over a growing read buffer, and an encoder.

use bytes::BytesMut;

use super::command::RemotingCommand;

/// Largest frame accepted, counting the 4-byte length word itself (RocketMQ's
/// `com.rocketmq.remoting.frameMaxLength` default, 16 MiB). Larger frames close the connection.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Why a byte stream cannot be decoded. Every variant means the connection must be closed:
/// framing is lost.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("frame length {0} is too small for a header")]
    TooShort(i64),
    #[error("header length {header_len} exceeds the frame's {available} bytes")]
    HeaderTooLong { header_len: usize, available: usize },
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed header: {0}")]
    BadHeader(String),
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
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    /// Takes one whole frame off the front of `buf`: `Ok(None)` when more bytes are needed (buf
    /// untouched), `Err` when the stream is not RocketMQ remoting. The body is split off `buf`
    /// without copying.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
        let _ = (buf, self.max_frame_len);
        todo!("frame decoding")
    }
}

/// Appends `cmd` as one frame, its header in `cmd.serialize_type`.
pub fn encode(cmd: &RemotingCommand, out: &mut BytesMut) {
    let _ = (cmd, out);
    todo!("frame encoding")
}
