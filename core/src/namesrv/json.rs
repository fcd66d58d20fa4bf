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
            // A string: skip to its closing quote.
            i += 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            i += 1;
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
}
