//! SEND_BATCH_MESSAGE bodies: a concatenation of entries.
//!
//! Each entry (big-endian):
//!
//! ```text
//!  offset  size  field
//!  ------  ----  ------------------------------------------------------
//!       0     4  TOTALSIZE   22 + n + p, this field included
//!       4     4  MAGICCODE   0 from clients; ignored
//!       8     4  BODYCRC     0 from clients; ignored (the broker recomputes it)
//!      12     4  FLAG        the message's flag
//!      16   4+n  BODY        int32 length n, then the body
//!    20+n   2+p  PROPERTIES  int16 length p, then the entry's property string
//! ```
//!
//! Every entry carries its own properties (its own UNIQ_KEY, TAGS, KEYS, WAIT); topic, queue,
//! SYSFLAG and born data come from the request header. Property strings are decoded leniently
//! (invalid UTF-8 becomes U+FFFD), as for stored records.

use bytes::Bytes;

use super::properties::PROPERTIES_LEN_MAX;
use super::{Properties, RecordError};

/// The size of an entry with an empty body and no properties.
pub const ENTRY_LEN_MIN: usize = 22;

/// One message of a batch body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    pub properties: Properties,
}

impl BatchEntry {
    /// The encoded size of this entry.
    pub fn encoded_len(&self) -> usize {
        ENTRY_LEN_MIN + self.body.len() + self.properties.encoded_len()
    }
}

/// Decodes a whole batch body. Bodies are zero-copy slices of `body`.
///
/// Errors: an entry whose TOTALSIZE (or its fixed fields) runs past the end of the body gives
/// [`RecordError::Truncated`] (offsets counted from the start of the body); a TOTALSIZE below 22
/// or disagreeing with the entry's fields, or a negative length, gives
/// [`RecordError::Malformed`]. An empty body decodes to no entries; whether that is acceptable
/// is the caller's decision.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>, RecordError> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let total_size = read_i32(body, pos)?;
        let total_len = usize::try_from(total_size)
            .ok()
            .filter(|len| *len >= ENTRY_LEN_MIN)
            .ok_or(RecordError::Malformed("TOTALSIZE"))?;
        let end = pos.saturating_add(total_len);
        if end > body.len() {
            return Err(RecordError::Truncated {
                needed: end,
                available: body.len(),
            });
        }
        // Fields are read within [pos, end): overrunning the entry contradicts TOTALSIZE.
        let entry = &body[..end];
        let flag = read_i32(entry, pos + 12).map_err(|_| RecordError::Malformed("TOTALSIZE"))?;
        let body_len =
            read_i32(entry, pos + 16).map_err(|_| RecordError::Malformed("TOTALSIZE"))?;
        let body_len = usize::try_from(body_len).map_err(|_| RecordError::Malformed("BODY"))?;
        let body_start = pos + 20;
        let body_end = body_start
            .checked_add(body_len)
            .filter(|e| *e <= end)
            .ok_or(RecordError::Malformed("BODY"))?;
        let properties_len = read_i16(entry, body_end)?;
        let properties_len =
            usize::try_from(properties_len).map_err(|_| RecordError::Malformed("PROPERTIES"))?;
        let properties_start = body_end + 2;
        let properties_end = properties_start + properties_len;
        if properties_end != end {
            return Err(RecordError::Malformed("TOTALSIZE"));
        }
        let properties = Properties::parse(&String::from_utf8_lossy(
            &entry[properties_start..properties_end],
        ));
        entries.push(BatchEntry {
            flag,
            body: body.slice(body_start..body_end),
            properties,
        });
        pos = end;
    }
    Ok(entries)
}

/// Encodes a batch body the way clients do (MAGICCODE and BODYCRC zero).
///
/// Errors: an entry's properties over 32767 bytes ([`RecordError::PropertiesTooLong`]) or an
/// entry over the int32 TOTALSIZE ([`RecordError::RecordTooLong`]).
pub fn encode_batch(entries: &[BatchEntry]) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(entries.iter().map(BatchEntry::encoded_len).sum());
    for entry in entries {
        let properties = entry.properties.encode();
        if properties.len() > PROPERTIES_LEN_MAX {
            return Err(RecordError::PropertiesTooLong(properties.len()));
        }
        let total_len = entry.encoded_len();
        let Ok(total_size) = i32::try_from(total_len) else {
            return Err(RecordError::RecordTooLong(total_len));
        };
        out.extend_from_slice(&total_size.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&entry.flag.to_be_bytes());
        // Bounded by the int32 total above.
        out.extend_from_slice(&(entry.body.len() as i32).to_be_bytes());
        out.extend_from_slice(&entry.body);
        out.extend_from_slice(&(properties.len() as i16).to_be_bytes());
        out.extend_from_slice(properties.as_bytes());
    }
    Ok(out)
}

/// Reads a big-endian i32 at `pos`, or reports how many bytes were needed.
fn read_i32(buf: &[u8], pos: usize) -> Result<i32, RecordError> {
    match buf.get(pos..pos + 4) {
        Some(&[a, b, c, d]) => Ok(i32::from_be_bytes([a, b, c, d])),
        _ => Err(RecordError::Truncated {
            needed: pos + 4,
            available: buf.len(),
        }),
    }
}

