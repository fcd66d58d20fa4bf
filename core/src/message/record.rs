//! The stored message record: one CommitLog record, and one element of a pull body.
//!
//! The broker writes this layout into the CommitLog and copies it verbatim into PULL, QUERY and
//! VIEW bodies, so the bytes produced here are what every client decodes. All integers are
//! big-endian. Offsets are for IPv4 born and store hosts; each IPv6 host adds 12 bytes and shifts
//! every later field.
//!
//! ```text
//!  offset  size  field
//!  ------  ----  -------------------------------------------------------------------------
//!       0     4  TOTALSIZE        whole record, this field included
//!       4     4  MAGICCODE        0xDAA320A7 = V1 (1-byte topic length)
//!                                 0xDAA320AB = V2 (2-byte topic length, topics > 127 bytes)
//!       8     4  BODYCRC          crc32(body) & 0x7FFFFFFF
//!      12     4  QUEUEID
//!      16     4  FLAG             Message.flag from the producer
//!      20     8  QUEUEOFFSET      index of the record in its consume queue
//!      28     8  PHYSICALOFFSET   byte offset of the record in the CommitLog
//!      36     4  SYSFLAG          bit 0x10: BORNHOST is IPv6, bit 0x20: STOREHOST is IPv6
//!      40     8  BORNTIMESTAMP    producer clock, ms
//!      48   4+4  BORNHOST         IPv4 address, port as int32   (IPv6: 16 + 4)
//!      56     8  STORETIMESTAMP   broker clock at append, ms
//!      64   4+4  STOREHOST        IPv4 address, port as int32   (IPv6: 16 + 4)
//!      72     4  RECONSUMETIMES
//!      76     8  PREPAREDTRANSACTIONOFFSET
//!      84   4+n  BODY             int32 length n, then the (possibly compressed) body
//!    88+n   1+t  TOPIC            V1: int8 length t (<= 127); V2: int16 length; UTF-8 text
//!       …   2+p  PROPERTIES       int16 length p (<= 32767), then the property string
//!
//!  TOTALSIZE (IPv4, V1) = 91 + n + t + p
//! ```
//!
//! A record stored with `enabledAppendPropCRC` ends with one more property, `__CRC32#`, whose
//! 20 bytes (counted in p) hold the CRC of every byte before them; see
//! [`record_crc`](super::record_crc).
//!
//! A CommitLog segment ends with a blank filler: just TOTALSIZE (the bytes left in the segment)
//! and [`MAGIC_BLANK`]. [`peek_header`] reads those 8 bytes for a scanner; [`MessageRecord::decode`]
//! refuses the blank magic like any other non-record magic.
//!
//! Text decoding: the topic must be valid UTF-8 (a topic is a routing key and must compare
//! exactly), while the property string is decoded leniently, replacing invalid sequences with
//! U+FFFD exactly as Java's `new String(bytes, UTF_8)` does. Consequently re-encoding a decoded
//! record whose properties were not valid UTF-8 does not reproduce the original bytes; the broker
//! never does that (pull bodies are copied from the stored bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use bytes::{BufMut, Bytes, BytesMut};

use super::properties::PROPERTIES_LEN_MAX;
use super::sys_flag::{BORNHOST_V6, STOREHOST_V6};
use super::Properties;

/// MAGICCODE of a V1 record (1-byte topic length).
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// MAGICCODE of a V2 record (2-byte topic length; written only for topics over 127 bytes).
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// MAGICCODE of the blank filler at the end of a CommitLog segment.
pub const MAGIC_BLANK: i32 = 0xCBD4_3194_u32 as i32;

/// The longest topic a V1 record can carry (its length byte is signed).
pub const TOPIC_LEN_V1_MAX: usize = i8::MAX as usize;
/// The longest topic any record can carry (V2 int16 length).
pub const TOPIC_LEN_MAX: usize = i16::MAX as usize;
/// The size of a V1 record with IPv4 hosts and an empty body, topic and property string.
pub const RECORD_LEN_MIN: usize = 91;
/// The size of the header [`peek_header`] reads: TOTALSIZE and MAGICCODE.
pub const HEADER_LEN: usize = 8;

