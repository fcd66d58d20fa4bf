//! JSON header encoding (serialize type 0).
//!
//! The header is one compact JSON object. Vostok emits exactly what a Java peer emits: keys in
//! alphabetical order, no whitespace, absent members omitted, every ext value a string:
//!
//! ```text
//! {"code":105,"extFields":{"topic":"TopicA"},"flag":0,"language":"JAVA","opaque":1,
//!  "remark":"…","serializeTypeCurrentRPC":"JSON","version":479}
//!   extFields omitted when empty, remark omitted when None (one line on the wire)
//! ```
//!
//! Parsing is tolerant, because every client writes this object differently (Java alphabetical,
//! Go and Rust in declaration order, ali-ons with raw numbers and booleans as ext values, Rust with
//! `"remark":null`):
//!
//! * any key order, any JSON whitespace, unknown keys skipped (whatever their value);
//! * `code` is required and must be an int32; `flag`, `opaque` and `version` default to 0 and
//!   `language` to `"JAVA"` (the defaults of Java's `RemotingCommand` fields) when missing or null;
//! * `remark` and `extFields` may be missing or `null`;
//! * ext values that are numbers or booleans become their literal text (`0` → `"0"`, `false` →
//!   `"false"`), nested objects or arrays their JSON text, and `null` values are dropped;
//! * control characters may appear raw inside strings (fastjson accepts them; property strings
//!   carry U+0001 and U+0002), and invalid UTF-8 is replaced like Java's `new String(bytes, UTF_8)`;
//! * `serializeTypeCurrentRPC` is ignored: the frame's header-length word already says how the
//!   header is encoded.
//!
//! The parser is hand-written rather than built on `serde_json::Value`: raw control characters must
//! be accepted (serde_json rejects them), and this runs for every request.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::FrameError;
use super::command::{RemotingCommand, SerializeType};

/// Nesting allowed inside skipped values (unknown keys, structured ext values), so hostile input
/// cannot exhaust the stack.
const NESTING_MAX: usize = 32;

/// Appends the JSON header of `cmd` (without the frame words) to `out`.
pub(crate) fn encode(cmd: &RemotingCommand, out: &mut BytesMut) {
    // Rough size: fixed keys plus the variable strings, so one reservation usually suffices.
    let ext_bytes: usize = cmd
        .ext_fields
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum();
    let remark_bytes = cmd.remark.as_ref().map_or(0, |r| r.len() + 12);
    out.reserve(120 + cmd.language.len() + ext_bytes + remark_bytes);

    out.put_slice(b"{\"code\":");
    put_i32(out, cmd.code);
    if !cmd.ext_fields.is_empty() {
        out.put_slice(b",\"extFields\":{");
        for (index, (key, value)) in cmd.ext_fields.iter().enumerate() {
            if index > 0 {
                out.put_u8(b',');
            }
            put_string(out, key);
            out.put_u8(b':');
            put_string(out, value);
        }
        out.put_u8(b'}');
    }
    out.put_slice(b",\"flag\":");
    put_i32(out, cmd.flag);
    out.put_slice(b",\"language\":");
    put_string(out, &cmd.language);
    out.put_slice(b",\"opaque\":");
    put_i32(out, cmd.opaque);
    if let Some(remark) = &cmd.remark {
        out.put_slice(b",\"remark\":");
        put_string(out, remark);
    }
    out.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    put_i32(out, cmd.version);
    out.put_u8(b'}');
}

