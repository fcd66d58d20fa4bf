//! RocketMQ's HA v1 wire format (REPLICATION.md §1.3; byte-identical in 4.x and 5.x,
//! `HAConnection`/`HAClient`, `DefaultHAConnection`/`DefaultHAClient`). Raw TCP on the master's
//! `haListenPort`: no magic, version or authentication.
//!
//! ```text
//!  slave → master: offset report, repeated (its CommitLog max offset; also its ack)
//! +---------------------------------------+
//! | slaveMaxOffset  i64 big-endian        |   8 bytes
//! +---------------------------------------+
//!
//!  master → slave: frame
//! +---------------------------------------+-------------------+----------------------+
//! | phyOffset  i64 (offset of body[0])    | bodySize  i32     | body: bodySize raw   |
//! |                                       | (0 = heartbeat)   | CommitLog bytes      |
//! +---------------------------------------+-------------------+----------------------+
//!   0                                      8                  12
//! ```
//!
//! Both decoders are incremental: they take whatever bytes the socket gave and keep the rest
//! for the next call, like the remoting [`FrameDecoder`](crate::remoting::FrameDecoder).

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of an offset report.
pub const REPORT_BYTES: usize = 8;
/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 12;
/// The largest body a slave accepts in one frame: RocketMQ's slave reads into a 4 MiB buffer,
/// so no master sends more (it cuts frames at `haTransferBatchSize`, 32 KiB by default).
pub const MAX_FRAME_BODY_BYTES: usize = 4 * 1024 * 1024 - FRAME_HEADER_BYTES;

/// The 8 bytes of a report of `offset`.
pub fn encode_report(offset: u64) -> [u8; REPORT_BYTES] {
    (offset as i64).to_be_bytes()
}

/// The 12 header bytes of a frame whose body (`body_size` bytes, 0 for a heartbeat) starts at
/// CommitLog offset `offset`. The body follows as raw CommitLog bytes.
pub fn encode_frame_header(offset: u64, body_size: u32) -> [u8; FRAME_HEADER_BYTES] {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[..8].copy_from_slice(&(offset as i64).to_be_bytes());
    header[8..].copy_from_slice(&(body_size as i32).to_be_bytes());
    header
}

/// The master's side: offset reports from a slave. RocketMQ's master uses only the last
/// complete 8-byte unit of what arrived, counted from the start of the connection, so
/// coalesced reports collapse into the newest.
#[derive(Clone, Debug, Default)]
pub struct ReportDecoder {
    partial: [u8; REPORT_BYTES],
    filled: usize,
}

impl ReportDecoder {
    /// Takes `bytes`; returns the newest report they completed, if any.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<u64>, HaCodecError> {
        let mut newest = None;
        while !bytes.is_empty() {
            let take = (REPORT_BYTES - self.filled).min(bytes.len());
            self.partial[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == REPORT_BYTES {
                self.filled = 0;
                let offset = i64::from_be_bytes(self.partial);
                if offset < 0 {
                    return Err(HaCodecError::NegativeReport(offset));
                }
                newest = Some(offset as u64);
            }
        }
        Ok(newest)
    }
}

/// One master → slave frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaFrame {
    /// CommitLog offset of the body's first byte (for a heartbeat: where the master will
    /// continue).
    pub offset: u64,
    /// Raw CommitLog bytes; empty for a heartbeat.
    pub body: Bytes,
}

/// The slave's side: frames from the master.
#[derive(Clone, Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// Adds bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` until one is in.
    pub fn next_frame(&mut self) -> Result<Option<HaFrame>, HaCodecError> {
        if self.buf.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let offset = i64::from_be_bytes(self.buf[..8].try_into().expect("8 bytes"));
        let size = i32::from_be_bytes(self.buf[8..12].try_into().expect("4 bytes"));
        if offset < 0 {
            return Err(HaCodecError::NegativeOffset(offset));
        }
        if size < 0 || size as usize > MAX_FRAME_BODY_BYTES {
            return Err(HaCodecError::BadBodySize(size));
        }
        let size = size as usize;
        if self.buf.len() < FRAME_HEADER_BYTES + size {
            self.buf.reserve(FRAME_HEADER_BYTES + size - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER_BYTES);
        let body = self.buf.split_to(size).freeze();
        Ok(Some(HaFrame {
            offset: offset as u64,
            body,
        }))
    }

    /// Bytes held for an incomplete frame.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }
}