/// Byte positions of the fields that precede BORNHOST, which are the same in every record
/// version. The store uses them to patch offsets and timestamps into an encoded record.
pub mod field_pos {
    pub const TOTAL_SIZE: usize = 0;
    pub const MAGIC: usize = 4;
    pub const BODY_CRC: usize = 8;
    pub const QUEUE_ID: usize = 12;
    pub const FLAG: usize = 16;
    pub const QUEUE_OFFSET: usize = 20;
    pub const PHYSICAL_OFFSET: usize = 28;
    pub const SYS_FLAG: usize = 36;
    pub const BORN_TIMESTAMP: usize = 40;
    pub const BORN_HOST: usize = 48;
}

/// A born or store host: IPv4 or IPv6 address and port.
pub type HostAddr = SocketAddr;

/// A decoded (or to-be-encoded) record. `total_size`, `magic` and `body_crc` are derived on
/// encode.
///
/// On encode the address kind of `born_host` and `store_host` decides the host widths and the
/// BORNHOST_V6 / STOREHOST_V6 bits of SYSFLAG (the bits in `sys_flag` are overwritten). IPv6
/// flow info and scope id are not stored. Callers that must serve clients which only read IPv4
/// hosts (ali-ons, Go, Java 4.x) map IPv4-mapped IPv6 addresses to IPv4 before encoding.
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
    /// The whole-record CRC of the `__CRC32#` property disagrees with the record's bytes: a
    /// header field, the topic or a property was damaged (see [`super::record_crc`]).
    #[error("record CRC (__CRC32#) mismatch: stored {stored:#x}, computed {computed:#x}")]
    RecordCrcMismatch { stored: u32, computed: u32 },
    #[error("record field {0} is malformed")]
    Malformed(&'static str),
    #[error("topic of {0} bytes is too long")]
    TopicTooLong(usize),
    #[error("properties of {0} bytes exceed 32767")]
    PropertiesTooLong(usize),
    /// The whole record would not fit TOTALSIZE (int32); in practice an oversized body.
    #[error("record of {0} bytes exceeds the int32 TOTALSIZE")]
    RecordTooLong(usize),
}

impl MessageRecord {
    /// The encoded size of this record.
    pub fn encoded_len(&self) -> usize {
        let topic_len_field = if self.topic.len() > TOPIC_LEN_V1_MAX {
            2
        } else {
            1
        };
        RECORD_LEN_MIN - 1
            + topic_len_field
            + extra_host_len(&self.born_host)
            + extra_host_len(&self.store_host)
            + self.body.len()
            + self.topic.len()
            + self.properties.encoded_len()
    }

    /// Appends the record. Sets TOTALSIZE, MAGICCODE (V1 unless the topic needs V2), BODYCRC and
    /// the host-IPv6 bits of SYSFLAG from the hosts.
    ///
    /// On error nothing is appended.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), RecordError> {
        let topic_len = self.topic.len();
        if topic_len > TOPIC_LEN_MAX {
            return Err(RecordError::TopicTooLong(topic_len));
        }
        let properties = self.properties.encode();
        if properties.len() > PROPERTIES_LEN_MAX {
            return Err(RecordError::PropertiesTooLong(properties.len()));
        }
        let total_len = self.encoded_len();
        let Ok(total_size) = i32::try_from(total_len) else {
            return Err(RecordError::RecordTooLong(total_len));
        };
        let v2 = topic_len > TOPIC_LEN_V1_MAX;

        let mut sys_flag = self.sys_flag & !(BORNHOST_V6 | STOREHOST_V6);
        if self.born_host.is_ipv6() {
            sys_flag |= BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            sys_flag |= STOREHOST_V6;
        }

