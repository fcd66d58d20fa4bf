//! The whole-record CRC property `__CRC32#` (RocketMQ 5's `enabledAppendPropCRC`).
//!
//! BODYCRC covers only the body: a damaged QUEUEOFFSET, timestamp, host, topic or property would
//! be served as if it were sound. With the store's `enabledAppendPropCRC` on, every record the
//! store appends ends with one more property whose value is the CRC of everything before it:
//!
//! ```text
//!  0                                              total - 20                        total
//!  +----------------------------------------------+---------------------------------+
//!  | TOTALSIZE ... BODY  TOPIC  len  other props  | __CRC32#  01  d0 d1 ... d9  02  |
//!  +----------------------------------------------+---------------------------------+
//!  |<------- covered by the record CRC ---------->|<-- CRC32_RESERVED_LEN = 20 ---->|
//!                                                  8 bytes   1   10 digits     1
//! ```
//!
//! * The trailer is the last pair of the property string: the int16 properties length and
//!   TOTALSIZE count its 20 bytes, so the 32767-byte properties limit includes them. The other
//!   pairs each end with their own 0x02 (the encoder always writes it), so the trailer parses as
//!   an ordinary property and clients see `__CRC32#` among the message's properties, as
//!   RocketMQ's clients do.
//! * The CRC is computed once QUEUEOFFSET, PHYSICALOFFSET, STORETIMESTAMP and everything else are
//!   final, over bytes `[0, total - 20)`: the whole record except the trailer itself. It is
//!   CRC-32 (IEEE) masked with `0x7FFF_FFFF`, the same function as BODYCRC ([`body_crc`]).
//! * The 10 digits are the CRC in decimal, **least significant digit first**, padded with `'0'`
//!   on the right: CRC 12345 is written `5432100000`. This is RocketMQ's
//!   `MessageDecoder.createCrc32` byte for byte, so its tools verify our records and we verify
//!   its.
//!
//! A record carries at most one trailer, always last: the store drops any `__CRC32#` a record
//! brings along (messages re-put by the schedule, timer and transaction services, retries, or a
//! producer forwarding what it consumed copy the stored properties) before appending its own, and
//! drops it too when the key is off, so a stale value is never stored.
//!
//! [`verify`] tells a record without a trailer (older data, or the key off) from one whose
//! trailer is intact or damaged. The trailer lies outside the bytes its CRC covers, so damage to
//! the trailer itself is recognised by its shape: a tail that matches the template in all but
//! one position, or whose name is intact, is a damaged trailer (an error), not an old record.

use super::properties::{Properties, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};
use super::record::{body_crc, RecordError};

/// The property name of the record CRC (Java `MessageConst.PROPERTY_CRC32`).
pub const PROPERTY_CRC32: &str = "__CRC32#";

/// The number of decimal digits of the CRC value.
pub const CRC32_DIGITS: usize = 10;

/// The bytes the trailer takes at the end of a record (Java `CommitLog.CRC32_RESERVED_LEN`):
/// name, 0x01, 10 digits, 0x02.
pub const CRC32_RESERVED_LEN: usize = PROPERTY_CRC32.len() + 1 + CRC32_DIGITS + 1;

/// The value the trailer holds until [`seal`] writes the CRC over it.
const PLACEHOLDER: &str = "0000000000";

/// What the end of a record says about its record CRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordCrc {
    /// No trailer: a record written before the key existed or with it off. Only BODYCRC
    /// protects it.
    Absent,
    /// The trailer is intact and its CRC matches the record.
    Verified(u32),
}

/// The record CRC of `covered` (the record without its 20-byte trailer).
pub fn record_crc(covered: &[u8]) -> u32 {
    body_crc(covered)
}

/// Drops any `__CRC32#` from `properties`, keeping the others in order.
pub fn strip(properties: &mut Properties) {
    properties.remove(PROPERTY_CRC32);
}