/// Parses a JSON header into a command with an empty body.
pub(crate) fn decode(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let mut parser = Parser {
        bytes: header,
        pos: 0,
    };
    let mut code = None;
    let mut language = None;
    let mut version = 0;
    let mut opaque = 0;
    let mut flag = 0;
    let mut remark = None;
    let mut ext_fields = BTreeMap::new();

    parser.skip_whitespace();
    parser.expect(b'{')?;
    parser.skip_whitespace();
    if parser.peek() == Some(b'}') {
        parser.pos += 1;
    } else {
        loop {
            parser.skip_whitespace();
            let key = parser.parse_string()?;
            parser.skip_whitespace();
            parser.expect(b':')?;
            parser.skip_whitespace();
            match key.as_ref() {
                "code" => code = parser.parse_int("code")?,
                "flag" => flag = parser.parse_int("flag")?.unwrap_or(0),
                "opaque" => opaque = parser.parse_int("opaque")?.unwrap_or(0),
                "version" => version = parser.parse_int("version")?.unwrap_or(0),
                "language" => language = parser.parse_language()?,
                "remark" => remark = parser.parse_scalar_text()?,
                "extFields" => parser.parse_ext_fields(&mut ext_fields)?,
                _ => parser.skip_value(0)?,
            }
            parser.skip_whitespace();
            match parser.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(parser.error("expected ',' or '}' after a member")),
            }
        }
    }
    parser.skip_whitespace();
    if parser.pos != header.len() {
        return Err(parser.error("unexpected bytes after the header object"));
    }
    let code = code.ok_or_else(|| bad("JSON header has no \"code\""))?;
    Ok(RemotingCommand {
        code,
        language: language.unwrap_or_else(|| "JAVA".to_owned()),
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

fn bad(message: impl Into<String>) -> FrameError {
    FrameError::BadHeader(message.into())
}

/// Appends the decimal text of `value` without going through `fmt`.
fn put_i32(out: &mut BytesMut, value: i32) {
    let mut digits = [0u8; 11];
    let mut start = digits.len();
    // Work on the magnitude as u32 so that i32::MIN does not overflow.
    let mut magnitude = value.unsigned_abs();
    loop {
        start -= 1;
        digits[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        digits[start] = b'-';
    }
    out.put_slice(&digits[start..]);
}

/// Appends `text` as a JSON string literal: `"` and `\` escaped, control characters as their
/// short escapes or `\u00XX` (as Java and serde_json write them), everything else verbatim.
fn put_string(out: &mut BytesMut, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.put_u8(b'"');
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.put_slice(&bytes[run_start..index]);
        run_start = index + 1;
        if escape.is_empty() {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.put_slice(escape);
        }
    }
    out.put_slice(&bytes[run_start..]);
    out.put_u8(b'"');
}

/// A cursor over the header bytes. Every method reports malformed input as `BadHeader`.
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> FrameError {
        bad(format!("JSON header: {what} at byte {}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, wanted: u8) -> Result<(), FrameError> {
        if self.peek() == Some(wanted) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", char::from(wanted))))
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `literal` (`true`, `false`, `null`) or fails.
    fn expect_literal(&mut self, literal: &[u8]) -> Result<(), FrameError> {
        if self.bytes[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    /// Consumes `null` if it comes next.
    fn take_null(&mut self) -> bool {
        if self.bytes[self.pos..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// A string literal (the opening quote is next). Borrowed when it has no escapes and is valid
    /// UTF-8, which is the common case.
    fn parse_string(&mut self) -> Result<Cow<'a, str>, FrameError> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.bytes;
        // Fast path: scan to the closing quote; fall back at the first backslash.
        loop {
            match bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    let raw = &bytes[start..self.pos];
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(raw));
                }
                Some(b'\\') => break,
                Some(_) => self.pos += 1,
            }
        }
        let mut text: Vec<u8> = bytes[start..self.pos].to_vec();
        loop {
            match self.next() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => self.parse_escape(&mut text)?,
                Some(byte) => text.push(byte),
            }
        }
        Ok(Cow::Owned(match String::from_utf8(text) {
            Ok(text) => text,
            Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
        }))
    }

    /// One escape sequence after its backslash, appended to `text` as UTF-8.
    fn parse_escape(&mut self, text: &mut Vec<u8>) -> Result<(), FrameError> {
        let simple = match self.next() {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let unit = self.parse_hex4()?;
                let scalar = match unit {
                    0xd800..=0xdbff => {
                        // A high surrogate combines with a following `\uDC00`..`\uDFFF`; alone it
                        // cannot be represented in UTF-8 and becomes U+FFFD, as a lone low one does.
                        if self.bytes[self.pos..].starts_with(b"\\u") {
                            let save = self.pos;
                            self.pos += 2;
                            let low = self.parse_hex4()?;
                            if (0xdc00..=0xdfff).contains(&low) {
                                0x10000
                                    + ((u32::from(unit) - 0xd800) << 10)
                                    + (u32::from(low) - 0xdc00)
                            } else {
                                self.pos = save;
                                0xfffd
                            }
                        } else {
                            0xfffd
                        }
                    }
                    0xdc00..=0xdfff => 0xfffd,
                    _ => u32::from(unit),
                };
                let ch = char::from_u32(scalar).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut utf8 = [0u8; 4];
                text.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        text.push(simple);
        Ok(())
    }

    fn parse_hex4(&mut self) -> Result<u16, FrameError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        let mut unit = 0u16;
        for &digit in digits {
            let value = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape")),
            };
            unit = (unit << 4) | u16::from(value);
        }
        self.pos += 4;
        Ok(unit)
    }

    /// A JSON number, returned as its literal text.
    fn parse_number(&mut self) -> Result<&'a str, FrameError> {
        let start = self.pos;
        let bytes = self.bytes;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_digits = self.skip_digits();
        if int_digits == 0 {
            return Err(self.error("invalid number"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.skip_digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.skip_digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        // Only ASCII digits, signs, '.', 'e' were consumed.
        std::str::from_utf8(&bytes[start..self.pos]).map_err(|_| self.error("invalid number"))
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// An int32 member: a JSON integer, or a string holding one (fastjson coerces those too);
    /// `None` for `null`. Anything else, fractions and out-of-range values included, is an error.
    fn parse_int(&mut self, field: &str) -> Result<Option<i32>, FrameError> {
        let text: Cow<'a, str> = match self.peek() {
            Some(b'"') => self.parse_string()?,
            Some(b'-' | b'0'..=b'9') => Cow::Borrowed(self.parse_number()?),
            Some(b'n') if self.take_null() => return Ok(None),
            _ => return Err(self.error(&format!("\"{field}\" is not an integer"))),
        };
        text.trim()
            .parse::<i32>()
            .map(Some)
            .map_err(|_| bad(format!("JSON header: \"{field}\" {text:?} is not an int32")))
    }

    /// `language`: an enum name (kept as text, known or not), or null; a number is taken as the
    /// binary header's language byte.
    fn parse_language(&mut self) -> Result<Option<String>, FrameError> {
        match self.peek() {
            Some(b'"') => Ok(Some(self.parse_string()?.into_owned())),
            Some(b'n') if self.take_null() => Ok(None),
            Some(b'-' | b'0'..=b'9') => {
                let name = self
                    .parse_number()?
                    .parse::<u8>()
                    .ok()
                    .and_then(super::binary_header::language_name)
                    .unwrap_or("OTHER");
                Ok(Some(name.to_owned()))
            }
            _ => Err(self.error("\"language\" is not a string")),
        }
    }

    /// A value read as text: strings as themselves, numbers and booleans as their literal text,
    /// objects and arrays as their JSON text; `None` for `null`.
    fn parse_scalar_text(&mut self) -> Result<Option<String>, FrameError> {
        match self.peek() {
            Some(b'"') => Ok(Some(self.parse_string()?.into_owned())),
            Some(b'-' | b'0'..=b'9') => Ok(Some(self.parse_number()?.to_owned())),
            Some(b't') => self
                .expect_literal(b"true")
                .map(|()| Some("true".to_owned())),
            Some(b'f') => self
                .expect_literal(b"false")
                .map(|()| Some("false".to_owned())),
            Some(b'n') => self.expect_literal(b"null").map(|()| None),
            Some(b'{' | b'[') => {
                let start = self.pos;
                self.skip_value(0)?;
                Ok(Some(
                    String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned(),
                ))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    /// `extFields`: an object whose values are read as text, or null.
    fn parse_ext_fields(
        &mut self,
        ext_fields: &mut BTreeMap<String, String>,
    ) -> Result<(), FrameError> {
        if self.take_null() {
            return Ok(());
        }
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            let key = self.parse_string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            if let Some(value) = self.parse_scalar_text()? {
                ext_fields.insert(key.into_owned(), value);
            }
            self.skip_whitespace();
            match self.next() {
                Some(b',') => continue,
                Some(b'}') => return Ok(()),
                _ => return Err(self.error("expected ',' or '}' in extFields")),
            }
        }
    }

    /// Skips any JSON value, validating it.
    fn skip_value(&mut self, depth: usize) -> Result<(), FrameError> {
        if depth > NESTING_MAX {
            return Err(self.error("nesting too deep"));
        }
        match self.peek() {
            Some(b'"') => self.parse_string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.parse_number().map(drop),
            Some(b't') => self.expect_literal(b"true"),
            Some(b'f') => self.expect_literal(b"false"),
            Some(b'n') => self.expect_literal(b"null"),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.skip_whitespace();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    if open == b'{' {
                        self.parse_string()?;
                        self.skip_whitespace();
                        self.expect(b':')?;
                        self.skip_whitespace();
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_whitespace();
                    match self.next() {
                        Some(b',') => continue,
                        Some(byte) if byte == close => return Ok(()),
                        _ => return Err(self.error("unterminated object or array")),
                    }
                }
            }
            _ => Err(self.error("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(cmd: &RemotingCommand) -> String {
        let mut out = BytesMut::new();
        encode(cmd, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// Goal: the emitter writes the exact text of REMOTING.md §8.1. Method: build the command and
    /// compare strings.
    #[test]
    fn emits_java_layout() {
        let mut cmd = RemotingCommand::request(105).with_ext("topic", "TopicA");
        cmd.opaque = 1;
        assert_eq!(
            encoded(&cmd),
            r#"{"code":105,"extFields":{"topic":"TopicA"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#
        );
    }

    /// Goal: optional members and negative numbers are emitted like Java. Method: a response with
    /// a remark, no ext fields, extreme integers.
    #[test]
    fn emits_remark_and_extreme_integers() {
        let mut cmd = RemotingCommand::request(i32::MIN);
        cmd.remark = Some("a\"b\\c\u{1}\u{2}\n\u{7f}é".to_owned());
        cmd.opaque = i32::MAX;
        cmd.flag = -1;
        assert_eq!(
            encoded(&cmd),
            "{\"code\":-2147483648,\"flag\":-1,\"language\":\"JAVA\",\"opaque\":2147483647,\
             \"remark\":\"a\\\"b\\\\c\\u0001\\u0002\\n\u{7f}é\",\
             \"serializeTypeCurrentRPC\":\"JSON\",\"version\":479}"
        );
    }

    /// Goal: what we emit is valid JSON to a strict parser. Method: parse with serde_json and
    /// compare the members.
    #[test]
    fn emitted_json_is_standard() {
        let mut cmd = RemotingCommand::request(310)
            .with_ext("i", "UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true\u{2}")
            .with_ext("quote\"key", "tab\there\u{0}");
        cmd.remark = Some(String::new());
        let value: serde_json::Value = serde_json::from_str(&encoded(&cmd)).unwrap();
        assert_eq!(
            value["extFields"]["i"],
            "UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true\u{2}"
        );
        assert_eq!(value["extFields"]["quote\"key"], "tab\there\u{0}");
        assert_eq!(value["remark"], "");
        assert_eq!(value["serializeTypeCurrentRPC"], "JSON");
    }

    /// Goal: escape sequences, surrogate pairs and raw control characters decode to the intended
    /// text. Method: decode handwritten headers.
    #[test]
    fn decodes_escapes() {
        let header = "{\"code\":1,\"remark\":\"\\ud83d\\ude00 \\u00e9\\/\\b\\f\\n\\r\\t\\\"\\\\ \
                      \\ud800x \u{1}raw\u{2}\"}";
        let cmd = decode(header.as_bytes()).unwrap();
        assert_eq!(
            cmd.remark.as_deref(),
            Some("😀 é/\u{8}\u{c}\n\r\t\"\\ \u{fffd}x \u{1}raw\u{2}")
        );
    }

    #[test]
    fn rejects_bad_escapes_and_trailing_bytes() {
        for header in [
            r#"{"code":1,"remark":"\x"}"#,
            r#"{"code":1,"remark":"\u12"}"#,
            r#"{"code":1,"remark":"\u12G4"}"#,
            r#"{"code":1,"remark":"open"#,
            r#"{"code":1} x"#,
            r#"{"code":1,}"#,
            r#"{"code":1 "flag":0}"#,
            r#"{"code":1,"x":[1,2}"#,
            r#"{"code":1,"x":tru}"#,
            r#"{"code":-}"#,
            r#"{"code":1.}"#,
            r#"{"code":1e}"#,
            "",
            "[]",
        ] {
            assert!(
                matches!(decode(header.as_bytes()), Err(FrameError::BadHeader(_))),
                "{header}"
            );
        }
    }

    /// Goal: deeply nested unknown values are rejected, not a stack overflow. Method: 100 000
    /// nested arrays under an unknown key.
    #[test]
    fn deep_nesting_is_an_error() {
        let header = format!("{{\"code\":1,\"x\":{}}}", "[".repeat(100_000));
        assert!(matches!(
            decode(header.as_bytes()),
            Err(FrameError::BadHeader(_))
        ));
    }

    #[test]
    fn put_i32_matches_display() {
        for value in [0, 1, -1, 9, 10, 479, -479, i32::MAX, i32::MIN] {
            let mut out = BytesMut::new();
            put_i32(&mut out, value);
            assert_eq!(&out[..], value.to_string().as_bytes());
        }
    }
}