        out.reserve(total_len);
        let start = out.len();
        out.put_i32(total_size);
        out.put_i32(if v2 { MAGIC_V2 } else { MAGIC_V1 });
        out.put_u32(body_crc(&self.body));
        out.put_i32(self.queue_id);
        out.put_i32(self.flag);
        out.put_i64(self.queue_offset);
        out.put_i64(self.physical_offset);
        out.put_i32(sys_flag);
        out.put_i64(self.born_timestamp_ms);
        put_host(out, &self.born_host);
        out.put_i64(self.store_timestamp_ms);
        put_host(out, &self.store_host);
        out.put_i32(self.reconsume_times);
        out.put_i64(self.prepared_transaction_offset);
        // Both lengths were bounded above (body by the int32 total), so the casts are exact.
        out.put_i32(self.body.len() as i32);
        out.put_slice(&self.body);
        if v2 {
            out.put_i16(topic_len as i16);
        } else {
            out.put_i8(topic_len as i8);
        }
        out.put_slice(self.topic.as_bytes());
        out.put_i16(properties.len() as i16);
        out.put_slice(properties.as_bytes());
        debug_assert_eq!(out.len() - start, total_len);
        Ok(())
    }

    /// Encodes into a fresh vector; see [`MessageRecord::encode`].
    pub fn encode_to_vec(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out.to_vec())
    }

    /// Decodes one record from the front of `buf` (which may hold more), verifying the body CRC
    /// when `check_crc`.
    ///
    /// Errors: fewer than 8 bytes, or fewer than TOTALSIZE bytes, give [`RecordError::Truncated`];
    /// a magic other than V1/V2 (the blank filler included) gives [`RecordError::BadMagic`]; a
    /// TOTALSIZE that disagrees with the fields, a negative or overlong length, a port outside
    /// 0..=65535 or a non-UTF-8 topic give [`RecordError::Malformed`]. The body is a zero-copy
    /// slice of `buf`. The record's length is [`MessageRecord::encoded_len`] of the result only
    /// when the properties were canonical; use the TOTALSIZE from [`peek_header`] to step over it.
    pub fn decode(buf: &Bytes, check_crc: bool) -> Result<MessageRecord, RecordError> {
        let view = RecordView::parse(buf, check_crc)?;
        Ok(MessageRecord::from_view(buf, &view))
    }

    /// The owned record of a view parsed from `buf` (the body a zero-copy slice of it).
    pub fn from_view(buf: &Bytes, view: &RecordView<'_>) -> MessageRecord {
        MessageRecord {
            queue_id: view.queue_id,
            flag: view.flag,
            queue_offset: view.queue_offset,
            physical_offset: view.physical_offset,
            sys_flag: view.sys_flag,
            born_timestamp_ms: view.born_timestamp_ms,
            born_host: view.born_host,
            store_timestamp_ms: view.store_timestamp_ms,
            store_host: view.store_host,
            reconsume_times: view.reconsume_times,
            prepared_transaction_offset: view.prepared_transaction_offset,
            body: buf.slice(view.body_start..view.body_start + view.body.len()),
            topic: view.topic.to_owned(),
            properties: Properties::parse(&String::from_utf8_lossy(view.properties)),
        }
    }
}

/// One record's fields borrowed from its bytes: what [`MessageRecord::decode`] checks, without
/// allocating (no topic string, no property map). The pull path verifies every record it serves
/// through this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
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
    pub body: &'a [u8],
    pub topic: &'a str,
    /// The raw property string (its length field excluded).
    pub properties: &'a [u8],
    /// Where the body starts in the record.
    body_start: usize,
}

