//! The RocketMQ remoting protocol: frames, headers and commands.
//!
//! ```text
//! +----------------+-------------------+------------------+----------------+
//! | total_len: i32 | ser_type:u8|hlen:u24 | header (hlen) | body           |
//! +----------------+-------------------+------------------+----------------+
//!   counts itself?  no: total_len = 4 + hlen + body_len (big-endian everywhere)
//! ```
//!
//! * [`codec`] — incremental frame decoder (zero-copy: bodies are slices of the read buffer) and
//!   encoder.
//! * [`command`] — [`RemotingCommand`], one request or response with typed access to ext fields.
//! * [`codes`] — request and response codes.
//! * JSON and compact ROCKETMQ header encodings, both directions; a response is encoded the way
//!   its request was.

mod binary_header;
pub mod codec;
pub mod codes;
pub mod command;
pub mod headers;
mod json_header;

pub use codec::{encode, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use command::{HeaderError, RemotingCommand, SerializeType};