/// Reads a big-endian i16 at `pos` inside an entry whose end is `buf.len()`.
fn read_i16(buf: &[u8], pos: usize) -> Result<i16, RecordError> {
    match buf.get(pos..pos + 2) {
        Some(&[a, b]) => Ok(i16::from_be_bytes([a, b])),
        _ => Err(RecordError::Malformed("TOTALSIZE")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The batch body of REMOTING.md §8.4.
    const GOLDEN_HEX: &str = "\
        00 00 00 30 00 00 00 00 00 00 00 00 00 00 00 00\
        00 00 00 02 6D 31 00 18 55 4E 49 51 5F 4B 45 59\
        01 41 41 41 41 02 57 41 49 54 01 74 72 75 65 02\
        00 00 00 31 00 00 00 00 00 00 00 00 00 00 00 00\
        00 00 00 03 6D 32 32 00 18 55 4E 49 51 5F 4B 45\
        59 01 42 42 42 42 02 57 41 49 54 01 74 72 75 65\
        02";

    fn unhex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn entry(body: &'static [u8], uniq_key: &str) -> BatchEntry {
        let mut properties = Properties::new();
        properties.insert("UNIQ_KEY", uniq_key);
        properties.insert("WAIT", "true");
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(body),
            properties,
        }
    }

    /// Goal: agree with the worked batch of REMOTING.md §8.4 both ways.
    #[test]
    fn golden_batch_both_ways() {
        let golden = unhex(GOLDEN_HEX);
        assert_eq!(golden.len(), 48 + 49);
        let entries = vec![entry(b"m1", "AAAA"), entry(b"m22", "BBBB")];
        assert_eq!(encode_batch(&entries).unwrap(), golden);
        assert_eq!(decode_batch(&Bytes::from(golden)).unwrap(), entries);
    }

    /// Goal: each kind of damage maps to its error value.
    #[test]
    fn decode_errors() {
        let golden = unhex(GOLDEN_HEX);
        let decode = |bytes: &[u8]| decode_batch(&Bytes::copy_from_slice(bytes));

        assert_eq!(decode(&[]), Ok(vec![]));
        assert_eq!(
            decode(&golden[..2]),
            Err(RecordError::Truncated {
                needed: 4,
                available: 2
            })
        );
        assert_eq!(
            decode(&golden[..60]),
            Err(RecordError::Truncated {
                needed: 97,
                available: 60
            })
        );
        // TOTALSIZE too small, negative, or one too large.
        let mut bytes = golden.clone();
        bytes[3] = 21;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("TOTALSIZE")));
        let mut bytes = golden.clone();
        bytes[0] = 0x80;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("TOTALSIZE")));
        let mut bytes = golden.clone();
        bytes[3] = 49;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("TOTALSIZE")));
        // Body length past the entry, negative.
        let mut bytes = golden.clone();
        bytes[19] = 40;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("BODY")));
        let mut bytes = golden.clone();
        bytes[16] = 0xFF;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("BODY")));
        // Negative properties length.
        let mut bytes = golden.clone();
        bytes[22] = 0x80;
        assert_eq!(decode(&bytes), Err(RecordError::Malformed("PROPERTIES")));
    }

    /// Goal: oversized properties are refused on encode.
    #[test]
    fn encode_limits() {
        let mut big = entry(b"x", "A");
        big.properties.insert("P", "v".repeat(40_000));
        assert!(matches!(
            encode_batch(&[big]),
            Err(RecordError::PropertiesTooLong(_))
        ));
    }

    fn entry_strategy() -> impl Strategy<Value = BatchEntry> {
        (
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(("[A-Z_]{1,10}", "[^\u{2}]{1,30}"), 0..5),
        )
            .prop_map(|(flag, body, pairs)| BatchEntry {
                flag,
                body: Bytes::from(body),
                properties: pairs.into_iter().collect(),
            })
    }

    proptest! {
        /// Goal: decode(encode(entries)) == entries.
        #[test]
        fn round_trip(entries in proptest::collection::vec(entry_strategy(), 0..6)) {
            let bytes = encode_batch(&entries).unwrap();
            prop_assert_eq!(bytes.len(), entries.iter().map(BatchEntry::encoded_len).sum::<usize>());
            prop_assert_eq!(decode_batch(&Bytes::from(bytes)).unwrap(), entries);
        }

        /// Goal: arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batch(&Bytes::from(bytes));
        }

        /// Goal: damaged or truncated valid batches never panic; truncation is an error.
        #[test]
        fn damaged_batches_never_panic(
            entries in proptest::collection::vec(entry_strategy(), 1..4),
            index in any::<prop::sample::Index>(),
            value in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode_batch(&entries).unwrap();
            let mut damaged = bytes.clone();
            let i = index.index(damaged.len());
            damaged[i] = value;
            let _ = decode_batch(&Bytes::from(damaged));
            let cut = cut.index(bytes.len());
            if cut > 0 {
                let prefix = Bytes::copy_from_slice(&bytes[..cut]);
                let entry_boundary = {
                    let mut at = 0;
                    let mut boundary = false;
                    for e in &entries {
                        at += e.encoded_len();
                        boundary |= at == cut;
                    }
                    boundary
                };
                prop_assert_eq!(decode_batch(&prefix).is_err(), !entry_boundary);
            }
        }
    }
}
