//! The RocketMQ remoting protocol: frames, headers and commands.
//!
//! ```text
//! +-----------------+---------------------------+---------------+----------------+
//! | total_len: i32  | ser_type: u8 | hlen: u24  | header (hlen) | body           |
//! +-----------------+---------------------------+---------------+----------------+
//!   total_len = 4 + hlen + body_len: it does not count itself. Big-endian everywhere.
//! ```
//!
//! * [`codec`] — incremental frame decoder (zero-copy: bodies are slices of the read buffer) and
//!   encoder.
//! * [`command`] — [`RemotingCommand`], one request or response with typed access to ext fields.
//! * [`codes`] — request and response codes.
//! * JSON (serialize type 0) and compact ROCKETMQ (type 1) header encodings, both directions. A
//!   command is encoded in its `serialize_type`, so a response built with
//!   [`RemotingCommand::response_to`] mirrors its request; commands the binary header cannot
//!   represent fall back to JSON ([`codec::wire_serialize_type`]).
//! * [`pop`] — the POP family's headers, bodies and receipt-handle formats.
//! * [`lenient`] — JSON bodies read as fastjson reads them (numbers in strings, enum ordinals,
//!   missing and unknown keys), for every body the broker and NameServer parse.

mod binary_header;
pub mod codec;
pub mod codes;
pub mod command;
pub mod headers;
mod json_header;
pub mod lenient;
pub mod pop;
pub mod reset_offset;
pub mod version;

pub use codec::{
    encode, try_encode, wire_serialize_type, EncodeError, FrameDecoder, FrameError, MAX_FRAME_LEN,
    MAX_HEADER_LEN,
};
pub use command::{HeaderError, RemotingCommand, SerializeType};