impl<'a> RecordView<'a> {
    /// Parses one record from the front of `buf`, with the checks and errors of
    /// [`MessageRecord::decode`].
    pub fn parse(buf: &'a [u8], check_crc: bool) -> Result<RecordView<'a>, RecordError> {
        let (total_size, magic) = peek_header(buf)?;
        let v2 = match magic {
            MAGIC_V1 => false,
            MAGIC_V2 => true,
            other => return Err(RecordError::BadMagic(other)),
        };
        let total_len = total_size as usize;
        if total_size > i32::MAX as u32 || total_len < RECORD_LEN_MIN {
            return Err(RecordError::Malformed("TOTALSIZE"));
        }
        if total_len > buf.len() {
            return Err(RecordError::Truncated {
                needed: total_len,
                available: buf.len(),
            });
        }

        // Every read below stays inside the record: running past TOTALSIZE means the record
        // contradicts itself, which is malformed rather than truncated.
        let mut r = Reader {
            buf: &buf[..total_len],
            pos: HEADER_LEN,
        };
        let stored_crc = r.u32("BODYCRC")?;
        let queue_id = r.i32("QUEUEID")?;
        let flag = r.i32("FLAG")?;
        let queue_offset = r.i64("QUEUEOFFSET")?;
        let physical_offset = r.i64("PHYSICALOFFSET")?;
        let sys_flag = r.i32("SYSFLAG")?;
        let born_timestamp_ms = r.i64("BORNTIMESTAMP")?;
        let born_host = r.host(sys_flag & BORNHOST_V6 != 0, "BORNHOST")?;
        let store_timestamp_ms = r.i64("STORETIMESTAMP")?;
        let store_host = r.host(sys_flag & STOREHOST_V6 != 0, "STOREHOST")?;
        let reconsume_times = r.i32("RECONSUMETIMES")?;
        let prepared_transaction_offset = r.i64("PREPAREDTRANSACTIONOFFSET")?;

        let body_len = r.i32("BODY")?;
        let body_len = usize::try_from(body_len).map_err(|_| RecordError::Malformed("BODY"))?;
        let body_start = r.pos;
        let body = r.take(body_len, "BODY")?;

        let topic_len = if v2 {
            usize::try_from(r.i16("TOPIC")?)
        } else {
            usize::try_from(r.i8("TOPIC")?)
        }
        .map_err(|_| RecordError::Malformed("TOPIC"))?;
        let topic = std::str::from_utf8(r.take(topic_len, "TOPIC")?)
            .map_err(|_| RecordError::Malformed("TOPIC"))?;

        let properties_len = usize::try_from(r.i16("PROPERTIES")?)
            .map_err(|_| RecordError::Malformed("PROPERTIES"))?;
        let properties = r.take(properties_len, "PROPERTIES")?;

        if r.pos != total_len {
            return Err(RecordError::Malformed("TOTALSIZE"));
        }
        if check_crc {
            let computed = body_crc(body);
            if computed != stored_crc {
                return Err(RecordError::BadCrc {
                    stored: stored_crc,
                    computed,
                });
            }
        }

        Ok(RecordView {
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp_ms,
            born_host,
            store_timestamp_ms,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            topic,
            properties,
            body_start,
        })
    }
}

/// Reads TOTALSIZE (as unsigned) and MAGICCODE from the front of `buf` without judging them: a
/// CommitLog scanner uses this to tell a record ([`MAGIC_V1`], [`MAGIC_V2`]) from the segment's
/// blank filler ([`MAGIC_BLANK`]) and from unwritten space (zeros).
pub fn peek_header(buf: &[u8]) -> Result<(u32, i32), RecordError> {
    match buf {
        [s0, s1, s2, s3, m0, m1, m2, m3, ..] => Ok((
            u32::from_be_bytes([*s0, *s1, *s2, *s3]),
            i32::from_be_bytes([*m0, *m1, *m2, *m3]),
        )),
        _ => Err(RecordError::Truncated {
            needed: HEADER_LEN,
            available: buf.len(),
        }),
    }
}

/// The body CRC as RocketMQ stores it: CRC-32 (IEEE) masked with `0x7FFF_FFFF`.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

/// The bytes an address takes beyond the 8 of an IPv4 host.
fn extra_host_len(host: &SocketAddr) -> usize {
    if host.is_ipv6() {
        12
    } else {
        0
    }
}

fn put_host(out: &mut BytesMut, host: &SocketAddr) {
    match host.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(i32::from(host.port()));
}

/// A bounds-checked big-endian cursor; every failure names the field being read.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or(RecordError::Malformed(field))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn i8(&mut self, field: &'static str) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn host(&mut self, ipv6: bool, field: &'static str) -> Result<SocketAddr, RecordError> {
        let ip = if ipv6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>(field)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?))
        };
        let port = u16::try_from(self.i32(field)?).map_err(|_| RecordError::Malformed(field))?;
        Ok(match ip {
            IpAddr::V4(_) => SocketAddr::new(ip, port),
            IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The record of REMOTING.md §8.3, byte for byte.
    const GOLDEN_HEX: &str = "\
        000000A4DAA320A73610A68600000001\
        00000000000000000000000000000000\
        00001F40000000000000019000C79C00\
        C0A80105 0000D431 0000019000C79C7B\
        C0A8010A00002A9F0000000000000000\
        0000000000000005 68656C6C6F 06546F\
        706963 41003E554E49515F4B45590143\
        30413830313035313039323138423441\
        41433234373645354330303030303102\
        57414954017472756502544147530174\
        616741 02";

    fn unhex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn golden_record() -> MessageRecord {
        let mut properties = Properties::new();
        properties.insert("UNIQ_KEY", "C0A80105109218B4AAC2476E5C000001");
        properties.insert("WAIT", "true");
        properties.insert("TAGS", "tagA");
        MessageRecord {
            queue_id: 1,
            flag: 0,
            queue_offset: 0,
            physical_offset: 8000,
            sys_flag: 0,
            born_timestamp_ms: 1_718_000_000_000,
            born_host: "192.168.1.5:54321".parse().unwrap(),
            store_timestamp_ms: 1_718_000_000_123,
            store_host: "192.168.1.10:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"hello"),
            topic: "TopicA".to_owned(),
            properties,
        }
    }

    /// Goal: our encoder and decoder agree with the worked example of REMOTING.md §8.3.
    /// Method: encode the example record and compare bytes; decode the bytes and compare fields.
    #[test]
    fn golden_record_both_ways() {
        let golden = unhex(GOLDEN_HEX);
        assert_eq!(golden.len(), 164);
        let record = golden_record();
        assert_eq!(record.encoded_len(), 164);
        assert_eq!(record.encode_to_vec().unwrap(), golden);
        assert_eq!(body_crc(b"hello"), 0x3610_A686);

        let decoded = MessageRecord::decode(&Bytes::from(golden.clone()), true).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(peek_header(&golden).unwrap(), (164, MAGIC_V1));
    }

    /// Goal: a record decodes from the front of a buffer holding more, and encode appends.
    #[test]
    fn decode_from_front_and_encode_appends() {
        let record = golden_record();
        let mut out = BytesMut::from(&b"xyz"[..]);
        record.encode(&mut out).unwrap();
        record.encode(&mut out).unwrap();
        assert_eq!(out.len(), 3 + 2 * 164);
        let buf = out.freeze().slice(3..);
        assert_eq!(MessageRecord::decode(&buf, true).unwrap(), record);
        let second = buf.slice(164..);
        assert_eq!(MessageRecord::decode(&second, true).unwrap(), record);
    }

    /// Goal: long topics switch to V2 and IPv6 hosts set their SYSFLAG bits and widen by 12.
    #[test]
    fn v2_and_ipv6_layout() {
        let mut record = golden_record();
        record.topic = "t".repeat(128);
        record.born_host = "[2001:db8::1]:1234".parse().unwrap();
        record.sys_flag = 0x1 | STOREHOST_V6; // stale bit, must be recomputed
        let bytes = record.encode_to_vec().unwrap();
        assert_eq!(bytes.len(), 91 + 1 + 12 + 5 + 128 + 62);
        assert_eq!(bytes.len(), record.encoded_len());
        assert_eq!(peek_header(&bytes).unwrap().1, MAGIC_V2);
        let sys_flag = i32::from_be_bytes(bytes[36..40].try_into().unwrap());
        assert_eq!(sys_flag, 0x1 | BORNHOST_V6);
        let decoded = MessageRecord::decode(&Bytes::from(bytes), true).unwrap();
        assert_eq!(decoded.sys_flag, 0x1 | BORNHOST_V6);
        assert_eq!(decoded.born_host, record.born_host);
        assert_eq!(decoded.topic, record.topic);

        // 127 bytes is still V1.
        record.topic = "t".repeat(127);
        let bytes = record.encode_to_vec().unwrap();
        assert_eq!(peek_header(&bytes).unwrap().1, MAGIC_V1);
    }

    /// Goal: encode refuses what the int16 length fields cannot carry, appending nothing.
    #[test]
    fn encode_limits() {
        let mut record = golden_record();
        record.topic = "t".repeat(32_768);
        let mut out = BytesMut::new();
        assert_eq!(
            record.encode(&mut out),
            Err(RecordError::TopicTooLong(32_768))
        );
        assert!(out.is_empty());
        record.topic = "t".repeat(32_767);
        assert!(record.encode(&mut out).is_ok());

        let mut record = golden_record();
        record.properties = Properties::new();
        record.properties.insert("K", "v".repeat(32_766));
        assert_eq!(
            record.encode_to_vec(),
            Err(RecordError::PropertiesTooLong(32_769))
        );
        record.properties.insert("K", "v".repeat(32_763));
        assert!(record.encode_to_vec().is_ok());
    }

    /// Goal: a corrupted body is caught when (and only when) the CRC is checked.
    #[test]
    fn corrupt_crc_detected() {
        let mut bytes = golden_record().encode_to_vec().unwrap();
        bytes[88] ^= 0x20; // "hello" -> "Hello"
        let buf = Bytes::from(bytes);
        assert_eq!(
            MessageRecord::decode(&buf, true),
            Err(RecordError::BadCrc {
                stored: 0x3610_A686,
                computed: body_crc(b"Hello"),
            })
        );
        assert_eq!(
            &MessageRecord::decode(&buf, false).unwrap().body[..],
            b"Hello"
        );
    }

    /// Goal: every kind of damage maps to its error value.
    #[test]
    fn decode_errors() {
        let golden = unhex(GOLDEN_HEX);
        let decode = |bytes: &[u8]| MessageRecord::decode(&Bytes::copy_from_slice(bytes), false);

        assert_eq!(
            decode(&golden[..5]),
            Err(RecordError::Truncated {
                needed: 8,
                available: 5
            })
        );
        assert_eq!(
            decode(&golden[..100]),
            Err(RecordError::Truncated {
                needed: 164,
                available: 100
            })
        );

        let mut blank = vec![0, 0, 0, 64];
        blank.extend_from_slice(&MAGIC_BLANK.to_be_bytes());
        blank.resize(64, 0);
        assert_eq!(decode(&blank), Err(RecordError::BadMagic(MAGIC_BLANK)));
        assert_eq!(peek_header(&blank).unwrap(), (64, MAGIC_BLANK));
        assert_eq!(decode(&[0; 100]), Err(RecordError::BadMagic(0)));

        // TOTALSIZE one too large (buffer padded so it is not merely truncated).
        let mut bytes = golden.clone();
        bytes[3] = 0xA5;
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("TOTALSIZE")));
        // TOTALSIZE below the minimum.
        let mut bytes = golden.clone();
        bytes[3] = 10;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("TOTALSIZE")));
        // Body length running past the record.
        let mut bytes = golden.clone();
        bytes[87] = 0xF0;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("BODY")));
        // Negative body length.
        let mut bytes = golden.clone();
        bytes[84] = 0x80;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("BODY")));
        // Negative V1 topic length.
        let mut bytes = golden.clone();
        bytes[93] = 0x80;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("TOPIC")));
        // Topic not UTF-8.
        let mut bytes = golden.clone();
        bytes[94] = 0xFF;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("TOPIC")));
        // Port out of range.
        let mut bytes = golden.clone();
        bytes[52] = 0x01;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("BORNHOST")));
        // A spurious IPv6 flag shifts the fields: the record no longer adds up.
        let mut bytes = golden.clone();
        bytes[39] = 0x20;
        assert!(matches!(decode(&bytes), Err(RecordError::Malformed(_))));
    }

    /// Goal: invalid UTF-8 in properties is tolerated the way Java tolerates it.
    #[test]
    fn properties_decode_lossily() {
        let mut bytes = golden_record().encode_to_vec().unwrap();
        let pos = bytes.len() - 2; // the 'A' of "tagA"
        bytes[pos] = 0xFF;
        let decoded = MessageRecord::decode(&Bytes::from(bytes), true).unwrap();
        assert_eq!(decoded.properties.get("TAGS"), Some("tag\u{FFFD}"));
        assert_eq!(decoded.properties.get("WAIT"), Some("true"));
    }

    fn host_strategy() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        ]
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_%-]{0,140}",
            "[a-z\u{e9}\u{4e2d}]{60,100}", // multibyte: byte length crosses 127 sooner
            (128usize..400).prop_map(|n| "x".repeat(n)),
        ]
    }

    fn properties_strategy() -> impl Strategy<Value = Properties> {
        proptest::collection::vec(("[A-Z_]{1,10}", "[^\u{2}]{1,30}"), 0..6)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    prop_compose! {
        fn record_strategy()(
            queue_id in any::<i32>(),
            flag in any::<i32>(),
            queue_offset in any::<i64>(),
            physical_offset in any::<i64>(),
            sys_flag in any::<i32>(),
            born_timestamp_ms in any::<i64>(),
            born_host in host_strategy(),
            store_timestamp_ms in any::<i64>(),
            store_host in host_strategy(),
            reconsume_times in any::<i32>(),
            prepared_transaction_offset in any::<i64>(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            topic in topic_strategy(),
            properties in properties_strategy(),
        ) -> MessageRecord {
            MessageRecord {
                queue_id, flag, queue_offset, physical_offset, sys_flag, born_timestamp_ms,
                born_host, store_timestamp_ms, store_host, reconsume_times,
                prepared_transaction_offset, body: Bytes::from(body), topic, properties,
            }
        }
    }

    proptest! {
        /// Goal: decode(encode(r)) == r with SYSFLAG's host bits following the hosts.
        #[test]
        fn round_trip(record in record_strategy(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut out = BytesMut::new();
            record.encode(&mut out).unwrap();
            prop_assert_eq!(out.len(), record.encoded_len());
            let (total_size, magic) = peek_header(&out).unwrap();
            prop_assert_eq!(total_size as usize, record.encoded_len());
            prop_assert_eq!(magic, if record.topic.len() > 127 { MAGIC_V2 } else { MAGIC_V1 });
            out.extend_from_slice(&tail);
            let decoded = MessageRecord::decode(&out.freeze(), true).unwrap();
            let mut expected = record.clone();
            expected.sys_flag &= !(BORNHOST_V6 | STOREHOST_V6);
            if record.born_host.is_ipv6() { expected.sys_flag |= BORNHOST_V6; }
            if record.store_host.is_ipv6() { expected.sys_flag |= STOREHOST_V6; }
            prop_assert_eq!(decoded, expected);
        }

        /// Goal: arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = MessageRecord::decode(&Bytes::from(bytes), true);
        }

        /// Goal: arbitrary bytes behind a plausible header never panic (reaches the field
        /// parsing that random bytes rarely get to).
        #[test]
        fn arbitrary_body_behind_header_never_panics(
            v2 in any::<bool>(),
            rest in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&((rest.len() + 8) as i32).to_be_bytes());
            bytes.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
            bytes.extend_from_slice(&rest);
            let _ = MessageRecord::decode(&Bytes::from(bytes), true);
        }

        /// Goal: damaging or truncating a valid record gives an error or a record, never a panic;
        /// truncation is always an error.
        #[test]
        fn damaged_records_never_panic(
            record in record_strategy(),
            index in any::<prop::sample::Index>(),
            value in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = record.encode_to_vec().unwrap();
            let mut damaged = bytes.clone();
            let i = index.index(damaged.len());
            damaged[i] = value;
            let _ = MessageRecord::decode(&Bytes::from(damaged), true);
            let cut = cut.index(bytes.len());
            prop_assert!(MessageRecord::decode(&Bytes::copy_from_slice(&bytes[..cut]), false).is_err());
        }
    }
}
