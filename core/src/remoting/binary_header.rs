//! Compact ROCKETMQ binary header encoding (serialize type 1).
//!
//! ```text
//! offset  size  field
//!      0     2  code            i16, read as signed
//!      2     1  language        byte, see LANGUAGES
//!      3     2  version         i16
//!      5     4  opaque          i32
//!      9     4  flag            i32
//!     13     4  remark_len      i32, 0 = no remark
//!     17     R  remark          UTF-8
//!   17+R     4  ext_len         i32, bytes of the entries that follow, 0 = none
//!   21+R     E  entries         repeated: key_len i16 | key UTF-8 | value_len i32 | value UTF-8
//! ```
//!
//! All integers big-endian. Every length is checked against what is left of the header, so a
//! lying length is a `BadHeader`, never a panic. Bytes after the ext section are ignored, as Java
//! ignores them. Text is decoded like Java's `new String(bytes, UTF_8)`: invalid sequences become
//! U+FFFD.
//!
//! Not every command fits: `code` and `version` are 16-bit here, keys have 16-bit lengths and the
//! language must be one of the enum names. [`can_encode`] says whether a command fits; the frame
//! encoder falls back to JSON when it does not (the POP family, codes ≥ 200050, is JSON-only in
//! practice for this reason).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::FrameError;
use super::command::{RemotingCommand, SerializeType};

/// Fixed part of the header: everything except the remark and the ext entries.
const FIXED_LEN: usize = 21;

/// RocketMQ's `LanguageCode` enum: the byte is the index, the name its JSON spelling.
const LANGUAGES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

/// The language name for a binary header's language byte, if the byte is known.
pub(crate) fn language_name(byte: u8) -> Option<&'static str> {
    LANGUAGES.get(usize::from(byte)).copied()
}

/// The binary header's language byte for a language name, if the name is known.
fn language_byte(name: &str) -> Option<u8> {
    LANGUAGES
        .iter()
        .position(|known| *known == name)
        .and_then(|index| u8::try_from(index).ok())
}

/// Whether `cmd` can be written as a binary header without losing information: code and version
/// fit in an i16, the language is a known name and every key is shorter than 32 KiB.
pub(crate) fn can_encode(cmd: &RemotingCommand) -> bool {
    i16::try_from(cmd.code).is_ok()
        && i16::try_from(cmd.version).is_ok()
        && language_byte(&cmd.language).is_some()
        && cmd
            .ext_fields
            .keys()
            .all(|key| i16::try_from(key.len()).is_ok())
}

/// Appends the binary header of `cmd` (without the frame words) to `out`. Returns false, having
/// appended nothing, when [`can_encode`] is false or a length does not fit its field.
pub(crate) fn encode(cmd: &RemotingCommand, out: &mut BytesMut) -> bool {
    let (Ok(code), Ok(version), Some(language)) = (
        i16::try_from(cmd.code),
        i16::try_from(cmd.version),
        language_byte(&cmd.language),
    ) else {
        return false;
    };
    let start = out.len();
    let remark = cmd.remark.as_deref().unwrap_or("");
    let Ok(remark_len) = i32::try_from(remark.len()) else {
        return false;
    };
    let ext_len: usize = cmd
        .ext_fields
        .iter()
        .map(|(key, value)| 6 + key.len() + value.len())
        .sum();
    out.reserve(FIXED_LEN + remark.len() + ext_len);
    out.put_i16(code);
    out.put_u8(language);
    out.put_i16(version);
    out.put_i32(cmd.opaque);
    out.put_i32(cmd.flag);
    out.put_i32(remark_len);
    out.put_slice(remark.as_bytes());
    let Ok(ext_len) = i32::try_from(ext_len) else {
        out.truncate(start);
        return false;
    };
    out.put_i32(ext_len);
    for (key, value) in &cmd.ext_fields {
        let (Ok(key_len), Ok(value_len)) = (i16::try_from(key.len()), i32::try_from(value.len()))
        else {
            out.truncate(start);
            return false;
        };
        out.put_i16(key_len);
        out.put_slice(key.as_bytes());
        out.put_i32(value_len);
        out.put_slice(value.as_bytes());
    }
    true
}