/// Makes `__CRC32#` the single, last property, holding a placeholder: encoding the record then
/// reserves the trailer's 20 bytes with TOTALSIZE and the properties length right, and [`seal`]
/// fills in the CRC.
pub fn reserve(properties: &mut Properties) {
    strip(properties);
    properties.insert(PROPERTY_CRC32, PLACEHOLDER);
}

/// Writes the record CRC into the trailer of `record`, one whole encoded record whose properties
/// were prepared by [`reserve`]. Call it after the last field of the record is final.
///
/// Errors with [`RecordError::Malformed`] when `record` does not end with a trailer (nothing is
/// written then).
pub fn seal(record: &mut [u8]) -> Result<u32, RecordError> {
    let covered_len = record
        .len()
        .checked_sub(CRC32_RESERVED_LEN)
        .ok_or(RecordError::Malformed(PROPERTY_CRC32))?;
    let (covered, trailer) = record.split_at_mut(covered_len);
    if mismatches(trailer) != 0 {
        return Err(RecordError::Malformed(PROPERTY_CRC32));
    }
    let crc = record_crc(covered);
    let digits_at = PROPERTY_CRC32.len() + 1;
    trailer[digits_at..digits_at + CRC32_DIGITS].copy_from_slice(&crc_digits(crc));
    Ok(crc)
}