/// Bytes that are not HA v1: the link is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HaCodecError {
    #[error("offset report {0} is negative")]
    NegativeReport(i64),
    #[error("frame offset {0} is negative")]
    NegativeOffset(i64),
    #[error("frame body size {0} is outside 0..={MAX_FRAME_BODY_BYTES}")]
    BadBodySize(i32),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REPLICATION.md §1.3's example: the 164-byte record at 8000.
    #[test]
    fn the_reference_exchange_is_byte_exact() {
        let record = vec![0xABu8; 164];
        let mut wire = encode_frame_header(8000, 164).to_vec();
        wire.extend(&record);
        assert_eq!(&wire[..12], &[0, 0, 0, 0, 0, 0, 0x1F, 0x40, 0, 0, 0, 0xA4]);
        assert_eq!(encode_report(8164), [0, 0, 0, 0, 0, 0, 0x1F, 0xE4]);
        assert_eq!(
            encode_frame_header(8164, 0),
            [0, 0, 0, 0, 0, 0, 0x1F, 0xE4, 0, 0, 0, 0]
        );

        // Decoded a byte at a time, then all at once.
        let mut decoder = FrameDecoder::default();
        for (i, b) in wire.iter().enumerate() {
            decoder.extend(&[*b]);
            let frame = decoder.next_frame().unwrap();
            assert_eq!(frame.is_some(), i == wire.len() - 1);
            if let Some(frame) = frame {
                assert_eq!(frame.offset, 8000);
                assert_eq!(&frame.body[..], &record[..]);
            }
        }
        wire.extend(encode_frame_header(8164, 0));
        let mut decoder = FrameDecoder::default();
        decoder.extend(&wire);
        assert_eq!(decoder.next_frame().unwrap().unwrap().body.len(), 164);
        let heartbeat = decoder.next_frame().unwrap().unwrap();
        assert_eq!((heartbeat.offset, heartbeat.body.len()), (8164, 0));
        assert_eq!(decoder.next_frame().unwrap(), None);
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn reports_collapse_into_the_newest_complete_one() {
        let mut decoder = ReportDecoder::default();
        let mut wire = encode_report(10).to_vec();
        wire.extend(encode_report(20));
        wire.extend(&encode_report(30)[..5]);
        assert_eq!(decoder.feed(&wire).unwrap(), Some(20));
        assert_eq!(decoder.feed(&encode_report(30)[5..]).unwrap(), Some(30));
        assert_eq!(decoder.feed(&[]).unwrap(), None);
        assert_eq!(
            decoder.feed(&(-1i64).to_be_bytes()),
            Err(HaCodecError::NegativeReport(-1))
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_allocations() {
        let mut decoder = FrameDecoder::default();
        decoder.extend(&encode_frame_header(0, 0)[..8]);
        decoder.extend(&(-5i32).to_be_bytes());
        assert_eq!(decoder.next_frame(), Err(HaCodecError::BadBodySize(-5)));
        let mut decoder = FrameDecoder::default();
        decoder.extend(&encode_frame_header(0, i32::MAX as u32));
        assert_eq!(
            decoder.next_frame(),
            Err(HaCodecError::BadBodySize(i32::MAX))
        );
        let mut decoder = FrameDecoder::default();
        decoder.extend(&(-8i64).to_be_bytes());
        decoder.extend(&0i32.to_be_bytes());
        assert_eq!(decoder.next_frame(), Err(HaCodecError::NegativeOffset(-8)));
    }
}
