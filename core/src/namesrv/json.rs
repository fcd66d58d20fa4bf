//! Hand-written JSON pieces for the two dialects RocketMQ peers speak.
//!
//! Java serializes with fastjson 1.x, which writes maps with numeric keys unquoted
//! (`{0:"10.0.0.1:10911"}`). Vostok must be able to *write* that dialect for old clients (route
//! data for request versions below 401) and to *read* it wherever a Java peer may put such a map,
//! even inside keys it otherwise ignores (a Java broker's static-topic mapping section), because
//! serde_json refuses the whole document otherwise.

use std::borrow::Cow;

/// Appends `text` as a JSON string literal.
///
/// `ascii_only` escapes every non-ASCII character as `\uXXXX` (UTF-16 code units), as fastjson's
/// `BrowserCompatible` feature does for the standard route dialect; otherwise non-ASCII text is
/// written as raw UTF-8, as fastjson's default does.
pub(crate) fn write_string(out: &mut String, text: &str, ascii_only: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii_only && (c as u32) >= 0x7f) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Rewrites fastjson's unquoted numeric object keys (`{0:"a",-1:"b"}`) into standard JSON
/// (`{"0":"a","-1":"b"}`) so serde_json can parse the text. Standard JSON passes through
/// unchanged (and is not copied); text that is not JSON at all is left for the parser to reject.
///
/// The scan works on bytes: every byte it looks at (quotes, brackets, commas, digits) is ASCII,
/// and no byte of a multi-byte UTF-8 character is, so the positions it finds are character
/// boundaries. Brokers send this on every registration, so it is on the NameServer's hot path.
pub(crate) fn quote_numeric_keys(text: &str) -> Cow<'_, str> {
    /// What kind of container the scanner is inside.
    #[derive(Clone, Copy, PartialEq)]
    enum Container {
        Array,
        Object,
    }

    let bytes = text.as_bytes();
    // `[start, end)` of every unquoted numeric key.
    let mut keys: Vec<(usize, usize)> = Vec::new();
    let mut stack: Vec<Container> = Vec::new();
    // True right after `{` or `,` inside an object: the next token is a key.
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            i = skip_string(bytes, i);
            expect_key = false;
            continue;
        }
        if expect_key && (b.is_ascii_digit() || b == b'-') {
            let start = i;
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit()
                    || matches!(bytes[i], b'.' | b'-' | b'+' | b'e' | b'E'))
            {
                i += 1;
            }
            keys.push((start, i));
            expect_key = false;
            continue;
        }
        match b {
            b'{' => {
                stack.push(Container::Object);
                expect_key = true;
            }
            b'[' => {
                stack.push(Container::Array);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&Container::Object),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => expect_key = false,
        }
        i += 1;
    }
    if keys.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 2 * keys.len());
    let mut copied = 0;
    for (start, end) in keys {
        out.push_str(&text[copied..start]);
        out.push('"');
        out.push_str(&text[start..end]);
        out.push('"');
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Rewrites fastjson's object-valued map keys into JSON strings holding the key's own text, so a
/// body such as GET_TOPIC_STATS_INFO's `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:{…}}}`
/// becomes `{"offsetTable":{"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"t\"}":{…}}}`,
/// which serde_json reads (a key is then parsed again as JSON by whoever needs its fields).
/// fastjson writes a map whose keys are beans (`MessageQueue`) this way; standard JSON passes
/// through unchanged. Like [`quote_numeric_keys`], the scan looks only at ASCII bytes.
pub(crate) fn quote_object_keys(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // `[start, end)` of every object-valued key, brackets included.
    let mut keys: Vec<(usize, usize)> = Vec::new();
    // True for each open object, false for each open array.
    let mut in_object: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            i = skip_string(bytes, i);
            expect_key = false;
            continue;
        }
        if expect_key && b == b'{' {
            // A key that is itself an object: find its matching brace.
            let start = i;
            let mut depth = 0usize;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = skip_string(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            keys.push((start, i));
            expect_key = false;
            continue;
        }
        match b {
            b'{' => {
                in_object.push(true);
                expect_key = true;
            }
            b'[' => {
                in_object.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                in_object.pop();
                expect_key = false;
            }
            b',' => expect_key = in_object.last() == Some(&true),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => expect_key = false,
        }
        i += 1;
    }
    if keys.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut copied = 0;
    for (start, end) in keys {
        out.push_str(&text[copied..start]);
        write_string(&mut out, &text[start..end], false);
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The index just past the string literal opening at `start` (or the end of the text).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Parses a body as a Java broker or NameServer writes it (fastjson 1.x): numeric and object map
/// keys become string keys ([`quote_numeric_keys`], [`quote_object_keys`]); then plain JSON.
pub fn parse_fastjson(body: &[u8]) -> Result<serde_json::Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let keyed = quote_object_keys(text);
    serde_json::from_str(&quote_numeric_keys(&keyed))
        .map_err(|e| format!("malformed JSON body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_per_dialect() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\c\nä😀", false);
        assert_eq!(out, "\"a\\\"b\\\\c\\nä😀\"");
        let mut out = String::new();
        write_string(&mut out, "ä😀\u{1}", true);
        assert_eq!(out, "\"\\u00e4\\ud83d\\ude00\\u0001\"");
    }

    #[test]
    fn numeric_keys_get_quoted_only_where_they_are_keys() {
        assert_eq!(
            quote_numeric_keys(r#"{"a":{0:"x:1",1:"y"},"b":[1,2,{-3:4}],"c":"{5:6}"}"#),
            r#"{"a":{"0":"x:1","1":"y"},"b":[1,2,{"-3":4}],"c":"{5:6}"}"#
        );
        assert_eq!(quote_numeric_keys(r#"{ 7 : "s" }"#), r#"{ "7" : "s" }"#);
        let standard = r#"{"k":{"0":"v"},"n":[0,1]}"#;
        assert_eq!(quote_numeric_keys(standard), standard);
    }

    #[test]
    fn object_and_numeric_keys_read_as_string_keys() {
        let body = br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:{"maxOffset":3},{"brokerName":"b","queueId":1,"topic":"a\"}"}:{"maxOffset":4}},"brokerAddrs":{0:"x:1"},"tps":0.0}"#;
        let value = parse_fastjson(body).unwrap();
        let table = value["offsetTable"].as_object().unwrap();
        assert_eq!(table.len(), 2);
        let (key, entry) = table.iter().next().unwrap();
        let key: serde_json::Value = serde_json::from_str(key).unwrap();
        assert_eq!(key["queueId"], 0);
        assert_eq!(entry["maxOffset"], 3);
        assert!(table.keys().any(|k| k.contains(r#""topic":"a\"}""#)));
        assert_eq!(value["brokerAddrs"]["0"], "x:1");
        assert_eq!(
            quote_object_keys(r#"{"a":[{"b":1}],"c":"{x"}"#),
            r#"{"a":[{"b":1}],"c":"{x"}"#
        );
        assert!(parse_fastjson(b"{{").is_err());
    }
}