/// The trailer's digits for `crc`: decimal, least significant digit first, `'0'`-padded.
pub fn crc_digits(crc: u32) -> [u8; CRC32_DIGITS] {
    let mut digits = [b'0'; CRC32_DIGITS];
    let mut rest = crc;
    for digit in &mut digits {
        // u32::MAX has 10 decimal digits, so `rest` is 0 by the end.
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    digits
}

/// Reads the trailer's digits back; `None` when one is not a decimal digit or the value does
/// not fit a u32.
pub fn parse_crc_digits(digits: &[u8]) -> Option<u32> {
    if digits.len() != CRC32_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().rev().try_fold(0u32, |acc, digit| {
        acc.checked_mul(10)?.checked_add(u32::from(digit - b'0'))
    })
}

/// Verifies the record CRC of `record`, one whole record whose properties take its last
/// `properties_len` bytes (the caller has parsed the record, so the length is known to be right).
///
/// A record whose last property is not `__CRC32#` is [`RecordCrc::Absent`]. Errors:
/// [`RecordError::RecordCrcMismatch`] when the stored CRC disagrees with the covered bytes, and
/// [`RecordError::Malformed`]`("__CRC32#")` when the trailer is damaged beyond reading (a
/// corrupted name, separator or digit).
pub fn verify(record: &[u8], properties_len: usize) -> Result<RecordCrc, RecordError> {
    if properties_len < CRC32_RESERVED_LEN || record.len() < properties_len {
        return Ok(RecordCrc::Absent);
    }
    let (covered, trailer) = record.split_at(record.len() - CRC32_RESERVED_LEN);
    match mismatches(trailer) {
        0 => {}
        1 => return Err(RecordError::Malformed(PROPERTY_CRC32)),
        _ if trailer.starts_with(PROPERTY_CRC32.as_bytes()) => {
            return Err(RecordError::Malformed(PROPERTY_CRC32))
        }
        _ => return Ok(RecordCrc::Absent),
    }
    let digits_at = PROPERTY_CRC32.len() + 1;
    let stored = parse_crc_digits(&trailer[digits_at..digits_at + CRC32_DIGITS])
        .ok_or(RecordError::Malformed(PROPERTY_CRC32))?;
    let computed = record_crc(covered);
    if stored != computed {
        return Err(RecordError::RecordCrcMismatch { stored, computed });
    }
    Ok(RecordCrc::Verified(computed))
}

/// How many of the trailer's 20 positions break its template (exact name, 0x01, ten decimal
/// digits, 0x02). One single-byte error anywhere in a trailer gives exactly 1; the tail of a
/// record without a trailer almost never comes that close (it would need a last property named
/// within one byte of `__CRC32#` with a 10-digit value).
fn mismatches(trailer: &[u8]) -> usize {
    if trailer.len() != CRC32_RESERVED_LEN {
        return CRC32_RESERVED_LEN;
    }
    let name = PROPERTY_CRC32.as_bytes();
    let digits_at = name.len() + 1;
    let name_bad = trailer
        .iter()
        .zip(name)
        .filter(|(got, want)| got != want)
        .count();
    let digits_bad = trailer[digits_at..digits_at + CRC32_DIGITS]
        .iter()
        .filter(|b| !b.is_ascii_digit())
        .count();
    let separators_bad = usize::from(trailer[name.len()] != NAME_VALUE_SEPARATOR as u8)
        + usize::from(trailer[CRC32_RESERVED_LEN - 1] != PROPERTY_SEPARATOR as u8);
    name_bad + digits_bad + separators_bad
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::message::MessageRecord;

    fn record(properties: &[(&str, &str)]) -> MessageRecord {
        MessageRecord {
            queue_id: 3,
            flag: 0,
            queue_offset: 7,
            physical_offset: 4096,
            sys_flag: 0,
            born_timestamp_ms: 1_718_000_000_000,
            born_host: "192.168.1.5:54321".parse().unwrap(),
            store_timestamp_ms: 1_718_000_000_123,
            store_host: "192.168.1.10:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"hello"),
            topic: "TopicA".to_owned(),
            properties: properties.iter().copied().collect(),
        }
    }

    fn sealed(mut record: MessageRecord) -> Vec<u8> {
        reserve(&mut record.properties);
        let mut bytes = record.encode_to_vec().unwrap();
        seal(&mut bytes).unwrap();
        bytes
    }

    /// Goal: the constants are RocketMQ's: a 20-byte trailer named `__CRC32#`.
    #[test]
    fn reserved_length_is_rocketmqs() {
        assert_eq!(CRC32_RESERVED_LEN, 20);
        assert_eq!(PROPERTY_CRC32, "__CRC32#");
    }

    /// Goal: digits are written least significant first and zero-padded, as
    /// `MessageDecoder.createCrc32` writes them, and read back.
    #[test]
    fn digit_order() {
        assert_eq!(&crc_digits(12345), b"5432100000");
        assert_eq!(&crc_digits(0), b"0000000000");
        assert_eq!(&crc_digits(0x7FFF_FFFF), b"7463847412");
        assert_eq!(&crc_digits(u32::MAX), b"5927694924");
        for crc in [0, 1, 9, 10, 12345, 0x7FFF_FFFF, u32::MAX] {
            assert_eq!(parse_crc_digits(&crc_digits(crc)), Some(crc));
        }
        assert_eq!(parse_crc_digits(b"9999999999"), None); // over u32
        assert_eq!(parse_crc_digits(b"00000a0000"), None);
        assert_eq!(parse_crc_digits(b"000"), None);
    }

    /// Goal: a sealed record ends with the trailer holding the CRC of everything before it,
    /// which decodes as the last property, and verifies.
    #[test]
    fn sealed_record_layout() {
        let plain = record(&[("KEYS", "k1"), ("TAGS", "tagA")]);
        let bytes = sealed(plain.clone());
        assert_eq!(bytes.len(), plain.encoded_len() + CRC32_RESERVED_LEN);
        let total = bytes.len();
        let crc = record_crc(&bytes[..total - 20]);
        let mut trailer = b"__CRC32#\x01".to_vec();
        trailer.extend_from_slice(&crc_digits(crc));
        trailer.push(0x02);
        assert_eq!(&bytes[total - 20..], &trailer[..]);

        let decoded = MessageRecord::decode(&Bytes::from(bytes.clone()), true).unwrap();
        let names: Vec<&str> = decoded.properties.iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["KEYS", "TAGS", PROPERTY_CRC32]);
        let digits = crc_digits(crc);
        assert_eq!(
            decoded.properties.get(PROPERTY_CRC32),
            Some(std::str::from_utf8(&digits).unwrap())
        );
        let properties_len = decoded.properties.encoded_len();
        assert_eq!(verify(&bytes, properties_len), Ok(RecordCrc::Verified(crc)));
    }

    /// Goal: a record that already carries `__CRC32#` (anywhere) ends up with exactly one, last.
    #[test]
    fn reserve_replaces_an_existing_trailer() {
        let mut plain = record(&[
            ("KEYS", "k1"),
            (PROPERTY_CRC32, "1234567890"),
            ("TAGS", "t"),
        ]);
        let bytes = sealed(plain.clone());
        let decoded = MessageRecord::decode(&Bytes::from(bytes.clone()), true).unwrap();
        let names: Vec<&str> = decoded.properties.iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["KEYS", "TAGS", PROPERTY_CRC32]);
        assert!(matches!(
            verify(&bytes, decoded.properties.encoded_len()),
            Ok(RecordCrc::Verified(_))
        ));

        // Re-sealing the decoded record (a re-put) still gives one trailer, right for the new
        // offsets.
        plain = decoded;
        plain.queue_offset = 99;
        plain.physical_offset = 123_456;
        let again = sealed(plain);
        let redecoded = MessageRecord::decode(&Bytes::from(again.clone()), true).unwrap();
        assert_eq!(
            redecoded
                .properties
                .iter()
                .filter(|(k, _)| *k == PROPERTY_CRC32)
                .count(),
            1
        );
        assert_eq!(
            verify(&again, redecoded.properties.encoded_len()),
            Ok(RecordCrc::Verified(record_crc(&again[..again.len() - 20])))
        );
    }

    /// Goal: records without a trailer are `Absent`, including ones whose last property merely
    /// resembles it from afar.
    #[test]
    fn absent_without_trailer() {
        let bytes = record(&[("TAGS", "tagA")]).encode_to_vec().unwrap();
        assert_eq!(verify(&bytes, 10), Ok(RecordCrc::Absent));
        let bytes = record(&[("ORDER_ID", "0123456789")])
            .encode_to_vec()
            .unwrap();
        assert_eq!(verify(&bytes, 20), Ok(RecordCrc::Absent));
        assert_eq!(verify(&bytes, 5), Ok(RecordCrc::Absent));
    }

    /// Goal: seal refuses a record without a reserved trailer and writes nothing.
    #[test]
    fn seal_needs_a_trailer() {
        let mut bytes = record(&[("TAGS", "tagA")]).encode_to_vec().unwrap();
        let before = bytes.clone();
        assert_eq!(
            seal(&mut bytes),
            Err(RecordError::Malformed(PROPERTY_CRC32))
        );
        assert_eq!(bytes, before);
        assert_eq!(
            seal(&mut [0u8; 5]),
            Err(RecordError::Malformed(PROPERTY_CRC32))
        );
    }

    /// Goal: every single-bit error in a sealed record is caught by `verify` (or, where it
    /// breaks the structure, by decoding first); none passes as a sound record.
    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = sealed(record(&[("KEYS", "k1"), ("TAGS", "tagA")]));
        // "KEYS" 01 "k1" 02 "TAGS" 01 "tagA" 02, then the trailer. A damaged record that still
        // decodes has its properties where they were: one flip cannot move a field and keep
        // TOTALSIZE consistent.
        let properties_len = 8 + 10 + CRC32_RESERVED_LEN;
        assert_eq!(
            verify(&bytes, properties_len),
            Ok(RecordCrc::Verified(record_crc(&bytes[..bytes.len() - 20])))
        );
        for pos in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[pos] ^= 1 << bit;
                let caught = MessageRecord::decode(&Bytes::from(damaged.clone()), true).is_err()
                    || verify(&damaged, properties_len).is_err();
                assert!(caught, "flip of bit {bit} at byte {pos} went unnoticed");
            }
        }
    }
}