/// Parses a binary header into a command with an empty body.
pub(crate) fn decode(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let mut reader = Reader { rest: header };
    let code = i16::from_be_bytes(reader.array("code")?);
    let [language] = reader.array("language")?;
    let version = i16::from_be_bytes(reader.array("version")?);
    let opaque = i32::from_be_bytes(reader.array("opaque")?);
    let flag = i32::from_be_bytes(reader.array("flag")?);
    let remark_len = reader.length_i32("remark length")?;
    // Zero-length remark means "no remark" (Java writes null as length 0).
    let remark = match remark_len {
        0 => None,
        len => Some(text(reader.take(len, "remark")?)),
    };
    let ext_len = reader.length_i32("ext fields length")?;
    let mut entries = Reader {
        rest: reader.take(ext_len, "ext fields")?,
    };
    let mut ext_fields = BTreeMap::new();
    while !entries.rest.is_empty() {
        let key_len = i16::from_be_bytes(entries.array("ext key length")?);
        let key_len = usize::try_from(key_len)
            .map_err(|_| bad(format!("negative ext key length {key_len}")))?;
        let key = text(entries.take(key_len, "ext key")?);
        let value_len = entries.length_i32("ext value length")?;
        let value = text(entries.take(value_len, "ext value")?);
        ext_fields.insert(key, value);
    }
    Ok(RemotingCommand {
        code: i32::from(code),
        // An unknown byte is a language we have no name for: "OTHER" says exactly that.
        language: language_name(language).unwrap_or("OTHER").to_owned(),
        version: i32::from(version),
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

fn bad(message: String) -> FrameError {
    FrameError::BadHeader(format!("binary header: {message}"))
}

/// UTF-8 text, decoded leniently like Java does.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A bounds-checked cursor over header bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], FrameError> {
        if len > self.rest.len() {
            return Err(bad(format!(
                "{what} needs {len} bytes but only {} remain",
                self.rest.len()
            )));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FrameError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    /// An i32 length that must not be negative.
    fn length_i32(&mut self, what: &str) -> Result<usize, FrameError> {
        let len = i32::from_be_bytes(self.array(what)?);
        usize::try_from(len).map_err(|_| bad(format!("negative {what} {len}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_table_round_trips() {
        for byte in 0..=13u8 {
            let name = language_name(byte).unwrap();
            assert_eq!(language_byte(name), Some(byte));
        }
        assert_eq!(language_name(12), Some("RUST"));
        assert_eq!(language_name(14), None);
        assert_eq!(language_byte("COBOL"), None);
    }

    /// Goal: a language byte outside the table decodes as "OTHER". Method: patch the byte of a
    /// valid header.
    #[test]
    fn unknown_language_byte_is_other() {
        let mut out = BytesMut::new();
        assert!(encode(&RemotingCommand::request(1), &mut out));
        out[2] = 200;
        assert_eq!(decode(&out).unwrap().language, "OTHER");
    }

    /// Goal: what cannot be represented is refused, not truncated. Method: one command per
    /// limit.
    #[test]
    fn refuses_what_does_not_fit() {
        let mut big_code = RemotingCommand::request(200_050);
        let mut out = BytesMut::new();
        assert!(!can_encode(&big_code));
        assert!(!encode(&big_code, &mut out));
        big_code.code = 1;
        big_code.version = 40_000;
        assert!(!can_encode(&big_code));
        big_code.version = 1;
        big_code.language = "COBOL".to_owned();
        assert!(!can_encode(&big_code));
        let long_key = RemotingCommand::request(1).with_ext(&"k".repeat(40_000), "v");
        assert!(!can_encode(&long_key));
        assert!(!encode(&long_key, &mut out));
        assert!(out.is_empty());
    }

    /// Goal: negative codes and versions survive (they are signed on the wire). Method: round
    /// trip.
    #[test]
    fn signed_fields_round_trip() {
        let mut cmd = RemotingCommand::request(-1006);
        cmd.version = -5;
        cmd.serialize_type = SerializeType::RocketMq;
        let mut out = BytesMut::new();
        assert!(encode(&cmd, &mut out));
        assert_eq!(decode(&out).unwrap(), cmd);
    }

    /// Goal: every truncation of a valid header, and every lying length, is a BadHeader. Method:
    /// decode each prefix; patch the remark and ext lengths.
    #[test]
    fn truncations_and_bad_lengths_are_errors() {
        let mut cmd = RemotingCommand::request(105).with_ext("topic", "TopicA");
        cmd.remark = Some("hi".to_owned());
        let mut out = BytesMut::new();
        assert!(encode(&cmd, &mut out));
        // Prefixes that cut the fixed part, the remark, the ext length or an entry all fail;
        // prefixes ending exactly after the ext section cannot exist (the section is last).
        for len in 0..out.len() {
            assert!(
                matches!(decode(&out[..len]), Err(FrameError::BadHeader(_))),
                "prefix {len}"
            );
        }
        let remark_len_at = 13;
        for lie in [-1i32, 3, 1000, i32::MAX, i32::MIN] {
            let mut patched = out.clone();
            patched[remark_len_at..remark_len_at + 4].copy_from_slice(&lie.to_be_bytes());
            if lie == 3 {
                // Reading one byte too many shifts everything; it still must not panic.
                let _ = decode(&patched);
            } else {
                assert!(matches!(decode(&patched), Err(FrameError::BadHeader(_))));
            }
        }
        let ext_len_at = 17 + 2;
        for lie in [-1i32, 18, i32::MAX] {
            let mut patched = out.clone();
            patched[ext_len_at..ext_len_at + 4].copy_from_slice(&lie.to_be_bytes());
            assert!(matches!(decode(&patched), Err(FrameError::BadHeader(_))));
        }
        // A negative key length inside the section.
        let mut patched = out.clone();
        patched[ext_len_at + 4..ext_len_at + 6].copy_from_slice(&(-1i16).to_be_bytes());
        assert!(matches!(decode(&patched), Err(FrameError::BadHeader(_))));
    }

    /// Goal: zero-length remark reads as none; trailing bytes after the ext section are ignored
    /// like Java does. Method: handwritten header.
    #[test]
    fn zero_remark_and_trailing_bytes() {
        let mut header = vec![0, 34, 9, 0, 100, 0, 0, 0, 7, 0, 0, 0, 0];
        header.extend_from_slice(&0i32.to_be_bytes());
        header.extend_from_slice(&0i32.to_be_bytes());
        header.extend_from_slice(b"junk");
        let cmd = decode(&header).unwrap();
        assert_eq!(cmd.code, 34);
        assert_eq!(cmd.language, "GO");
        assert_eq!(cmd.version, 100);
        assert_eq!(cmd.opaque, 7);
        assert_eq!(cmd.remark, None);
        assert!(cmd.ext_fields.is_empty());
    }
}
